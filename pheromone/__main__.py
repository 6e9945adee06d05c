"""`python -m pheromone` runs the CLI."""

from pheromone.cli import main

main()
