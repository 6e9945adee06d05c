"""The dashboard `pheromone serve --http-port` shows at `/`: one server-rendered page, plain HTML and inline SVG.

`Dashboard.snapshot()` gathers, per page load: streams (length, rate, oldest entry), consumer groups (lag,
pending), live rate limits with their time left, live services and their last beat, dead letters (count and
the newest few), and through the query service the entropy history (diversity index against its alert
threshold) and the exploration budget's history (against its floor and ceiling). Two series are sampled by
this process every `metrics_interval_s` (`Dashboard.sample()`), since nothing else records them: each stream's
`entries-added` (its rate over the last `RATE_WINDOW` samples, which a trim cannot distort, unlike its length)
and the effectiveness of the `TOP_PATTERNS` highest-priority patterns (plotted over time since this process
started). The page reloads itself every `refresh` seconds (`?refresh=N`, default 5). `/dashboard.json`
serves the same snapshot as JSON.
"""

from __future__ import annotations

import html
import time
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from pheromone import ratelimits
from pheromone.contracts.streams import DEAD, Keys
from pheromone.errors import QueryError
from pheromone.queries import QueryClient
from pheromone.services import status

RATE_WINDOW = 6
"""Samples a stream's rate spans (with the default 5 s interval: the last 30 s)."""
HISTORY = 360
"""Samples kept per series (with the default interval: half an hour)."""
TOP_PATTERNS = 5
QUERY_TIMEOUT_S = 2.0
DEAD_SHOWN = 5


class Dashboard:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.queries = QueryClient(redis, keys)
        self._added: dict[str, deque[tuple[float, int]]] = {}
        self._effectiveness: dict[str, deque[tuple[float, float]]] = {}
        self._names: dict[str, str] = {}

    # -- sampling (a loop of the HTTP side calls this every metrics_interval_s) ------------------------

    async def sample(self) -> None:
        now = time.time()
        for name in status.STREAMS:
            try:
                info = await self.redis.xinfo_stream(self.keys.stream(name))
            except ResponseError:
                continue  # no such stream yet
            added = info.get("entries-added", info["length"])  # entries-added: Redis 7+, Valkey
            self._added.setdefault(name, deque(maxlen=HISTORY)).append((now, int(added)))
        try:
            top = await self.queries.patterns(limit=TOP_PATTERNS, timeout=QUERY_TIMEOUT_S)
        except QueryError:
            return  # no query service (yet): the plot says so
        for p in top:
            self._names[p["id"]] = p["pattern_name"]
            self._effectiveness.setdefault(p["id"], deque(maxlen=HISTORY)).append((now, p["effectiveness_score"]))

    def rate(self, stream: str) -> float | None:
        """Entries per second added to `stream` over the last RATE_WINDOW samples; None before two samples."""
        samples = list(self._added.get(stream, ()))[-RATE_WINDOW:]
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return None
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])

    # -- one page's data -------------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        r = self.redis
        now_ms = await status.server_ms(r)
        streams = [{**asdict(s), "rate_per_s": self.rate(s.name)} for s in await status.streams(r, self.keys, now_ms)]
        dead: list[tuple[bytes, dict[bytes, bytes]]] = await r.xrevrange(  # type: ignore[assignment]
            self.keys.dead, count=DEAD_SHOWN)
        out: dict[str, Any] = {
            "prefix": self.keys.prefix,
            "time": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds"),
            "streams": streams,
            "groups": [asdict(g) for g in await status.groups(r, self.keys)],
            "rate_limits": [
                {"model": s.model, "error_code": s.error_code, "seconds_left": round(s.seconds_left, 1),
                 "reported_by": s.reported_by}
                for s in await ratelimits.active(r, self.keys)
            ],
            "services": await self._services(),
            "dead_letters": {
                "count": next(s["length"] for s in streams if s["name"] == DEAD),
                "newest": [{k.decode(): v.decode(errors="replace") for k, v in fields.items()
                            if k in (b"stream", b"group", b"error")} for _, fields in dead],
            },
            "effectiveness": {
                self._names.get(pid, pid): [(t, v) for t, v in series] for pid, series in self._effectiveness.items()
            },
        }
        try:
            entropy = await self.queries.entropy(history=True, timeout=QUERY_TIMEOUT_S)
            budget = await self.queries.exploration_budget(timeout=QUERY_TIMEOUT_S)
        except (QueryError, RedisError) as exc:
            out["learning_error"] = str(exc)
        else:
            out["entropy"] = {"threshold": entropy["threshold"], "current": entropy["current"]["diversity_index"],
                              "history": [(_ts(h["calculated_at"]), h["diversity_index"])
                                          for h in reversed(entropy["history"])]}
            out["budget"] = {"rules": budget["rules"],
                             "current": budget["current"]["budget_value"] if budget["current"] else None,
                             "history": [(_ts(h["recorded_at"]), h["budget_value"])
                                         for h in reversed(budget["history"])]}
        return out


    async def _services(self) -> list[dict[str, Any]]:
        try:
            return [asdict(b) for b in await status.heartbeats(r=self.redis, keys=self.keys)]
        except ResponseError as exc:  # a least-privilege user without SCAN (docs/SECURITY.md): say so, go on
            return [{"service": f"unavailable: {exc}", "consumer": "", "host": None, "pid": None,
                     "beat_age_s": None, "started_at": None, "connected": None}]


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- rendering ---------------------------------------------------------------------------------------------

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}h2{font-size:1.05em;
margin:1.2em 0 .3em}table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}.plots{display:flex;flex-wrap:wrap;
gap:1.5em}.muted{color:#888}svg{background:#fafafa;border:1px solid #ddd}"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(title: str, headers: list[str], rows: list[list[str]], table_id: str, empty: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    if not rows:
        return f'<h2>{_e(title)}</h2><p class="muted" id="{table_id}">{_e(empty)}</p>'
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f'<h2>{_e(title)}</h2><table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _td(value: object, *, numeric: bool = False, key: str | None = None) -> str:
    attrs = (' class="n"' if numeric else "") + (f' data-key="{_e(key)}"' if key else "")
    return f"<td{attrs}>{_e(value)}</td>"


def plot(title: str, series: dict[str, list[tuple[float, float]]], *, lines: dict[str, float] | None = None,
         y_max: float = 1.0, width: int = 460, height: int = 170) -> str:
    """An SVG line plot of time series (x: unix time) on 0..y_max, with labelled horizontal `lines`."""
    pad_l, pad_b, pad_t = 34, 18, 8
    w, h = width - pad_l - 6, height - pad_b - pad_t
    points = [x for s in series.values() for x, _ in s]
    x0, x1 = (min(points), max(points)) if points else (0.0, 1.0)
    span = (x1 - x0) or 1.0

    def xy(x: float, y: float) -> str:
        return f"{pad_l + (x - x0) / span * w:.1f},{pad_t + h - min(max(y, 0.0), y_max) / y_max * h:.1f}"

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
             f'<text x="{pad_l}" y="{pad_t + 10}" font-size="12" font-weight="bold">{_e(title)}</text>']
    for tick in (0.0, y_max / 2, y_max):
        y = pad_t + h - tick / y_max * h
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                     f'<text x="2" y="{y + 4:.1f}" font-size="10">{tick:g}</text>')
    for i, (label, value) in enumerate((lines or {}).items()):
        y = pad_t + h - min(value, y_max) / y_max * h
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#999" '
                     f'stroke-dasharray="4 3"/><text x="{pad_l + w - 4}" y="{y - 3 - 10 * i:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#666">{_e(label)} {value:g}</text>')
    for i, (label, s) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(s) == 1:
            parts.append(f'<circle cx="{xy(*s[0]).split(",")[0]}" cy="{xy(*s[0]).split(",")[1]}" r="3" '
                         f'fill="{colour}"/>')
        elif s:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                         f'points="{" ".join(xy(x, y) for x, y in s)}"/>')
        parts.append(f'<text x="{pad_l + 4}" y="{pad_t + 24 + 12 * i}" font-size="10" fill="{colour}">'
                     f'{_e(label[:40])}</text>')
    if not points:
        parts.append(f'<text x="{pad_l + w / 2}" y="{pad_t + h / 2}" font-size="12" text-anchor="middle" '
                     'fill="#888">no data yet</text>')
    else:
        left = datetime.fromtimestamp(x0, UTC).strftime("%H:%M:%S")
        right = datetime.fromtimestamp(x1, UTC).strftime("%H:%M:%S")
        parts.append(f'<text x="{pad_l}" y="{height - 4}" font-size="10">{left}</text>'
                     f'<text x="{pad_l + w}" y="{height - 4}" font-size="10" text-anchor="end">{right} UTC</text>')
    return "".join(parts) + "</svg>"


def render(snap: dict[str, Any], refresh: int) -> str:
    lag = {(g["stream"], g["group"]): g for g in snap["groups"]}
    stream_rows = [[_td(s["name"]), _td(f"{s['length']:,}", numeric=True, key=f"length:{s['name']}"),
                    _td(_num(s["rate_per_s"], 1), numeric=True, key=f"rate:{s['name']}"),
                    _td(_num(s["oldest_age_s"], 1), numeric=True)] for s in snap["streams"]]
    group_rows = [[_td(g["stream"]), _td(g["group"]), _td(g["consumers"], numeric=True),
                   _td("?" if g["lag"] is None else f"{g['lag']:,}", numeric=True, key=f"lag:{name}"),
                   _td(f"{g['pending']:,}", numeric=True, key=f"pending:{name}")]
                  for name, g in ((f"{g['stream']}/{g['group']}", g) for g in lag.values())]
    limit_rows = [[_td(x["model"]), _td(x["error_code"] or "any"), _td(f"{x['seconds_left']:.1f} s", numeric=True),
                   _td(x["reported_by"] or "")] for x in snap["rate_limits"]]
    service_rows = [[_td(b["service"]), _td(b["consumer"]), _td(b["host"] or "?"), _td(b["pid"] or "?", numeric=True),
                     _td(_num(b["beat_age_s"], 1) + " s ago", numeric=True), _td(b["started_at"] or "?")]
                    for b in snap["services"]]
    dead_rows = [[_td(d.get("stream", "")), _td(d.get("group", "")), _td(d.get("error", "")[:160])]
                 for d in snap["dead_letters"]["newest"]]
    if "learning_error" in snap:
        learning = f'<p class="muted" id="learning">learning plots unavailable: {_e(snap["learning_error"])}</p>'
    else:
        e, b = snap["entropy"], snap["budget"]
        rules = b["rules"]
        learning = '<div class="plots" id="learning">' + plot(
            f"diversity index (now {_num(e['current'], 3)})", {"diversity": e["history"]},
            lines={"alert": e["threshold"]}) + plot(
            f"exploration budget (now {_num(b['current'], 3)})", {"budget": b["history"]},
            lines={"floor": rules["floor"], "ceiling": rules["ceiling"]}) + "</div>"
    effectiveness = plot("pattern effectiveness (top patterns, sampled here)", snap["effectiveness"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}"><title>pheromone · {_e(snap['prefix'])}</title>
<style>{STYLE}</style></head><body>
<h1>pheromone <span class="muted">prefix {_e(snap['prefix'])} · {_e(snap['time'])} ·
refreshes every {refresh} s</span></h1>
{_table("streams", ["stream", "length", "rate /s", "oldest (s)"], stream_rows, "streams", "no streams")}
{_table("consumer groups", ["stream", "group", "consumers", "lag", "pending"], group_rows, "groups", "no groups")}
{_table("rate limits", ["model", "error code", "time left", "reported by"], limit_rows, "ratelimits",
        "no live rate limits")}
{_table("services", ["service", "consumer", "host", "pid", "last beat", "started"], service_rows, "services",
        "no live services")}
<h2>dead letters: <span data-key="dead">{snap['dead_letters']['count']:,}</span></h2>
{_table("newest dead letters", ["stream", "group", "error"], dead_rows, "dead", "none")}
<h2>learning</h2>{learning}<div class="plots">{effectiveness}</div>
</body></html>"""
