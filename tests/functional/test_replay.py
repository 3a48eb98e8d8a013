"""The replay's scoring (the worker's Scorer into a shadow namespace) against a real Redis: the same
records replayed twice give the same ledger bytes in the same order, and any batch sizes the same
records, KPI windows, budgets and retractions included."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.pipeline import SourceRecord
from agents.rules import RulePack, load_rule_pack
from config.directory import Directory, load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES, Settings
from pitstop.replay import arrival_order, score_into_shadow
from pitstop.services import Service
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

START = datetime(2026, 10, 27, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tight_pack(tmp_path_factory: pytest.TempPathFactory) -> RulePack:
    """The default pack with a budget of 20 points a giver a month, so recognitions are refused too."""
    path = tmp_path_factory.mktemp("pack") / "tight.yaml"
    path.write_text(DEFAULT_RULES.read_text(encoding="utf-8").replace("budget: 2000 ", "budget: 20   "), "utf-8")
    return load_rule_pack(path)


def _records(directory: Directory, seed: int, count: int) -> list[SourceRecord]:
    """A week and a half of simulated events (with reopenings, refunds and corrected surveys), each on its
    centre's partition, stamped with its event time."""
    sim = Simulator(directory, seed=seed, follow_ups=0.1)
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for i in range(count):
        at = START + timedelta(minutes=25 * i)
        event = sim.event(at)
        topic, partition = topic_for(Topics(), event), int(str(event["centre_id"])[1:]) % 4
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        ms = int(at.timestamp() * 1000)
        key = str(event["centre_id"]).encode()
        records.append(SourceRecord(topic, partition, offset, key, orjson.dumps(event), ms))
    return arrival_order(records)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), sizes=st.tuples(st.integers(20, 400), st.integers(20, 400)))
async def test_replay_twice_gives_the_same_bytes_and_batches_do_not_matter(
    redis_server: Service, tight_pack: RulePack, seed: int, sizes: tuple[int, int]
) -> None:
    directory = load_directory(DEFAULT_DIRECTORY)
    records = _records(directory, seed, 600)
    client = aioredis.from_url(redis_server.url)
    base = replace(Settings(), ledger_generation="prop")
    try:
        runs = []
        for size in (sizes[0], sizes[0], sizes[1]):
            shadow = replace(base, redis_namespace=f"replay{uuid.uuid4().hex[:8]}")
            runs.append(await score_into_shadow(client, shadow, tight_pack, directory, records, size))
        closed = await client.hgetall(f"{shadow.redis_namespace}:kpi:closed")  # centre -> last day closed
    finally:
        await client.aclose()
    first, again, other = runs
    assert first == again  # the same batches: the same records, in the same order
    assert sorted(first) == sorted(other)  # other batches: the same records
    kinds = {orjson.loads(r)["kind"] for r in first}
    assert {"award", "retraction", "refusal"} <= kinds
    assert len(closed) == 20  # every centre's days closed as its stream time moved: KPI windows are in too
