"""Live rate-limit state in Redis: one key per (model, error code) and one per model, latest expiry wins.

`record()` runs one Lua script per report, atomically on the server:

    if the report has already expired (server clock)          -> change nothing
    for the per-code key and the per-model key (`rate_limit(model)`: any code):
        if the key's current expiry (PEXPIRETIME) < report's  -> SET value PXAT expiry
    ZADD GT the per-code key into the index, scored by expiry; drop index entries that have expired
    if this report holds the per-code key                     -> publish its notice once (publish.py)

so overlapping reports never shorten a limit, a redelivered report changes nothing and is announced once, each
key disappears exactly when its limit ends (expired limits cannot be read back as active), and a limit is
visible and announced in the same call: one round trip per batch of reports. Key names hash the model and
error code (`contracts.streams.key_part`), so no name can break or escape its key.

The coordinator runs `LimitBook` for every report it reads, and a job that reports a limit runs it at once
(`pheromone.ratelimits.apply_now`), so it lives below both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis

from pheromone.contracts import Envelope, RateLimitEvent
from pheromone.contracts.broadcast import BroadcastKind, BroadcastMessage, RateLimitNotice, RateLimitState
from pheromone.contracts.streams import Keys
from pheromone.plumbing.publish import NOW_MS_LUA, publish_once_lua
from pheromone.plumbing.scripts import run_batch

RECORD_LIMIT = NOW_MS_LUA + """
local exp = tonumber(ARGV[1])
if exp <= now then return -1 end
local changed = 0
local current = redis.call('PEXPIRETIME', KEYS[1])
if current < exp then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[1])
  changed = 1
elseif current == exp and redis.call('GET', KEYS[1]) == ARGV[2] then
  changed = 1  -- already ours: a redelivery after a failed announcement announces again (published once)
end
if redis.call('PEXPIRETIME', KEYS[2]) < exp then
  redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[1])
  changed = changed + 2
end
redis.call('ZADD', KEYS[3], 'GT', ARGV[1], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if changed % 2 == 1 then
  local function announce()
""" + publish_once_lua("KEYS[4]", "KEYS[5]", "ARGV[1]", "ARGV[3]", "ARGV[4]") + """
  end
  if announce() then changed = changed + 4 end
end
return changed
"""
"""KEYS: per-code key, per-model key, index, notice once-marker, broadcast stream.
ARGV: expiry (ms since epoch), state JSON, notice JSON, notice kind.
Returns -1 (already expired), else bit 1 = this report holds the per-code key (set, extended, or already set
by this very report), bit 2 = the per-model key was set or extended, bit 4 = the notice was published now."""

CODE_CHANGED, MODEL_CHANGED, ANNOUNCED = 1, 2, 4


@dataclass(frozen=True, slots=True)
class Recorded:
    env: Envelope
    report: RateLimitEvent
    result: int
    """The script's answer (see RECORD_LIMIT)."""

    @property
    def code_changed(self) -> bool:
        return self.result > 0 and bool(self.result & CODE_CHANGED)

    @property
    def announced(self) -> bool:
        return self.result > 0 and bool(self.result & ANNOUNCED)


def state_of(env: Envelope, report: RateLimitEvent) -> RateLimitState:
    return RateLimitState(
        model=report.model, error_code=report.error_code, recorded_at=report.recorded_at,
        expires_at=report.expires_at, duration_seconds=report.duration_seconds,
        reported_by=report.source_job_hash, workspace=env.workspace, report_id=report.id,
    )


def notice_of(env: Envelope, report: RateLimitEvent, now: datetime) -> BroadcastMessage:
    """The `rate_limit` broadcast of a report; its message id is the report's event id (published once)."""
    body = RateLimitNotice(model=report.model, error_code=report.error_code, expires_at=report.expires_at,
                           duration_seconds=report.duration_seconds, reported_by=report.source_job_hash,
                           report_id=report.id)
    return BroadcastMessage(id=env.event_id, published_at=now, expires_at=report.expires_at,
                            workspace=env.workspace, job=env.job, body=body)


class LimitBook:
    """Writes reports into the live keys and announces the ones that start or extend a limit."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(RECORD_LIMIT)

    async def record(
        self, reports: Sequence[tuple[Envelope, RateLimitEvent]], now: datetime
    ) -> list[Recorded]:
        """Apply reports in order, in one pipeline (one round trip); returns what each did."""
        keys = self._keys
        calls = []
        for env, r in reports:
            notice = notice_of(env, r, now)
            calls.append((
                [keys.rate_limit(r.model, r.error_code), keys.rate_limit(r.model), keys.rate_limit_index,
                 keys.broadcast_once(notice.id), keys.broadcast],
                [int(r.expires_at.timestamp() * 1000), state_of(env, r).model_dump_json(),
                 notice.model_dump_json(), BroadcastKind.RATE_LIMIT.value],
            ))
        results = await run_batch(self._redis, self._script, calls)
        return [Recorded(env, r, int(res)) for (env, r), res in zip(reports, results, strict=True)]
