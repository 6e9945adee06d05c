"""Live rate-limit state in Redis: one key per (model, error code) and one per model, latest expiry wins.

`record()` runs one Lua script per report, atomically on the server:

    if the report has already expired (server clock)          -> change nothing
    for the per-code key and the per-model key (`rate_limit(model)`: any code):
        if the key's current expiry (PEXPIRETIME) < report's  -> SET value PXAT expiry
    ZADD GT the per-code key into the index, scored by expiry; drop index entries that have expired

so overlapping reports never shorten a limit, a redelivered report changes nothing, and each key disappears
exactly when its limit ends (expired limits cannot be read back as active). Key names hash the model and
error code (`contracts.streams.key_part`), so no name can break or escape its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from contracts import Envelope, RateLimitEvent
from contracts.broadcast import RateLimitState
from contracts.streams import Keys

RECORD_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
return changed
"""
"""KEYS: per-code key, per-model key, index. ARGV: expiry (ms since epoch), state JSON.
Returns -1 (already expired), else bit 1 = this report holds the per-code key (set, extended, or already
set by this very report), bit 2 = the per-model key was set or extended."""

CODE_CHANGED = 1


@dataclass(frozen=True, slots=True)
class Recorded:
    env: Envelope
    report: RateLimitEvent
    state: RateLimitState
    result: int
    """The script's answer (see RECORD_LIMIT)."""

    @property
    def code_changed(self) -> bool:
        return self.result > 0 and bool(self.result & CODE_CHANGED)


def state_of(env: Envelope, report: RateLimitEvent) -> RateLimitState:
    return RateLimitState(
        model=report.model, error_code=report.error_code, recorded_at=report.recorded_at,
        expires_at=report.expires_at, duration_seconds=report.duration_seconds,
        reported_by=report.source_job_hash, workspace=env.workspace, report_id=report.id,
    )


class LimitBook:
    """Writes reports into the live keys."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(RECORD_LIMIT)

    async def record(self, reports: Sequence[tuple[Envelope, RateLimitEvent]]) -> list[Recorded]:
        """Apply reports in order, in one pipeline; returns what each did."""
        if not reports:
            return []
        states = [state_of(env, r) for env, r in reports]
        async with self._redis.pipeline(transaction=False) as pipe:
            for (_, r), state in zip(reports, states, strict=True):
                await self._script(
                    keys=[self._keys.rate_limit(r.model, r.error_code), self._keys.rate_limit(r.model),
                          self._keys.rate_limit_index],
                    args=[int(r.expires_at.timestamp() * 1000), state.model_dump_json()],
                    client=pipe,
                )
            results = await pipe.execute()
        return [Recorded(env, r, s, int(res)) for (env, r), s, res in zip(reports, states, results, strict=True)]
