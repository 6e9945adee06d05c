"""One learning session, end to end: the lifecycle events, the pipeline (`services.sessions.pipeline`) and the
artifacts. The caller holds the scope's lock.

Each transition is a `SessionTransitioned` event on the ingest stream (the store projects and validates it)
and rewrites session.json; every edit gets an `EditTransitioned` (gate_rejected, staged or applied). The
session ends `completed`, `awaiting_review` (staged edits wait for `pheromone review`) or `failed` (any
error, recorded in the artifact). Before returning, the runner waits until the store has applied its last
event, so the next session in the scope sees this one's watermark and guidance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pheromone.contracts import Envelope, new_id
from pheromone.contracts.sessions import (
    AutonomyMode,
    EditStatus,
    EditTransitioned,
    LearningSession,
    SessionStatus,
    SessionTransitioned,
    SessionTrigger,
    TriggerKind,
)
from pheromone.contracts.streams import CONSOLIDATOR_JOB
from pheromone.services.sessions import artifacts
from pheromone.services.sessions.harvest import GateRefused, harvest
from pheromone.services.sessions.pipeline import Consolidation, diagnose_step, gate_step, plan_step, report
from pheromone.services.sessions.teacher import Teacher
from pheromone.services.settings import SessionsSettings
from pheromone.services.store.session_store import SessionStore

log = logging.getLogger(__name__)
Emit = Callable[[Sequence[Envelope]], Awaitable[None]]
S = SessionStatus


class SessionFailed(Exception):
    pass


@dataclass
class SessionRunner:
    store: SessionStore
    emit: Emit
    root: Path
    settings: SessionsSettings
    teacher: Teacher
    applied_timeout_s: float = 30.0
    stopping: bool = False
    """Set when the service stops: a session ending then does not wait for the store to apply its events."""
    sent: dict[str, SessionStatus] = field(default_factory=dict)
    """The last status each running session was sent to: where a failure moves it from."""

    async def run(self, trigger: SessionTrigger, trigger_id: str) -> LearningSession:
        scope = trigger.scope
        for sid, status in await asyncio.to_thread(self.store.active_sessions, scope):
            # We hold the scope's lock, so no consolidator is running these: their holder died.
            await self._emit([self._transition(sid, scope, S.FAILED, f"abandoned in {status.value}: its "
                                               "consolidator stopped before it ended")])
        mode = trigger.autonomy or AutonomyMode(self.settings.autonomy)
        now = datetime.now(UTC)
        s = LearningSession(id=new_id(), workspace=scope, trigger=trigger.trigger, trigger_id=trigger_id,
                            subject=trigger.subject, autonomy=mode, status=S.TRIGGERED, started_at=now,
                            teacher=self.teacher.name)
        first = self._transition(s.id, scope, S.TRIGGERED, f"{trigger.trigger.value} by {trigger.requested_by}",
                                 trigger=trigger.trigger)
        await self._emit([first])
        self.sent[s.id] = S.TRIGGERED
        s = self._save(s)
        last = first
        try:
            s, last = await self._consolidate(s, trigger, mode)
        except Exception as exc:  # any failure ends the session as failed, recorded
            log.warning("session %s in %s failed: %s", s.id, scope, exc)
            last = self._transition(s.id, scope, S.FAILED, f"{type(exc).__name__}: {exc}"[:8000],
                                    from_status=self.sent.get(s.id))
            await self._emit([last])
            s = self._save(s.model_copy(update={"status": S.FAILED, "ended_at": datetime.now(UTC),
                                                "error": f"{type(exc).__name__}: {exc}"[:8000]}))
        self.sent.pop(s.id, None)
        await self._wait_applied(last.event_id)
        return s

    async def _consolidate(self, s: LearningSession, trigger: SessionTrigger,
                           mode: AutonomyMode) -> tuple[LearningSession, Envelope]:
        scope, v, cfg = s.workspace, self.store, self.settings
        s, _ = await self._move(s, S.HARVESTING, "reading the ledger since the last session")
        since = await asyncio.to_thread(v.watermark, scope)
        if trigger.trigger is TriggerKind.USER_FLAG and trigger.subject:
            # A flagged run older than the last session is harvested again, so that the flag counts.
            flagged_seq = await asyncio.to_thread(v.seq_of, trigger.subject)
            since = min(since, flagged_seq - 1) if flagged_seq is not None else since
        events = await asyncio.to_thread(v.ledger, scope, since, cfg.max_harvest_events)
        flag = trigger.trigger is TriggerKind.USER_FLAG and trigger.subject
        flagged = frozenset({trigger.subject}) if flag and trigger.subject else frozenset()
        h = harvest(events, flagged)
        s = s.model_copy(update={"digests": h.digests, "watermark_from": since,
                                 "watermark_to": max(since, h.watermark)})
        s, _ = await self._move(s, S.DIAGNOSING, f"harvested {h.events} events from {len(h.digests)} jobs",
                                watermark=max(since, h.watermark))
        c = diagnose_step(h, scope, s.id, cfg)
        s = s.model_copy(update={"clusters": c.clusters})
        s, _ = await self._move(s, S.PLANNING, f"{len(c.mined.tasks)} tasks, {len(c.clusters)} failure clusters")
        g = await asyncio.to_thread(v.guidance, scope)
        pending = {eid: sid for sid, eid, _ in await asyncio.to_thread(lambda: list(v.staged(scope)))}
        plan = plan_step(c, self.teacher, g, scope, s.id, cfg, datetime.now(UTC), pending)
        artifacts.write_plan(self.root, plan)
        if not plan.edits:
            note = "nothing to change: " + (f"{len(c.clusters)} cluster(s), no edit proposed" if c.clusters
                                            else "no failure cluster with evidence")
            s = s.model_copy(update={"report": report(c, scope=scope, started=s.started_at,
                                                      ended=datetime.now(UTC), note=note)})
            return await self._end(s, S.COMPLETED, note)
        s, _ = await self._move(s, S.GATING, f"{len(plan.edits)} edit(s) proposed by {plan.teacher}")
        try:
            gate_step(c, g, mode, cfg, datetime.now(UTC), scope)
        except GateRefused as exc:
            raise SessionFailed(f"gate refused to run: {exc}") from exc
        s = self._with_results(s, c)
        s, _ = await self._move(s, S.EXECUTING, "; ".join(f"{k}: {n}" for k, n in self._counts(c).items()))
        await self._emit([self._edit(s.id, scope, o.edit.id, o.status, o.reason, o.edit) for o in c.outcomes])
        staged = any(o.status is EditStatus.STAGED for o in c.outcomes)
        final = S.AWAITING_REVIEW if staged else S.COMPLETED
        return await self._end(s, final, f"{self._counts(c)}")

    def _with_results(self, s: LearningSession, c: Consolidation) -> LearningSession:
        assert c.gated is not None and c.report is not None
        rep = c.report.model_copy(update={"started_at": s.started_at, "ended_at": datetime.now(UTC)})
        return s.model_copy(update={"outcomes": c.outcomes, "snapshots": c.gated.snapshots, "report": rep})

    @staticmethod
    def _counts(c: Consolidation) -> dict[str, int]:
        return {st.value: n for st in EditStatus if (n := sum(1 for o in c.outcomes if o.status is st))}

    async def _move(self, s: LearningSession, to: SessionStatus, reason: str,
                    watermark: int | None = None) -> tuple[LearningSession, Envelope]:
        env = self._transition(s.id, s.workspace, to, reason, watermark=watermark, from_status=s.status)
        await self._emit([env])
        self.sent[s.id] = to
        return self._save(s.model_copy(update={"status": to})), env

    async def _end(self, s: LearningSession, to: SessionStatus, reason: str) -> tuple[LearningSession, Envelope]:
        s, env = await self._move(s.model_copy(update={"ended_at": datetime.now(UTC)}), to, reason)
        return s, env

    def _save(self, s: LearningSession) -> LearningSession:
        path = artifacts.write_session(self.root, s)
        self.store.index(s, path)
        return s

    async def _emit(self, events: Sequence[Envelope]) -> None:
        await self.emit(events)

    async def _wait_applied(self, event_id: str) -> None:
        deadline = time.monotonic() + self.applied_timeout_s
        while not await asyncio.to_thread(self.store.event_applied, event_id):
            if self.stopping:
                return
            if time.monotonic() >= deadline:
                log.warning("the store has not applied session event %s within %gs", event_id,
                            self.applied_timeout_s)
                return
            await asyncio.sleep(0.05)

    @staticmethod
    def _transition(sid: str, scope: str, to: SessionStatus, reason: str, *, trigger: TriggerKind | None = None,
                    watermark: int | None = None, from_status: SessionStatus | None = None) -> Envelope:
        """`from_status` lets the store hold a move that arrives before its predecessor (services.order). The
        failure of a session abandoned by a dead consolidator goes without one: failed is legal from every
        active status, so it ends the session from whichever status its owner's last events reached."""
        return Envelope(workspace=scope, job=CONSOLIDATOR_JOB, correlation_id=sid, payload=SessionTransitioned(
            session_id=sid, scope=scope, to_status=to, reason=reason[:8000], trigger=trigger, watermark=watermark,
            from_status=from_status))

    @staticmethod
    def _edit(sid: str, scope: str, edit_id: str, to: EditStatus, reason: str, edit: object = None) -> Envelope:
        return Envelope(workspace=scope, job=CONSOLIDATOR_JOB, correlation_id=sid, payload=EditTransitioned(
            session_id=sid, edit_id=edit_id, to_status=to, reason=reason[:8000], edit=edit))  # type: ignore[arg-type]
