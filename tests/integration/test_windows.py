"""KPI windows on the real broker and Redis: a month closes by event time and its award reaches the
ledger and the board; an event for the closed month goes to late-events and becomes a correction;
``pitstop kpi`` reads the month back. A stack of its own: its partitions' stream time is this test's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from agents.kpi import Window
from agents.windows import window_event_id
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
IST = ZoneInfo("Asia/Kolkata")


def _csat(event_id: str, at: datetime, rating: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "survey.csat",
        "occurred_at": at.isoformat(),
        "centre_id": "C01",
        "people": [{"staff_id": "S0001", "role": "technician"}],
        "customer_ref": "cust_a81f30c2",
        "survey_id": f"SV-{event_id}",
        "subject_kind": "jobcard",
        "subject_id": "JC-1",
        "rating": rating,
    }


def _closed_month() -> Window:
    """A month that ended more than the allowed lateness (48 h) ago."""
    today = datetime.now(IST).date()
    end = today.replace(day=1) - timedelta(days=1)
    if (today - end).days <= 3:
        end = end.replace(day=1) - timedelta(days=1)
    return Window.of("month", end)


async def test_a_closed_month_awards_and_a_late_event_corrects_it(stack: Stack) -> None:
    month = _closed_month()
    at = [datetime(month.start.year, month.start.month, d, 10, 0, tzinfo=IST) for d in (3, 5, 10, 17)]
    await stack.produce(_csat("w1", at[0], 5), _csat("w2", at[2], 5), _csat("w3", at[3], 5))
    await stack.produce(_csat("now", datetime.now(UTC) - timedelta(minutes=1), 4))  # moves the stream time
    star_id = window_event_id("C01", month)

    async def window_entries() -> list[dict[str, Any]]:
        return [r for r in await stack.ledger() if r["event_id"] == star_id]

    (star,) = await stack.wait_for("the month's window award", window_entries, timeout=60)
    assert (star["rule_id"], star["staff_id"], star["points"], star["season"]) == (
        "kpi.csat_star",
        "S0001",
        100,
        f"{month.end:%Y-%m}",
    )
    assert star["inputs"]["kpi.csat_count_month"] == 3 and star["inputs"]["kpi.csat_mean_month"] == 5.0
    assert star["badge"] == {"id": "csat-star", "name": "CSAT star"}
    held = await stack.wait_for("the badge in the projection", lambda: _projected_badges(stack))
    assert [(b.badge, b.event_id) for b in held] == [("csat-star", star_id)]
    assert _badges_command(stack) == [("csat-star", 1, 1)]  # the same from the ledger, with its streak

    await stack.produce(_csat("late", at[1], 1))  # the 5th of a month closed long ago: late
    entries = await stack.wait_for("a correction", lambda: _with_correction(window_entries), timeout=60)
    (fix,) = [e for e in entries if e["kind"] == "correction"]
    assert (fix["points"], fix["retracts"], fix["inputs"]["kpi.csat_mean_month"]) == (-100, star["award_id"], 4.0)
    late = await stack.wait_for("the late event on late-events", lambda: stack.read_topic(stack.topics.late_events))
    assert [orjson.loads(m.value)["event_id"] for m in late] == ["late"]
    assert dict(late[0].headers)["late.day"] == at[1].date().isoformat().encode()

    async def board() -> int | None:
        score = stack.redis.zscore(stack.key(f"lg:{month.end:%Y-%m}:centre:C01:all"), "S0001")
        return int(score) if score is not None and int(score) == 3 * 25 else None  # three 5-star ratings only

    await stack.wait_for("the board after the correction", board)
    assert await stack.wait_for("the badge taken back", lambda: _no_badges(stack))
    assert _badges_command(stack) == []

    result = stack.run_cli("kpi", "--person", "S0001", "--window", "month", "--on", month.end.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (report["window"], report["closed"]) == (month.id, True)
    assert (report["kpis"]["csat_count"], report["kpis"]["csat_mean"]) == (4, 4.0)
    bad = stack.run_cli("kpi", "--person", "S9999")
    assert bad.returncode == 2 and "no staff 'S9999'" in bad.stderr


async def _with_correction(entries: Any) -> list[dict[str, Any]] | None:
    found = await entries()
    return found if any(e["kind"] == "correction" for e in found) else None


async def _projected_badges(stack: Stack) -> list[Any]:
    import redis.asyncio as aioredis

    from state.league import League

    client = aioredis.from_url(stack.redis_url)
    try:
        return await League(client, stack.namespace).badges("S0001")
    finally:
        await client.aclose()


async def _no_badges(stack: Stack) -> bool:
    return not await _projected_badges(stack)


def _badges_command(stack: Stack) -> list[tuple[str, int, int | None]]:
    result = stack.run_cli("badges", "--person", "S0001", "--json")
    assert result.returncode == 0, result.stderr
    rows = orjson.loads(result.stdout.strip().splitlines()[-1])["people"].get("S0001", [])
    return [(r["badge"], r["count"], r["streak"]) for r in rows]
