"""KPI windows on a real Redis: closing by stream time, late events inside and beyond the allowed
lateness, corrections, survey answers replaced, and the same ledger for any arrival order."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.kpi import Window, summarize
from agents.pipeline import SourceRecord, decode_batch, score_decoded
from agents.rules import RulePack, load_rule_pack
from agents.scoring import Award
from agents.windows import KpiWindows, WindowStep, correction_id, window_event_id
from config.directory import Directory, load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.services import Service
from state.badges import badges_from_ledger
from state.kpi import Bucket, KpiState, KpiStore
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

LATENESS = timedelta(hours=48)
START = datetime(2026, 10, 20, 4, 0, tzinfo=UTC)  # 09:30 in Asia/Kolkata, the demo centres' zone
FAR = datetime(2027, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_rule_pack(DEFAULT_RULES)


@pytest.fixture(scope="module")
def capped_pack(tmp_path_factory: pytest.TempPathFactory) -> RulePack:
    """The default pack with caps: five-star ratings 50 a day and 300 a month, on-time job cards 60 a week."""
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    text = text.replace(
        "    when: {rating: 5}\n    points: 25\n",
        "    when: {rating: 5}\n    points: 25\n    cap: {day: 50, month: 300}\n",
    )
    text = text.replace(
        "    when: {on_time: true}\n    points: 10\n",
        "    when: {on_time: true}\n    points: 10\n    cap: {week: 60}\n",
    )
    path = tmp_path_factory.mktemp("pack") / "capped.yaml"
    path.write_text(text, encoding="utf-8")
    pack = load_rule_pack(path)
    assert len(pack.capped) == 2
    return pack


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DEFAULT_DIRECTORY)


@pytest.fixture
async def redis(redis_server: Service) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


class Run:
    """Scores batches as the worker does (decode, score, windows), keeping what a worker keeps."""

    def __init__(self, redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory) -> None:
        self.store = KpiStore(redis, namespace, 120 * 86400)
        self.windows = KpiWindows(self.store, directory, lateness=LATENESS, repeat_within=timedelta(days=30))
        self.pack = pack
        self.directory = directory
        self.seen: set[str] = set()
        self.subjects: dict[str, Any] = {}
        self.ledger: list[Award] = []
        self.steps: list[WindowStep] = []
        self.offset = 0

    async def feed(self, events: Sequence[dict[str, Any]]) -> WindowStep:
        records = []
        for event in events:
            centre = str(event["centre_id"])
            records.append(
                SourceRecord(
                    topic_for(Topics(), event),
                    int(centre[1:]) % 4,
                    self.offset,
                    centre.encode(),
                    orjson.dumps(event),
                    0,
                )
            )
            self.offset += 1
        decoded, dead = decode_batch(records, topics=Topics(), now=FAR)
        assert not dead, dead
        result = score_decoded(
            decoded, pack=self.pack, directory=self.directory, already_seen=self.seen, subjects=self.subjects
        )
        step = await self.windows.advance(result.scored, decoded, self.pack)
        self.seen |= {s.event.event_id for s in result.scored}
        self.ledger += [award for _, award in result.awards] + step.awards
        self.steps.append(step)
        return step


def _csat(staff: str, centre: str, at: datetime, rating: int, survey: str, event_id: str = "") -> dict[str, Any]:
    return {
        "event_id": event_id or f"csat-{survey}-{at:%m%d%H%M}",
        "type": "survey.csat",
        "occurred_at": at.isoformat(),
        "centre_id": centre,
        "people": [{"staff_id": staff, "role": "technician"}],
        "customer_ref": "cust_abcdefgh",
        "survey_id": survey,
        "subject_kind": "jobcard",
        "subject_id": f"JC-{survey}",
        "rating": rating,
    }


def _opened(centre: str, at: datetime, n: int) -> dict[str, Any]:
    """An event that awards nothing and moves the stream time (a job card opened)."""
    return {
        "event_id": f"open-{centre}-{n}",
        "type": "jobcard.opened",
        "occurred_at": at.isoformat(),
        "centre_id": centre,
        "people": [{"staff_id": "S0009", "role": "service_advisor"}],
        "customer_ref": "cust_abcdefgh",
        "jobcard_id": f"JC-open-{n}",
        "promised_at": (at + timedelta(hours=5)).isoformat(),
    }


NOV = [datetime(2026, 11, d, 6, 0, tzinfo=UTC) for d in range(1, 31)]


async def test_a_month_closes_only_after_its_end_plus_the_allowed_lateness(
    redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory
) -> None:
    run = Run(redis, namespace, pack, directory)
    await run.feed([_csat("S0001", "C01", NOV[i], 5, f"sv{i}") for i in (2, 9, 16)])
    step = await run.feed([_opened("C01", datetime(2026, 12, 2, 18, 0, tzinfo=UTC), 1)])  # Dec 2, 23:30 local
    assert not [a for a in step.awards if a.rule_id == "kpi.csat_star"]  # Nov 30 ended < 48 h ago
    assert step.closed["week"] >= 1 and step.closed["month"] == 0
    step = await run.feed([_opened("C01", datetime(2026, 12, 2, 19, 0, tzinfo=UTC), 2)])  # Dec 3, 00:30 local
    (star,) = [a for a in step.awards if a.rule_id == "kpi.csat_star"]
    assert step.closed["month"] == 1
    assert (star.staff_id, star.points, star.season) == ("S0001", 100, "2026-11")
    assert star.event_id == window_event_id("C01", Window.of("month", date(2026, 11, 30)))
    assert star.occurred_at == "2026-11-30T23:59:59+05:30"
    assert star.inputs == {"kpi.csat_count_month": 3, "kpi.csat_mean_month": 5.0, "window": "month:2026-11"}
    assert star.why == "CSAT star of month:2026-11: mean 5.0 over 3 surveys"
    assert step.outbox == {star.award_id: star.to_ledger()}  # the outbox in Redis, until the ledger has it


async def test_a_late_event_inside_the_lateness_counts_and_one_beyond_it_is_corrected(
    redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory
) -> None:
    run = Run(redis, namespace, pack, directory)
    await run.feed([_csat("S0001", "C01", NOV[i], 5, f"sv{i}") for i in (2, 9, 16)])
    await run.feed([_opened("C01", datetime(2026, 12, 1, 12, 0, tzinfo=UTC), 1)])
    # Nov 29, one day behind the stream: inside the lateness, so in the month before it closes
    step = await run.feed([_csat("S0001", "C01", NOV[28], 4, "sv28")])
    assert not step.late
    step = await run.feed([_opened("C01", datetime(2026, 12, 4, tzinfo=UTC), 2)])
    (star,) = [a for a in step.awards if a.rule_id == "kpi.csat_star"]
    assert star.inputs["kpi.csat_count_month"] == 4 and star.inputs["kpi.csat_mean_month"] == 4.75

    # Nov 5, after November closed: late. It goes into November's records and corrects the star.
    late = _csat("S0001", "C01", NOV[4], 1, "sv4")
    step = await run.feed([late])
    assert [(event.event_id, day) for _, event, day in step.late] == [(late["event_id"], date(2026, 11, 5))]
    corrections = [a for a in step.awards if a.kind == "correction"]
    assert [(c.rule_id, c.points, c.retracts) for c in corrections] == [("kpi.csat_star", -100, star.award_id)]
    assert corrections[0].award_id == correction_id(star.award_id, 1)
    assert corrections[0].inputs["kpi.csat_mean_month"] == 4.0  # (5 + 5 + 5 + 4 + 1) / 5
    assert (corrections[0].inputs["points_before"], corrections[0].inputs["points_after"]) == (100, 0)
    assert "100 -> 0" in corrections[0].why

    # The same late event scored again (a batch redone after a crash) corrects nothing twice
    run.seen.discard(late["event_id"])
    step = await run.feed([late])
    assert not [a for a in step.awards if a.kind == "correction"]
    # A later answer to the same survey lifts it again: revision 2, +100
    step = await run.feed([_csat("S0001", "C01", NOV[6], 5, "sv4", event_id="sv4-again")])
    assert [(c.points, c.award_id) for c in step.awards if c.kind == "correction"] == [
        (100, correction_id(star.award_id, 2))
    ]


async def test_a_survey_answered_again_counts_its_newest_answer_in_each_window(
    redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory
) -> None:
    """Whatever order the answers arrive in: a window holding both counts the newer; a window holding only
    the older (it ends before the newer was given) counts the older."""
    first = _csat("S0001", "C01", NOV[2], 2, "sv1", event_id="a1")
    again = _csat("S0001", "C01", NOV[5], 5, "sv1", event_id="a2")
    for name, order in (("in-order", [first, again]), ("reversed", [again, first])):
        run = Run(redis, f"{namespace}{name}", pack, directory)
        for event in order:
            await run.feed([event])

        async def csat(window: Window, run: Run = run) -> tuple[Any, Any]:
            found = await run.store.records([Bucket("p", "S0001", d) for d in window.days()])
            kpis = summarize(r for rs in found.values() for r in rs)
            return kpis["csat_count"], kpis["csat_mean"]

        assert await csat(Window.of("month", date(2026, 11, 1))) == (1, 5.0), name
        assert await csat(Window.of("30d", date(2026, 11, 6))) == (1, 5.0), name
        assert await csat(Window.of("week", date(2026, 11, 3))) == (1, 5.0), name  # Nov 2-8 holds both
        assert await csat(Window.of("day", date(2026, 11, 3))) == (1, 2.0), name
        assert await csat(Window.of("30d", date(2026, 11, 5))) == (1, 2.0), name


def _simulated(directory: Directory, seed: int, days: int, count: int) -> list[dict[str, Any]]:
    """Simulated events of three centres (dense enough for the window rules to fire)."""
    centres = [directory.centres[c] for c in ("C01", "C02", "C03")]
    few = Directory(centres, [s for s in directory.staff.values() if s.centre_id in {c.id for c in centres}])
    sim = Simulator(few, seed=seed, follow_ups=0.1)
    step = timedelta(days=days) / count
    return [dict(sim.event(START + step * i)) for i in range(count)]


def _arrival(events: list[dict[str, Any]], rng: random.Random, spread: timedelta) -> list[dict[str, Any]]:
    """A shuffle in which no event arrives after one more than ``spread`` newer (inside the lateness)."""
    keyed = [(datetime.fromisoformat(str(e["occurred_at"])) + spread * rng.random(), i) for i, e in enumerate(events)]
    return [events[i] for _, i in sorted(keyed)]


async def _ledger(run: Run, events: list[dict[str, Any]], sizes: list[int]) -> list[bytes]:
    at = 0
    for size in sizes:
        await run.feed(events[at : at + size])
        at += size
    while at < len(events):
        await run.feed(events[at : at + 97])
        at += 97
    return sorted(a.to_ledger() for a in run.ledger)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    order=st.integers(0, 2**32),
    sizes=st.lists(st.integers(1, 300), max_size=10),
)
async def test_the_ledger_is_the_same_for_any_arrival_order_within_the_lateness(
    seed: int,
    order: int,
    sizes: list[int],
    redis: aioredis.Redis,
    capped_pack: RulePack,
    directory: Directory,
) -> None:
    """Forty days of simulated events, in time order and in an order up to a day out of it (with repeats),
    cut into random batches: the same ledger bytes, window awards and cap settlements included, and no
    late events."""
    pack = capped_pack
    events = _simulated(directory, seed, 40, 1200)
    shuffle = random.Random(order)
    arrival = _arrival(events, shuffle, timedelta(hours=24))
    arrival[200:200] = shuffle.sample(arrival[:200], 20)  # repeats, shortly after the original
    in_order = Run(redis, f"o{uuid.uuid4().hex}", pack, directory)
    shuffled = Run(redis, f"s{uuid.uuid4().hex}", pack, directory)
    expected = await _ledger(in_order, events, [])
    assert await _ledger(shuffled, arrival, sizes) == expected
    assert any(a.event_type.startswith("window.") and a.kind == "award" for a in in_order.ledger)
    assert any(a.kind == "cap" for a in in_order.ledger)
    assert not any(step.late for step in shuffled.steps)
    assert not any(a.kind == "correction" for a in shuffled.ledger)
    # scored again from the start (a replay into a fresh namespace): byte for byte the same
    again = Run(redis, f"r{uuid.uuid4().hex}", pack, directory)
    assert await _ledger(again, events, sizes) == expected


async def test_kpis_of_a_window_from_the_store(
    redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory
) -> None:
    """What summarize gives for a person's month, from the records the runs wrote, checked by hand."""
    run = Run(redis, namespace, pack, directory)
    await run.feed([_csat("S0001", "C01", NOV[i], r, f"k{i}") for i, r in ((1, 5), (3, 4), (20, 2))])
    days = Window.of("month", date(2026, 11, 1)).days()
    records = await run.store.records([Bucket("p", "S0001", d) for d in days])
    kpis = summarize(r for rs in records.values() for r in rs)
    assert (kpis["csat_count"], kpis["csat_mean"]) == (3, round(11 / 3, 4))
    centre = await run.store.records([Bucket("c", "C01", d) for d in days])
    assert summarize(r for rs in centre.values() for r in rs)["csat_count"] == 3


async def test_a_cap_is_settled_when_its_day_closes_and_corrected_by_a_late_award(
    redis: aioredis.Redis, namespace: str, capped_pack: RulePack, directory: Directory
) -> None:
    """Five-star ratings are capped at 50 points a day: three on one day earn 75 at once; when the day
    closes 25 is taken back; a fourth, late, earns its 25 and the cap takes 25 more."""
    run = Run(redis, namespace, capped_pack, directory)
    day = [datetime(2026, 11, 10, h, 0, tzinfo=UTC) for h in (4, 5, 6, 7)]
    step = await run.feed([_csat("S0001", "C01", day[i], 5, f"cap{i}") for i in range(3)])
    assert [a.points for a in run.ledger if a.rule_id == "survey.csat_five_star"] == [25, 25, 25]
    step = await run.feed([_opened("C01", datetime(2026, 11, 13, tzinfo=UTC), 1)])
    (settled,) = [a for a in step.awards if a.kind == "cap"]
    assert (settled.rule_id, settled.staff_id, settled.points, settled.event_type) == (
        "survey.csat_five_star",
        "S0001",
        -25,
        "window.day",
    )
    assert settled.inputs == {"cap": 50, "awarded": 75, "window": "day:2026-11-10"}
    assert settled.why == "survey.csat_five_star is capped at 50 points a day: 75 awarded in day:2026-11-10"
    step = await run.feed([_csat("S0001", "C01", day[3], 5, "cap3")])
    assert next(e for _, e, _ in step.late).event_id == "csat-cap3-11100700"
    (fix,) = [a for a in step.awards if a.kind == "correction"]
    assert (fix.points, fix.retracts, fix.inputs["awarded"]) == (-25, settled.award_id, 100)
    assert sum(a.points for a in run.ledger if a.staff_id == "S0001" and "csat" in a.rule_id) == 50


def _closed(staff: str, at: datetime, n: int, *, flawless: bool) -> dict[str, Any]:
    return {
        "event_id": f"jc-{staff}-{n}",
        "type": "jobcard.closed",
        "occurred_at": at.isoformat(),
        "centre_id": "C01",
        "people": [{"staff_id": staff, "role": "technician"}],
        "customer_ref": "cust_abcdefgh",
        "jobcard_id": f"JC-{staff}-{n}",
        "opened_at": (at - timedelta(hours=3)).isoformat(),
        "promised_at": (at + timedelta(hours=1)).isoformat(),
        "first_time_fix": True,
        "flawless": flawless,
        "safety_compliant": True,
    }


async def test_five_flawless_in_a_row_earn_a_badge_and_a_late_flawed_card_takes_it_back(
    redis: aioredis.Redis, namespace: str, pack: RulePack, directory: Directory
) -> None:
    """Flawless job cards in a row by event time, whatever order they arrive in, earn "Flawless five"
    when the month closes; a late card that was not flawless, in the middle of the run, corrects the
    award to nothing and the badge is no longer held."""
    run = Run(redis, namespace, pack, directory)
    cards = [_closed("S0001", NOV[2 + n], n, flawless=True) for n in range(5)]
    await run.feed([cards[3], cards[0], cards[4]])
    await run.feed([cards[2], cards[1], _closed("S0001", NOV[20], 9, flawless=False)])
    step = await run.feed([_opened("C01", datetime(2026, 12, 4, tzinfo=UTC), 1)])
    (five,) = [a for a in step.awards if a.rule_id == "kpi.flawless_five"]
    assert five.badge is not None and (five.badge.id, five.badge.name) == ("flawless-five", "Flawless five")
    assert five.why == "5 flawless job cards in a row in month:2026-11"
    (held,) = [b for b in badges_from_ledger(run.ledger)["S0001"] if b.badge == "flawless-five"]
    assert (held.award_id, held.event_id) == (five.award_id, "window:C01:month:2026-11")

    step = await run.feed([_closed("S0001", NOV[4] + timedelta(hours=1), 7, flawless=False)])  # late, mid-run
    (fix,) = [a for a in step.awards if a.kind == "correction" and a.rule_id == "kpi.flawless_five"]
    assert (fix.points, fix.retracts, fix.inputs["kpi.flawless_run_month"]) == (-60, five.award_id, 3)
    assert "flawless-five" not in {b.badge for b in badges_from_ledger(run.ledger).get("S0001", [])}


async def test_the_state_a_step_starts_from_is_read_in_one_call(redis: aioredis.Redis, namespace: str) -> None:
    store = KpiStore(redis, namespace, 120 * 86400)
    assert await store.state([]) == KpiState({}, {}, {})
    await redis.hset(f"{namespace}:kpi:clock", mapping={"0": 1_700_000_000_000})
    await redis.sadd(f"{namespace}:kpi:centres:0", "C01", "C02")
    await redis.hset(f"{namespace}:kpi:closed", mapping={"C01": "2026-10-19", "C09": "2026-10-18"})
    found = await store.state([1, 0, 0], centres=["C09", "C77"])
    # partition 1 has no stream time and no centres yet; C02 and C77 have no closed days
    assert found == KpiState(
        clock={0: 1_700_000_000_000},
        centres={0: {"C01", "C02"}, 1: set()},
        closed={"C01": date(2026, 10, 19), "C09": date(2026, 10, 18)},
    )


async def test_a_commit_hands_back_the_whole_outbox(redis: aioredis.Redis, namespace: str) -> None:
    store = KpiStore(redis, namespace, 120 * 86400)
    await redis.hset(f"{namespace}:kpi:outbox", "left-by-a-dead-process", b"{}")
    found = await store.commit(clock={0: 1}, closed={}, results={}, outbox={"new": b'{"a":1}'})
    assert found == {"left-by-a-dead-process": b"{}", "new": b'{"a":1}'}
