"""Where the worker's time goes, step by step: ``Scorer.score`` and ``Scorer.project`` on a real Redis.

Usage: python -m benchmarks.worker_steps [--events 20000] [--batch 2000] [--json]

The broker is replaced by a recorder (what the steps would produce is kept, and its cost is not
counted: ``pitstop bench`` measures the whole worker with the broker). Every sub-step the worker
awaits or calls is wrapped with a timer; the table gives µs per event of each, the batches' total, and
what is left (the worker's own glue). Sub-steps the worker awaits together (``asyncio.gather``: the
SLA observe, seen check and subjects load; the outbox clear, alerts produced and subjects save) overlap,
so each one's wall time includes the others' and the glue comes out negative. The events are the
bench's mix (demo simulator with tickets and follow-ups), the SLA policy and rule pack are the
defaults, Redis is a private ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

import agents.worker as worker_module
from agents.gcpolicy import BATCH_THRESHOLD, BetweenBatches, tune_gc
from agents.metrics import WorkerMetrics
from agents.pipeline import SourceRecord
from agents.rules import load_rule_pack
from agents.worker import Scorer
from config.directory import load_directory
from config.settings import Settings
from config.sla import load_sla_policy
from pitstop.services import start_redis
from state.connection import connect
from state.league import LedgerEntry, ledger_fields
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

SPENT: defaultdict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                SPENT[name] += time.perf_counter() - started

        return async_wrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - started

    return wrapper


class Recorder:
    """The producer: keeps each record (to project the ledger afterwards), answers at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []

    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        self.sent.append((topic, key, value, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class App:
    def __init__(self, producer: Recorder) -> None:
        self.producer = producer


async def measure(events: int, batch: int) -> dict[str, Any]:
    redis_server = start_redis(appendonly=False)
    client = connect(redis_server.url)
    try:
        settings = replace(Settings.from_env({}), redis_namespace="steps")
        recorder = Recorder()
        directory = load_directory(settings.directory_path)
        scorer = Scorer(
            App(recorder),  # type: ignore[arg-type]
            settings,
            pack=load_rule_pack(settings.rules_path),
            directory=directory,
            metrics=WorkerMetrics.create(CollectorRegistry()),
            redis=client,
            sla_policy=load_sla_policy(settings.sla_path),
        )

        async def nothing_committed(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
            return {}

        scorer.read_committed = nothing_committed
        tune_gc(BATCH_THRESHOLD)  # as pitstop worker does, which collects between score batches
        collect = BetweenBatches()
        for name in ("decode_batch", "plan_sla", "score_decoded", "subjects_to_load", "budget_claims"):
            setattr(worker_module, name, timed(name, getattr(worker_module, name)))
        for obj, names in (
            (scorer.seen, ("seen", "mark")),
            (scorer.subjects, ("load", "save")),
            (scorer.sla, ("observe", "produced")),
            (scorer.windows, ("advance",)),
            (scorer.kpi, ("clear_outbox",)),
            (scorer.league, ("apply_entries",)),
        ):
            for name in names:
                setattr(obj, name, timed(f"{type(obj).__name__}.{name}", getattr(obj, name)))
        scorer._produce = timed("produce (recorder)", scorer._produce)  # type: ignore[method-assign]

        topics = Topics()
        sim = Simulator(directory, 7, follow_ups=0.05, tickets=True)
        now = datetime.now(UTC)
        offsets: defaultdict[str, int] = defaultdict(int)  # each topic's partition 0, offsets without gaps
        records = []
        for e in sim.stream(now - timedelta(seconds=events // 500), events, timedelta(milliseconds=2)):
            topic = topic_for(topics, e)
            records.append(SourceRecord(topic, 0, offsets[topic], None, orjson.dumps(e), int(now.timestamp() * 1000)))
            offsets[topic] += 1
        started = time.perf_counter()
        for i in range(0, len(records), batch):
            await scorer.score(records[i : i + batch])
            collect()
        score_s = time.perf_counter() - started
        score_parts = dict(SPENT)
        SPENT.clear()
        ledger = [value for topic, _, value, _ in recorder.sent if topic == topics.ledger and value is not None]
        decode = timed("ledger decode", ledger_fields)
        started = time.perf_counter()
        for i in range(0, len(ledger), batch):
            entries = [LedgerEntry(0, i + n, decode(value), 0) for n, value in enumerate(ledger[i : i + batch])]
            await scorer.project(entries)
        project_s = time.perf_counter() - started
        project_parts = dict(SPENT)
    finally:
        await client.aclose()
        redis_server.stop()

    def per_event(parts: dict[str, float], total: float) -> dict[str, float]:
        out = {k: round(v * 1e6 / events, 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
        out["(the step's own code)"] = round((total - sum(parts.values())) * 1e6 / events, 1)
        out["total"] = round(total * 1e6 / events, 1)
        return out

    return {
        "benchmark": "worker_steps",
        "events": events,
        "batch": batch,
        "ledger_records": len(ledger),
        "score_us_per_event": per_event(score_parts, score_s),
        "project_us_per_event": per_event(project_parts, project_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, choices=range(1000, 1_000_001), metavar="N")
    parser.add_argument("--batch", type=int, default=2000, choices=range(1, 100_001), metavar="N")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.events, args.batch))
    for step in ("score_us_per_event", "project_us_per_event"):
        print(f"\n| {step.split('_')[0]} sub-step | µs/event |\n|---|---|")
        for name, us in result[step].items():
            print(f"| {name} | {us} |")
    print(f"\n{result['events']:,} events, {result['ledger_records']:,} ledger records, batches of {result['batch']}")
    if args.json:
        print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
