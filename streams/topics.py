"""Topic names and their configuration, and creating them on the broker.

Source topics are keyed by ``centre_id`` (one centre's events stay in order); the ledger is keyed by
``staff_id`` and kept forever; dead letters and late events are kept for 90 days.

The ledger has **generations**: ``pitstop replay --activate`` writes a re-scored ledger to a topic of
its own (``points-ledger.<generation>``) and records it on ``ledger-generations`` (one partition,
compacted, the newest record wins), which every process reads at start-up. Earlier generations stay,
kept forever, for audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from config.settings import Settings
from streams.contract import FAMILY_TOPICS

LEDGER = "points-ledger"
GENERATIONS = "ledger-generations"
GENERATION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
DEAD_LETTERS = "dead-letters"
LATE_EVENTS = "late-events"  # events that arrived after their day's KPI windows had closed
SLA_ALERTS = "sla-alerts"  # near-breach, breach and clear alerts (agents.sla), keyed by centre
NOTIFICATION_DEAD_LETTERS = "notification-dead-letters"  # deliveries that failed for good (agents.notify)
SOURCES = tuple(FAMILY_TOPICS.values())  # jobcards, tickets, surveys, sales, recognitions
DLQ_RETENTION_MS = 90 * 24 * 3600 * 1000
LEDGER_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}  # every generation is kept forever


@dataclass(frozen=True)
class Topics:
    prefix: str = ""
    generation: str = ""  # the ledger generation ("" for the first)

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}" if self.prefix else base

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.name(t) for t in SOURCES)

    @property
    def ledger(self) -> str:
        return self.name(f"{LEDGER}.{self.generation}" if self.generation else LEDGER)

    @property
    def generations(self) -> str:
        return self.name(GENERATIONS)

    @property
    def dead_letters(self) -> str:
        return self.name(DEAD_LETTERS)

    @property
    def late_events(self) -> str:
        return self.name(LATE_EVENTS)

    @property
    def sla_alerts(self) -> str:
        return self.name(SLA_ALERTS)

    @property
    def notification_dead_letters(self) -> str:
        return self.name(NOTIFICATION_DEAD_LETTERS)

    def family_of(self, topic: str) -> str | None:
        """The event family a source topic carries (``jobcards`` -> ``jobcard``)."""
        base = topic[len(self.prefix) :] if self.prefix and topic.startswith(self.prefix) else topic
        for family, name in FAMILY_TOPICS.items():
            if name == base:
                return family
        return None

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(f"{settings.topic_prefix}." if settings.topic_prefix else "", settings.ledger_generation)


async def ensure_topics(settings: Settings, *, timeout_s: float = 60.0) -> None:
    """Create the source, ledger, dead-letter, late-event, SLA-alert and notification dead-letter topics if
    they do not exist (idempotent)."""
    topics = Topics.from_settings(settings)
    n = settings.topic_partitions
    wanted = [NewTopic(name, n, 1) for name in topics.sources]
    wanted.append(NewTopic(topics.ledger, n, 1, topic_configs=LEDGER_CONFIG))
    wanted.append(NewTopic(topics.generations, 1, 1, topic_configs={"cleanup.policy": "compact"}))
    wanted.append(NewTopic(topics.dead_letters, n, 1, topic_configs={"retention.ms": str(DLQ_RETENTION_MS)}))
    wanted.append(NewTopic(topics.late_events, n, 1, topic_configs={"retention.ms": str(DLQ_RETENTION_MS)}))
    wanted.append(NewTopic(topics.sla_alerts, n, 1, topic_configs={"retention.ms": str(DLQ_RETENTION_MS)}))
    retention = {"retention.ms": str(DLQ_RETENTION_MS)}
    wanted.append(NewTopic(topics.notification_dead_letters, n, 1, topic_configs=retention))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t.name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                    await admin.create_topics(missing)
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def active_generation(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """The newest record of ``ledger-generations`` (``{"generation": "", ...}`` when there is none)."""
    try:
        records = [m async for batch in read_topic(bootstrap, topics.generations) for m in batch]
    except LookupError:
        records = []
    values = [orjson.loads(m.value) for m in records if m.value is not None]
    return values[-1] if values else {"generation": ""}


async def with_active_generation(settings: Settings) -> Settings:
    """``settings`` naming the ledger generation the broker says is in use."""
    found = await active_generation(settings.bootstrap_servers, Topics.from_settings(settings))
    return replace(settings, ledger_generation=str(found["generation"]))


async def active_topics(settings: Settings) -> Topics:
    """The topics, with the ledger of the generation in use."""
    return Topics.from_settings(await with_active_generation(settings))


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``; LookupError if the broker does not have it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [d for d in described if d.get("topic") == topic and not d.get("error_code")]
    if not found or not found[0].get("partitions"):
        raise LookupError(f"topic {topic!r} not found on the broker")
    return sorted(int(p["partition"]) for p in found[0]["partitions"])


async def read_topic(bootstrap: str, topic: str, *, batch: int = 5000, quiet_ms: int = 300) -> AsyncIterator[list[Any]]:
    """Yield batches of every record on ``topic`` (all partitions, from offset 0) until its end.

    "The end" is each partition's end offset as of the start *and* one quiet poll after it: the
    embedded broker (Tansu 0.6) reports the end offset as the base offset of the last record batch
    plus one, which can be short of the real end, so the end offset alone would miss records.
    """
    partitions = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            got = await consumer.getmany(*tps, timeout_ms=quiet_ms, max_records=batch)
            records = [m for messages in got.values() for m in messages]
            if records:
                yield records
            else:
                positions = [await consumer.position(tp) for tp in tps]
                if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                    return
    finally:
        await consumer.stop()


async def read_partition(bootstrap: str, topic: str, partition: int, start: int, end: int) -> list[Any]:
    """The records of one partition with ``start <= offset < end``."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Any] = []
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            records += [m for m in got.get(tp, []) if m.offset < end]
        return records
    finally:
        await consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The group's committed offset of each partition; partitions without one are left out."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(t, p) for t, p in partitions])
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items() if meta.offset >= 0}
