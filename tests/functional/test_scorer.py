"""The worker's two steps (score, project) against a real Redis, with the broker replaced by a recorder."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from agents.metrics import WorkerMetrics
from agents.pipeline import SourceRecord
from agents.rules import load_rule_pack
from agents.scoring import Award
from agents.worker import Scorer
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES, Settings
from pitstop.services import Service
from state.league import LedgerEntry, LedgerRecord
from streams.examples import EXAMPLES

DIRECTORY_ZONE = load_directory(DEFAULT_DIRECTORY).centres["C01"].timezone


class RecordingProducer:
    """Stands in for the broker: records what was sent; can fail the first N sends."""

    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.fail_first = fail_first

    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_first > 0:
            self.fail_first -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value, headers))
            future.set_result(None)
        return future

    def on(self, topic: str) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
        return [s for s in self.sent if s[0] == topic]


class FakeApp:
    def __init__(self, producer: RecordingProducer) -> None:
        self.producer = producer


@pytest.fixture
async def redis(redis_server: Service) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _scorer(redis: aioredis.Redis, namespace: str, producer: RecordingProducer) -> tuple[Scorer, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = replace(Settings(), redis_namespace=namespace)
    scorer = Scorer(
        FakeApp(producer),  # type: ignore[arg-type]
        settings,
        pack=load_rule_pack(DEFAULT_RULES),
        directory=load_directory(DEFAULT_DIRECTORY),
        metrics=WorkerMetrics.create(registry),
        redis=redis,
    )
    scorer.read_committed = _nothing_committed
    return scorer, registry


async def _nothing_committed(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return {}


def _record(event: dict[str, Any] | bytes, offset: int, topic: str = "") -> SourceRecord:
    value = event if isinstance(event, bytes) else orjson.dumps(event)
    if not topic:
        topic = {"jobcard": "jobcards", "survey": "surveys", "recognition": "recognitions"}[
            str(event["type"]).split(".")[0]  # type: ignore[index]
        ]
    return SourceRecord(topic, 0, offset, b"C01", value, int(datetime.now(UTC).timestamp() * 1000))


def _recent(event_type: str, event_id: str) -> dict[str, Any]:
    """An example event moved to a minute ago (so it is never in the future)."""
    event = dict(EXAMPLES[event_type], event_id=event_id)
    shift = datetime.now(UTC) - timedelta(minutes=1) - datetime.fromisoformat(event["occurred_at"])
    for key in ("occurred_at", "opened_at", "promised_at"):
        if key in event:
            event[key] = (datetime.fromisoformat(event[key]) + shift).isoformat()
    return event


async def test_score_sends_awards_and_dead_letters_then_marks_seen(redis: aioredis.Redis, namespace: str) -> None:
    """Awards go to the ledger with their source headers, a bad record to dead letters; then ids are marked."""
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    good = _recent("jobcard.closed", "jc-1")
    await scorer.score([_record(good, 0), _record(b"\x00garbage", 1, "jobcards")])
    ledger = [Award.from_ledger(v) for _, _, v, _ in producer.on("points-ledger") if v is not None]
    assert sorted((a.rule_id, a.staff_id) for a in ledger) == [
        ("jobcard.first_time_fix", "S0001"),
        ("jobcard.flawless", "S0001"),
        ("jobcard.flawless", "S0009"),
        ("jobcard.on_time", "S0001"),
        ("jobcard.on_time", "S0009"),
    ]
    headers = dict(producer.on("points-ledger")[0][3])
    assert headers["event.topic"] == b"jobcards" and headers["event.offset"] == b"0"
    assert headers["rule.pack"] == b"pitstop-default:2"
    (dead,) = producer.on("dead-letters")
    assert dead[2] == b"\x00garbage" and dict(dead[3])["error.kind"] == b"not_json"
    assert await redis.exists(f"{namespace}:seen:jc-1") == 1
    assert registry.get_sample_value("pitstop_dead_letters_total", {"kind": "not_json"}) == 1
    assert registry.get_sample_value("pitstop_events_total", {"type": "invalid", "outcome": "dead_letter"}) == 1
    assert registry.get_sample_value("pitstop_events_total", {"type": "jobcard.closed", "outcome": "scored"}) == 1
    assert registry.get_sample_value("pitstop_points_total") == sum(a.points for a in ledger)


async def test_redelivered_event_earns_nothing_more(redis: aioredis.Redis, namespace: str) -> None:
    """An event id seen in an earlier batch, or twice in one batch, produces no new awards."""
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    event = _recent("survey.csat", "sv-1")
    await scorer.score([_record(event, 0), _record(event, 1)])
    await scorer.score([_record(event, 2)])
    assert len(producer.on("points-ledger")) == 2  # one CSAT award each for S0001 and S0009
    assert registry.get_sample_value("pitstop_events_total", {"type": "survey.csat", "outcome": "duplicate"}) == 2


async def test_broker_failure_is_retried_and_nothing_marked_before_it_succeeds(
    redis: aioredis.Redis, namespace: str
) -> None:
    """A failed ledger send is retried; the event is marked seen only once its awards are acked."""
    producer = RecordingProducer(fail_first=1)
    scorer, registry = _scorer(redis, namespace, producer)
    event = _recent("recognition.given", "rc-1")
    real_send = producer.send
    marked_during_send: list[int] = []

    async def spy(*args: Any) -> Any:
        marked_during_send.append(int(await redis.exists(f"{namespace}:seen:rc-1")))
        return await real_send(*args)

    producer.send = spy  # type: ignore[method-assign]
    await scorer.score([_record(event, 0)])
    assert marked_during_send == [0, 0]  # failed attempt, then the successful retry
    assert len(producer.on("points-ledger")) == 1
    assert await redis.exists(f"{namespace}:seen:rc-1") == 1
    assert registry.get_sample_value("pitstop_infra_retries_total", {"stage": "ledger"}) == 1


async def test_project_applies_each_award_once(redis: aioredis.Redis, namespace: str) -> None:
    """The same ledger records projected twice (a redelivery after a crash) change the boards once."""
    producer = RecordingProducer()
    scorer, _ = _scorer(redis, namespace, producer)
    await scorer.score([_record(_recent("jobcard.closed", "jc-2"), 0)])
    records = [
        LedgerEntry.of(LedgerRecord(0, offset, Award.from_ledger(value)))
        for offset, (_, _, value, _) in enumerate(producer.on("points-ledger"))
        if value is not None
    ]
    await scorer.project(records)
    await scorer.project(records)
    season = records[0].fields["season"]
    board = f"{namespace}:lg:{season}:centre:C01:all"
    assert await redis.zrevrange(board, 0, -1, withscores=True) == [(b"S0001", 60.0), (b"S0009", 45.0)]
    assert await redis.hget(f"{namespace}:ledger-offsets", "0") == b"4"


async def test_source_records_that_never_reached_the_agent_are_read_and_scored(
    redis: aioredis.Redis, namespace: str
) -> None:
    """A batch that starts past the group's committed offset (Faust dropped records in a rebalance): the
    missing offsets are read from the broker and scored first; a later batch that follows on reads nothing."""
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    dropped = [_record(_recent("survey.csat", f"csat-{n}"), n) for n in (3, 4)]
    reads: list[tuple[str, int, int, int]] = []

    async def committed(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {("surveys", 0): 3}

    async def read_range(topic: str, partition: int, start: int, end: int) -> list[Any]:
        reads.append((topic, partition, start, end))
        return [_Message(r) for r in dropped if start <= r.offset < end]

    scorer.read_committed, scorer.read_range = committed, read_range
    await scorer.score([_record(_recent("survey.csat", "csat-5"), 5)])
    await scorer.score([_record(_recent("survey.csat", "csat-6"), 6)])
    assert reads == [("surveys", 0, 3, 5)]
    scored = {orjson.loads(value)["event_id"] for _, _, value, _ in producer.on("points-ledger") if value}
    assert scored == {"csat-3", "csat-4", "csat-5", "csat-6"}
    assert registry.get_sample_value("pitstop_source_gaps_total") == 1


class _Message:
    """What the broker read returns for one record (the aiokafka ConsumerRecord fields used here)."""

    def __init__(self, record: SourceRecord) -> None:
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset
        self.key, self.value, self.timestamp = record.key, record.value, record.timestamp_ms


async def test_reopened_job_card_is_taken_back_on_the_ledger_and_the_board(
    redis: aioredis.Redis, namespace: str
) -> None:
    """Closed (awards), then reopened in a later batch: the subject kept in Redis lets the scorer write
    retractions of the flawless and first-time-fix awards; projected, the board keeps only on-time points.
    Scoring the reopening again (a redelivery) adds nothing."""
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    closed = _recent("jobcard.closed", "jc-r1")
    await scorer.score([_record(closed, 0)])
    reopened = _recent("jobcard.reopened", "jc-r1-back")
    reopened["jobcard_id"] = closed["jobcard_id"]
    reopened["closed_at"] = closed["occurred_at"]
    await scorer.score([_record(reopened, 1)])
    assert await redis.exists(f"{namespace}:subject:jobcard:{closed['jobcard_id']}") == 1
    await scorer.score([_record(reopened, 1)])
    ledger = [Award.from_ledger(v) for _, _, v, _ in producer.on("points-ledger") if v is not None]
    taken = sorted((a.rule_id, a.staff_id, a.points) for a in ledger if a.kind == "retraction")
    assert taken == [
        ("jobcard.first_time_fix", "S0001", -15),
        ("jobcard.flawless", "S0001", -30),
        ("jobcard.flawless", "S0009", -30),
    ]
    assert registry.get_sample_value("pitstop_points_taken_back_total") == 75
    await scorer.project([LedgerEntry.of(LedgerRecord(0, n, a)) for n, a in enumerate(ledger)])
    board = f"{namespace}:lg:{ledger[0].season}:centre:C01:all"
    assert sorted(await redis.zrevrange(board, 0, -1, withscores=True)) == [(b"S0001", 15.0), (b"S0009", 15.0)]


async def test_rule_pack_reloads_when_valid_and_the_running_pack_stays_when_not(
    redis: aioredis.Redis, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker picks up a changed pack file between batches; a broken one is refused with file, line
    and reason, and scoring goes on with the pack that was serving."""
    pack_file = tmp_path / "pack.yaml"
    pack_file.write_text(DEFAULT_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    producer = RecordingProducer()
    registry = CollectorRegistry()
    scorer = Scorer(
        FakeApp(producer),  # type: ignore[arg-type]
        replace(Settings(), redis_namespace=namespace, rules_path=pack_file),
        pack=load_rule_pack(pack_file),
        directory=load_directory(DEFAULT_DIRECTORY),
        metrics=WorkerMetrics.create(registry),
        redis=redis,
    )
    scorer.read_committed = _nothing_committed
    assert scorer.reload_pack() is False  # unchanged

    broken = DEFAULT_RULES.read_text(encoding="utf-8").replace("points: 25", "points: twenty-five")
    pack_file.write_text(broken, encoding="utf-8")
    os.utime(pack_file, ns=(1, 1))
    with caplog.at_level(logging.ERROR, logger="pitstop.worker"):
        assert scorer.reload_pack() is False
    assert f"{pack_file}:57: rule survey.csat_five_star: 'points': unknown fact 'twenty'" in caplog.text
    assert "still serving pitstop-default v2" in caplog.text
    await scorer.score([_record(_recent("survey.csat", "sv-reload-1"), 0)])
    assert {Award.from_ledger(v).points for _, _, v, _ in producer.on("points-ledger") if v} == {25}

    better = (
        DEFAULT_RULES.read_text(encoding="utf-8")
        .replace("points: 25", "points: 40")
        .replace("version: 2\nrules:", "version: 3\nrules:")
    )
    pack_file.write_text(better, encoding="utf-8")
    os.utime(pack_file, ns=(2, 2))
    assert scorer.reload_pack() is True
    second = _recent("survey.csat", "sv-reload-2") | {"survey_id": "SV-another"}  # not a correction of the first
    await scorer.score([_record(second, 1)])
    sent = producer.on("points-ledger")
    assert {
        Award.from_ledger(v).points for _, _, v, h in sent if v and dict(h)["rule.pack"] == b"pitstop-default:3"
    } == {40}
    assert registry.get_sample_value("pitstop_rule_pack_reloads_total", {"outcome": "refused"}) == 1
    assert registry.get_sample_value("pitstop_rule_pack_reloads_total", {"outcome": "loaded"}) == 1
    assert registry.get_sample_value("pitstop_rule_pack_version", {"pack": "pitstop-default"}) == 3


async def test_sla_alerts_go_out_with_the_batch_and_dropped_alert_records_are_read_first(
    redis: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    """The score step starts SLA clocks; the leader's tick fires the breach of an unanswered ticket onto
    sla-alerts; the alerts step, given a batch past the group's committed offset (records a rebalance kept
    from it), reads the missing ones first and keeps each alert once."""
    from config.sla import load_sla_policy
    from state.alerts import AlertBoard

    policy_file = tmp_path / "sla.yaml"
    policy_file.write_text(
        "policy: t\nversion: 1\ntickets:\n  - {priority: P1, first_response: 10m, resolution: 1h, calendar: always}\n"
    )
    producer = RecordingProducer()
    scorer, registry = _scorer(redis, namespace, producer)
    scorer.sla_policy = load_sla_policy(policy_file)
    opened = dict(EXAMPLES["ticket.opened"], event_id="tk-open-1", priority="P1")
    opened["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    await scorer.score([_record(opened, 0, topic="tickets")])
    assert producer.on("sla-alerts") == []  # opening starts the clocks; the event shows nothing yet
    await scorer.sla_tick()
    (alert_record,) = producer.on("sla-alerts")
    alert = orjson.loads(alert_record[2])  # type: ignore[arg-type]
    assert (alert["type"], alert["clock"], alert["source"]) == ("sla.breach", "first_response", "timer")
    assert (
        registry.get_sample_value(
            "pitstop_sla_alerts_total", {"kind": "sla.breach", "clock": "first_response", "source": "timer"}
        )
        == 1
    )
    await scorer.sla_tick()
    assert len(producer.on("sla-alerts")) == 1  # fired once

    as_read = [SourceRecord("sla-alerts", 0, n, b"C01", alert_record[2], 0) for n in range(3)]
    reads: list[tuple[str, int, int, int]] = []

    async def committed(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {}  # no committed offset: from 0

    async def read_range(topic: str, partition: int, start: int, end: int) -> list[Any]:
        reads.append((topic, partition, start, end))
        return [_Message(r) for r in as_read if start <= r.offset < end]

    scorer.read_committed, scorer.read_range = committed, read_range
    await scorer.apply_alerts(as_read[2:])  # the same alert thrice on the topic (a re-produce after a crash)
    assert reads == [("sla-alerts", 0, 0, 2)]
    active = await AlertBoard(redis, namespace, 60).active()
    assert [a["alert_id"] for a in active] == [alert["alert_id"]]
    assert registry.get_sample_value("pitstop_sla_alerts_applied_total", {"outcome": "new"}) == 1
    assert registry.get_sample_value("pitstop_sla_alerts_applied_total", {"outcome": "repeat"}) == 2


async def test_the_manager_kpi_dashboard_reads_what_the_scorer_recorded(redis: aioredis.Redis, namespace: str) -> None:
    """Two job cards (one fixed first time) and two CSAT answers at C01 today: the west manager's dashboard
    shows them on C01's row, in today's CSAT trend point and in the technician's quality."""
    from dashboards.manager_kpis import manager_kpis
    from state.kpi import KpiStore
    from state.league import League

    producer = RecordingProducer()
    scorer, _ = _scorer(redis, namespace, producer)
    closed = [_recent("jobcard.closed", f"jc-kpi-{n}") | {"jobcard_id": f"JC-kpi-{n}"} for n in range(2)]
    closed[1]["first_time_fix"] = False
    surveys = [
        _recent("survey.csat", f"sv-kpi-{n}") | {"survey_id": f"SV-kpi-{n}", "rating": rating}
        for n, rating in enumerate((5, 3))
    ]
    await scorer.score(
        [*(_record(e, n) for n, e in enumerate(closed)), *(_record(e, n) for n, e in enumerate(surveys))]
    )
    ledger = [v for _, _, v, _ in producer.on("points-ledger") if v]
    await scorer.project([LedgerEntry.of(LedgerRecord(0, n, Award.from_ledger(v))) for n, v in enumerate(ledger)])
    today = datetime.fromisoformat(str(closed[0]["occurred_at"])).astimezone(DIRECTORY_ZONE).date()
    directory = load_directory(DEFAULT_DIRECTORY)
    west = directory.managed_centres("west")
    dashboard = await manager_kpis(
        KpiStore(redis, namespace, 86400 * 120), League(redis, namespace), directory, west, today
    )
    (c01,) = [s for s in dashboard["sites"] if s["id"] == "C01"]
    assert c01["jobs"] == 2 and c01["csat_mean"] == 4.0
    assert 0 < c01["participation"] < 1  # the technician and the advisor have points; the others not yet
    assert dashboard["csat_trend"][-1] == {"day": today.isoformat(), "csat_mean": 4.0, "csat_count": 2}
    (tech,) = [t for t in dashboard["technicians"] if t["staff_id"] == "S0001"]
    assert (tech["jobs"], tech["first_time_fix_rate"]) == (2, 0.5)
