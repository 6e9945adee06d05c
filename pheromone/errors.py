"""The root of every error pheromone raises on purpose, and the errors the client raises, as a drawn tree.

    PheromoneError                 the one root: `except PheromoneError` catches every error of pheromone's own
    ├── ClientError                the job-side client
    │   ├── ClientClosedError      emit() or a query on a client that is not open
    │   ├── FlushTimeout           flush() could not drain in time (events stay buffered or spooled, not lost)
    │   └── QueryError             a query was refused or failed
    │       └── QueryTimeout       no query service answered in time
    ├── ConnectionSetupError       an unusable Redis URL or TLS file, refused credentials (plumbing.connection)
    ├── EmbeddedServerError        no server binary to embed, or it did not start (plumbing.embedded)
    └── …                          the services' errors, drawn in `pheromone.services.errors`

`emit()` never raises because Redis is slow or down; a bad record is refused when the record is built
(pydantic.ValidationError), before it reaches emit(). This module imports nothing, so the client, the
plumbing and the services all share its root.
"""

from __future__ import annotations


class PheromoneError(Exception):
    """Root of every error pheromone raises on purpose."""


class ClientError(PheromoneError):
    pass


class ClientClosedError(ClientError):
    pass


class FlushTimeout(ClientError, TimeoutError):
    pass


class QueryError(ClientError):
    pass


class QueryTimeout(QueryError, TimeoutError):
    pass
