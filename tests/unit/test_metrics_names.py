"""Metric names pass `promtool check metrics` (Debian's prometheus package), and every metric the
Grafana dashboard queries is one the worker or the gateway exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.metrics import WorkerMetrics
from dashboards.gateway import GatewayMetrics
from dashboards.grafana import build


def _exposed() -> str:
    """Both processes' metrics, each labelled one once so that every series has a sample."""
    registry = CollectorRegistry()
    for metrics in (WorkerMetrics.create(registry), GatewayMetrics.create(registry)):
        for metric in vars(metrics).values():
            names: Any = getattr(metric, "_labelnames", ())
            child = metric.labels(*["x"] * len(names)) if names else metric
            if hasattr(child, "observe"):
                child.observe(0.2)
            elif hasattr(child, "inc"):
                child.inc()
    return generate_latest(registry).decode()


def test_promtool_accepts_every_metric() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (./dev test does)")
    text = _exposed()
    assert text.count("# TYPE") >= 40
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""  # no lint findings either


def test_the_grafana_dashboard_is_current_and_queries_only_real_metrics() -> None:
    assert build.OUT.read_text() == build.render(), "run: python -m dashboards.grafana.build"
    samples = {line.split("{")[0].split(" ")[0] for line in _exposed().splitlines() if line and line[0] != "#"}
    queried = {
        name
        for _, _, queries in build.PANELS
        for expr, _ in queries
        for name in re.findall(r"\b(pitstop_[a-z_]+)\b", expr)
    }
    assert queried and queried <= samples, sorted(queried - samples)
    wanted = ("events_total", "consumer_lag", "event_to_league", "dead_letters", "ws_clients", "sla_alerts_total")
    assert all(any(w in q for q in queried) for w in wanted)  # throughput, lag, latency, DLQ, clients, SLA
