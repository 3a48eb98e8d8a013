"""`pitstop bench` runs end to end, small: every headline key is reported. It asserts no times."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from pitstop.bench.harness import STAGES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("PITSTOP_TEST_BROKER") == "apache", reason="the bench starts its own embedded broker"
    ),
]

KEYS = ("engine_eps", "peer_naive_faust_eps", "peer_aiokafka_eps", "peer_quix_eps", "p99_event_to_kiosk_ms", "kiosks")


def test_bench_reports_the_engine_the_peers_and_the_kiosk_latency() -> None:
    args = ["--events", "400", "--rates", "100", "--step-s", "3", "--kiosks", "10", "--replay", "0", "--fanout"]
    args += ["--workers", "2"]  # two engine processes sharing the partitions, as on a 2-core machine
    done = subprocess.run(
        [sys.executable, "-m", "pitstop", "bench", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(done.stdout)
    assert all(report.get(k) is not None for k in KEYS), {k: report.get(k) for k in KEYS}
    assert report["kiosks"] == 10
    assert [r["pipeline"] for r in report["throughput"]] == [
        "engine",
        "engine_1_worker",
        "aiokafka",
        "quix",
        "naive_faust",
    ]
    assert all(r["events"] > 0 for r in report["throughput"])
    assert [r["workers"] for r in report["throughput"][:2]] == [2, 1] and report["engine_one_worker_eps"] > 0
    (step,) = report["latency"]["steps"]
    assert step["events"] == 300 and step["stages_ms"]["received"]["n"] > 0
    assert {"worker-1", "worker-2"} <= set(step["cpu_us_per_event"])  # both workers were running
    assert tuple(step["stages_ms"]) == STAGES and step["stages_ms"]["pushed"]["n"] > 0  # the gateway's send stage
