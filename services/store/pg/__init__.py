"""The PostgreSQL store backend (`PHEROMONE_STORE_URL=postgresql://…`): the same ledger, projections, rebuild,
checksum and reads as the SQLite backend, through psycopg 3. See docs/SCALING.md for the driver choice."""
