"""What the SLA step costs the scorer: time per event and Redis bytes per event, on a private Redis.

Usage: python -m benchmarks.sla_cost [--events 20000] [--batch 500] [--json]
The demo simulator's events (tickets through their life, job cards, surveys, sales), in batches as the
worker takes them, one minute of event time apart in all: the pure planning of clock ops
(agents.sla.plan), then planning plus the Lua step that starts and stops clocks and fires what the
events show (state.sla), then the leader's tick over everything due. Prints a table, and with
``--json`` one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from agents.pipeline import SourceRecord, decode_batch
from agents.sla import plan
from benchmarks import print_result
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_SLA
from config.sla import load_sla_policy
from pitstop.services import start_redis
from state.sla import SlaStore
from streams.simulator import Simulator, topic_for
from streams.topics import Topics


async def run(args: argparse.Namespace) -> dict[str, Any]:
    directory, policy = load_directory(DEFAULT_DIRECTORY), load_sla_policy(DEFAULT_SLA)
    sim = Simulator(directory, 11, tickets=True)
    start = datetime.now(UTC) - timedelta(days=1)
    step = timedelta(days=1) / args.events
    events = [sim.event(start + step * i) for i in range(args.events)]
    records = [SourceRecord(topic_for(Topics(), e), 0, i, None, orjson.dumps(e), 0) for i, e in enumerate(events)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    now = datetime.now(UTC)
    decoded_batches = [decode_batch(b, topics=Topics(), now=now)[0] for b in batches]

    started = time.perf_counter()
    ops = [plan(decoded, policy, directory) for decoded in decoded_batches]
    plan_s = time.perf_counter() - started

    service = start_redis(appendonly=False)
    redis = aioredis.from_url(service.url)
    try:
        before = (await redis.info("memory"))["used_memory"]
        store = SlaStore(redis, "bench", 90 * 86400)
        fired: dict[str, int] = {}
        now_ms = int(now.timestamp() * 1000)
        started = time.perf_counter()
        for decoded in decoded_batches:
            alerts = await store.observe(plan(decoded, policy, directory), now_ms)
            await store.produced([a["alert_id"] for a in alerts])
            for a in alerts:
                fired[f"{a['type']} ({a['source']})"] = fired.get(f"{a['type']} ({a['source']})", 0) + 1
        observe_s = time.perf_counter() - started
        started = time.perf_counter()
        while alerts := await store.tick(now_ms, limit=1000):
            await store.produced([a["alert_id"] for a in alerts])
            for a in alerts:
                fired[f"{a['type']} ({a['source']})"] = fired.get(f"{a['type']} ({a['source']})", 0) + 1
        tick_s = time.perf_counter() - started
        used = (await redis.info("memory"))["used_memory"] - before
        running = await redis.zcard("bench:sla:open")
    finally:
        await redis.aclose()
        service.stop()
    n = len(records)
    return {
        "benchmark": "sla_cost",
        "events": n,
        "batch": args.batch,
        "clock_ops": sum(len(o) for o in ops),
        "plan_us_per_event": round(plan_s * 1e6 / n, 1),
        "plan_and_observe_us_per_event": round(observe_s * 1e6 / n, 1),
        "tick_ms_total": round(tick_s * 1000, 1),
        "redis_sla_bytes_per_event": round(used / n),
        "clocks_running": running,
        "alerts": dict(sorted(fired.items())),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, choices=range(100, 1_000_001), metavar="N")
    parser.add_argument("--batch", type=int, default=500, choices=range(1, 10_001), metavar="N")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
