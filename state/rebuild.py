"""Rebuild every league board from the points ledger (``pitstop rebuild``).

Reads each ledger partition from offset 0 up to its end as of the start, and applies the records
with the same Lua script the live projection uses, in rebuild mode: each award id at most once, no
offset shortcut. With ``clear=True`` the namespace's projection keys are deleted first, so the result
is exactly the fold of the ledger. A live worker may keep running: awards it applies meanwhile are
deduplicated by award id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.scoring import Award
from state.league import League, LedgerRecord

log = logging.getLogger("pitstop.rebuild")


@dataclass(frozen=True)
class RebuildReport:
    records: int
    applied: int
    skipped: int
    unreadable: int
    seconds: float
    cleared_keys: int


async def rebuild_from_ledger(
    bootstrap: str,
    ledger_topic: str,
    redis: aioredis.Redis,
    namespace: str,
    *,
    clear: bool = True,
    batch_size: int = 5000,
) -> RebuildReport:
    started = time.monotonic()
    league = League(redis, namespace)
    cleared = await league.clear() if clear else 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records = applied = skipped = unreadable = 0
    try:
        await consumer.topics()  # fetches metadata for every topic
        partitions = consumer.partitions_for_topic(ledger_topic) or set()
        tps = [TopicPartition(ledger_topic, p) for p in sorted(partitions)]
        if not tps:
            raise LookupError(f"ledger topic {ledger_topic!r} not found on the broker")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch_size)
            batch: list[LedgerRecord] = []
            for tp, messages in batches.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    records += 1
                    try:
                        batch.append(LedgerRecord(tp.partition, m.offset, Award.from_ledger(m.value)))
                    except (ValueError, KeyError, TypeError):
                        unreadable += 1
                        log.error("unreadable ledger record %s@%d", tp, m.offset)
                if messages and messages[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            if batch:
                result = await league.apply(batch, rebuild=True)
                applied += result.applied
                skipped += result.skipped
    finally:
        await consumer.stop()
    return RebuildReport(records, applied, skipped, unreadable, time.monotonic() - started, cleared)
