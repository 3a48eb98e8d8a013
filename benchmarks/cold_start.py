"""Cold start: `pitstop demo` command -> first award visible on the kiosk page (headless Chromium).

Usage: python -m benchmarks.cold_start [--runs 3] [--json]
Prints a table (and one JSON line with --json). Each run starts everything from nothing: the embedded
broker, redis-server, worker, gateway and simulator, on a warm install (packages already in .venv).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys

from benchmarks.kiosk_probe import chromium_page, observe_kiosk, running_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 21), metavar="N")
    parser.add_argument("--rate", type=float, default=20.0, help="simulated events per second")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    firsts: list[float] = []
    for run_no in range(1, args.runs + 1):
        with running_demo("--rate", str(args.rate), "--port", "0") as run, chromium_page() as page:
            seen = observe_kiosk(run, page, timeout=120)
        firsts.append(seen.first_award_s)
        print(f"run {run_no}: first award on the kiosk after {seen.first_award_s:.2f} s", file=sys.stderr)
    result = {
        "benchmark": "cold_start",
        "runs": args.runs,
        "rate_events_per_s": args.rate,
        "first_award_on_kiosk_s": [round(x, 2) for x in firsts],
        "median_s": round(statistics.median(firsts), 2),
        "max_s": round(max(firsts), 2),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }
    print("| run | command -> first award on kiosk (s) |")
    print("|---|---|")
    for i, value in enumerate(firsts, 1):
        print(f"| {i} | {value:.2f} |")
    print(f"| median | {result['median_s']:.2f} |")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
