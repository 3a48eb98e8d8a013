"""What KPI windows cost the scorer: time per event and Redis bytes per event, on a private Redis.

Usage: python -m benchmarks.kpi_cost [--events 20000] [--days 45] [--batch 500] [--json]
Simulated events of the 20 demo centres, spread over ``--days`` days of event time, in batches as the
worker takes them: decode + score (the events' own rules), then the same plus the KPI step (records,
stream time, windows closed and evaluated by the default pack's window rules). Prints a table, and with
``--json`` one JSON line; also one person's month as ``pitstop kpi`` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from agents.kpi import Window
from agents.pipeline import SourceRecord, decode_batch, score_decoded
from agents.rules import load_rule_pack
from agents.windows import KpiWindows
from benchmarks import print_result
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.services import start_redis
from state.kpi import KpiStore
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

START = datetime(2026, 9, 1, 4, 0, tzinfo=UTC)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    directory, pack = load_directory(DEFAULT_DIRECTORY), load_rule_pack(DEFAULT_RULES)
    sim = Simulator(directory, 11, follow_ups=0.05)
    step = timedelta(days=args.days) / args.events
    events = [sim.event(START + step * i) for i in range(args.events)]
    records = [
        SourceRecord(topic_for(Topics(), e), int(str(e["centre_id"])[1:]) % 4, i, None, orjson.dumps(e), 0)
        for i, e in enumerate(events)
    ]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    far = START + timedelta(days=args.days + 30)

    started = time.perf_counter()
    for batch in batches:
        decoded, _ = decode_batch(batch, topics=Topics(), now=far)
        score_decoded(decoded, pack=pack, directory=directory, subjects={})
    scoring_s = time.perf_counter() - started

    service = start_redis(appendonly=False)
    redis = aioredis.from_url(service.url)
    try:
        before = (await redis.info("memory"))["used_memory"]
        store = KpiStore(redis, "bench", 120 * 86400)
        windows = KpiWindows(store, directory, lateness=timedelta(hours=48), repeat_within=timedelta(days=30))
        subjects: dict[str, Any] = {}
        awards = late = 0
        closed: dict[str, int] = {}
        started = time.perf_counter()
        for batch in batches:
            decoded, _ = decode_batch(batch, topics=Topics(), now=far)
            result = score_decoded(decoded, pack=pack, directory=directory, subjects=subjects)
            done = await windows.advance(result.scored, decoded, pack)
            await store.clear_outbox(a.award_id for a in done.awards)
            awards += len(done.awards)
            late += len(done.late)
            for kind, count in done.closed.items():
                closed[kind] = closed.get(kind, 0) + count
        with_kpi_s = time.perf_counter() - started
        used = (await redis.info("memory"))["used_memory"] - before
        month = Window.of("month", date(2026, 9, 1))
        example = await store.window_kpis("p", "S0001", month)
    finally:
        await redis.aclose()
        service.stop()
    n = len(records)
    return {
        "benchmark": "kpi_cost",
        "events": n,
        "days": args.days,
        "batch": args.batch,
        "score_us_per_event": round(scoring_s * 1e6 / n, 1),
        "score_and_kpi_us_per_event": round(with_kpi_s * 1e6 / n, 1),
        "kpi_us_per_event": round((with_kpi_s - scoring_s) * 1e6 / n, 1),
        "redis_kpi_bytes_per_event": round(used / n),
        "windows_closed": closed,
        "window_awards": awards,
        "late_events": late,
        "example": {"person": "S0001", "window": month.id, "kpis": example},
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, choices=range(100, 1_000_001), metavar="N")
    parser.add_argument("--days", type=int, default=45, choices=range(1, 366), metavar="N")
    parser.add_argument("--batch", type=int, default=500, choices=range(1, 10_001), metavar="N")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print_result(result, as_json=False, skip=("example",))
    print(f"\n{result['example']['person']} {result['example']['window']}:")
    for name, value in result["example"]["kpis"].items():
        print(f"  {name:<24} {'-' if value is None else value}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
