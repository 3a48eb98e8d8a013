"""The SRE dashboard (``dashboards/grafana/pitstop.json``), written from the panel list below.

``python -m dashboards.grafana.build`` writes the JSON; ``--check`` exits 1 if the file differs (CI
runs the check through a test, with another test that every metric a panel names exists). Provisioned
into Grafana by ``deploy/grafana/`` (docker compose --profile observability up).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "pitstop.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# (title, unit, [(query, legend)]) per row of panels, two panels a row
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Events per second, by outcome",
        "ops",
        [("sum by (outcome) (rate(pitstop_events_total[1m]))", "{{outcome}}")],
    ),
    (
        "Awards and retractions per second",
        "ops",
        [
            ("sum(rate(pitstop_awards_total[1m]))", "awards"),
            ("sum(rate(pitstop_retractions_total[1m]))", "retractions"),
            ("sum(rate(pitstop_corrections_total[1m]))", "corrections"),
        ],
    ),
    (
        "Consumer lag (records), by topic",
        "short",
        [("sum by (topic) (pitstop_consumer_lag_records)", "{{topic}}")],
    ),
    (
        "Event → award and event → league latency",
        "s",
        [
            ("histogram_quantile(0.5, sum by (le) (rate(pitstop_event_to_league_seconds_bucket[5m])))", "league p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(pitstop_event_to_league_seconds_bucket[5m])))", "league p99"),
            ("histogram_quantile(0.99, sum by (le) (rate(pitstop_event_to_award_seconds_bucket[5m])))", "award p99"),
        ],
    ),
    (
        "Dead letters per second, by kind",
        "ops",
        [
            ("sum by (kind) (rate(pitstop_dead_letters_total[5m]))", "{{kind}}"),
            ("sum(rate(pitstop_late_events_total[5m]))", "late events"),
        ],
    ),
    (
        "Broker and Redis retries per second, by stage",
        "ops",
        [("sum by (stage) (rate(pitstop_infra_retries_total[5m]))", "{{stage}}")],
    ),
    (
        "WebSocket clients, by kind",
        "short",
        [("sum by (kind) (pitstop_ws_clients)", "{{kind}}")],
    ),
    (
        "WebSocket closes per second, by code",
        "ops",
        [("sum by (code) (rate(pitstop_ws_closes_total[5m]))", "{{code}}")],
    ),
    (
        "SLA alerts per minute, by kind",
        "short",
        [("sum by (kind) (rate(pitstop_sla_alerts_total[5m])) * 60", "{{kind}}")],
    ),
    (
        "SLA alert delay after its moment (p99)",
        "s",
        [
            (
                "histogram_quantile(0.99, sum by (le, kind) (rate(pitstop_sla_alert_delay_seconds_bucket[15m])))",
                "{{kind}}",
            )
        ],
    ),
    (
        "Notifications per minute, by channel and outcome",
        "short",
        [("sum by (channel, outcome) (rate(pitstop_notifications_total[5m])) * 60", "{{channel}} {{outcome}}")],
    ),
    (
        "Ledger gaps and source gaps healed",
        "short",
        [
            ("sum(increase(pitstop_ledger_gaps_total[1h]))", "ledger gaps / h"),
            ("sum(increase(pitstop_source_gaps_total[1h]))", "source gaps / h"),
        ],
    ),
]


def dashboard() -> dict[str, Any]:
    panels = []
    for index, (title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for n, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "uid": "pitstop",
        "title": "Pitstop engine",
        "tags": ["pitstop"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        return 0 if OUT.exists() and OUT.read_text() == render() else 1
    OUT.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
