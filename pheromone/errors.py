"""Errors the client raises, as a drawn tree.

    ClientError
    ├── ClientClosedError     emit() or a query on a client that is not open
    ├── FlushTimeout          flush() could not drain in time (events stay buffered or spooled, not lost)
    └── QueryError            a query was refused or failed
        └── QueryTimeout      no query service answered in time

`emit()` never raises because Redis is slow or down; a bad record is refused when the record is built
(pydantic.ValidationError), before it reaches emit().
"""

from __future__ import annotations


class ClientError(Exception):
    pass


class ClientClosedError(ClientError):
    pass


class FlushTimeout(ClientError, TimeoutError):
    pass


class QueryError(ClientError):
    pass


class QueryTimeout(QueryError, TimeoutError):
    pass
