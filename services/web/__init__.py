"""The HTTP side of `pheromone serve --http-port`: probes, metrics, the AsyncAPI document (`routes`) and the
dashboard (`dashboard`). Server-side: a job never imports it."""
