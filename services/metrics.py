"""Prometheus metrics of the services one `Runtime` hosts, with `prometheus_client`.

Each Runtime owns a `Metrics` with its own `CollectorRegistry` (never the process-global one), so several
runtimes can live in one process (tests) without sharing counters. `serve()` exposes it over HTTP at
`/metrics` when `Settings.metrics_port` is set. Families (docs/OPERATIONS.md lists them with their labels):

    pheromone_events_total{service,stream,outcome}   entries a group finished: applied | skipped
    pheromone_batch_failures_total{service,stream}   handler calls that raised (entries left pending)
    pheromone_batch_size{service,stream}             histogram: entries per batch handed to a handler
    pheromone_handler_seconds{service,stream}        histogram: handler latency per batch (store: the commit)
    pheromone_dead_letters_total{service,stream}     entries this runtime dead-lettered
    pheromone_group_lag{stream,group}                gauge: entries not yet delivered to the group
    pheromone_group_pending{stream,group}            gauge: delivered, unacknowledged entries
    pheromone_stream_length{stream}                  gauge
    pheromone_broadcasts_published_total{service}    broadcasts put on the broadcast stream
    pheromone_rate_limits_announced_total            rate-limit notices the coordinator announced
    pheromone_entropy_responses_total                entropy responses the entropy service made
    pheromone_redis_up                               gauge: 1 while the watchdog reaches Redis
    pheromone_spool_events, pheromone_spool_bytes    gauges: what local clients spooled under the data
                                                     directory's spool/ and have not sent yet

Cost on the ingest path: a GroupWorker updates its pre-bound children once per batch (a few lock-protected
adds), never per event; the gauges are refreshed by a timer loop (`Settings.metrics_interval_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """One group worker's children, bound once so the per-batch path does no label lookups."""

    applied: Counter
    skipped: Counter
    failures: Counter
    dead_letters: Counter
    batch_size: Histogram
    handler_seconds: Histogram


class Metrics:
    """The metric families of one runtime, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("pheromone_events", "Entries a group acknowledged: applied, or skipped (unparsable)",
                              ["service", "stream", "outcome"], registry=r)
        self.failures = Counter("pheromone_batch_failures", "Handler calls that raised; their entries stay pending",
                                ["service", "stream"], registry=r)
        self.dead_letters = Counter("pheromone_dead_letters", "Entries dead-lettered", ["service", "stream"],
                                    registry=r)
        self.batch_size = Histogram("pheromone_batch_size", "Entries per batch handed to a service's handler",
                                    ["service", "stream"], buckets=BATCH_BUCKETS, registry=r)
        self.handler_seconds = Histogram("pheromone_handler_seconds", "Handler latency per batch or request",
                                         ["service", "stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("pheromone_group_lag", "Entries not yet delivered to the group (unknown: -1)",
                         ["stream", "group"], registry=r)
        self.pending = Gauge("pheromone_group_pending", "Entries delivered to the group and not acknowledged",
                             ["stream", "group"], registry=r)
        self.stream_length = Gauge("pheromone_stream_length", "Entries in the stream", ["stream"], registry=r)
        self.broadcasts = Counter("pheromone_broadcasts_published", "Broadcasts put on the broadcast stream",
                                  ["service"], registry=r)
        self.announced = Counter("pheromone_rate_limits_announced", "Rate-limit notices announced", registry=r)
        self.entropy_responses = Counter("pheromone_entropy_responses", "Entropy responses made", registry=r)
        self.redis_up = Gauge("pheromone_redis_up", "1 while the runtime's watchdog reaches Redis", registry=r)
        self.redis_up.set(1)
        self.spool_events = Gauge("pheromone_spool_events", "Events clients spooled under this host's data directory "
                                  "(spool/) and have not sent yet", registry=r)
        self.spool_bytes = Gauge("pheromone_spool_bytes", "Bytes of those spooled events", registry=r)

    def worker(self, service: str, stream: str) -> WorkerMetrics:
        return WorkerMetrics(
            applied=self.events.labels(service, stream, "applied"),
            skipped=self.events.labels(service, stream, "skipped"),
            failures=self.failures.labels(service, stream),
            dead_letters=self.dead_letters.labels(service, stream),
            batch_size=self.batch_size.labels(service, stream),
            handler_seconds=self.handler_seconds.labels(service, stream),
        )

    def published(self, service: str, count: int) -> None:
        if count:
            self.broadcasts.labels(service).inc(count)


class MetricsServer:
    """`/metrics` over HTTP on a daemon thread (prometheus_client's WSGI server); `close()` stops it."""

    def __init__(self, metrics: Metrics, addr: str, port: int) -> None:
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=addr, registry=metrics.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
