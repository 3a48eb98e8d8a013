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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import redis.asyncio as aioredis

from agents.kpi import Contribution, Window, decode_records, summarize


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str  # "p" (a person) or "c" (a centre)
    id: str
    day: date


@dataclass(frozen=True, slots=True)
class Placed:
    """A contribution and where it goes: the buckets of its people and its centre."""

    contribution: Contribution
    centre_id: str
    staff: tuple[str, ...]
    partition: int


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

    def bucket_key(self, bucket: Bucket) -> str:
        return f"{self.ns}:kpi:b:{bucket.scope}:{bucket.id}:{bucket.day.isoformat()}"

    def _people_key(self, centre: str, day: date) -> str:
        return f"{self.ns}:kpi:people:{centre}:{day.isoformat()}"

    def _results_key(self, centre: str, window_id: str) -> str:
        return f"{self.ns}:kpi:results:{centre}:{window_id}"

    async def add(self, placed: Sequence[Placed]) -> None:
        """Write records to their buckets; writing one again changes nothing."""
        if not placed:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in placed:
                c = item.contribution
                buckets = [Bucket("p", s, c.day) for s in item.staff] + [Bucket("c", item.centre_id, c.day)]
                for bucket in buckets:
                    pipe.hset(self.bucket_key(bucket), c.field, c.value)
                    pipe.expire(self.bucket_key(bucket), self.ttl_s)
                people = self._people_key(item.centre_id, c.day)
                pipe.sadd(people, *item.staff)
                pipe.expire(people, self.ttl_s)
                pipe.sadd(f"{self.ns}:kpi:centres:{item.partition}", item.centre_id)
            await pipe.execute()

    async def records(self, buckets: Iterable[Bucket]) -> dict[Bucket, list[list[Any]]]:
        wanted = list(dict.fromkeys(buckets))
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in wanted:
                pipe.hvals(self.bucket_key(bucket))
            found = await pipe.execute()
        return {b: list(decode_records(values)) for b, values in zip(wanted, found, strict=True)}

    async def window_kpis(self, scope: str, ident: str, window: Window) -> dict[str, int | float | None]:
        """The KPIs of one person's ("p") or centre's ("c") window, as its records stand now."""
        found = await self.records(Bucket(scope, ident, day) for day in window.days())
        return summarize(record for records in found.values() for record in records)

    async def people(self, centre: str, days: Iterable[date]) -> set[str]:
        keys = [self._people_key(centre, day) for day in days]
        members = await self.redis.sunion(keys) if keys else set()
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    async def clock(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        values = await self.redis.hmget(f"{self.ns}:kpi:clock", [str(p) for p in wanted])
        return {p: int(v) for p, v in zip(wanted, values, strict=True) if v is not None}

    async def centres(self, partitions: Iterable[int]) -> dict[int, set[str]]:
        wanted = sorted(set(partitions))
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in wanted:
                pipe.smembers(f"{self.ns}:kpi:centres:{partition}")
            found = await pipe.execute()
        return {p: {m.decode() for m in members} for p, members in zip(wanted, found, strict=True)}

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
    ) -> None:
        """Record a step atomically: the windows closed, their results, and the ledger records they
        produce (kept in the outbox until the ledger has them)."""
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
            await pipe.execute()

    async def outbox(self) -> dict[str, bytes]:
        found = await self.redis.hgetall(f"{self.ns}:kpi:outbox")
        return {_text(k): v.encode() if isinstance(v, str) else v for k, v in found.items()}

    async def clear_outbox(self, ids: Iterable[str]) -> None:
        wanted = list(ids)
        if wanted:
            await self.redis.hdel(f"{self.ns}:kpi:outbox", *wanted)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
