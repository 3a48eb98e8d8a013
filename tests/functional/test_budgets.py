"""Spot-award budgets through the scorer, and the budget store's atomic decisions, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.budgets import BudgetBook, Claim, Decision
from agents.rules import load_rule_pack
from agents.scoring import Award
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.services import Service
from state.budgets import BudgetStore
from state.league import League, LedgerEntry, LedgerRecord
from tests.functional.test_scorer import RecordingProducer, _recent, _record, _scorer


@pytest.fixture
async def redis(redis_server: Service) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _recognition(n: int, points: int) -> dict[str, object]:
    return _recent("recognition.given", f"rc-{n}") | {"recognition_id": f"RC-{n}", "points": points}


def _ledger(producer: RecordingProducer) -> list[Award]:
    return [Award.from_ledger(v) for _, _, v, _ in producer.on("points-ledger") if v is not None]


async def test_a_recognition_over_the_budget_is_refused_and_the_giver_is_told(
    redis: aioredis.Redis, namespace: str
) -> None:
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    scorer.directory.staff["S0015"] = replace(scorer.directory.staff["S0015"], spot_budget=60)
    await scorer.score([_record(_recognition(1, 25), 0), _record(_recognition(2, 25), 1)])
    await scorer.score([_record(_recognition(3, 25), 2), _record(_recognition(4, 10), 3)])
    ledger = _ledger(producer)
    assert [(a.event_id, a.kind, a.staff_id, a.points) for a in ledger] == [
        ("rc-1", "award", "S0001", 25),
        ("rc-2", "award", "S0001", 25),
        ("rc-3", "refusal", "S0015", 0),  # 50 used: 25 more would pass 60
        ("rc-4", "award", "S0001", 10),  # 10 still fits
    ]
    month = ledger[0].inputs["budget_month"]
    assert (
        ledger[2].why
        == f"Recognition of S0001 refused: 25 points would pass the {month} budget (50 of 60 used, 10 left)"
    )
    assert ledger[3].inputs["budget"] == 60
    assert registry.get_sample_value("pitstop_spot_awards_refused_total", {"rule": "recognition.spot"}) == 1
    # the refusal reaches the giver's own feed, and no board
    await scorer.project([LedgerEntry.of(LedgerRecord(0, offset, a)) for offset, a in enumerate(ledger)])
    recent = await League(redis, namespace).recent_awards("S0015")
    assert [n["type"] for n in recent] == ["refusal"]
    assert not [k async for k in redis.scan_iter(f"{namespace}:lg:*") if await redis.zscore(k, "S0015") is not None]


async def test_scoring_a_batch_again_after_a_crash_gives_the_same_decisions(
    redis: aioredis.Redis, namespace: str
) -> None:
    """The decision is kept per event: a batch scored again (its seen marks never written) decides the same."""
    batch = [_record(_recognition(n, 30), n) for n in range(4)]
    first, again = RecordingProducer(), RecordingProducer()
    scorer, _ = _scorer(redis, namespace, first)
    scorer.directory.staff["S0015"] = replace(scorer.directory.staff["S0015"], spot_budget=70)
    await scorer.score(batch)
    async for key in redis.scan_iter(f"{namespace}:seen:*"):
        await redis.delete(key)
    retry, _ = _scorer(redis, namespace, again)
    retry.directory.staff["S0015"] = replace(retry.directory.staff["S0015"], spot_budget=70)
    await retry.score(batch)
    assert [v for _, _, v, _ in first.on("points-ledger")] == [v for _, _, v, _ in again.on("points-ledger")]
    assert [a.kind for a in _ledger(first)] == ["award", "award", "refusal", "refusal"]


async def test_two_workers_spending_one_budget_at_once_never_overspend(redis_server: Service, namespace: str) -> None:
    directory = load_directory(DEFAULT_DIRECTORY)
    rule = next(r for r in load_rule_pack(DEFAULT_RULES).rules if r.budget is not None)
    giver = directory.staff["S0015"]
    clients = [aioredis.from_url(redis_server.url) for _ in range(2)]
    try:
        stores = [BudgetStore(c, namespace) for c in clients]

        def claim(n: int) -> Claim:
            return Claim(n, f"e{n}", rule, giver.id, giver, "2026-11", 7, 300)

        decided = await asyncio.gather(*(stores[n % 2].decide([claim(n)]) for n in range(100)))
        granted = [d for (d,) in decided if d is not None and d.granted]
        assert len(granted) == 42  # 42 x 7 = 294; a 43rd would pass 300
        assert {d for (d,) in decided if d is not None and not d.granted} == {Decision(False, 294)}
        assert await stores[0].used(claim(0).pool) == 294
        assert await stores[1].decide([claim(3)]) == decided[3]  # asked again: the same answer
    finally:
        for c in clients:
            await c.aclose()


async def test_rebuild_restores_budgets_from_the_ledger(redis: aioredis.Redis, namespace: str) -> None:
    producer = RecordingProducer()
    scorer, _ = _scorer(redis, namespace, producer)
    scorer.directory.staff["S0015"] = replace(scorer.directory.staff["S0015"], spot_budget=60)
    batch = [_record(_recognition(n, 25), n) for n in range(3)]
    await scorer.score(batch)
    ledger = _ledger(producer)
    pool = f"recognition.spot|S0015|{ledger[0].inputs['budget_month']}"
    key = f"{namespace}:budget:{pool}"
    before = await _decisions(redis, key)
    await redis.delete(key)  # Redis lost it
    store = BudgetStore(redis, namespace)
    assert await store.restore(ledger) == 3
    assert await _decisions(redis, key) == before  # the same points used, the same decision per event
    # a further recognition (the partition's next record) is refused as it would have been
    await scorer.score([_record(_recognition(9, 25), 3)])
    assert _ledger(producer)[-1].kind == "refusal"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    asks=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 2), st.integers(1, 60), st.sampled_from([50, 100, 150])),
        max_size=30,
    )
)
async def test_redis_and_the_book_decide_alike(redis: aioredis.Redis, asks: list[tuple[int, int, int, int]]) -> None:
    """The Lua script the worker uses and the in-memory book of re-scoring decide every sequence of
    claims alike, repeats included (event n: giver, points and limit kept)."""
    directory = load_directory(DEFAULT_DIRECTORY)
    rule = next(r for r in load_rule_pack(DEFAULT_RULES).rules if r.budget is not None)
    givers = [directory.staff[s] for s in ("S0015", "S0030", "S0045")]
    first: dict[int, tuple[int, int, int]] = {}
    found = []
    for event, giver, points, limit in asks:
        giver, points, limit = first.setdefault(event, (giver, points, limit))
        who = givers[giver]
        found.append(Claim(len(found), f"e{event}", rule, who.id, who, "2026-11", points, limit))
    store = BudgetStore(redis, f"prop{uuid.uuid4().hex[:8]}")
    in_redis = [d for batch in (found[:10], found[10:]) for d in await store.decide(batch)]
    assert in_redis == BudgetBook().decide(found)


async def _decisions(redis: aioredis.Redis, key: str) -> tuple[int, dict[str, Decision]]:
    """(points used, event -> decision) of a budget pool, however the decisions are stored."""
    fields = {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}
    events = {name[2:]: Decision.decode(value) for name, value in fields.items() if name.startswith("e:")}
    return int(fields.get("used", 0)), events


async def test_a_restore_in_batches_counts_each_award_once(redis: aioredis.Redis, namespace: str) -> None:
    """A rebuild reads the ledger in batches: a recognition of two people has its two awards (keyed by
    person) in different ones, and a record the ledger holds twice comes twice. Each award counts once,
    whatever the batches; over decisions taken live, nothing counts again."""
    two = _recent("recognition.given", "rc-two") | {
        "recognition_id": "RC-two",
        "points": 20,
        "people": [{"staff_id": "S0001", "role": "technician"}, {"staff_id": "S0002", "role": "technician"}],
    }
    producer = RecordingProducer()
    scorer, _ = _scorer(redis, namespace, producer)
    await scorer.score([_record(two, 0), _record(_recognition(1, 30), 1), _record(_recognition(2, 15), 2)])
    ledger = _ledger(producer)
    assert [(a.event_id, a.staff_id, a.points) for a in ledger] == [
        ("rc-two", "S0001", 20),
        ("rc-two", "S0002", 20),
        ("rc-1", "S0001", 30),
        ("rc-2", "S0001", 15),
    ]
    key = f"{namespace}:budget:recognition.spot|S0015|{ledger[0].inputs['budget_month']}"
    live = await _decisions(redis, key)
    assert live[0] == 85
    store = BudgetStore(redis, namespace)
    await store.restore(ledger)  # over the live decisions: nothing counts twice
    assert await _decisions(redis, key) == live
    await redis.delete(key)
    for batch in ([ledger[0], ledger[2]], [ledger[2], ledger[1]], [ledger[3], ledger[0]]):  # split, repeated
        await store.restore(batch)
    assert await _decisions(redis, key) == live
