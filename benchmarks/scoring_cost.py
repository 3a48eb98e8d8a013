"""Scoring cost in process: the pure scorer without and with retraction tracking, and the subjects' size.

Usage: python -m benchmarks.scoring_cost [--events 20000] [--runs 3] [--json]
Scores simulated events (5 % follow-ups: reopenings, refunds, corrected surveys) with the default pack,
best of ``--runs``; then encodes and decodes every subject as the worker stores it in Redis. No broker,
no Redis: this is the CPU the scorer adds per event, and the bytes of fields it stores per event.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime, timedelta

import orjson

from agents.pipeline import SourceRecord, score_decoded
from agents.retractions import Subject
from agents.rules import load_rule_pack
from benchmarks import print_result
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from state.subjects import decode, encode
from streams.events import decode_event
from streams.simulator import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, choices=range(100, 1_000_001), metavar="N")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 21), metavar="N")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    directory, pack = load_directory(DEFAULT_DIRECTORY), load_rule_pack(DEFAULT_RULES)
    sim = Simulator(directory, 3, follow_ups=0.05)
    now = datetime.now(UTC)
    raw = [orjson.dumps(sim.event(now - timedelta(days=2) + timedelta(seconds=5 * i))) for i in range(args.events)]
    decoded = [(SourceRecord("t", 0, i, None, v, 0), decode_event(v, now=now)) for i, v in enumerate(raw)]

    def best(subjects: bool) -> float:
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            score_decoded(decoded, pack=pack, directory=directory, subjects={} if subjects else None)
            times.append(time.perf_counter() - started)
        return min(times) * 1e6 / len(decoded)

    stateless, tracked = best(False), best(True)
    subjects: dict[str, Subject] = {}
    score_decoded(decoded, pack=pack, directory=directory, subjects=subjects)
    started = time.perf_counter()
    encoded = {key: encode(subject) for key, subject in subjects.items()}
    encode_us = (time.perf_counter() - started) * 1e6 / len(subjects)
    started = time.perf_counter()
    for key, fields in encoded.items():
        decode(fields, key)  # type: ignore[arg-type]
    decode_us = (time.perf_counter() - started) * 1e6 / len(subjects)
    field_bytes = sum(len(str(k)) + len(v) for f in encoded.values() for k, v in f.items())  # type: ignore[arg-type]
    result = {
        "benchmark": "scoring_cost",
        "events": len(decoded),
        "score_us_per_event_stateless": round(stateless, 1),
        "score_us_per_event_with_subjects": round(tracked, 1),
        "subjects": len(subjects),
        "encode_us_per_subject": round(encode_us, 1),
        "decode_us_per_subject": round(decode_us, 1),
        "subject_field_bytes_per_event": round(field_bytes / len(decoded)),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
