"""A real three-node Redis Cluster on loopback, made of the Valkey binary the embedded server uses.

Each node is a `valkey-server --cluster-enabled yes` child on a free port with a directory of its own; the
cluster is formed as `valkey-cli --cluster create` would: each node gets a config epoch and a third of the
16384 slots (CLUSTER ADDSLOTSRANGE), the first node MEETs the others, and the cluster is ready once every node
reports `cluster_state:ok` and the same owner for every slot. No replicas: the tests need slots on several
nodes, not failover, and move a slot themselves (`move_slot`) to play one.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import _free_port, find_server_binary

SLOTS = 16384
START_TIMEOUT = 15.0
HOST = "127.0.0.1"


def slot_of(prefix: str) -> int:
    """The slot of every key under `prefix` (they share the hash tag)."""
    return key_slot(Keys(prefix).ingest.encode())


class Node:
    def __init__(self, root: Path, index: int) -> None:
        self.dir = root / f"node-{index}"
        self.dir.mkdir(parents=True)
        self.port = _free_port(HOST)
        self.bus_port = _free_port(HOST)
        """Its cluster bus port: the default, port + 10000, may be taken or past 65535."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def client(self) -> redis.Redis:
        """A plain client of this node alone (it follows nothing: a MOVED reply is an error here)."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def start(self, binary: str) -> None:
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir), "--daemonize", "no",
             "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port), "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--logfile", ""],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        path = self.dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-15:]) if path.exists() else ""


class LocalCluster:
    """Three primaries owning a third of the slots each; `url` names the first node as the seed."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [Node(root, i) for i in range(size)]

    @property
    def url(self) -> str:
        """A pheromone cluster URL: the first node is the seed."""
        return f"redis://{HOST}:{self.nodes[0].port}/?cluster=true"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        binary = find_server_binary()
        for node in self.nodes:
            node.start(binary)
        for node in self.nodes:
            self._wait(lambda n=node: n.client().ping(), f"node {node.port} answers PING", node)
        share = SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            with node.client() as c:
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                last = SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        with self.nodes[0].client() as c:
            for other in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", HOST, other.port, other.bus_port)
        self._wait(self._formed, "every node sees the same three primaries and cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def owner(self, slot: int, asked: Node | None = None) -> Node:
        """The node that serves `slot`, as `asked` (default: the first node) sees it."""
        with (asked or self.nodes[0]).client() as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        raise AssertionError(f"slot {slot} has no owner")

    def node_id(self, node: Node) -> str:
        with node.client() as c:
            return str(c.execute_command("CLUSTER", "MYID").decode())

    def move_slot(self, slot: int, to: Node) -> None:
        """Move `slot` and its keys to `to` the way `valkey-cli --cluster reshard` does (IMPORTING, MIGRATING,
        MIGRATE of every key, then NODE on every node), so clients of the old owner get MOVED, as after a
        failover."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(to)
        with to.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        with source.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                c.execute_command("MIGRATE", HOST, to.port, "", 0, 5000, "KEYS", *keys)
        for node in [to, source, *(n for n in self.nodes if n not in (to, source))]:
            with node.client() as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self._wait(lambda: all(self.owner(slot, n) is to for n in self.nodes), f"every node sees slot {slot} moved")

    def _formed(self) -> bool:
        for node in self.nodes:
            with node.client() as c:
                info = c.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(self.nodes)}" not in info:
                    return False
                if len(c.execute_command("CLUSTER", "SLOTS")) != len(self.nodes):
                    return False
        return True

    def _wait(self, check: Callable[[], object], what: str, node: Node | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            exited = [n for n in self.nodes if n.process is not None and n.process.poll() is not None]
            if time.monotonic() > deadline or exited:
                tail = "\n".join(n.log_tail() for n in ([node] if node else self.nodes))
                raise AssertionError(f"cluster: {what} not reached in {START_TIMEOUT:g}s\n{tail}")
            time.sleep(0.05)
