"""KPI state in Redis: per-day buckets of event records, the stream time of each source partition, how
far each centre's windows are closed, the results of closed windows, and an outbox for the ledger
records window closings produce. Layout (``{ns}`` is the namespace):

- ``{ns}:kpi:b:{p|c}:{staff or centre}:{day}`` hash: ``e:{event_id}`` (``s:{survey}:{event_id}`` for a
  survey answer) -> record (JSON, :func:`agents.kpi.contribution_of`); ``{ns}:kpi:people:{centre}:{day}``
  set: who was active that day;
- ``{ns}:kpi:clock`` hash: source partition -> stream time (ms, the highest event time seen);
  ``{ns}:kpi:centres:{partition}`` set: the centres whose events that partition carries;
- ``{ns}:kpi:closed`` hash: centre -> the last day whose windows are closed;
- ``{ns}:kpi:results:{centre}:{window}`` hash: ``{rule}|{staff}`` -> ``"{points} {revision}"``;
- ``{ns}:kpi:outbox`` hash: ledger record id -> record, until the ledger has acknowledged it.

Buckets, people sets and results expire ``ttl_s`` after their last write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from agents.kpi import Contribution, Window, decode_records, summarize

# One call for a batch's records. ARGV: ttl, then one JSON array: n hashes, then per hash: key, n fields,
# field, value, ...; n sets, then per set: key, n members, member, .... Every key written has its expiry
# renewed. (One JSON argument, not one argument per string: packing ~10 per event cost more than the rest.)
_ADD = """
local ttl = tonumber(ARGV[1])
local a = cjson.decode(ARGV[2])
local i = 2
for _ = 1, a[1] do
  local key, n = a[i], a[i + 1]
  for first = i + 2, i + 1 + 2 * n, 2000 do  -- unpack takes a few thousand values at most
    redis.call('HSET', key, unpack(a, first, math.min(first + 1999, i + 1 + 2 * n)))
  end
  redis.call('EXPIRE', key, ttl)
  i = i + 2 + 2 * n
end
local sets = a[i]
i = i + 1
for _ = 1, sets do
  local key, n = a[i], a[i + 1]
  for first = i + 2, i + 1 + n, 2000 do
    redis.call('SADD', key, unpack(a, first, math.min(first + 1999, i + 1 + n)))
  end
  redis.call('EXPIRE', key, ttl)
  i = i + 2 + n
end
return 0
"""
# What a step reads before it closes windows, in one call. ARGV: the namespace, then one JSON object:
# the batch's source partitions and centres. Returns each partition's stream time (nil if none yet) and
# centres, then which centres those are, all told, and how far each one's windows are closed (nil if
# never), in that order.
_STATE = """
local ns, a = ARGV[1], cjson.decode(ARGV[2])
local clocks, members, wanted, listed = {}, {}, {}, {}
local function want(c)
  if not listed[c] then
    listed[c] = true
    table.insert(wanted, c)
  end
end
for i, p in ipairs(a.partitions) do
  clocks[i] = redis.call('HGET', ns .. ':kpi:clock', p)
  members[i] = redis.call('SMEMBERS', ns .. ':kpi:centres:' .. p)
  for _, c in ipairs(members[i]) do want(c) end
end
for _, c in ipairs(a.centres) do want(c) end
local closed = {}
for first = 1, #wanted, 1000 do  -- unpack takes a few thousand values at most
  local got = redis.call('HMGET', ns .. ':kpi:closed', unpack(wanted, first, math.min(first + 999, #wanted)))
  for i = 1, #got do closed[first + i - 1] = got[i] end
end
return {clocks, members, wanted, closed}
"""
# The values of many hashes in one call (ARGV: the keys), as a list of lists.
_VALUES = """
local out = {}
for i, key in ipairs(ARGV) do out[i] = redis.call('HVALS', key) end
return out
"""
# The same, each hash's values (JSON records) joined into one JSON array, after how many there are:
# one decode per hash instead of one per record. ARGV[1]: the keys, as one JSON array.
_JOINED_VALUES = """
local out = {}
for i, key in ipairs(cjson.decode(ARGV[1])) do
  local values = redis.call('HVALS', key)
  out[2 * i - 1] = #values
  out[2 * i] = '[' .. table.concat(values, ',') .. ']'
end
return out
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str  # "p" (a person) or "c" (a centre)
    id: str
    day: date


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class Placed:
    """A contribution and where it goes: the buckets of its people and its centre."""

    contribution: Contribution
    centre_id: str
    staff: tuple[str, ...]
    partition: int
    centre_bucket: bool = True  # False: the people's buckets only (a capped rule's awards)


@dataclass(frozen=True, slots=True)
class KpiState:
    """What a step starts from (:meth:`KpiStore.state`)."""

    clock: dict[int, int]  # source partition -> stream time (ms); absent: no event seen yet
    centres: dict[int, set[str]]  # source partition -> the centres whose events it has carried
    closed: dict[str, date]  # centre -> the last day whose windows are closed; absent: none closed yet


@dataclass(frozen=True, slots=True)
class Result:
    """What a window rule gave a person for a closed window (points net of corrections)."""

    points: int
    revision: int  # 0 when the window closed; +1 per correction


class KpiStore:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s
        self._add = redis.register_script(_ADD)
        self._state = redis.register_script(_STATE)
        self._values = redis.register_script(_VALUES)
        self._joined_values = redis.register_script(_JOINED_VALUES)

    def bucket_key(self, bucket: Bucket) -> str:
        return f"{self.ns}:kpi:b:{bucket.scope}:{bucket.id}:{bucket.day.isoformat()}"

    def _people_key(self, centre: str, day: date) -> str:
        return f"{self.ns}:kpi:people:{centre}:{day.isoformat()}"

    def _results_key(self, centre: str, window_id: str) -> str:
        return f"{self.ns}:kpi:results:{centre}:{window_id}"

    async def add(self, placed: Sequence[Placed]) -> None:
        """Write records to their buckets, in one call; writing one again changes nothing."""
        if not placed:
            return
        hashes: dict[str, dict[str, bytes]] = defaultdict(dict)
        sets: dict[str, set[str]] = defaultdict(set)
        days: dict[date, str] = {}
        prefix = f"{self.ns}:kpi:b:"
        for item in placed:
            c = item.contribution
            day = days.get(c.day) or days.setdefault(c.day, c.day.isoformat())
            for s in item.staff:  # the keys of bucket_key(Bucket("p", s, c.day)), then of the centre's
                hashes[f"{prefix}p:{s}:{day}"][c.field] = c.value
            if item.centre_bucket:
                hashes[f"{prefix}c:{item.centre_id}:{day}"][c.field] = c.value
            sets[self._people_key(item.centre_id, c.day)].update(item.staff)
            sets[f"{self.ns}:kpi:centres:{item.partition}"].add(item.centre_id)
        flat: list[Any] = [len(hashes)]
        for key, fields in hashes.items():
            flat += (key, len(fields))
            for name, value in fields.items():
                flat += (name, value.decode() if isinstance(value, bytes) else value)
        flat.append(len(sets))
        for key, members in sets.items():
            flat += (key, len(members), *sorted(members))
        await self._add(keys=[], args=[self.ttl_s, orjson.dumps(flat)])

    async def records(self, buckets: Iterable[Bucket]) -> dict[Bucket, list[list[Any]]]:
        wanted = list(dict.fromkeys(buckets))
        if not wanted:
            return {}
        keys = [self.bucket_key(b) for b in wanted]
        found = await self._joined_values(keys=[], args=[orjson.dumps(keys)])
        out: dict[Bucket, list[list[Any]]] = {}
        for bucket, count, joined in zip(wanted, found[::2], found[1::2], strict=True):
            try:
                records = orjson.loads(joined)
            except orjson.JSONDecodeError:
                records = None
            if not isinstance(records, list) or len(records) != count:
                # a value that is not one JSON record: decode them one by one, which says which
                return {
                    b: list(decode_records(values)) for b, values in zip(wanted, await self._raw(keys), strict=True)
                }
            out[bucket] = records
        return out

    async def _raw(self, keys: list[str]) -> list[list[bytes]]:
        return cast(list[list[bytes]], await self._values(keys=[], args=keys))

    async def window_kpis(self, scope: str, ident: str, window: Window) -> dict[str, int | float | None]:
        """The KPIs of one person's ("p") or centre's ("c") window, as its records stand now."""
        found = await self.records(Bucket(scope, ident, day) for day in window.days())
        return summarize(record for records in found.values() for record in records)

    async def people(self, centre: str, days: Iterable[date]) -> set[str]:
        keys = [self._people_key(centre, day) for day in days]
        members = await self.redis.sunion(keys) if keys else set()
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    async def state(self, partitions: Iterable[int], centres: Iterable[str] = ()) -> KpiState:
        """The stream time and centres of each partition, and how far those centres' windows (and
        ``centres``') are closed, in one call."""
        wanted = sorted(set(partitions))
        if not wanted:
            return KpiState({}, {}, {})
        call = orjson.dumps({"partitions": [str(p) for p in wanted], "centres": sorted(set(centres))})
        clocks, members, listed, closed = await self._state(args=[self.ns, call])
        return KpiState(
            clock={p: int(v) for p, v in zip(wanted, clocks, strict=True) if v is not None},
            centres={p: {_text(m) for m in found} for p, found in zip(wanted, members, strict=True)},
            closed={_text(c): date.fromisoformat(_text(v)) for c, v in zip(listed, closed, strict=True) if v},
        )

    async def closed(self, centres: Iterable[str]) -> dict[str, date]:
        wanted = sorted(set(centres))
        if not wanted:
            return {}
        values = await self.redis.hmget(f"{self.ns}:kpi:closed", wanted)
        return {c: date.fromisoformat(_text(v)) for c, v in zip(wanted, values, strict=True) if v is not None}

    async def results(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Result]]:
        """``(centre, window id)`` -> ``"{rule}|{staff}"`` -> result, for closed windows."""
        wanted = list(dict.fromkeys(keys))
        async with self.redis.pipeline(transaction=False) as pipe:
            for centre, window_id in wanted:
                pipe.hgetall(self._results_key(centre, window_id))
            found = await pipe.execute()
        out: dict[tuple[str, str], dict[str, Result]] = {}
        for key, fields in zip(wanted, found, strict=True):
            out[key] = {}
            for name, value in fields.items():
                points, revision = value.decode().split()
                out[key][name.decode()] = Result(int(points), int(revision))
        return out

    async def commit(
        self,
        *,
        clock: Mapping[int, int],
        closed: Mapping[str, date],
        results: Mapping[tuple[str, str], Mapping[str, Result]],
        outbox: Mapping[str, bytes],
    ) -> dict[str, bytes]:
        """Record a step atomically: the windows closed, their results, and the ledger records they
        produce (kept in the outbox until the ledger has them). Returns the whole outbox after it (with
        records a process that died left in it)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if clock:
                pipe.hset(f"{self.ns}:kpi:clock", mapping={str(p): ms for p, ms in clock.items()})
            if closed:
                pipe.hset(f"{self.ns}:kpi:closed", mapping={c: d.isoformat() for c, d in closed.items()})
            for (centre, window_id), fields in results.items():
                if fields:
                    key = self._results_key(centre, window_id)
                    pipe.hset(key, mapping={n: f"{r.points} {r.revision}" for n, r in fields.items()})
                    pipe.expire(key, self.ttl_s)
            if outbox:
                pipe.hset(f"{self.ns}:kpi:outbox", mapping={k: v for k, v in outbox.items()})
            pipe.hgetall(f"{self.ns}:kpi:outbox")
            found = (await pipe.execute())[-1]
        return {_text(k): v.encode() if isinstance(v, str) else v for k, v in found.items()}

    async def clear_outbox(self, ids: Iterable[str]) -> None:
        wanted = list(ids)
        if wanted:
            await self.redis.hdel(f"{self.ns}:kpi:outbox", *wanted)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
