"""One event's whole path on real infrastructure: source topic -> worker -> ledger -> Redis -> WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import seconds
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

IST = ZoneInfo("Asia/Kolkata")


def _now() -> datetime:
    return datetime.now(UTC).astimezone(IST).replace(microsecond=0)


def _season(at: datetime) -> str:
    return at.astimezone(IST).strftime("%Y-%m")


def _jobcard(event_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "jobcard.closed",
        "occurred_at": at.isoformat(),
        "centre_id": "C01",
        "people": [{"staff_id": "S0001", "role": "technician"}, {"staff_id": "S0009", "role": "service_advisor"}],
        "customer_ref": "cust_a81f30c2",
        "jobcard_id": f"JC-{event_id}",
        "opened_at": (at - timedelta(hours=3)).isoformat(),
        "promised_at": (at + timedelta(hours=1)).isoformat(),
        "first_time_fix": True,
        "flawless": True,
        "safety_compliant": True,
    }


def _csat(event_id: str, at: datetime, rating: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "survey.csat",
        "occurred_at": at.isoformat(),
        "centre_id": "C01",
        "people": [{"staff_id": "S0001", "role": "technician"}, {"staff_id": "S0009", "role": "service_advisor"}],
        "customer_ref": "cust_a81f30c2",
        "survey_id": f"SV-{event_id}",
        "subject_kind": "jobcard",
        "subject_id": "JC-1",
        "rating": rating,
    }


def _recognition(at: datetime, centre: str, staff: str, *, awarded_by: str, points: int) -> dict[str, Any]:
    return {
        "event_id": f"rec-{uuid.uuid4().hex[:8]}",
        "type": "recognition.given",
        "occurred_at": at.isoformat(),
        "centre_id": centre,
        "people": [{"staff_id": staff, "role": "technician"}],
        "recognition_id": f"RC-{uuid.uuid4().hex[:6]}",
        "awarded_by": awarded_by,
        "points": points,
        "reason": "Stayed late to finish an urgent job",
    }


async def _login(stack: Stack, kind: str, subject: str) -> ClientConnection:
    ws = await connect(stack.ws_url())
    await ws.send(orjson.dumps({"type": "auth", "token": stack.token(kind, subject)}).decode())
    welcome = await _recv(ws)
    assert (welcome["type"], welcome["kind"], welcome["subject"]) == ("welcome", kind, subject)
    return ws


async def _recv(ws: ClientConnection, timeout: float = 20.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), seconds(timeout)))
    return message


async def _recv_until(ws: ClientConnection, done: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Messages until ``done(message)`` is true for one of them (which ends the list)."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + seconds(timeout)
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"timed out; received {seen}"
        message = await _recv(ws, remaining)
        seen.append(message)
        if done(message):
            return seen


async def test_events_reach_ledger_league_kiosk_and_technician(stack: Stack) -> None:
    """Good events are awarded exactly, a bad one in the middle is dead-lettered, screens update live."""
    kiosk = await _login(stack, "kiosk", "C01")
    snapshot = await _recv(kiosk)
    assert snapshot["type"] == "snapshot" and snapshot["entries"] == []
    technician = await _login(stack, "technician", "S0001")
    assert (await _recv(technician)) == {"type": "recent", "awards": []}
    assert (await _recv(technician)) == {"type": "badges", "badges": []}

    at = _now() - timedelta(minutes=1)
    run = uuid.uuid4().hex[:6]
    await stack.produce(
        _jobcard(f"jc-{run}", at),
        _csat(f"bad-{run}", at, 7),  # impossible rating
        ("surveys", b"{not json"),
        _csat(f"csat-{run}", at, 5),
    )

    ledger = await stack.wait_for("7 awards on the ledger", lambda: _at_least(stack.ledger(), 7))
    assert sorted((a["rule_id"], a["staff_id"], a["points"]) for a in ledger) == [
        ("jobcard.first_time_fix", "S0001", 15),
        ("jobcard.flawless", "S0001", 30),  # 20 x quality 1.5
        ("jobcard.flawless", "S0009", 30),
        ("jobcard.on_time", "S0001", 15),  # 10 x speed 1.5 (180 of 240 minutes)
        ("jobcard.on_time", "S0009", 15),
        ("survey.csat_five_star", "S0001", 25),
        ("survey.csat_five_star", "S0009", 25),
    ]
    assert all(a["season"] == _season(at) and a["why"] and a["inputs"] for a in ledger)
    assert {a["event_id"] for a in ledger} == {f"jc-{run}", f"csat-{run}"}

    season, r = _season(at), stack.redis
    await stack.wait_for("the league", lambda: r.zscore(stack.key(f"lg:{season}:nation:all:all"), "S0009") == 70)
    for board in ("centre:C01", "region:west", "state:MH", "nation:all"):
        assert r.zrevrange(stack.key(f"lg:{season}:{board}:all"), 0, -1, withscores=True) == [
            (b"S0001", 85.0),
            (b"S0009", 70.0),
        ]
        assert r.zrange(stack.key(f"lg:{season}:{board}:technician"), 0, -1, withscores=True) == [(b"S0001", 85.0)]
        assert r.zrange(stack.key(f"lg:{season}:{board}:service_advisor"), 0, -1, withscores=True) == [(b"S0009", 70.0)]
    assert len(r.hkeys(stack.key(f"applied:{season}"))) == 7
    assert sum(int(v) >= 0 for v in r.hvals(stack.key("ledger-offsets"))) >= 1

    deltas = await _recv_until(
        kiosk, lambda m: m["type"] == "delta" and {"staff_id": "S0001", "points": 85} in _points(m), timeout=10
    )
    seqs = [(m["prev_seq"], m["seq"]) for m in deltas if m["type"] == "delta"]
    assert seqs[0][0] <= snapshot["seq"] < seqs[0][1] and all(a[1] == b[0] for a, b in itertools.pairwise(seqs))

    awards: list[dict[str, Any]] = []
    await _recv_until(technician, lambda m: m["type"] == "award" and awards.append(m) is None and len(awards) == 4)
    assert sorted(a["rule_id"] for a in awards) == [
        "jobcard.first_time_fix",
        "jobcard.flawless",
        "jobcard.on_time",
        "survey.csat_five_star",
    ]
    assert all(a["staff_id"] == "S0001" and a["why"] and a["points"] > 0 for a in awards)
    assert "Flawless job card" in next(a["why"] for a in awards if a["rule_id"] == "jobcard.flawless")
    await kiosk.close()
    await technician.close()

    dead = await stack.wait_for("2 dead letters", lambda: _at_least(stack.read_topic(stack.topics.dead_letters), 2))
    by_kind = {dict(m.headers)["error.kind"].decode(): m for m in dead}
    assert set(by_kind) == {"invalid_value", "not_json"}
    bad = dict(by_kind["invalid_value"].headers)
    assert bad["original.topic"].decode() == stack.topics.name("surveys")
    assert int(bad["original.partition"]) >= 0 and int(bad["original.offset"]) >= 0
    assert b"rating" in bad["error.message"]
    assert orjson.loads(by_kind["invalid_value"].value)["event_id"] == f"bad-{run}"
    assert by_kind["not_json"].value == b"{not json"


def _points(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"staff_id": e["staff_id"], "points": e["points"]} for e in message.get("entries", [])]


async def _at_least(records: Any, n: int) -> Any:
    found = await records
    return found if len(found) >= n else None


async def test_same_event_twice_gives_one_award_and_one_increment(stack: Stack) -> None:
    """A redelivered event (same batch and a later batch) earns nothing more."""
    at = _now() - timedelta(minutes=2)
    event = _recognition(at, "C02", "S0016", awarded_by="S0030", points=40)
    await stack.produce(event, event)
    board = stack.key(f"lg:{_season(at)}:centre:C02:all")
    await stack.wait_for("the award", lambda: stack.redis.zscore(board, "S0016") == 40)
    await stack.produce(event)
    await stack.wait_for(
        "the third copy to be read",
        lambda: _scraped(stack, 'pitstop_events_total{outcome="duplicate",type="recognition.given"}') >= 2,
    )
    ledger = [a for a in await stack.ledger() if a["event_id"] == event["event_id"]]
    assert len(ledger) == 1 and ledger[0]["points"] == 40
    assert stack.redis.zscore(board, "S0016") == 40


def _scraped(stack: Stack, series: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_metrics_port}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_rebuild_after_flushall_restores_every_board(stack: Stack) -> None:
    """FLUSHALL, then `pitstop rebuild` restores every board from the ledger, exactly."""
    at = _now() - timedelta(minutes=3)
    event = _recognition(at, "C03", "S0031", awarded_by="S0045", points=20)
    await stack.produce(event)
    r = stack.redis
    await stack.wait_for("the award", lambda: r.zscore(stack.key(f"lg:{_season(at)}:centre:C03:all"), "S0031"))
    boards = sorted(k.decode() for k in r.scan_iter(match=stack.key("lg:*"), count=1000))
    assert len(boards) >= 8  # 4 scopes x (all, technician) at least
    before = {k: r.zrange(k, 0, -1, withscores=True) for k in boards}
    r.flushall()
    assert r.dbsize() == 0
    result = stack.run_cli("rebuild")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["applied"] == report["records"] - report["skipped"] and report["unreadable"] == 0
    after_boards = sorted(k.decode() for k in r.scan_iter(match=stack.key("lg:*"), count=1000))
    assert after_boards == boards
    assert {k: r.zrange(k, 0, -1, withscores=True) for k in boards} == before


async def test_league_heals_itself_when_redis_lost_writes(stack: Stack) -> None:
    """After Redis loses data (FLUSHALL), the next award makes the worker replay the ledger gap first."""
    r = stack.redis
    boards = sorted(k.decode() for k in r.scan_iter(match=stack.key("lg:*"), count=1000))
    before = {k: dict(r.zrange(k, 0, -1, withscores=True)) for k in boards}
    r.flushall()
    at = _now() - timedelta(minutes=4)
    await stack.produce(_recognition(at, "C01", "S0002", awarded_by="S0015", points=30))
    board = stack.key(f"lg:{_season(at)}:centre:C01:all")
    expected_s0002 = before.get(board, {}).get(b"S0002", 0.0) + 30
    await stack.wait_for("the new award", lambda: r.zscore(board, "S0002") == expected_s0002)

    def healed() -> bool:  # every board as before, but for the new award (S0002's own score is checked above)
        return all(
            {k: v for k, v in r.zrange(key, 0, -1, withscores=True) if k != b"S0002"}
            == {k: v for k, v in scores.items() if k != b"S0002"}
            for key, scores in before.items()
        )

    await stack.wait_for("every board to be replayed from the ledger", healed)
    assert _scraped(stack, "pitstop_ledger_gaps_total") >= 1


async def test_a_spent_budget_refuses_the_next_recognition_even_after_redis_is_rebuilt(stack: Stack) -> None:
    """A manager who has given a month's whole budget (2,000 points) is refused the next recognition,
    told why on their own feed, and nothing reaches the board; after FLUSHALL and `pitstop rebuild` the
    budget is still spent, so a further one is refused too."""
    at = _now().replace(day=10, hour=12) - timedelta(days=75)  # a month no other test gives in
    month = _season(at)
    given = [_recognition(at + timedelta(minutes=n), "C03", "S0032", awarded_by="S0045", points=50) for n in range(40)]
    over = _recognition(at + timedelta(hours=2), "C03", "S0032", awarded_by="S0045", points=10)
    giver = await _login(stack, "technician", "S0045")  # a person's own feed, whatever their role
    assert (await _recv(giver))["type"] == "recent"
    await stack.produce(*given, over)
    refusal = (await _recv_until(giver, lambda m: m["type"] == "refusal"))[-1]
    assert refusal["points"] == 0 and refusal["staff_id"] == "S0045"
    assert refusal["why"] == (
        f"Recognition of S0032 refused: 10 points would pass the {month} budget (2000 of 2000 used, 0 left)"
    )
    await giver.close()
    r = stack.redis
    board = stack.key(f"lg:{month}:centre:C03:all")
    await stack.wait_for("the granted points", lambda: r.zscore(board, "S0032") == 2000)
    assert r.zscore(board, "S0045") is None

    r.flushall()
    result = stack.run_cli("rebuild")
    assert result.returncode == 0, result.stderr
    assert r.hget(stack.key(f"budget:recognition.spot|S0045|{month}"), "used") == b"2000"
    late = _recognition(at + timedelta(hours=3), "C03", "S0032", awarded_by="S0045", points=5)
    await stack.produce(late)

    async def decided() -> list[dict[str, Any]]:
        return [e for e in await stack.ledger() if e["event_id"] == late["event_id"]]

    (entry,) = await stack.wait_for("the last recognition's entry", decided)
    assert (entry["kind"], entry["staff_id"], entry["points"]) == ("refusal", "S0045", 0)
    assert r.zscore(board, "S0032") == 2000
    assert _scraped(stack, 'pitstop_spot_awards_refused_total{rule="recognition.spot"}') == 2


async def test_recorded_stream_with_retractions_matches_the_oracle(stack: Stack) -> None:
    """A recorded stream of 400 events with follow-ups (job cards reopened, sales refunded, surveys
    corrected), produced in shuffled order with repeats: the worker's ledger holds exactly the oracle's
    awards and retractions, each byte for byte what scoring the stream in order gives."""
    import random

    from agents.budgets import BudgetBook
    from agents.pipeline import SourceRecord, score_decoded
    from agents.rules import load_rule_pack
    from config.directory import load_directory
    from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
    from pitstop.oracle import Oracle
    from streams.events import decode_event
    from streams.simulator import Simulator

    directory = load_directory(DEFAULT_DIRECTORY)
    sim = Simulator(directory, seed=11, follow_ups=0.3)
    start = _now() - timedelta(days=3)
    recorded = [dict(sim.event(start + timedelta(minutes=10 * i))) for i in range(400)]
    tag = uuid.uuid4().hex[:8]
    for event in recorded:
        event["event_id"] = f"{event['event_id']}-{tag}"  # this module's stack has seen other streams
    arrival = recorded + random.Random(1).sample(recorded, 20)
    random.Random(2).shuffle(arrival)
    await stack.produce(*arrival)

    expected = Oracle(DEFAULT_RULES, DEFAULT_DIRECTORY).fold(recorded)
    assert sum(1 for e in expected.values() if e.points < 0) >= 20  # the stream really takes points back
    ids = {e["event_id"] for e in recorded}

    async def ours() -> dict[str, bytes] | None:
        mine = {
            r["award_id"]: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
            for r in await stack.ledger()
            if r["event_id"] in ids
        }
        return mine if len(mine) >= len(expected) else None

    ledger = await stack.wait_for("every award and retraction on the ledger", ours, timeout=90)
    assert {k: orjson.loads(v)["points"] for k, v in ledger.items()} == {k: e.points for k, e in expected.items()}
    decoded = [
        (SourceRecord("t", 0, n, None, orjson.dumps(e), 0), decode_event(orjson.dumps(e), now=_now()))
        for n, e in enumerate(recorded)
    ]
    in_order = score_decoded(
        decoded, pack=load_rule_pack(DEFAULT_RULES), directory=directory, subjects={}, budget_book=BudgetBook()
    )
    assert ledger == {a.award_id: a.to_ledger() for _, a in in_order.awards}


async def test_contests_tiers_and_past_boards_from_the_commands(stack: Stack, tmp_path: Path) -> None:
    """`pitstop contest`, `pitstop tiers` and `pitstop league` on the real ledger and Redis: the winners and
    tiers are what state.standings computes from the ledger entries, and a season's board (any season
    on the ledger, past ones included) is read back as the projection holds it."""
    from agents.scoring import Award
    from config.programme import load_programme
    from config.settings import DEFAULT_PROGRAMME
    from state.standings import contest_standings, tiers_after

    entries = [Award.from_ledger(orjson.dumps(r)) for r in await stack.ledger()]
    # The default programme's contests, moved to the days this module's events happened
    first_at = min(datetime.fromisoformat(e.occurred_at) for e in entries) - timedelta(days=1)
    text = DEFAULT_PROGRAMME.read_text(encoding="utf-8")
    text = text.replace("2026-11-01T00:00:00+05:30", first_at.isoformat())
    text = text.replace("2027-01-01T00:00:00+05:30", (_now() + timedelta(days=1)).isoformat())
    path = tmp_path / "programme.yaml"
    path.write_text(text, encoding="utf-8")
    programme = load_programme(path)
    env = {"PITSTOP_PROGRAMME": str(path)}
    result = stack.run_cli("contest", "--all", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) == {c.id for c in programme.contests}
    for contest in programme.contests:
        expected = {k: [s.to_json() for s in v] for k, v in contest_standings(contest, entries).items()}
        assert report[contest.id]["standings"] == expected
    assert any(report[c]["standings"] for c in report)  # somebody ranks somewhere

    seasons = sorted({e.season for e in entries})
    result = stack.run_cli("tiers", "--season", seasons[-1], "--json", env=env)
    assert result.returncode == 0, result.stderr
    people = orjson.loads(result.stdout.strip().splitlines()[-1])["people"]
    assert people == [m.to_json() for m in tiers_after(programme, entries, seasons[-1])]

    first = min(entries, key=lambda e: e.season)
    result = stack.run_cli("league", "--season", first.season, "--scope", "centre", "--id", first.centre_id, "--json")
    assert result.returncode == 0, result.stderr
    board = orjson.loads(result.stdout.strip().splitlines()[-1])
    key = stack.key(f"lg:{first.season}:centre:{first.centre_id}:all")
    held = sorted(
        ((m.decode(), int(s)) for m, s in stack.redis.zrange(key, 0, -1, withscores=True)), key=lambda r: (-r[1], r[0])
    )
    assert [(r["staff_id"], r["points"]) for r in board["rows"]] == held[:50] and held

    bad = stack.run_cli("contest", "no-such-contest", env=env)
    assert bad.returncode == 2 and "no contest 'no-such-contest'" in bad.stderr


async def test_live_metrics_pass_promtool(stack: Stack) -> None:
    """What the running worker and gateway expose, samples and all, passes `promtool check metrics`; the
    worker reports its consumer lag per topic and partition."""
    import shutil
    import subprocess
    import urllib.request

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (./dev test does)")
    await stack.produce(_jobcard(f"metrics-{uuid.uuid4().hex[:6]}", _now()))

    def scrape(port: int) -> str:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())

    def check(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)

    def worker_with_lag() -> str | None:
        text = scrape(stack.worker_metrics_port)
        return text if "pitstop_consumer_lag_records{" in text else None

    worker = await stack.wait_for("the worker's consumer lag", worker_with_lag, timeout=30)
    for text in (worker, scrape(stack.gateway_port)):
        result = await asyncio.to_thread(check, text)
        assert result.returncode == 0, result.stdout + result.stderr
