"""The one settings object, read once at the entry point (CLI) and passed down as values.

Environment variables use the `PHEROMONE_` prefix (e.g. `PHEROMONE_REDIS_URL`); nested learning settings use
`PHEROMONE_LEARNING__<NAME>`. Every threshold and formula constant lives here or in `contracts.streams`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from pheromone.contracts.streams import (
    BROADCAST_RETENTION_S,
    DEAD_RETENTION_S,
    DISCOVERY_TTL_S,
    INGEST_RETENTION_S,
)
from pheromone.plumbing.settings import ConnectionSettings

StoreLocation = str | Path
"""A PostgreSQL URL (`postgresql://…`) or a SQLite file's path: what `services.store.location` opens."""
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

_Unit = Annotated[float, Field(ge=0.0, le=1.0)]
_Pos = Annotated[float, Field(gt=0.0)]
_Count = Annotated[int, Field(ge=1, le=10_000)]


class LearningSettings(BaseModel):
    """Every constant of the learning rules (issue 3), in one place; docs/LEARNING.md explains each.

    Defaults are the reference system's (seed 000's global learning store, read at its latest public commit)
    unless docs/LEARNING.md says why they differ. Formulas live in `services.learning` and receive this object.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Effectiveness: (recent_weight x success rate of the last `effectiveness_window` applications
    #   + prior_weight x (s + laplace_successes) / (n + laplace_trials))
    #   x decay_base ^ (days since last confirmed / decay_period_days)
    #   x (grounding_base + grounding_weight x mean grounding of the last window, default_grounding if none)
    effectiveness_window: _Count = 5
    min_applications: _Count = 3
    neutral_effectiveness: _Unit = 0.55
    recent_weight: _Unit = 0.7
    prior_weight: _Unit = 0.3
    laplace_successes: Annotated[float, Field(ge=0.0)] = 0.5
    laplace_trials: _Pos = 1.0
    decay_base: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    decay_period_days: _Pos = 30.0
    grounding_base: _Unit = 0.7
    grounding_weight: _Unit = 0.3
    default_grounding: _Unit = 1.0

    # Priority = clamp(effectiveness x max(floor, min(1, log10(occurrences + 1) / divisor)) x (1 - variance))
    priority_floor: _Unit = 0.6
    priority_log_divisor: _Pos = 2.0

    # Quarantine lifecycle (services/learning/lifecycle.py): automatic moves need >= min_applications, and
    # bounds of the success rate since the pattern last entered or left quarantine (Wilson, one-sided).
    validate_threshold: _Unit = 0.60
    """pending & effectiveness >= this (and the lower bound > release_threshold) -> validated."""
    quarantine_threshold: _Unit = 0.5
    """pending & upper bound of success < this -> quarantined (it fails more often than it succeeds)."""
    requarantine_threshold: _Unit = 0.45
    """validated & upper bound of success < this -> quarantined."""
    release_threshold: _Unit = 0.5
    """quarantined & lower bound of success since quarantine > this -> pending (probation); also needed to
    validate."""
    lifecycle_confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.90
    """One-sided level of each bound."""
    lifecycle_min_evidence: _Count = 6
    """No bound decides before this many applications since the pattern last entered or left quarantine."""
    revisit_grace_applications: _Count = 5
    """A pattern revisited by an entropy response is not re-quarantined for this many further applications."""

    # Trust = clamp(neutral + evidence x (success_w x success share - failure_w x failure share
    #                                     + recency_w x recency) + status adjustment),
    # evidence = n / (n + trust_evidence_k): a pattern with no applications reads exactly neutral.
    trust_neutral: _Unit = 0.5
    trust_success_weight: _Unit = 0.3
    trust_failure_weight: _Unit = 0.4
    trust_recency_weight: _Unit = 0.2
    trust_evidence_k: _Pos = 3.0
    trust_validated_bonus: _Unit = 0.1
    trust_quarantined_penalty: _Unit = 0.2

    # Drift
    drift_window: _Count = 5
    drift_threshold: _Unit = 0.2
    drift_grounding_floor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    """Effectiveness drift is weighted by 1 / max(mean grounding, this floor)."""
    drift_direction_band: _Unit = 0.05
    """A change within +/- this is `stable` (both drifts)."""
    epistemic_window: _Count = 5
    epistemic_threshold: _Unit = 0.15

    # Success factors: UTC hour buckets [start, next start); night wraps around midnight
    morning_start_hour: Annotated[int, Field(ge=0, le=23)] = 5
    afternoon_start_hour: Annotated[int, Field(ge=0, le=23)] = 12
    evening_start_hour: Annotated[int, Field(ge=0, le=23)] = 17
    night_start_hour: Annotated[int, Field(ge=0, le=23)] = 21
    why_min_observations: _Count = 5
    """Below this many observations the "why" analysis says it needs more data and recommends nothing else;
    a factor value is recommended ("best applied during …") only with at least this many applications."""
    why_full_confidence_observations: _Count = 10
    why_min_lift: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    """A factor value is recommended only when its success rate beats the pattern's by at least this much."""

    # Executions: optimal window from recoveries per hour of day
    window_min_samples: _Count = 3
    window_min_hours: Annotated[int, Field(ge=1, le=24)] = 2
    """No optimal or avoid hours (and confidence 0) until at least this many hours of the day have
    `window_min_samples` recoveries each: one hour alone is no window to choose from."""
    window_good_rate: _Unit = 0.7
    window_avoid_rate: _Unit = 0.3
    window_full_confidence_samples: _Count = 50
    confidence_retry_penalty: _Unit = 0.1
    confidence_retry_cap: _Count = 5
    confidence_first_try_bonus: _Unit = 0.1

    # Learned wait per error code (and model)
    wait_recent_samples: _Count = 20
    wait_min_samples: _Count = 3
    wait_full_confidence_samples: _Count = 10
    wait_min_confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    wait_fallback_floor: _Unit = 0.5
    """A learned wait is never below this fraction of the static fallback."""
    wait_min_s: Annotated[float, Field(ge=0.0)] = 0.5
    wait_max_s: _Pos = 3600.0
    wait_static_s: _Pos = 30.0
    """Static fallback for an error code that has no entry in `wait_static_by_code`."""
    wait_static_by_code: dict[str, float] = Field(
        default_factory=lambda: {"rate_limit": 60.0, "429": 60.0, "overloaded": 30.0, "timeout": 10.0}
    )

    # Escalations: similarity on one 0..1 scale for confidence and validation pass rate
    escalation_confidence_tolerance: _Unit = 0.15
    escalation_pass_rate_tolerance: _Unit = 0.15

    # Evolution trajectory
    recurring_min_occurrences: _Count = 2

    # Entropy and the exploration budget
    entropy_alert_threshold: _Unit = 0.3
    """The one diversity-index threshold: below it the population is collapsing (alert, budget boost)."""
    entropy_min_applications: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    """Diversity is judged (the entropy service's response, the `entropy` read's verdict) only with at least
    this many applications: a handful is noise, not collapse, and an empty population has diversity 0."""
    budget_initial: _Unit = 0.15
    budget_floor: _Unit = 0.05
    budget_ceiling: _Unit = 0.50
    budget_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    budget_boost: _Unit = 0.10


class CoordinationSettings(BaseModel):
    """Real-time coordination (issue 4): coordinator, broadcaster and entropy services; docs/COORDINATION.md.

    Values producers compute (a rate limit's expiry factor, a discovery's default TTL) are constants in
    `contracts.streams`, because jobs build those records without settings. The entropy threshold and the
    budget rules are `LearningSettings`' (`entropy_alert_threshold`, `entropy_min_applications`, `budget_*`):
    one rule, one place.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entropy_check_every: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    """K: the entropy service evaluates diversity after every K pattern applications (fleet-wide)."""
    entropy_check_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """T: ... and at least every T seconds while applications arrive (one replica per interval)."""
    entropy_cooldown_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 600.0
    """After a response, no other for this long: the response lock's TTL, shared by every replica."""
    max_quarantine_revisits: Annotated[int, Field(ge=0, le=1_000)] = 3
    """N: at most this many quarantined patterns are sent back to pending per response (oldest first)."""
    drift_alert_cooldown_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 3_600.0
    """After a pattern's drift alert, no other for that pattern for this long (lock TTL, every replica)."""
    alert_ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    """How long entropy responses and drift alerts stay on the broadcast stream for subscribers."""
    tick_lock_ttl_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """Lock held by the replica that runs one periodic evaluation; None: 0.9 x `entropy_check_interval_s`."""


class SessionsSettings(BaseModel):
    """Learning sessions (issue 6): triggers, mining, diagnosis, the gate and autonomy; docs/SESSIONS.md.

    The (pillar, op) risk table is not here: it is fixed in `services.sessions.plan` on purpose, so neither a
    teacher nor a setting can lower an edit's tier.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    autonomy: Literal["auto", "tiered", "manual"] = "tiered"
    """What applies without review: auto (all but manual-tier edits), tiered (auto-tier only), manual (none)."""
    schedule_interval_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 6 * 3600.0
    """Scheduled trigger: one session per active workspace this often (0: no scheduled sessions)."""
    cluster_window_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    """Cluster trigger: failure rates are counted per (workspace, model) over windows this long."""
    cluster_trigger_rate: _Unit = 0.5
    """... and a window whose failure rate reaches this, over at least `cluster_trigger_runs` runs, triggers."""
    cluster_trigger_runs: _Count = 20
    cluster_cooldown_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 3_600.0
    """After a cluster trigger, no other for the same (workspace, model) for this long (lock TTL)."""
    lock_ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    """The per-scope session lock's TTL: a session that dies holding it frees its scope after this long."""
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.3
    """The gate decides on val, so its power grows with it: 30 % of a 1,000-run window (~280 runs) lets a
    5-point gain through ~85 % of the time, 20 % only ~70 % (bench/RESULTS.md, "Learning efficacy")."""
    test_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    """Test only reports the accepted edits' effect: no decision reads it."""
    dreams_per_task: Annotated[int, Field(ge=0, le=10)] = 1
    """Dream (resampled) variants of each real train task, for the teacher only."""
    max_harvest_events: Annotated[int, Field(ge=1, le=10_000_000)] = 500_000
    min_cluster_runs: _Count = 5
    min_cluster_failures: _Count = 3
    min_rate_gap: _Unit = 0.2
    """A cluster's failure rate must exceed its comparison group's by this much to count as evidence ..."""
    cluster_alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    """... and be significantly above it: one-sided Fisher exact tests, Holm-corrected over a session's
    candidates, at this family-wise level (a fleet where nothing differs yields a cluster about this often)."""
    min_estimate_runs: _Count = 5
    """Replay estimates a changed outcome only from at least this many comparable train records."""
    min_improvement: Annotated[float, Field(ge=0, le=1)] = 1e-9
    """The gate accepts an edit only if the lower confidence bound of its val gain exceeds this."""
    gate_alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.035
    """... that bound is one-sided at level 1 - gate_alpha: a useless edit passes about this often. Chosen so that
    bench/efficacy.py's useless and helpful (+5 points) rates at 1,000 runs both clear their targets with their
    intervals, not only their means (bench/RESULTS.md)."""
    max_cluster_regression: _Unit = 0.02
    """... and no cluster's val score falls by more than this."""
    max_edits: Annotated[int, Field(ge=1, le=1_000)] = 20
    wait_tolerance: _Unit = 0.05
    """The statistical teacher's wait: the shortest whose train success rate is within this of the best."""
    artifacts_dir: Path | None = None
    """Where session.json artifacts go; default `<data_dir>/sessions`."""


class Settings(ConnectionSettings):
    """Runtime settings for the services, the CLI and the demo: the connection settings a job reads too
    (`pheromone.plumbing.settings`), and everything only the services need."""

    model_config = SettingsConfigDict(env_prefix="PHEROMONE_", env_nested_delimiter="__", extra="forbid",
                                      hide_input_in_errors=True)

    db_path: Path | None = None
    """SQLite store file; default `<data_dir>/store.db`."""
    store_url: SecretStr | None = None
    """`postgresql://…`: the store is this PostgreSQL database (every service that reads it may run on any host);
    unset: SQLite at `db_path`. `PHEROMONE_STORE_URL`. Secret, as the Redis URL is: it may hold a password."""
    consumer: str | None = None
    """Consumer name inside each group; default `<hostname>-<pid>`."""

    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1_000
    poll_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    claim_idle_ms: Annotated[int, Field(ge=100, le=3_600_000)] = 5_000
    """A pending entry idle this long is claimed by the retrier."""
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = 5
    """After this many deliveries a failing entry goes to the dead-letter stream. With `claim_idle_ms`, the bound
    on how long a lifecycle event that arrived early waits for its predecessor (`services.order`)."""
    group_check_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    trim_interval_s: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    ingest_retention_s: Annotated[float, Field(gt=0)] = INGEST_RETENTION_S
    broadcast_retention_s: Annotated[float, Field(gt=0)] = BROADCAST_RETENTION_S
    ttl_stream_retention_s: Annotated[float, Field(gt=0)] = DISCOVERY_TTL_S
    """Age kept on the TTL'd ratelimits and discoveries streams (never trimmed past what a group needs)."""
    dead_retention_s: Annotated[float, Field(gt=0)] = DEAD_RETENTION_S
    heartbeat_ttl_s: Annotated[float, Field(gt=0, le=3_600)] | None = None
    """A service's liveness key expires this long after its last beat; None: 3 x group_check_s, at least 3 s.
    Also the store writer lease's TTL: how long a killed writer's standby waits (`services.writer`)."""
    consumer_expiry_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """A group's consumer with no pending entries, no live heartbeat and idle this long is deleted from its
    group (services.reaper; checked at start and every trim_interval_s)."""
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 0
    """Serve Prometheus metrics over HTTP on this port (`/metrics`); 0: no metrics server."""
    metrics_addr: str = "127.0.0.1"
    """Address the metrics server binds; `0.0.0.0` to be scraped from other hosts (containers)."""
    metrics_interval_s: Annotated[float, Field(gt=0, le=3_600)] = 5.0
    """How often the lag and pending gauges are refreshed from Redis."""
    http_port: Annotated[int, Field(ge=0, le=65_535)] = 0
    """`pheromone serve`'s HTTP side on this port: /healthz, /readyz, /metrics, /asyncapi.json and the dashboard
    at /; 0: off."""
    http_addr: str = "127.0.0.1"
    """Address the HTTP side binds; `0.0.0.0` in a container, to be probed and scraped from outside it."""
    health_max_lag: Annotated[int, Field(ge=0)] = 100_000
    """`pheromone health` fails when a group has more unread entries than this."""
    health_max_pending: Annotated[int, Field(ge=0)] = 10_000
    """`pheromone health` fails when a group has more delivered, unacknowledged entries than this."""
    learning: LearningSettings = Field(default_factory=LearningSettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    sessions: SessionsSettings = Field(default_factory=SessionsSettings)

    @field_validator("store_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError("store_url must be a PostgreSQL URL (postgresql://user@host:port/database)")
        return value if value is not None and value.get_secret_value() else None

    @property
    def store_path(self) -> Path:
        return self.db_path or self.data_dir / "store.db"

    @property
    def store(self) -> StoreLocation:
        """Where the store is: a PostgreSQL URL, or the SQLite file (`services.store.location`)."""
        return self.store_url.get_secret_value() if self.store_url is not None else self.store_path

    @property
    def heartbeat_ttl(self) -> float:
        return self.heartbeat_ttl_s or max(3.0, self.group_check_s * 3)

    @property
    def consumer_name(self) -> str:
        return self.consumer or f"{os.uname().nodename}-{os.getpid()}"
