"""How a cluster URL becomes connections that follow the deployment's slot, without a server: the options,
the connection classes, and the route's rules (pheromone.plumbing.cluster)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from redis.exceptions import MovedError

from pheromone.plumbing import connection
from pheromone.plumbing.cluster import (
    BlockingClusterConnection,
    BlockingClusterSSLConnection,
    ClusterConnection,
    ClusterRoute,
    ClusterSSLConnection,
    follow_moved,
)
from pheromone.plumbing.settings import ConnectionSettings


def test_the_cluster_setting_becomes_the_url_parameter() -> None:
    settings = ConnectionSettings(redis_url=SecretStr("redis://node-1:7000/0"), redis_cluster=True)
    url = connection.settings_url(settings)
    assert url == "redis://node-1:7000/0?cluster=true"
    options = connection.client_options(url)
    assert options["connection_class"] is ClusterConnection and "cluster" not in options
    assert options["cluster_route"].seed == ("node-1", 7000) and options["cluster_route"].node is None
    assert "cluster_route" not in connection.client_options("redis://node-1:7000/0")


def test_every_kind_of_connection_follows_the_slot() -> None:
    tls = "rediss://node-1:7000/?cluster=yes&ssl_cert_reqs=none"
    assert connection.client_options(tls)["connection_class"] is ClusterSSLConnection
    assert isinstance(connection.blocking_connection(tls), BlockingClusterSSLConnection)
    plain = "redis://node-1:7000/?cluster=true"
    assert type(connection.blocking_connection(plain)) is BlockingClusterConnection
    assert connection.broker_options(plain)["connection_class"] is ClusterConnection
    # Each pool learns its own node: a deployment of another prefix may live elsewhere.
    assert connection.client_options(plain)["cluster_route"] is not connection.client_options(plain)["cluster_route"]


def test_cluster_without_a_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="redis_cluster set without redis_url"):
        ConnectionSettings(redis_cluster=True)


def test_the_route_learns_from_moved_and_forgets_a_node_that_is_gone() -> None:
    route = ClusterRoute(("seed", 7000))
    assert route.address() == ("seed", 7000)
    moved = route.moved(MovedError("1234 10.0.0.2:7001"))
    assert route.address() == ("10.0.0.2", 7001)
    assert str(moved) == ("Redis Cluster: slot 1234 of this deployment's keys is now served by 10.0.0.2:7001 "
                          "(failover or resharding); reconnecting there")
    route.lost(("seed", 7000))  # not the learned node: nothing changes
    assert route.address() == ("10.0.0.2", 7001)
    route.lost(("10.0.0.2", 7001))
    assert route.address() == ("seed", 7000)


def test_the_sender_follows_only_a_moved_reply_on_a_cluster_connection() -> None:
    cluster = connection.blocking_connection("redis://seed:7000/?cluster=true")
    assert not follow_moved(cluster, "ERR something else")
    assert follow_moved(cluster, "MOVED 77 10.0.0.3:7002")
    assert isinstance(cluster, BlockingClusterConnection) and cluster.route.address() == ("10.0.0.3", 7002)
    assert not follow_moved(connection.blocking_connection("redis://seed:7000/"), "MOVED 77 10.0.0.3:7002")
