"""The consolidator service: runs learning sessions (docs/SESSIONS.md).

Subscribers (FastStream batch subscribers, group `consolidator`):
  - `{prefix}:triggers`: `SessionTrigger`s (scheduled, cluster, user flag, on demand). For each, it takes the
    scope's lock `{prefix}:sessions:lock:<scope>` (SET NX PX `lock_ttl_s`) and runs one session
    (`runner.SessionRunner`), then gives the lock back. Ack policy: manual, after the session ended (its
    events are on the ingest stream); idempotency key: the trigger's event id (`session_index.trigger_id`):
    a redelivered trigger that already started a session is acked without running another. Failures: an
    entry that is not a valid envelope, a payload that is not a trigger, or a trigger for another workspace
    than its envelope's, goes to `{prefix}:dead` with the reason; a trigger whose scope is busy stays
    pending and is retried by the retrier, dead-lettered after `max_deliveries`; a session that fails is
    recorded as `failed` and its trigger acked.
  - `{prefix}:ingest`: counts executions and failures per (workspace, model) in fixed windows of
    `cluster_window_s` (`{prefix}:sessions:cluster:<key>:<window>`, shared by replicas); a window whose
    failure rate reaches `cluster_trigger_rate` over `cluster_trigger_runs` runs emits one cluster trigger
    per `cluster_cooldown_s` (lock `{prefix}:sessions:cooldown:<key>`). Every entry is acked; unparsable ones
    are skipped (the store group dead-letters them).
Loop: every `schedule_interval_s` (one replica per interval: lock `{prefix}:sessions:tick`), a scheduled
trigger for each workspace with executions newer than its last session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pheromone.contracts import Envelope, EventKind, ExecutionRecord
from pheromone.contracts.sessions import SessionTrigger, TriggerKind
from pheromone.contracts.streams import CONSOLIDATOR_JOB, GROUP_CONSOLIDATOR, Keys
from pheromone.plumbing.append import append
from pheromone.services.consolidator.runner import SessionRunner
from pheromone.services.context import ServiceContext, ServiceParts
from pheromone.services.entropy.locks import Locks
from pheromone.services.errors import Refused
from pheromone.services.sessions.teacher import StatisticalTeacher, Teacher
from pheromone.services.settings import SessionsSettings
from pheromone.services.store.location import ensure_store, open_sessions

log = logging.getLogger(__name__)
EXECUTIONS = frozenset({EventKind.EXECUTION.value})
"""What `on_ingest` counts; other ingest entries that say their kind are acked without parsing."""


@dataclass
class Consolidator:
    redis: aioredis.Redis
    keys: Keys
    runner: SessionRunner
    settings: SessionsSettings

    def __post_init__(self) -> None:
        self._locks = Locks(self.redis)

    async def on_triggers(self, events: Sequence[tuple[Envelope, bytes]]) -> list[Refused]:
        refused: list[Refused] = []
        for i, (env, _) in enumerate(events):
            p = env.payload
            if not isinstance(p, SessionTrigger):
                refused.append(Refused(i, f"not a session trigger: {p.type} events go to the ingest stream"))
                continue
            if env.workspace != p.scope:
                refused.append(Refused(i, f"a trigger from workspace {env.workspace} cannot ask for a session in "
                                          f"{p.scope}: only in its own"))
                continue
            done = await asyncio.to_thread(self.runner.store.session_for_trigger, env.event_id)
            if done is not None:
                # A redelivery (the retrier claims entries idle longer than claim_idle_ms, and a session can run
                # longer): this trigger already started session `done`.
                continue
            lock = self.keys.sessions("lock", p.scope)
            token = await self._locks.take(lock, self.settings.lock_ttl_s)
            if token is None:
                refused.append(Refused(i, f"scope {p.scope} is busy with another session", True))
                continue
            try:
                if await asyncio.to_thread(self.runner.store.session_for_trigger, env.event_id) is not None:
                    continue  # started meanwhile by a redelivery that got the lock first
                s = await self.runner.run(p, env.event_id)
                log.info("session %s in %s: %s", s.id, p.scope, s.status.value)
            finally:
                with contextlib.suppress(RedisError):
                    await self._locks.release(lock, token)
        return refused

    async def on_ingest(self, events: Sequence[tuple[Envelope, bytes]]) -> list[Refused]:
        window = self.settings.cluster_window_s
        counts: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for env, _ in events:
            p = env.payload
            if isinstance(p, ExecutionRecord) and env.job != CONSOLIDATOR_JOB:
                c = counts[(env.workspace, p.model or "*", int(env.occurred_at.timestamp() // window))]
                c[0] += 1
                c[1] += p.status != "completed"
        if not counts:
            return []
        ttl = int(window * 2) + 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for (ws, model, win), (runs, fails) in counts.items():
                key = f"{self.keys.sessions('cluster', f'{ws}|{model}')}:{win}"
                pipe.hincrby(key, "runs", runs)
                pipe.hincrby(key, "fails", fails)
                pipe.expire(key, ttl)
            totals = await pipe.execute()
        for n, (ws, model, _) in enumerate(counts):
            runs, fails = int(totals[3 * n]), int(totals[3 * n + 1])
            if runs >= self.settings.cluster_trigger_runs and fails / runs >= self.settings.cluster_trigger_rate:
                await self._cluster_trigger(ws, model, runs, fails)
        return []

    async def _cluster_trigger(self, ws: str, model: str, runs: int, fails: int) -> None:
        cooldown = self.keys.sessions("cooldown", f"{ws}|{model}")
        if await self._locks.take(cooldown, self.settings.cluster_cooldown_s) is None:
            return
        subject = f"model {model}: {fails}/{runs} runs failed within {self.settings.cluster_window_s:g}s"
        await self.trigger(SessionTrigger(trigger=TriggerKind.CLUSTER, scope=ws, subject=subject[:256]))
        log.info("cluster trigger for %s (%s)", ws, subject)

    async def trigger(self, t: SessionTrigger) -> str:
        env = Envelope(workspace=t.scope, job=CONSOLIDATOR_JOB, payload=t)
        await append(self.redis, self.keys.triggers, [env])
        return env.event_id

    async def schedule(self) -> None:
        """The scheduled triggers; its cancellation (the runtime stops loops before subscribers) also tells a
        running session not to wait for the store, which is stopping too."""
        try:
            await self._schedule()
        finally:
            self.runner.stopping = True

    async def _schedule(self) -> None:
        interval = self.settings.schedule_interval_s
        if interval <= 0:
            await asyncio.Event().wait()  # no schedule: wait to be cancelled
        while True:
            await asyncio.sleep(interval)
            try:
                if await self._locks.take(self.keys.sessions("tick"), 0.9 * interval) is None:
                    continue
                for ws in await asyncio.to_thread(self.runner.store.workspaces_with_new_runs):
                    await self.trigger(SessionTrigger(trigger=TriggerKind.SCHEDULED, scope=ws))
            except Exception:  # the loop must outlive any one tick
                log.exception("scheduled triggers failed; will retry")


async def build(ctx: ServiceContext, teacher: Teacher | None = None) -> ServiceParts:
    s = ctx.settings
    await ensure_store(s.store)
    store = open_sessions(s.store)

    async def emit(events: Sequence[Envelope]) -> None:
        await append(ctx.redis, ctx.keys.ingest, events)

    root = s.sessions.artifacts_dir or s.data_dir / "sessions"
    runner = SessionRunner(store, emit, root, s.sessions, teacher or StatisticalTeacher())
    service = Consolidator(ctx.redis, ctx.keys, runner, s.sessions)

    async def close() -> None:
        await asyncio.to_thread(store.close)

    return ServiceParts(
        name="consolidator",
        workers=[
            ctx.worker("consolidator", ctx.keys.triggers, GROUP_CONSOLIDATOR, service.on_triggers, records_poison=True),
            ctx.worker("consolidator", ctx.keys.ingest, GROUP_CONSOLIDATOR, service.on_ingest, records_poison=False,
                       kinds=EXECUTIONS),
        ],
        loops=[service.schedule],
        trims=[(ctx.keys.triggers, s.ingest_retention_s, True)],
        close=close,
    )
