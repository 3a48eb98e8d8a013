"""Rebuild every league board from the points ledger, and the SLA state from its topics (``pitstop rebuild``).

Reads each ledger partition from offset 0 to its end, and applies the records
with the same Lua script the live projection uses, in rebuild mode: each award id at most once, no
offset shortcut; the subjects that retractions need (:mod:`state.subjects`) and the spot-award
budgets (:mod:`state.budgets`) are restored from the same records. With ``clear=True`` the
namespace's projection keys are deleted first, so the result is exactly the fold of the ledger. A
live worker may keep running: awards it applies meanwhile are deduplicated by award id.

:func:`rebuild_sla` does the same for SLA alerts and clocks: the alert list from ``sla-alerts`` (each
alert id once, nothing published, no notification queued again), then the clocks from the ticket and
job-card events, with the same step the score agent runs. An alert those events show again has the
id it had, so it is one alert still; a running clock whose moment has passed fires on the leader's
next tick, again with its old id, which the alert list already holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from agents.pipeline import SourceRecord, decode_batch
from agents.scoring import Award
from agents.sla import decode_alerts, plan
from config.directory import Directory
from config.sla import SlaPolicy
from state.alerts import AlertBoard
from state.budgets import BudgetStore
from state.league import League, LedgerRecord
from state.sla import SlaStore
from state.subjects import SubjectStore, from_ledger
from streams.topics import Topics, read_topic

log = logging.getLogger("pitstop.rebuild")


@dataclass(frozen=True)
class RebuildReport:
    records: int
    applied: int
    skipped: int
    unreadable: int
    seconds: float
    cleared_keys: int


async def ledger_batches(
    bootstrap: str, ledger_topic: str, *, batch_size: int = 5000
) -> AsyncIterator[tuple[list[LedgerRecord], int]]:
    """The whole ledger, a batch at a time: its readable records, and how many were not (each logged)."""
    async for messages in read_topic(bootstrap, ledger_topic, batch=batch_size):
        batch: list[LedgerRecord] = []
        for m in messages:
            try:
                batch.append(LedgerRecord(m.partition, m.offset, Award.from_ledger(m.value)))
            except (ValueError, KeyError, TypeError):
                log.error("unreadable ledger record %s[%d]@%d", m.topic, m.partition, m.offset)
        yield batch, len(messages) - len(batch)


async def rebuild_from_ledger(
    bootstrap: str,
    ledger_topic: str,
    redis: aioredis.Redis,
    namespace: str,
    *,
    clear: bool = True,
    batch_size: int = 5000,
    subject_ttl_s: int = 90 * 24 * 3600,
) -> RebuildReport:
    started = time.monotonic()
    league = League(redis, namespace)
    subjects = SubjectStore(redis, namespace, subject_ttl_s)
    budgets = BudgetStore(redis, namespace)
    cleared = await league.clear() if clear else 0
    records = applied = skipped = unreadable = 0
    async for batch, bad in ledger_batches(bootstrap, ledger_topic, batch_size=batch_size):
        records += len(batch) + bad
        unreadable += bad
        if batch:
            result = await league.apply(batch, rebuild=True)
            await subjects.save(from_ledger(r.award for r in batch))
            await budgets.restore(r.award for r in batch)
            applied += result.applied
            skipped += result.skipped
    return RebuildReport(records, applied, skipped, unreadable, time.monotonic() - started, cleared)


@dataclass(frozen=True)
class SlaRebuildReport:
    alerts_read: int
    alerts_applied: int
    events_read: int
    clock_ops: int
    alerts_shown_again: int  # left in the outbox, with their old ids, for the leader to produce
    seconds: float
    cleared_keys: int


async def rebuild_sla(
    bootstrap: str,
    topics: Topics,
    redis: aioredis.Redis,
    namespace: str,
    policy: SlaPolicy,
    directory: Directory,
    *,
    clear: bool = True,
    ttl_s: int = 90 * 24 * 3600,
    stopped_ttl_s: int = 8 * 24 * 3600,
    batch_size: int = 5000,
) -> SlaRebuildReport:
    started = time.monotonic()
    cleared = 0
    if clear:
        async for key in redis.scan_iter(match=f"{namespace}:sla:*", count=1000):
            cleared += int(await redis.unlink(key))
    board, store = AlertBoard(redis, namespace, ttl_s), SlaStore(redis, namespace, ttl_s, stopped_ttl_s)
    now_ms = int(time.time() * 1000)
    read = applied = 0
    try:
        async for messages in read_topic(bootstrap, topics.sla_alerts, batch=batch_size):
            alerts, bad = decode_alerts([m.value for m in messages])
            read += len(messages)
            if bad:
                log.error("%d unreadable sla-alerts records skipped", bad)
            applied += len(await board.apply([(a, []) for a in alerts], now_ms, quiet=True))
    except LookupError:
        pass  # no alert was ever produced
    events = ops_count = shown = 0
    for source in (topics.name("tickets"), topics.name("jobcards")):
        try:
            async for messages in read_topic(bootstrap, source, batch=batch_size):
                records = [SourceRecord.from_consumer(m) for m in messages]
                decoded, _ = decode_batch(records, topics=topics, now=datetime.now(UTC))
                ops = plan(decoded, policy, directory)
                events += len(records)
                ops_count += len(ops)
                shown += len(await store.observe(ops, now_ms))
        except LookupError:
            continue
    return SlaRebuildReport(read, applied, events, ops_count, shown, time.monotonic() - started, cleared)
