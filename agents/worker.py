"""The worker: two busy steps that only move bytes around the pure steps, inside a Faust app.

``score``: source topics -> validate -> score -> KPI windows (agents.windows) -> points-ledger
(awaiting the broker's acks), dead-letters and late-events -> mark event ids seen -> commit.
``project``: points-ledger -> one Lua call per partition batch in Redis -> commit. Offsets are
committed only after a batch's effects are durable; a broker or Redis failure is retried with
backoff, never skipped.

Both steps read batches straight from aiokafka (:mod:`agents.consume`: Faust's per-record stream
machinery cost more than the steps themselves). The Faust app runs the rest: the producer, the
leader's timers (SLA tick, digests), the ``alerts`` agent on sla-alerts (``stream.noack().noack_take``,
acked by hand: Faust's ``take`` acks in a ``finally`` clause, also for an abandoned batch), the
notification dispatcher and the worker's lifecycle. An unexpected exception crashes the worker
(``CrashingSupervisor``) instead of carrying on past the failed batch; the batch is read again by the
next worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import random
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import faust
import mode
import orjson
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server
from redis.exceptions import RedisError

from agents.budgets import claims as budget_claims
from agents.budgets import settle as settle_budgets
from agents.consume import BatchReader
from agents.digest import Digests
from agents.gcpolicy import BATCH_THRESHOLD, BetweenBatches, tune_gc
from agents.metrics import WorkerMetrics, observe_all
from agents.notify import Dispatcher, plan_alerts
from agents.pipeline import DeadLetter, SourceRecord, decode_batch, score_decoded, subjects_to_load
from agents.produce import OutRecord, RecordSender
from agents.rules import RulePack, load_rule_pack
from agents.scoring import Award, ledger_value
from agents.sla import decode_alerts
from agents.sla import plan as plan_sla
from agents.windows import KpiWindows, WindowStep
from config.directory import Directory, load_directory
from config.loading import ConfigError
from config.notifications import Notifications, load_notifications
from config.programme import load_programme
from config.settings import Settings
from config.sla import SlaPolicy, load_sla_policy
from state import workers
from state.alerts import AlertBoard
from state.budgets import BudgetStore
from state.connection import connect
from state.dedup import SeenEvents
from state.kpi import KpiStore
from state.league import League, LedgerEntry, LedgerRecord, ledger_fields
from state.notify import NotifyQueue
from state.sla import SlaStore
from state.subjects import SubjectStore, from_ledger
from streams.events import scrub_key, scrub_payload
from streams.topics import Topics, committed_offsets, read_partition

log = logging.getLogger("pitstop.worker")
T = TypeVar("T")

DIGEST_CHECK_S = 30.0  # how often the leader looks for centres whose daily digest is due
AUDIT_INTERVAL_S = 5.0  # how often a worker checks that Redis still holds what it applied
PACK_CHECK_INTERVAL_S = 2.0  # how often a worker looks at the rule pack file for a new version
# The producer's record batches. With Faust's 16 KiB (~19 ledger records) a score batch of 2,000 events
# went out as ~200 batches, one per partition per produce request, and the broker spent more CPU than the
# worker's Lua scripts on them; 512 KiB is ~600 records, under Apache Kafka's 1 MiB message.max.bytes.
PRODUCER_BATCH_BYTES = 512 * 1024
SOURCE_TS_HEADER = "source.ts"  # ms timestamp of the source record, for event->league latency
CONSUMED_TS_HEADER = "consumed.ts"  # ms time the worker read the source record's batch (a stage time)


def create_app(settings: Settings) -> faust.App:
    """The Faust app. Raw bytes in and out: decoding is ours (orjson + the published schemas)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        processing_guarantee="at_least_once",  # effects are made idempotent instead (award ids)
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        web_enabled=False,
        autodiscover=False,
        # The embedded broker (Tansu 0.6) answers a JoinGroup only after session_timeout/2 has passed, so
        # Faust's default 60 s session meant a 30 s first join. 10 s (5 s join) with 1 s heartbeats is
        # valid on Apache Kafka too (its minimum is 6 s); see docs/embedded-broker.md.
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_commit_interval=1.0,
        stream_wait_empty=False,  # on shutdown do not wait for buffers we will not ack anyway
        datadir=str(settings.data_dir / settings.app_id),
        agent_supervisor=mode.CrashingSupervisor,
    )


class Scorer:
    """Everything the two agents need, created once per worker."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        *,
        pack: RulePack,
        directory: Directory,
        metrics: WorkerMetrics,
        redis: aioredis.Redis,
        sla_policy: SlaPolicy | None = None,
        notifications: Notifications | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.pack = pack
        self.pack_stamp = _stamp(settings.rules_path)  # the pack file as loaded, to notice a change
        metrics.pack_version.labels(pack.name).set(pack.version)
        self.directory = directory
        self.metrics = metrics
        self.topics = Topics.from_settings(settings)
        self.seen = SeenEvents(redis, settings.redis_namespace, settings.dedup_ttl_s)
        self.league = League(redis, settings.redis_namespace)
        self.subjects = SubjectStore(redis, settings.redis_namespace, settings.subject_ttl_s)
        self.budgets = BudgetStore(redis, settings.redis_namespace, settings.kpi_ttl_s)
        self.kpi = KpiStore(redis, settings.redis_namespace, settings.kpi_ttl_s)
        # SLA clocks and alerts (None in a replay: alerts are operational, not part of the ledger)
        self.sla_policy = sla_policy
        self.notifications = notifications
        self.sla = SlaStore(redis, settings.redis_namespace, settings.subject_ttl_s, settings.dedup_ttl_s)
        self.alert_board = AlertBoard(redis, settings.redis_namespace, settings.subject_ttl_s)
        self.notify_queue = NotifyQueue(redis, settings.redis_namespace, settings.subject_ttl_s)
        self.windows = KpiWindows(
            self.kpi,
            directory,
            lateness=timedelta(seconds=settings.allowed_lateness_s),
            repeat_within=timedelta(days=settings.repeat_complaint_days),
        )
        self.max_future_skew = timedelta(seconds=settings.max_future_skew_s)
        self.sender = RecordSender(app.producer)
        self.own_ledger = OwnLedger()  # what the project step reads back of the ledger records made here
        self.applied_upto: dict[int, int] = {}  # ledger partition -> highest offset this worker applied
        self.source_next: dict[tuple[str, int], int] = {}  # source partition -> next offset this worker expects
        # The broker reads behind both gap checks (replaceable in tests): the group's committed offsets,
        # and the records of one partition in [start, end).
        self.read_committed: Callable[[list[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]] = (
            self._committed_offsets
        )
        self.read_range: Callable[[str, int, int, int], Awaitable[list[Any]]] = partial(
            read_partition, settings.bootstrap_servers
        )

    async def _committed_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Committed offsets of the groups reading these partitions: the score step's for source topics,
        the Faust app's for sla-alerts."""
        bootstrap, found = self.settings.bootstrap_servers, {}
        sources = [tp for tp in partitions if tp[0] in self.topics.sources]
        others = [tp for tp in partitions if tp[0] not in self.topics.sources]
        if sources:
            found.update(await committed_offsets(bootstrap, score_group(self.settings), sources))
        if others:
            found.update(await committed_offsets(bootstrap, self.settings.app_id, others))
        return found

    # --- source events -> ledger ------------------------------------------------------------

    async def score(self, records: Sequence[SourceRecord]) -> None:
        """Score one batch and make its effects durable. Returns only when they are."""
        consumed = str(int(time.time() * 1000)).encode()  # when this batch was read: a stage time on the ledger
        records = await self._with_source_gaps(records)
        self.metrics.batch_size.labels("score").observe(len(records))
        decoded, dead = decode_batch(
            records,
            topics=self.topics,
            now=datetime.now(UTC),
            max_event_bytes=self.settings.max_event_bytes,
            max_future_skew=self.max_future_skew,
        )
        pack = self.pack  # one pack for the whole batch, even if a reload lands meanwhile
        # SLA clocks this batch starts or stops, and the alerts its events show (kept in an outbox); the
        # events already scored; what was seen before of their subjects. Independent: one wait for all three.
        ops = plan_sla(decoded, self.sla_policy, self.directory) if self.sla_policy else []
        event_ids = [event.event_id for _, event in decoded]
        wanted = subjects_to_load(decoded, pack)
        alerts, already, subjects = await asyncio.gather(
            self._retry("sla", lambda: self.sla.observe(ops, int(time.time() * 1000))) if ops else _none(),
            self._retry("dedup", lambda: self.seen.seen(event_ids)),
            self._retry("subjects", lambda: self.subjects.load(wanted)),
        )
        result = score_decoded(decoded, pack=pack, directory=self.directory, already_seen=already, subjects=subjects)
        result.dead[:0] = dead
        # Recognitions drawing on a giver's monthly budget: granted or refused whole, atomically.
        if found := budget_claims(result.scored, pack, self.directory):
            decisions = await self._retry("budgets", lambda: self.budgets.decide(found))
            settle_budgets(result.scored, found, decisions)
        # KPI records, windows closed by the stream time, corrections for late events: committed with an
        # outbox of the ledger records they make, produced with the batch's own and then cleared.
        step = await self._retry("kpi", lambda: self.windows.advance(result.scored, decoded, pack))
        outbox = step.outbox  # with what a process that died left in it

        await self._retry(
            "ledger", lambda: self._produce(list(result.awards), result.dead, pack, outbox, step, alerts, consumed)
        )
        # Subjects are saved after the ledger has their records (a retraction is never remembered without
        # its ledger record), and before the seen marks (an event scored again after a crash finds its
        # subject as it left it, or older).
        changed = {key: subjects[key] for key in result.changed_subjects}
        await asyncio.gather(
            self._retry("kpi", lambda: self.kpi.clear_outbox(outbox)),
            self._alerts_produced(alerts),
            self._retry("subjects", lambda: self.subjects.save(changed)),
        )
        await self._retry("dedup", lambda: self.seen.mark(s.event.event_id for s in result.scored))
        self._advance(records)

        # Counted per batch, then added once per label (a labelled increment costs ~1.3 µs).
        now_ms = time.time() * 1000
        scored: Counter[str] = Counter()
        by_kind: dict[str, Counter[str]] = {"award": Counter(), "retraction": Counter(), "refusal": Counter()}
        points = taken_back = 0
        for item in result.scored:
            scored[item.event.type] += 1
            for award in item.awards:
                kind = award.kind if award.kind in by_kind else "award"
                by_kind[kind][award.rule_id] += 1
                if kind == "retraction":
                    taken_back -= award.points
                elif kind == "award":
                    points += award.points
        observe_all(
            self.metrics.event_to_award, [max(0.0, (now_ms - i.record.timestamp_ms) / 1000) for i in result.scored]
        )
        for event_type, count in scored.items():
            self.metrics.events.labels(event_type, "scored").inc(count)
        for counter, counts in (
            (self.metrics.awards, by_kind["award"]),
            (self.metrics.retractions, by_kind["retraction"]),
            (self.metrics.refusals, by_kind["refusal"]),
        ):
            for rule_id, count in counts.items():
                counter.labels(rule_id).inc(count)
        if points:
            self.metrics.points.inc(points)
        if taken_back:
            self.metrics.points_taken_back.inc(taken_back)
        for kind, count in step.closed.items():
            self.metrics.windows_closed.labels(kind).inc(count)
        for award in step.awards:
            if award.kind == "correction":
                self.metrics.corrections.labels(award.rule_id).inc()
            else:
                self.metrics.awards.labels(award.rule_id).inc()
                self.metrics.points.inc(award.points)
        for _, event, _ in step.late:
            self.metrics.late_events.labels(event.type).inc()
        for partition, ms in step.clock.items():
            self.metrics.stream_time.labels(str(partition)).set(ms / 1000)
        for repeat in result.duplicates:
            self.metrics.events.labels(repeat.event.type, "duplicate").inc()
        for letter in result.dead:
            # a record that is not a valid event has no trustworthy type: count it as "invalid"
            self.metrics.events.labels(letter.event_type or "invalid", "dead_letter").inc()
            self.metrics.dead_letters.labels(letter.kind).inc()
            log.warning(
                "dead letter %s[%d]@%d: %s: %s",
                letter.record.topic,
                letter.record.partition,
                letter.record.offset,
                letter.kind,
                letter.message,
            )

    def _advance(self, records: Sequence[SourceRecord]) -> None:
        """The records' effects are durable: the next batch of their partitions should start after them."""
        for record in records:
            tp = (record.topic, record.partition)
            self.source_next[tp] = max(self.source_next.get(tp, 0), record.offset + 1)

    async def _with_source_gaps(self, records: Sequence[SourceRecord]) -> Sequence[SourceRecord]:
        """The batch, preceded by any records of its partitions that never reached this agent.

        Faust marks a record fetched while a rebalance suspends the flow as read even if it never reached
        the agent, and after the rebalance a partition without a committed offset is not sought back: the
        record would be skipped for good (G2 found one). So the first batch of a partition after an
        assignment is checked against the group's committed offset (0 when there is none), and each later
        batch against the one before; a gap is read straight from the broker and scored first. Reading a
        record twice is harmless: seen marks and award ids make its effects happen once."""
        firsts: dict[tuple[str, int], int] = {}
        for record in records:
            firsts.setdefault((record.topic, record.partition), record.offset)
        unknown = [tp for tp in firsts if tp not in self.source_next]
        if unknown:
            committed = await self._retry("offsets", partial(self.read_committed, unknown))
            for tp in unknown:
                self.source_next[tp] = committed.get(tp, 0)
        missing: list[SourceRecord] = []
        for (topic, partition), first in firsts.items():
            expected = self.source_next[(topic, partition)]
            if first <= expected:
                continue
            log.warning(
                "%s[%d] offsets %d..%d never reached the agent; reading them", topic, partition, expected, first - 1
            )
            self.metrics.source_gaps.inc()
            found = await self._retry("source-read", partial(self.read_range, topic, partition, expected, first))
            missing += [SourceRecord.from_consumer(m) for m in found]
        return [*missing, *records] if missing else records

    async def _produce(
        self,
        awards: Sequence[tuple[SourceRecord, Award]],
        dead: Sequence[DeadLetter],
        pack: RulePack,
        outbox: Mapping[str, bytes] | None = None,
        step: WindowStep | None = None,
        alerts: Sequence[Mapping[str, Any]] = (),
        consumed: bytes = b"",
    ) -> None:
        out: list[OutRecord] = []
        pack_header = ("rule.pack", f"{pack.name}:{pack.version}".encode())
        for alert in alerts:  # SLA alerts shown by this batch's events
            out.append((self.topics.sla_alerts, str(alert["centre_id"]).encode(), orjson.dumps(alert), []))
        for entry in (outbox or {}).values():  # window awards and corrections (see agents.windows)
            staff_id = str(orjson.loads(entry)["staff_id"]).encode()
            out.append((self.topics.ledger, staff_id, entry, [pack_header]))
        for record, _, day in step.late if step else ():
            headers = [
                ("original.topic", record.topic.encode()),
                ("original.partition", str(record.partition).encode()),
                ("original.offset", str(record.offset).encode()),
                ("late.day", day.isoformat().encode()),
            ]
            late = scrub_payload(record.value) if record.value is not None else None
            out.append((self.topics.late_events, record.key, late, headers))
        source: SourceRecord | None = None
        headers = []
        for record, award in awards:
            if record is not source:  # the awards of one event share its headers
                source = record
                headers = [
                    ("event.topic", record.topic.encode()),
                    ("event.partition", str(record.partition).encode()),
                    ("event.offset", str(record.offset).encode()),
                    (SOURCE_TS_HEADER, str(record.timestamp_ms).encode()),
                    (CONSUMED_TS_HEADER, consumed),
                    pack_header,
                ]
            fields = award.ledger_fields()
            made = ledger_value(fields)
            self.own_ledger.keep(made, fields)
            out.append((self.topics.ledger, award.staff_id.encode(), made, headers))
        for letter in dead:
            value = letter.record.value
            if value is not None and len(value) > self.settings.max_event_bytes:
                value = value[: self.settings.max_event_bytes]  # keep the head; the header says why
            if value is not None:
                value = scrub_payload(value)  # dead letters are kept for weeks: no phone numbers in them
            key = scrub_key(letter.record.key) if letter.record.key is not None else None
            out.append((self.topics.dead_letters, key, value, letter.headers()))
        await self.sender.send_all(out)  # every record acked by the broker (acks=all)

    def reload_pack(self) -> bool:
        """Load the rule pack file again if it changed since it was loaded. A pack that does not validate
        is refused (logged with file, line and reason) and the running pack keeps serving. Returns
        whether a new pack now serves; batches already being scored finish with the pack they began with."""
        stamp = _stamp(self.settings.rules_path)
        if stamp == self.pack_stamp:
            return False
        self.pack_stamp = stamp
        try:
            pack = load_rule_pack(self.settings.rules_path)
        except ConfigError as exc:
            self.metrics.pack_reloads.labels("refused").inc()
            log.error("rule pack refused, still serving %s v%d: %s", self.pack.name, self.pack.version, exc)
            return False
        self.metrics.pack_version.remove(self.pack.name)
        self.metrics.pack_version.labels(pack.name).set(pack.version)
        self.metrics.pack_reloads.labels("loaded").inc()
        log.info(
            "rule pack %s v%d now serving (was %s v%d)", pack.name, pack.version, self.pack.name, self.pack.version
        )
        self.pack = pack
        return True

    # --- SLA alerts -> alert list, notifications ---------------------------------------------

    async def sla_tick(self) -> None:
        """The leader's timer: fire the SLA alerts now due for items no event has shown, produce them."""
        fired = await self._retry("sla", lambda: self.sla.tick(int(time.time() * 1000)))
        if fired:
            await self._retry("sla", lambda: self._produce((), (), self.pack, alerts=fired))
            await self._alerts_produced(fired)

    async def _alerts_produced(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        if not alerts:
            return
        await self._retry("sla", lambda: self.sla.produced([str(a["alert_id"]) for a in alerts]))
        now_ms = time.time() * 1000
        for alert in alerts:
            self.metrics.sla_alerts.labels(alert["type"], alert.get("clock", ""), alert["source"]).inc()
            if alert["type"] != "sla.clear":
                delay = max(0.0, (now_ms - float(alert["deadline_ms"])) / 1000)
                self.metrics.sla_alert_delay.labels(alert["type"]).observe(delay)

    async def apply_alerts(self, records: Sequence[SourceRecord]) -> None:
        """One batch read from sla-alerts: onto the manager alert list, and its notifications queued, once.
        Records a rebalance kept from the agent are read first, as for source topics."""
        records = await self._with_source_gaps(records)
        alerts, bad = decode_alerts([r.value for r in records])
        if bad:
            log.error("%d unreadable sla-alerts records skipped", bad)
        if not alerts:
            self._advance(records)
            return
        items = (
            plan_alerts(alerts, self.notifications, self.directory) if self.notifications else [(a, []) for a in alerts]
        )
        new = await self._retry("alerts", lambda: self.alert_board.apply(items, int(time.time() * 1000)))
        self.metrics.sla_alerts_applied.labels("new").inc(len(new))
        self.metrics.sla_alerts_applied.labels("repeat").inc(len(alerts) - len(new))
        for alert, deliveries in items:
            if alert.alert_id in new:
                self.metrics.notifications_queued.labels(alert.type).inc(len(deliveries))
        self._advance(records)

    async def dead_letter_delivery(self, job: Mapping[str, Any], reason: str, tries: int) -> None:
        """A delivery that failed for good, onto notification-dead-letters (with why and how often)."""
        headers = [
            ("channel", str(job["channel"]).encode()),
            ("error", reason[:500].encode()),
            ("tries", str(tries).encode()),
        ]

        record = (self.topics.notification_dead_letters, str(job["recipient"]).encode(), orjson.dumps(job), headers)
        await self._retry("notify-dlq", lambda: self.sender.send_all([record]))

    def notification_outcome(self, channel: str, outcome: str) -> None:
        self.metrics.notifications.labels(channel, outcome).inc()

    # --- ledger -> league -------------------------------------------------------------------

    async def project(self, entries: Sequence[LedgerEntry]) -> None:
        """Apply one batch of ledger records to the league; returns when Redis has them."""
        self.metrics.batch_size.labels("project").observe(len(entries))
        result = await self._retry("league", lambda: self.league.apply_entries(entries))
        if result.gaps:
            # Redis is behind the ledger (it lost its newest writes, or was flushed): replay the missing
            # range first, then this batch. Award ids keep every replayed award at most once.
            for partition, start, end in result.gaps:
                await self._fill_gap(partition, start, end)
            result = await self._retry("league", lambda: self.league.apply_entries(entries))
        self.metrics.ledger_applied.inc(result.applied)
        self.metrics.ledger_skipped.inc(result.skipped)
        now_ms = time.time() * 1000
        applied_upto = self.applied_upto
        for partition, offset, _, _, _ in entries:
            if offset > applied_upto.get(partition, -1):
                applied_upto[partition] = offset
        delays = [max(0.0, (now_ms - e.source_ts) / 1000) for e in entries if e.source_ts is not None]
        observe_all(self.metrics.event_to_league, delays)
        for partition, offset in self.applied_upto.items():
            self.metrics.ledger_lag.labels(str(partition)).set(offset)

    async def audit(self) -> None:
        """Heal partitions with no new traffic: Redis recording less than this worker applied means it
        lost writes (a crash between AOF fsyncs, a flush); replay the difference from the ledger."""
        recorded = await self._retry("league", self.league.ledger_offsets)
        for partition, upto in list(self.applied_upto.items()):
            if recorded.get(partition, -1) < upto:
                await self._fill_gap(partition, recorded.get(partition, -1) + 1, upto + 1)

    def forget(self, ledger_partitions: Iterable[int], source_partitions: Iterable[tuple[str, int]] = ()) -> None:
        """Partitions moved to another worker are no longer ours to audit; when a source partition comes
        back, its committed offset is looked up again."""
        for partition in ledger_partitions:
            self.applied_upto.pop(partition, None)
        for tp in source_partitions:
            self.source_next.pop(tp, None)

    async def _fill_gap(self, partition: int, start: int, end: int) -> None:
        log.warning("league is missing ledger[%d] offsets %d..%d; replaying them", partition, start, end - 1)
        self.metrics.ledger_gaps.inc()
        missing = await self._retry("ledger-read", partial(self._ledger_range, partition, start, end))
        await self._retry("league", partial(self.league.apply, missing))
        entries = [r.award for r in missing]  # Redis lost the subjects and budgets with the boards
        await self._retry("subjects", partial(self.subjects.save, from_ledger(entries)))
        await self._retry("budgets", partial(self.budgets.restore, entries))

    async def _ledger_range(self, partition: int, start: int, end: int) -> list[LedgerRecord]:
        records = await self.read_range(self.topics.ledger, partition, start, end)
        return [LedgerRecord(partition, m.offset, Award.from_ledger(m.value)) for m in records]

    async def _retry(self, stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry broker/Redis failures with capped, jittered backoff until they succeed."""
        delay = 0.1
        while True:
            try:
                return await attempt()
            except (TimeoutError, KafkaError, RedisError, OSError) as exc:
                self.metrics.infra_retries.labels(stage).inc()
                log.warning("%s failed (%r); retrying in %.1fs", stage, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)


async def _none() -> list[Any]:
    return []


def _observe_lag(app: faust.App, metrics: WorkerMetrics, events: Sequence[Any]) -> None:
    """After a batch: how far each of its partitions still is from the end the last fetch saw."""
    last: dict[Any, int] = {}
    for event in events:
        last[event.message.tp] = max(last.get(event.message.tp, -1), event.message.offset)
    for tp, offset in last.items():
        try:
            highwater = app.consumer.highwater(tp)
        except (KeyError, AttributeError, AssertionError):  # not fetched yet
            continue
        if highwater is not None:
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, int(highwater) - offset - 1))


def _source_record(event: Any) -> SourceRecord:
    m = event.message
    return SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, int(m.timestamp * 1000))


def _reading(app: faust.App, reader: BatchReader) -> Callable[[Any], Awaitable[None]]:
    """A reader run as a Faust agent on an in-memory channel it never reads: agents start with the app,
    before its own consumer group has joined (app tasks start only after that join, which put the
    readers' joins after it: +5 s of cold start on the embedded broker). An unexpected error crashes
    the worker (``CrashingSupervisor``); the batch is read again by the next owner."""

    async def run(stream: Any) -> None:
        # The first batch produces; the producer starts within moments (mode offers no public event to await).
        while not app.producer.started:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        try:
            await reader.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s step failed; stopping the worker", reader.name)
            raise

    run.__name__ = f"read_{reader.name}"
    return run


class OwnLedger:
    """The ledger records this worker's score step made lately, by their bytes, with the JSON object each
    encodes: its project step reads most of them back a moment later and need not decode them (~4.4 µs
    a record). Only a record read back with exactly these bytes is taken from here. Past ``limit`` the
    oldest go first: records of partitions another worker projects are never read back here."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit  # 0: keep nothing (a replay has no project step)
        # ordered: the oldest goes in O(1) (next(iter(dict)) walks the holes its deletions leave)
        self._fields: OrderedDict[bytes, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fields)

    def keep(self, value: bytes, fields: dict[str, Any]) -> None:
        kept = self._fields
        if len(kept) >= self.limit and value not in kept:
            if not self.limit:
                return
            kept.popitem(last=False)
        kept[value] = fields

    def take(self, value: bytes | None) -> dict[str, Any] | None:
        return self._fields.pop(value, None) if value is not None else None


def _ledger_entry(m: Any, own: OwnLedger | None = None) -> LedgerEntry | None:
    """An aiokafka record of the points ledger, with its source event's timestamp (None if unreadable)."""
    fields = own.take(m.value) if own is not None else None
    if fields is None:
        try:
            fields = ledger_fields(m.value)
        except (ValueError, TypeError):
            log.error("unreadable ledger record %s[%d]@%d skipped", m.topic, m.partition, m.offset)
            return None
    source_ts = None
    for name, value in m.headers or ():
        if name == SOURCE_TS_HEADER:
            source_ts = int(value) if value.isdigit() else None
            break
    return LedgerEntry(m.partition, m.offset, fields, source_ts, m.value)


def score_group(settings: Settings) -> str:
    """The consumer group of the score step (source topics); the project step's ends in ``.project``."""
    return f"{settings.app_id}.score"


def _stamp(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of a file; None when it cannot be read (then the running pack stays)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def build_worker(settings: Settings, registry: CollectorRegistry | None = None) -> tuple[faust.App, Scorer]:
    """Create the app and register both agents; configuration errors surface here, before any I/O."""
    pack = load_rule_pack(settings.rules_path)
    directory = load_directory(settings.directory_path)
    sla_policy = load_sla_policy(settings.sla_path)
    notifications = load_notifications(settings.notifications_path)
    app = create_app(settings)
    metrics = WorkerMetrics.create(registry or CollectorRegistry())
    redis = connect(settings.redis_url)
    scorer = Scorer(
        app,
        settings,
        pack=pack,
        directory=directory,
        metrics=metrics,
        redis=redis,
        sla_policy=sla_policy,
        notifications=notifications,
    )
    topics = scorer.topics
    alerts_topic = app.topic(topics.sla_alerts, value_serializer="raw", key_serializer="raw")
    size, within = settings.batch_size, settings.batch_within_s

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        scorer.forget((), [(tp.topic, tp.partition) for tp in revoked if tp.topic == topics.sla_alerts])

    @app.timer(AUDIT_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust.App.timer is not typed
    async def audit() -> None:
        await scorer.audit()

    @app.timer(workers.HEARTBEAT_S)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:  # this worker is running (pitstop replay --activate waits for none to be)
        info = {"pack": f"{scorer.pack.name} v{scorer.pack.version}", "ledger": topics.ledger}
        with contextlib.suppress(RedisError, OSError):
            await workers.beat(redis, settings.redis_namespace, info)

    @app.timer(PACK_CHECK_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def reload_pack() -> None:
        scorer.reload_pack()

    # One worker (Faust's leader) fires the SLA alerts due for items that get no further events. Alert
    # ids make a second firing (a new leader after a rebalance, a restart) the same alert at every sink.
    @app.timer(settings.sla_tick_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def sla_tick() -> None:
        await scorer.sla_tick()

    digests = Digests(
        directory,
        notifications,
        load_programme(settings.programme_path).tiers,
        league=scorer.league,
        sla=scorer.sla,
        alerts=scorer.alert_board,
        queue=scorer.notify_queue,
    )

    @app.timer(DIGEST_CHECK_S, on_leader=True)  # type: ignore[untyped-decorator]
    async def daily_digests() -> None:
        queued = await scorer._retry("digest", lambda: digests.tick(datetime.now(UTC)))
        if queued:
            metrics.notifications_queued.labels("digest").inc(queued)
            log.info("queued %d digest deliveries", queued)

    if notifications.routes:
        dispatcher = Dispatcher(
            scorer.notify_queue,
            notifications,
            scorer.dead_letter_delivery,
            outcome=scorer.notification_outcome,
        )

        @app.task  # type: ignore[untyped-decorator]
        async def deliver() -> None:  # every worker sends; leases keep one delivery to one sender
            await dispatcher.run()

    @app.agent(alerts_topic, name="alerts")
    async def alerts(stream: Any) -> None:
        manual = stream.noack()  # noack_take alone restores auto-acks on exit; the clone never auto-acks
        async for events in manual.noack_take(size, within=within):
            await scorer.apply_alerts([_source_record(e) for e in events])
            for event in events:
                await manual.ack(event)
            _observe_lag(app, metrics, events)

    # The two busy steps read batches straight from aiokafka, each in a consumer group of its own
    # (agents.consume explains why they are not Faust agents); offsets are committed after the effects.
    readers: list[BatchReader] = []

    def assigned_changed() -> None:
        metrics.assigned_partitions.set(sum(len(r.assigned) for r in readers))

    async def score(messages: list[Any]) -> None:
        await scorer.score([SourceRecord.from_consumer(m) for m in messages])

    async def project(messages: list[Any]) -> None:
        own = scorer.own_ledger
        entries = [e for m in messages if (e := _ledger_entry(m, own)) is not None]
        if entries:
            await scorer.project(entries)

    reader = partial(
        BatchReader,
        bootstrap=settings.bootstrap_servers,
        metrics=metrics,
        max_records=size,
        within_s=within,
        session_timeout_s=settings.broker_session_timeout_s,
        heartbeat_interval_s=settings.broker_heartbeat_interval_s,
        on_assignment=assigned_changed,
    )
    readers.append(
        reader(
            "score",
            topics.sources,
            score,
            group=score_group(settings),
            on_revoked=lambda tps: scorer.forget((), tps),
            # the collector runs between score batches (the biggest), not during one (agents.gcpolicy)
            after_batch=BetweenBatches(),
        )
    )
    readers.append(
        reader(
            "project",
            (topics.ledger,),
            project,
            group=f"{settings.app_id}.project",
            on_revoked=lambda tps: scorer.forget([p for _, p in tps]),
        )
    )
    for reader in readers:
        app.agent(app.channel(), name=f"read-{reader.name}")(_reading(app, reader))

    return app, scorer


class BoundedWorker(faust.Worker):
    """A Faust worker whose shutdown cannot hang. After a broker restart we saw a worker wait on its
    agents for more than 30 s after SIGTERM; an orchestrator would then kill it anyway. Stopping hard is
    safe here (offsets are committed only after their effects are durable), so after
    ``shutdown_timeout_s`` the worker prints its threads' stacks and its tasks' await chains to stderr,
    for diagnosis, and exits."""

    def __init__(self, app: faust.App, *, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.shutdown_timeout_s, self._exit_hard)
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)

    def _exit_hard(self) -> None:
        log.error("shutdown did not finish within %.0fs; exiting now (no effect is lost)", self.shutdown_timeout_s)
        stderr = sys.__stderr__ or sys.stderr  # mode replaces sys.stderr with a logger that has no file descriptor
        try:
            faulthandler.dump_traceback(file=stderr, all_threads=True)
            for task in list(asyncio.all_tasks(self.loop)):  # where each coroutine waits (read-only, best effort)
                print(f"task {task.get_name()}{' (cancelling)' if task.cancelling() else ''}:", file=stderr)
                for line in _await_chain(task.get_coro()):
                    print(f"  {line}", file=stderr)
        except (OSError, ValueError, NotImplementedError, AttributeError, RuntimeError):
            pass  # no stderr to write to: exit all the same
        finally:
            os._exit(1)


def _await_chain(awaitable: Any, depth: int = 30) -> list[str]:
    """file:line of each coroutine a task is suspended in, outermost first (Task.print_stack shows one)."""
    lines: list[str] = []
    while awaitable is not None and depth > 0:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        depth -= 1
    return lines


async def _wait_for_activation(settings: Settings) -> None:
    """A worker starting while `pitstop replay --activate` swaps the namespace waits for it to finish."""
    redis = connect(settings.redis_url)
    try:
        while name := await workers.activation(redis, settings.redis_namespace):
            log.warning("ledger generation %s is being activated; waiting for it", name)
            await asyncio.sleep(1.0)
    finally:
        await redis.aclose()


def run_worker(settings: Settings) -> None:
    """``pitstop worker``: create topics, serve /metrics, run the agents until SIGINT/SIGTERM."""
    from streams.topics import ensure_topics, with_active_generation

    loop = asyncio.new_event_loop()  # uvloop measured no faster here (docs/benchmarks.md)
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_wait_for_activation(settings))
    settings = loop.run_until_complete(with_active_generation(settings))  # the ledger in use (pitstop replay)
    if settings.ledger_generation:
        log.info("ledger generation %s", settings.ledger_generation)
    registry = CollectorRegistry()
    app, _ = build_worker(settings, registry)
    loop.run_until_complete(ensure_topics(settings))
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.bind_host, registry=registry)
        log.info("worker metrics on http://%s:%d/metrics", settings.bind_host, settings.worker_metrics_port)
    worker = BoundedWorker(app, shutdown_timeout_s=settings.shutdown_timeout_s, loglevel="INFO", quiet=True, loop=loop)
    tune_gc(BATCH_THRESHOLD)
    worker.execute_from_commandline()
