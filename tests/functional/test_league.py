"""The league's Lua projection against a real Redis: at most once, offsets, rebuild mode, clearing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.rules import Badge
from agents.scoring import Award
from pitstop.services import Service
from state.badges import badges_from_ledger
from state.league import League, LedgerEntry, LedgerRecord, boards_for, ledger_fields, notification
from tests.conftest import seconds
from tests.functional.conftest import award


@pytest.fixture
async def league(redis_server: Service, namespace: str) -> AsyncIterator[League]:
    client = aioredis.from_url(redis_server.url)
    yield League(client, namespace)
    await client.aclose()


async def _scores(league: League, board: str) -> list[tuple[bytes, float]]:
    result: list[tuple[bytes, float]] = await league.redis.zrange(f"{league.ns}:{board}", 0, -1, withscores=True)
    return result


async def test_an_award_counts_on_eight_boards_once(league: League) -> None:
    """One award adds its points to 4 scopes x (all, role), and a repeat (other offset) adds nothing."""
    one = award(1)
    first = await league.apply([LedgerRecord(0, 0, one)])
    again = await league.apply([LedgerRecord(0, 1, one)])  # the same award id written twice to the ledger
    assert (first.applied, again.applied, again.skipped) == (1, 0, 1)
    assert len(boards_for(one)) == 8
    for board in boards_for(one):
        assert await _scores(league, board) == [(b"S0001", 10.0)]
    assert await league.ledger_offsets() == {0: 1}


async def test_one_batch_leaves_what_one_award_at_a_time_would(redis_server: Service, namespace: str) -> None:
    """Points are summed per board and person, recent awards pushed per person, once per batch: the
    boards, scores and recent lists are those of applying the same awards one batch each."""
    client = aioredis.from_url(redis_server.url)
    whole, single = League(client, namespace + "-whole"), League(client, namespace + "-single")
    people = ["S0001"] * 60 + ["S0002", "S0003"] * 5  # S0001: more awards than a recent list keeps
    awards = [award(n, p, 5 + n % 7, role="advisor" if n % 5 == 0 else "technician") for n, p in enumerate(people)]
    awards.append(replace(award(3, "S0001", -8), award_id="take-back-3"))  # a negative entry in the same batch
    await whole.apply([LedgerRecord(0, n, a) for n, a in enumerate(awards)])
    for n, a in enumerate(awards):
        await single.apply([LedgerRecord(0, n, a)])
    for board in {b for a in awards for b in boards_for(a)}:
        assert await _scores(whole, board) == await _scores(single, board), board
    for staff_id in ("S0001", "S0002", "S0003"):
        recent = await whole.recent_awards(staff_id)
        assert len(recent) == (50 if staff_id == "S0001" else 5)
        assert recent == await single.recent_awards(staff_id)
    await client.aclose()


async def test_records_at_or_below_the_applied_offset_are_skipped_live_but_not_in_rebuild(league: League) -> None:
    """Live mode trusts the recorded offset; rebuild mode relies on award ids alone."""
    await league.apply([LedgerRecord(0, 0, award(1)), LedgerRecord(0, 1, award(3, "S0003"))])
    live = await league.apply([LedgerRecord(0, 1, award(2))])  # at offset 1: taken as already applied
    rebuilt = await league.apply([LedgerRecord(0, 1, award(2))], rebuild=True)
    assert (live.applied, rebuilt.applied) == (0, 1)
    assert await _scores(league, "lg:2026-11:centre:C01:all") == [(b"S0003", 10.0), (b"S0001", 20.0)]


async def test_a_batch_past_a_gap_is_refused_and_reported(league: League) -> None:
    """If Redis lost its newest writes, a live batch that does not follow on is not applied; the gap is named."""
    await league.apply([LedgerRecord(0, 0, award(1))])
    result = await league.apply([LedgerRecord(0, 3, award(4)), LedgerRecord(0, 4, award(5))])
    assert (result.applied, result.gaps) == (0, ((0, 1, 3),))
    assert await _scores(league, "lg:2026-11:centre:C01:all") == [(b"S0001", 10.0)]
    filled = await league.apply([LedgerRecord(0, o, award(o + 1)) for o in (1, 2, 3, 4)])
    assert (filled.applied, filled.gaps) == (4, ())
    assert await league.ledger_offsets() == {0: 4}


async def test_partitions_in_one_call_are_applied_or_refused_each_on_its_own(league: League) -> None:
    """Records of several partitions go in one script call; a gap in one partition holds back only its records."""
    await league.apply([LedgerRecord(0, 0, award(1)), LedgerRecord(1, 0, award(2, "S0002"))])
    result = await league.apply([LedgerRecord(0, 1, award(3)), LedgerRecord(1, 5, award(4, "S0002"))])
    assert (result.applied, result.skipped, result.gaps) == (1, 0, ((1, 1, 5),))
    assert await league.ledger_offsets() == {0: 1, 1: 0}
    assert await _scores(league, "lg:2026-11:centre:C01:all") == [(b"S0002", 10.0), (b"S0001", 20.0)]


async def test_ledger_bytes_and_awards_project_alike(redis_server: Service, namespace: str) -> None:
    """The live step reads the ledger's JSON (no Award per record); the boards, recent awards and badges
    it leaves are those of the same records applied as awards."""
    client = aioredis.from_url(redis_server.url)
    from_bytes, from_awards = League(client, namespace + "-bytes"), League(client, namespace + "-awards")
    gold = Badge("gold", "Gold")
    entries = [
        award(1),
        replace(award(2, "S0002", 30, role="advisor"), badge=gold),
        replace(award(3, "S0002", -30), kind="retraction", retracts="award-2", award_id="take-back-2"),
        replace(award(4, "S0003", 0), kind="refusal"),
        replace(award(5), multipliers=(("weekend", "1.5"),), inputs={"rating": 5, "note": None}),
    ]
    raw = [LedgerEntry(0, n, ledger_fields(a.to_ledger()), 1_700_000_000_000) for n, a in enumerate(entries)]
    await from_bytes.apply_entries(raw)
    await from_awards.apply([LedgerRecord(0, n, a, 1_700_000_000_000) for n, a in enumerate(entries)])
    for board in {b for a in entries for b in boards_for(a)}:
        assert await _scores(from_bytes, board) == await _scores(from_awards, board), board
    for staff_id in ("S0001", "S0002", "S0003"):
        assert await from_bytes.recent_awards(staff_id) == await from_awards.recent_awards(staff_id)
        assert await from_bytes.badges(staff_id) == await from_awards.badges(staff_id)
    assert (await from_bytes.recent_awards("S0001"))[0]["multipliers"] == [["weekend", "1.5"]]
    await client.aclose()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not a ledger record"),
        (b"[1, 2]", "not a ledger record"),
        (orjson.dumps({"award_id": "a1"}), "not a ledger record"),
        (orjson.dumps(award(1).ledger_fields() | {"points": "10"}), "wrong type"),
        (orjson.dumps(award(1).ledger_fields() | {"staff_id": 7}), "wrong type"),
    ],
)
def test_a_record_that_is_not_a_ledger_entry_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        ledger_fields(raw)


async def test_each_change_is_published_with_the_next_board_version(league: League) -> None:
    """Every applying batch bumps a changed board's version once and publishes its absolute scores."""
    pubsub = league.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{league.ns}:board-changes", f"{league.ns}:awards")
    before = time.time() * 1000
    await league.apply(
        [LedgerRecord(0, 0, award(1), 1_700_000_000_500), LedgerRecord(0, 1, award(2, "S0002", 7), 1_700_000_000_200)]
    )
    after = time.time() * 1000
    messages = []
    deadline = asyncio.get_running_loop().time() + seconds(5)
    while len(messages) < 10:  # 2 awards + 8 boards, in one message per channel (a JSON array each)
        assert asyncio.get_running_loop().time() < deadline, messages
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            channel, items = message["channel"].decode().rsplit(":", 1)[-1], orjson.loads(message["data"])
            assert isinstance(items, list)
            messages += [(channel, item) for item in items]
    changes = {m["board"]: m for channel, m in messages if channel == "board-changes"}
    change = changes["lg:2026-11:centre:C01:all"]
    # `at`: when Redis applied it (ms); `src`: the oldest source-event time among the awards that had one
    assert before - 1 <= change.pop("at") <= after + 1
    assert change == {
        "board": "lg:2026-11:centre:C01:all",
        "ver": 1,
        "scores": {"S0001": 10, "S0002": 7},
        "src": 1_700_000_000_200,
    }
    assert sorted(m["award_id"] for channel, m in messages if channel == "awards") == ["award-1", "award-2"]
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_batch_read_again_publishes_only_the_awards_it_applies(league: League) -> None:
    """The awards channel gets one notification per record applied: a record applied before (a batch
    read again after a crash) is not announced twice."""
    await league.apply([LedgerRecord(0, 0, award(1))])
    pubsub = league.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{league.ns}:awards")
    result = await league.apply([LedgerRecord(0, 0, award(1)), LedgerRecord(0, 1, award(2, "S0002", 7))])
    assert (result.applied, result.skipped) == (1, 1)
    deadline = asyncio.get_running_loop().time() + seconds(5)
    message = None
    while message is None:
        assert asyncio.get_running_loop().time() < deadline
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    assert [n["award_id"] for n in orjson.loads(message["data"])] == ["award-2"]
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_recent_awards_are_notifications_whatever_the_list_holds(league: League) -> None:
    """The recent list keeps ledger records (as read from the ledger); an item kept as a notification
    (what the list held before) reads the same way."""
    retraction = replace(award(2, points=-10), kind="retraction", retracts="award-1", award_id="take-back-1")
    await league.apply([LedgerRecord(0, 0, award(1)), LedgerRecord(0, 1, retraction)])
    kept = await league.redis.lrange(f"{league.ns}:recent:S0001", 0, -1)
    assert [orjson.loads(k)["award_id"] for k in kept] == ["take-back-1", "award-1"]
    assert orjson.loads(kept[1]) == award(1).ledger_fields()
    await league.redis.rpush(f"{league.ns}:recent:S0001", orjson.dumps(notification(award(0))))
    recent = await league.recent_awards("S0001")
    assert recent == [notification(retraction), notification(award(1)), notification(award(0))]
    assert [n["type"] for n in recent] == ["retraction", "award", "award"]


async def test_clear_removes_the_projection_and_keeps_seen_marks(league: League) -> None:
    """clear() deletes boards, versions, applied ids, offsets and recent awards, nothing else."""
    await league.apply([LedgerRecord(0, 0, award(1))])
    await league.redis.set(f"{league.ns}:seen:e1", b"1")
    assert await league.clear() == 8 + 4  # boards + versions, applied, offsets, recent
    assert await league.redis.keys(f"{league.ns}:*") == [f"{league.ns}:seen:e1".encode()]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(
        st.tuples(st.sampled_from(["award", "window", "plain", "retract", "correct"]), st.integers(0, 40)),
        min_size=1,
        max_size=25,
    )
)
async def test_the_projection_holds_the_badges_the_ledger_says(
    redis_server: Service, history: list[tuple[str, int]]
) -> None:
    """For any history of badge awards, awards without one, retractions (of part or all) and window
    corrections (up, down, from nothing), the Lua projection holds exactly the badges the ledger fold
    says, live and after clearing and rebuilding."""
    star, five = Badge("csat-star", "CSAT star"), Badge("five-star", "Five stars")
    entries: list[Award] = []
    made: list[Award] = []  # awards and corrections that later entries may change
    for n, (what, points) in enumerate(history):
        at = f"2026-{1 + n % 12:02d}-28T10:00:00+05:30"
        if what in ("retract", "correct") and made:
            base = made[points % len(made)]
            target = base.retracts or base.award_id
            kind = "retraction" if what == "retract" else "correction"
            change = -(points % 30) if kind == "retraction" else points - 20
            entries.append(replace(base, award_id=f"x{n}", kind=kind, retracts=target, points=change, badge=None))
            if kind == "correction":
                entries[-1] = replace(entries[-1], badge=base.badge)
            continue
        badge = None if what == "plain" else star if what == "window" else five
        event_id = f"window:C01:month:2026-{1 + n % 12:02d}" if what == "window" else f"e{n}"
        entry = replace(award(n), event_id=event_id, points=points + 1, badge=badge, occurred_at=at)
        if what == "window" and points % 3 == 0:  # a window whose first entry is a correction from nothing
            entry = replace(entry, award_id=f"c{n}", kind="correction", retracts=f"w{n}")
        entries.append(entry)
        made.append(entry)
    client = aioredis.from_url(redis_server.url)
    league = League(client, f"badges{uuid.uuid4().hex[:8]}")
    try:
        expected = badges_from_ledger(entries).get("S0001", [])
        records = [LedgerRecord(0, offset, e) for offset, e in enumerate(entries)]
        for start in range(0, len(records), 4):
            await league.apply(records[start : start + 4])
        assert await league.badges("S0001") == expected
        await league.clear()
        assert await league.badges("S0001") == []
        await league.apply(records, rebuild=True)
        assert await league.badges("S0001") == expected
    finally:
        await league.clear()
        await client.aclose()
