"""`python -m pheromone.cli` runs the CLI."""

from pheromone.cli import main

main()
