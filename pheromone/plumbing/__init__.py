"""What jobs and services share below them both: building Redis connections from a URL and the settings, the
embedded server, appending envelopes to streams and the Lua scripts both sides run. It imports only
`pheromone.contracts` and libraries; the client (`pheromone`) and the services (`pheromone.services`) import
it, never the other way round."""
