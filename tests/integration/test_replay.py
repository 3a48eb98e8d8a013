"""`pitstop replay` on the real broker and Redis: the live pack replayed gives the live ledger's records
and the same digest twice; a new pack fills shadow boards and leaves the live ones alone; activation is
refused while the worker runs, then swaps the boards at once (a kiosk gets one fresh snapshot), writes
the new ledger generation, and the worker started again scores new events onto it; a rebuild reads it.
A stack of its own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.oracle import Oracle
from streams.simulator import Simulator
from tests.conftest import seconds
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _replay(stack: Stack, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = stack.run_cli("replay", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout.strip().splitlines()[-1])
    return report


def _board(stack: Stack, namespace: str, board: str) -> dict[str, int]:
    rows = stack.redis.zrange(f"{namespace}:{board}", 0, -1, withscores=True)
    return {member.decode(): int(score) for member, score in rows}


async def test_replay_into_a_shadow_then_activate_a_new_generation(stack: Stack, tmp_path: Path) -> None:
    directory = load_directory(DEFAULT_DIRECTORY)
    sim = Simulator(directory, seed=21, follow_ups=0.2)
    start = datetime.now(UTC) - timedelta(hours=30)  # no KPI window closes: every day is within the lateness
    recorded = [dict(sim.event(start + timedelta(minutes=6 * i))) for i in range(250)]
    tag = uuid.uuid4().hex[:6]
    for event in recorded:
        event["event_id"] = f"{event['event_id']}-{tag}"
    await stack.produce(*recorded)
    expected = Oracle(DEFAULT_RULES, DEFAULT_DIRECTORY).fold(recorded)

    async def all_scored() -> bool:
        return len({r["award_id"] for r in await stack.ledger()}) >= len(expected)

    await stack.wait_for("every award on the ledger", all_scored, timeout=90)
    season = max(e.season for e in expected.values())
    nation = f"lg:{season}:nation:all:all"
    totals: dict[str, int] = {}
    for entry in expected.values():
        if entry.season == season and entry.points:
            totals[entry.staff_id] = totals.get(entry.staff_id, 0) + entry.points
    await stack.wait_for("the projection", lambda: _board(stack, stack.namespace, nation) == totals)
    live_before = _board(stack, stack.namespace, nation)

    # 1. The live pack, replayed: the live ledger's records exactly, and the same bytes twice.
    same = _replay(stack, "--name", "same")
    again = _replay(stack, "--name", "same")
    assert same["matches_live"] is True and same["changes"] == []
    assert same["entries"] == len(expected) and same["digest"] == again["digest"]

    # 2. A pack paying twice for five stars: shadow boards, live ones untouched.
    richer = tmp_path / "richer.yaml"
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace("version: 2\nrules:", "version: 3\nrules:", 1)
    richer.write_text(text.replace("when: {rating: 5}\n    points: 25", "when: {rating: 5}\n    points: 50"))
    shadow = _replay(stack, "--name", "richer", "--pack", str(richer))
    assert shadow["matches_live"] is False and shadow["changes"]
    assert all((c["shadow"] - c["live"]) % 25 == 0 and c["shadow"] > c["live"] for c in shadow["changes"])
    assert _board(stack, stack.namespace, nation) == live_before
    shadow_board = _board(stack, f"{stack.namespace}~richer", nation)
    changed = {c["staff_id"]: c["shadow"] for c in shadow["changes"] if c["season"] == season}
    assert shadow_board == live_before | changed

    dropped = stack.run_cli("replay", "--name", "same", "--drop")
    assert dropped.returncode == 0 and "deleted" in dropped.stdout
    assert not list(stack.redis.scan_iter(match=f"{stack.namespace}~same:*"))

    # 3. Activation: refused while the worker runs; then the boards swap at once.
    refused = stack.run_cli("replay", "--name", "richer", "--pack", str(richer), "--activate")
    assert refused.returncode == 2 and "the worker is running" in refused.stderr and "stop it" in refused.stderr
    kiosk = await connect(stack.ws_url())
    await kiosk.send(orjson.dumps({"type": "auth", "token": stack.token("kiosk", "C01")}).decode())
    assert orjson.loads(await kiosk.recv())["type"] == "welcome"
    assert orjson.loads(await kiosk.recv())["type"] == "snapshot"
    stack.stop("worker")

    async def activate() -> dict[str, Any] | None:  # until the group has noticed the worker left
        result = stack.run_cli("replay", "--name", "richer", "--pack", str(richer), "--activate", "--json")
        if result.returncode == 2 and "the worker is running" in result.stderr:
            await asyncio.sleep(1)
            return None
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = orjson.loads(result.stdout.strip().splitlines()[-1])
        return report

    activated = await stack.wait_for("the activation", activate, timeout=60)
    assert activated["activated"] == f"{stack.topics.prefix}points-ledger.richer"
    assert activated["digest"] == shadow["digest"]  # the same events and pack: the same bytes
    assert _board(stack, stack.namespace, nation) == shadow_board
    assert not list(stack.redis.scan_iter(match=f"{stack.namespace}~richer:*"))
    between = []  # heartbeats (every 15 s) may come first; no delta may
    while (snapshot := orjson.loads(await asyncio.wait_for(kiosk.recv(), seconds(20))))["type"] != "snapshot":
        between.append(snapshot["type"])
    assert set(between) <= {"heartbeat"}  # one fresh snapshot of the new board, not a mixture of deltas
    centre = _board(stack, stack.namespace, f"lg:{season}:centre:C01:all")
    assert {e["staff_id"]: e["points"] for e in snapshot["entries"]} == centre
    await kiosk.close()

    again = stack.run_cli("replay", "--name", "richer", "--pack", str(richer), "--activate")
    assert again.returncode == 2 and "generation 'richer' is already in use" in again.stderr

    generations = await stack.read_topic(stack.topics.generations)
    assert [orjson.loads(m.value)["generation"] for m in generations] == ["richer"]
    written = await stack.read_topic(activated["activated"])
    assert len(written) == activated["entries"]

    # 4. The worker, started again with the new pack, scores onto the new generation.
    stack.start("worker", env={"PITSTOP_RULES": str(richer)})
    stack.wait_ready()
    five = {
        "event_id": f"after-{tag}",
        "type": "survey.csat",
        "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "centre_id": "C01",
        "people": [{"staff_id": "S0001", "role": "technician"}],
        "customer_ref": "cust_a81f30c2",
        "survey_id": f"SV-after-{tag}",
        "subject_kind": "jobcard",
        "subject_id": "JC-after",
        "rating": 5,
    }
    await stack.produce(five)

    async def landed() -> list[dict[str, Any]]:
        found = [orjson.loads(m.value) for m in await stack.read_topic(activated["activated"])]
        return [r for r in found if r["event_id"] == five["event_id"]]

    (award,) = await stack.wait_for("the new award on the new generation", landed, timeout=60)
    assert (award["rule_id"], award["points"]) == ("survey.csat_five_star", 50)
    assert five["event_id"] not in {r["event_id"] for r in await stack.ledger()}  # the first generation rests
    board = f"lg:{award['season']}:nation:all:all"
    await stack.wait_for("the board", lambda: _board(stack, stack.namespace, board).get("S0001", 0) > 0)

    # 5. A rebuild reads the generation in use.
    before = _boards(stack)
    stack.redis.flushall()
    result = stack.run_cli("rebuild")
    assert result.returncode == 0, result.stderr
    assert _boards(stack) == before and len(before) >= 8


def _boards(stack: Stack) -> dict[str, dict[str, int]]:
    prefix = f"{stack.namespace}:"
    keys = [k.decode()[len(prefix) :] for k in stack.redis.scan_iter(match=stack.key("lg:*"), count=1000)]
    return {key: _board(stack, stack.namespace, key) for key in keys}
