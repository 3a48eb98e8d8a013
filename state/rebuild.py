"""Rebuild every league board from the points ledger (``pitstop rebuild``).

Reads each ledger partition from offset 0 to its end, and applies the records
with the same Lua script the live projection uses, in rebuild mode: each award id at most once, no
offset shortcut; the subjects that retractions need (:mod:`state.subjects`) and the spot-award
budgets (:mod:`state.budgets`) are restored from the same records. With ``clear=True`` the
namespace's projection keys are deleted first, so the result is exactly the fold of the ledger. A
live worker may keep running: awards it applies meanwhile are deduplicated by award id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from agents.scoring import Award
from state.budgets import BudgetStore
from state.league import League, LedgerRecord
from state.subjects import SubjectStore, from_ledger
from streams.topics import read_topic

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
