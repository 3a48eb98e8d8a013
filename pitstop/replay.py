"""``pitstop replay``: every source event scored again with a rule pack, into a shadow; and activating it.

A replay reads the source topics from their first offset to their end and scores the records with the
worker's own :class:`agents.worker.Scorer` and the given pack, in arrival order (each partition in
offset order; partitions merged by record timestamp), in batches. Everything the scorer keeps lives in
a **shadow** Redis namespace of its own (``{ns}~{name}``): KPI windows and their results, subjects,
budgets, seen marks; the ledger records it makes are kept in memory, and projected into the shadow's
boards and badges. Nothing live is touched: the report says, per person, the points of each season
under the live ledger and under the shadow, and gives the digest of the shadow ledger's bytes (the same
events and pack give the same digest).

``--activate`` then makes the shadow the truth. The shadow ledger becomes a new ledger generation: a
topic of its own (``points-ledger.{name}``), written in the replay's order, recorded on
``ledger-generations``. Its records are projected into the shadow with their real offsets, and one
Lua call swaps every key of the shadow namespace into the live one, so a kiosk sees the old boards,
then the new ones, never a mixture. The earlier ledger stays, kept forever, for audit. Activation needs
the worker stopped (it refuses while a worker's heartbeat is in Redis, :mod:`state.workers`, and holds
a lock a starting worker waits on); started again, with the new pack, the worker reads the new
generation, and the events that arrived meanwhile are scored then.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from agents.gcpolicy import BetweenBatches
from agents.metrics import WorkerMetrics
from agents.pipeline import SourceRecord
from agents.preview import read_sources
from agents.rules import RulePack
from agents.worker import OwnLedger, Scorer
from config.directory import Directory
from config.settings import Settings
from state import workers
from state.connection import connect
from state.league import League, LedgerEntry, ledger_fields
from state.standings import season_points_of_records
from streams.topics import GENERATION_NAME, LEDGER_CONFIG, Topics, active_topics, read_topic

log = logging.getLogger("pitstop.replay")

# Events scored per batch, as the worker's default (fewer round trips than 500: a 100,000-event replay
# took 20.6-22.6 s instead of 24.1).
BATCH = 2000

# Replace the live namespace's keys with the shadow's, at once. ARGV: live namespace, shadow namespace,
# the number of live keys, the live keys, then the shadow keys. Every board of either side gets a version
# above both, and a change message with ``reset`` (gateways send fresh snapshots).
SWAP_LUA = """
local live, shadow, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local before = {}
local raw = redis.call('HGETALL', live .. ':versions')
for i = 1, #raw, 2 do before[raw[i]] = tonumber(raw[i + 1]) end
for i = 4, 3 + n do redis.call('DEL', ARGV[i]) end
for i = 4 + n, #ARGV do
  redis.call('RENAME', ARGV[i], live .. string.sub(ARGV[i], #shadow + 1))
end
local after = {}
raw = redis.call('HGETALL', live .. ':versions')
for i = 1, #raw, 2 do after[raw[i]] = tonumber(raw[i + 1]) end
local boards = {}
for board in pairs(before) do boards[board] = true end
for board in pairs(after) do boards[board] = true end
local changed = 0
for board in pairs(boards) do
  local ver = math.max(before[board] or 0, after[board] or 0) + 1
  redis.call('HSET', live .. ':versions', board, ver)
  redis.call('PUBLISH', live .. ':board-changes', cjson.encode({board = board, ver = ver, scores = {}, reset = true}))
  changed = changed + 1
end
return changed
"""


class ReplayError(Exception):
    """The replay or its activation cannot go ahead; the message says why and what to do."""


@dataclass
class ShadowLedger:
    """Where the replay's scorer produces: ledger records are kept, in order; late events and dead
    letters (written when the events first arrived) are not written again."""

    topic: str
    records: list[bytes] = field(default_factory=list)

    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        if topic == self.topic and value is not None:
            # A copy of its own size: orjson's output keeps a 4 KiB (or larger) allocation whatever its
            # length, which made a million-event replay hold ~14 GB of mostly empty buffers.
            self.records.append(bytes(memoryview(value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class _ShadowApp:
    producer: ShadowLedger


@dataclass(frozen=True)
class PersonChange:
    staff_id: str
    season: str
    live: int
    shadow: int


@dataclass
class ReplayReport:
    name: str
    pack: str
    namespace: str
    records: int
    entries: int
    digest: str  # sha256 of the shadow ledger's records in order
    matches_live: bool  # the shadow ledger holds exactly the live ledger's records (as a set of bytes)
    changes: list[PersonChange]
    seconds: float
    activated: str = ""  # the ledger topic now in use, after --activate

    def to_json(self) -> dict[str, Any]:
        body = dict(self.__dict__)
        body["changes"] = [c.__dict__ for c in self.changes]
        return body


def arrival_order(records: Iterable[SourceRecord]) -> list[SourceRecord]:
    """The records as the worker would have met them: each partition in offset order, partitions merged
    by record timestamp (then topic and partition), so each centre's stream time advances as it did."""
    queues: dict[tuple[str, int], list[SourceRecord]] = defaultdict(list)
    for record in records:
        queues[(record.topic, record.partition)].append(record)
    for queue in queues.values():
        queue.sort(key=lambda r: r.offset)
    heads = [(q[0].timestamp_ms, tp, 0) for tp, q in queues.items()]
    heapq.heapify(heads)
    merged: list[SourceRecord] = []
    while heads:
        _, tp, i = heapq.heappop(heads)
        merged.append(queues[tp][i])
        if i + 1 < len(queues[tp]):
            heapq.heappush(heads, (queues[tp][i + 1].timestamp_ms, tp, i + 1))
    return merged


def _batches(records: Sequence[SourceRecord], size: int) -> Iterator[Sequence[SourceRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def digest(records: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for record in records:
        sha.update(len(record).to_bytes(4, "big"))
        sha.update(record)
    return sha.hexdigest()


def changes(live: Iterable[bytes], shadow: Iterable[bytes]) -> list[PersonChange]:
    """Per person and season with a difference: the points under the live ledger's records and under the
    shadow's; the biggest change first."""
    before, after = season_points_of_records(live), season_points_of_records(shadow)
    found = [
        PersonChange(staff_id, season, before.get(season, {}).get(staff_id, 0), after.get(season, {}).get(staff_id, 0))
        for season in sorted(set(before) | set(after))
        for staff_id in sorted(set(before.get(season, {})) | set(after.get(season, {})))
    ]
    found = [c for c in found if c.live != c.shadow]
    found.sort(key=lambda c: (-abs(c.shadow - c.live), c.season, c.staff_id))
    return found


async def replay(
    settings: Settings,
    pack: RulePack,
    directory: Directory,
    name: str,
    *,
    activate: bool = False,
    batch_size: int = BATCH,
) -> ReplayReport:
    if not GENERATION_NAME.match(name):
        raise ReplayError(f"replay name {name!r}: use lower-case letters, digits and '-' (at most 40)")
    started = time.monotonic()
    live_topics = await active_topics(settings)
    shadow_ns = f"{settings.redis_namespace}~{name}"
    shadow_settings = replace(settings, redis_namespace=shadow_ns, ledger_generation=name)
    bootstrap = settings.bootstrap_servers
    redis = connect(settings.redis_url)
    if activate:
        try:
            await _check_worker_stopped(redis, settings.redis_namespace)
            holder = await workers.activation(redis, settings.redis_namespace)  # this name's own: a re-run
            if holder != name and not await workers.hold_activation(redis, settings.redis_namespace, name):
                holder = await workers.activation(redis, settings.redis_namespace)
                raise ReplayError(f"another activation ({holder}) is under way; run this one after it")
        except BaseException:
            await redis.aclose()
            raise
        if live_topics.generation == name:
            return await _finish(redis, settings.redis_namespace, shadow_ns, name, pack, live_topics, started)
    try:
        records = arrival_order(await read_sources(bootstrap, live_topics))
        # The source records live as long as the replay: out of the collector's sight (its full
        # collections walked a million of them), back in it when the replay is done.
        gc.collect()
        gc.freeze()
        shadow_records = await score_into_shadow(redis, shadow_settings, pack, directory, records, batch_size)
        # Only the records' bytes are kept: they are read into awards or JSON objects a batch at a time
        # (an Award object per record of a million-event replay took gigabytes).
        live_records = await _ledger_values(bootstrap, live_topics.ledger)
        league = League(redis, shadow_ns)
        activated = ""
        if activate:
            placed = await _write_generation(bootstrap, settings, Topics.from_settings(shadow_settings), shadow_records)
            await _project(league, zip(placed, shadow_records, strict=True))
            await _check_worker_stopped(redis, settings.redis_namespace)  # still: nobody writes the live keys now
            await _record_generation(bootstrap, live_topics, name, pack, live_topics.generation)
            await _swap(redis, settings.redis_namespace, shadow_ns)
            activated = Topics.from_settings(shadow_settings).ledger
        else:  # boards to look at: one virtual partition, in the shadow ledger's order
            await _project(league, (((0, i), raw) for i, raw in enumerate(shadow_records)))
    finally:
        gc.unfreeze()
        if activate:
            await workers.release_activation(redis, settings.redis_namespace)
        await redis.aclose()
    return ReplayReport(
        name=name,
        pack=f"{pack.name} v{pack.version}",
        namespace=settings.redis_namespace if activate else shadow_ns,
        records=len(records),
        entries=len(shadow_records),
        digest=digest(shadow_records),
        matches_live=set(shadow_records) == set(live_records),
        changes=changes(live_records, shadow_records),
        seconds=round(time.monotonic() - started, 2),
        activated=activated,
    )


async def drop_shadow(settings: Settings, name: str) -> int:
    """Delete a shadow namespace (a replay's preview); returns how many keys it had."""
    redis = connect(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_namespace}~{name}:*", count=1000)]
        await _delete(redis, keys)
    finally:
        await redis.aclose()
    return len(keys)


async def score_into_shadow(
    redis: aioredis.Redis,
    shadow_settings: Settings,
    pack: RulePack,
    directory: Directory,
    records: Sequence[SourceRecord],
    batch_size: int = BATCH,
) -> list[bytes]:
    """Score ``records``, in this order and in batches, as the worker does, keeping everything under the
    shadow's (emptied) namespace; returns the ledger records made, in order."""
    shadow_ns = shadow_settings.redis_namespace
    await _delete(redis, [k async for k in redis.scan_iter(match=f"{shadow_ns}:*", count=1000)])
    sink = ShadowLedger(Topics.from_settings(shadow_settings).ledger)
    scorer = Scorer(
        _ShadowApp(sink),  # type: ignore[arg-type]  # the scorer only calls app.producer.send
        shadow_settings,
        pack=pack,
        directory=directory,
        metrics=WorkerMetrics.create(CollectorRegistry()),
        redis=redis,
    )
    firsts: dict[tuple[str, int], int] = {}
    for record in records:
        firsts.setdefault((record.topic, record.partition), record.offset)

    async def committed(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: firsts[tp] for tp in partitions if tp in firsts}  # from the first record kept

    scorer.read_committed = committed
    scorer.own_ledger = OwnLedger(limit=0)  # nothing reads the records back here
    collect = BetweenBatches()  # as the worker does: between batches, when their objects are gone
    for batch in _batches(records, batch_size):
        await scorer.score(batch)
        collect()
    return sink.records


async def _finish(
    redis: aioredis.Redis, live_ns: str, shadow_ns: str, name: str, pack: RulePack, topics: Topics, started: float
) -> ReplayReport:
    """An activation that recorded its generation but did not swap (it was interrupted): swap now."""
    try:
        if not [k async for k in redis.scan_iter(match=f"{shadow_ns}:*", count=1000)]:
            raise ReplayError(f"generation {name!r} is already in use; give the replay another name")
        await _swap(redis, live_ns, shadow_ns)
    finally:
        await workers.release_activation(redis, live_ns)
        await redis.aclose()
    return ReplayReport(
        name,
        f"{pack.name} v{pack.version}",
        live_ns,
        0,
        0,
        "",
        False,
        [],
        round(time.monotonic() - started, 2),
        topics.ledger,
    )


async def _project(league: League, records: Iterable[tuple[tuple[int, int], bytes]]) -> None:
    """((partition, offset), ledger record) in ledger order, applied a bounded script call at a time."""
    chunk: list[LedgerEntry] = []
    for (partition, offset), raw in records:
        chunk.append(LedgerEntry(partition, offset, ledger_fields(raw), raw=raw))
        if len(chunk) == 5000:
            await league.apply_entries(chunk, rebuild=True)
            chunk = []
    if chunk:
        await league.apply_entries(chunk, rebuild=True)


async def _ledger_values(bootstrap: str, topic: str) -> list[bytes]:
    """The values of a ledger topic's records (none: no ledger yet)."""
    try:
        return [m.value async for batch in read_topic(bootstrap, topic) for m in batch if m.value is not None]
    except LookupError:
        return []


async def _check_worker_stopped(redis: aioredis.Redis, namespace: str) -> None:
    if found := await workers.running(redis, namespace):
        raise ReplayError(
            f"the worker is running ({', '.join(found)}): stop it, then activate (its heartbeat is gone "
            f"{workers.HEARTBEAT_TTL_S} s after it stopped); start it again with the new pack afterwards"
        )


async def _write_generation(
    bootstrap: str, settings: Settings, topics: Topics, records: Sequence[bytes]
) -> list[tuple[int, int]]:
    """Create the generation's ledger topic (it must be new, or empty) and write the records in order;
    returns each record's (partition, offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        if topics.ledger in set(await admin.list_topics()):
            if await _ledger_values(bootstrap, topics.ledger):
                raise ReplayError(f"topic {topics.ledger} already holds records; give the replay another name")
        else:
            await admin.create_topics(
                [NewTopic(topics.ledger, settings.topic_partitions, 1, topic_configs=LEDGER_CONFIG)]
            )
    finally:
        await admin.close()
    # No idempotence: the embedded broker has no InitProducerId; a record a retry wrote twice is applied once
    # (its award id).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topics.ledger, record, key=str(orjson.loads(record)["staff_id"]).encode())
            for record in records
        ]
        metadata = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


async def _record_generation(bootstrap: str, topics: Topics, name: str, pack: RulePack, previous: str) -> None:
    record = {
        "generation": name,
        "pack": f"{pack.name} v{pack.version}",
        "previous": previous,
        "activated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.generations, orjson.dumps(record), key=b"active")
    finally:
        await producer.stop()


async def _swap(redis: aioredis.Redis, live_ns: str, shadow_ns: str) -> int:
    live = [_text(k) async for k in redis.scan_iter(match=f"{live_ns}:*", count=1000)]
    shadow = [_text(k) async for k in redis.scan_iter(match=f"{shadow_ns}:*", count=1000)]
    script = redis.register_script(SWAP_LUA)
    return int(await script(args=[live_ns, shadow_ns, len(live), *live, *shadow]))


async def _delete(redis: aioredis.Redis, keys: Sequence[bytes | str]) -> None:
    for start in range(0, len(keys), 1000):
        await redis.unlink(*keys[start : start + 1000])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
