"""``pitstop bench --micro``: the per-event CPU of the pure steps, in process, without broker or Redis.

Each row is the best of ``runs`` passes over the same seeded events (the bench's mix), in µs per event
(or per award for the ledger rows):

- ``decode``: contract validation of the raw bytes (:func:`agents.pipeline.decode_batch`);
- ``score``: the default rule pack on decoded events, retractions tracked (:func:`score_decoded`);
- ``ledger_encode`` / ``ledger_decode``: an award to its ledger bytes and back;
- ``league_payload``: what the projection sends Redis per award (boards, notification JSON).

CI runs it small (``tests/unit/test_bench_micro.py``) so the code stays runnable; no test asserts a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agents.pipeline import SourceRecord, decode_batch, score_decoded
from agents.retractions import Subject
from agents.rules import load_rule_pack
from agents.scoring import Award
from config.directory import load_directory
from config.settings import Settings
from state.league import boards_for, notification
from streams.simulator import Simulator, topic_for
from streams.topics import Topics


def best_of(runs: int, count: int, work: Callable[[], Any]) -> float:
    """The fastest of ``runs`` calls of ``work``, in µs per item of ``count``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1e6 / max(count, 1)


def run_micro(events: int = 20_000, runs: int = 3, seed: int = 7) -> dict[str, Any]:
    settings = Settings.from_env({})
    directory, pack, topics = load_directory(settings.directory_path), load_rule_pack(settings.rules_path), Topics()
    sim = Simulator(directory, seed, follow_ups=0.05, tickets=True)
    now = datetime.now(UTC)
    records = []
    for i, event in enumerate(sim.stream(now - timedelta(hours=1), events, timedelta(milliseconds=100))):
        records.append(
            SourceRecord(topic_for(topics, event), 0, i, None, orjson.dumps(event), int(now.timestamp() * 1000))
        )
    decoded, dead = decode_batch(records, topics=topics, now=now)
    result = score_decoded(decoded, pack=pack, directory=directory, subjects={})
    awards: list[Award] = [a for _, a in result.awards]
    ledger = [a.to_ledger() for a in awards]

    def score() -> None:
        subjects: dict[str, Subject] = {}
        score_decoded(decoded, pack=pack, directory=directory, subjects=subjects)

    def payload() -> None:
        for a in awards:
            boards_for(a)
            orjson.dumps(notification(a))

    rows = {
        "decode": best_of(runs, len(records), lambda: decode_batch(records, topics=topics, now=now)),
        "score": best_of(runs, len(decoded), score),
        "ledger_encode": best_of(runs, len(awards), lambda: [a.to_ledger() for a in awards]),
        "ledger_decode": best_of(runs, len(ledger), lambda: [Award.from_ledger(v) for v in ledger]),
        "league_payload": best_of(runs, len(awards), payload),
    }
    return {
        "benchmark": "micro",
        "events": len(records),
        "dead_letters": len(dead),
        "awards": len(awards),
        "us": {k: round(v, 2) for k, v in rows.items()},
    }


def table(report: dict[str, Any]) -> str:
    lines = ["| step | µs |", "|---|---|"]
    lines += [f"| {step} | {us:.2f} |" for step, us in report["us"].items()]
    lines.append(f"\n{report['events']:,} events, {report['awards']:,} awards, {report['dead_letters']} dead letters")
    return "\n".join(lines)
