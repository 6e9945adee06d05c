"""Redis Cluster: every connection goes to the one node that serves this deployment's slot.

Every key of a deployment starts with the hash tag `{prefix}` (`contracts.streams.Keys`), so all of them live
in one slot, served by one primary; talking to that primary alone, a cluster behaves like one server, MULTI/EXEC,
Lua and multi-key commands included. A cluster URL (`cluster=true`, or `PHEROMONE_REDIS_CLUSTER`) names a seed:
any node of the cluster, or a managed service's configuration endpoint.

    connect        to the node this pool last learned, else to the seed
    a command      answered `MOVED <slot> <host>:<port>` (the node does not serve the slot):
                   remember that node for the whole pool, drop the connection, send the command once more
                   there (MOVED means it was refused, not run, so sending it again is safe)
    connect fails  forget the learned node: the next connection asks the seed again

So the first keyed command of a pool whose seed is not the owner costs one redirection, and a failover (the old
primary, now a replica, answers MOVED; or does not answer at all) costs one more, or a reconnect. Only the slot
of the first MOVED matters: a deployment has one. redis-py's own `RedisCluster` is not used because FastStream's
`RedisBroker`, every `aioredis.Redis` of the services and the client's sender thread (which writes RESP on its
socket itself) all take a plain connection; here they get one, to the right node.

Errors::

    redis.exceptions.ConnectionError
    └── SlotMoved   the slot moved again while a command was being redirected (raised after one retry)
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.connection as blocking
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError

__all__ = [
    "BlockingClusterConnection",
    "BlockingClusterSSLConnection",
    "ClusterConnection",
    "ClusterRoute",
    "ClusterSSLConnection",
    "SlotMoved",
    "follow_moved",
]

T = TypeVar("T")
Address = tuple[str, int]


class SlotMoved(RedisConnectionError):
    """A node answered MOVED: the connection was dropped and the next one goes to the node named."""

    def __init__(self, slot: int, node: Address) -> None:
        super().__init__(f"Redis Cluster: slot {slot} of this deployment's keys is now served by {node[0]}:{node[1]} "
                         "(failover or resharding); reconnecting there")


class ClusterRoute:
    """Where one pool's connections go: the learned node of the deployment's slot, else the seed."""

    def __init__(self, seed: Address) -> None:
        self.seed = seed
        self.node: Address | None = None

    def address(self) -> Address:
        return self.node or self.seed

    def moved(self, error: MovedError) -> SlotMoved:
        self.node = (error.host, error.port)
        return SlotMoved(error.slot_id, self.node)

    def lost(self, address: Address) -> None:
        """`address` did not accept a connection: ask the seed again next time (it may have failed over)."""
        if self.node == address:
            self.node = None


class _FollowMoved(Retry):
    """The connection's own retry policy, plus one more attempt after a MOVED (SlotMoved), whatever the policy:
    a client that retries nothing still has its command redirected once."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return await super().call_with_retry(do, fail, *args, **kwargs)
        except SlotMoved:
            return await super().call_with_retry(do, fail, *args, **kwargs)


class ClusterConnection(Connection):
    """An asyncio connection that follows this deployment's slot (the module's rules)."""

    def __init__(self, *, cluster_route: ClusterRoute, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route = cluster_route
        own = self.retry
        self.retry = _FollowMoved(own._backoff, own._retries, own._supported_errors, own._is_retryable)

    async def _connect(self) -> None:
        self.host, self.port = address = self.route.address()
        try:
            await super()._connect()  # type: ignore[no-untyped-call]
        except Exception:
            self.route.lost(address)
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except MovedError as exc:
            moved = self.route.moved(exc)
            await self.disconnect()
            raise moved from None


class ClusterSSLConnection(ClusterConnection, SSLConnection):
    """`ClusterConnection` over TLS (`rediss://`)."""


class BlockingClusterConnection(blocking.Connection):
    """A blocking connection that connects where `ClusterRoute` says. Its one user, the client's sender thread,
    reads replies itself and reports a MOVED through `follow_moved`."""

    def __init__(self, *, cluster_route: ClusterRoute, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.route = cluster_route

    def _connect(self) -> socket.socket:
        self.host, self.port = address = self.route.address()
        try:
            sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        except Exception:
            self.route.lost(address)
            raise
        return sock


class BlockingClusterSSLConnection(BlockingClusterConnection, blocking.SSLConnection):
    """`BlockingClusterConnection` over TLS (`rediss://`)."""


def follow_moved(conn: object, error: str) -> bool:
    """If `conn` follows a cluster slot and `error` is a MOVED reply, point its route at the node named and
    return True (the caller reconnects and sends again); else False."""
    if not isinstance(conn, BlockingClusterConnection) or not error.startswith("MOVED "):
        return False
    conn.route.moved(MovedError(error.removeprefix("MOVED ")))
    return True
