"""The pipelines Pitstop is measured against, each run as its own process on the same events.

Every peer does the same work per event: the contract check (:func:`streams.events.decode_event`),
the same rule pack (:func:`agents.scoring.score_event`) and the same Redis layout (each award's points
added to the eight boards it counts on, :func:`state.league.boards_for`). What they leave out is what
Pitstop adds for trust: the points ledger on Kafka, exactly-once effects (award ids, seen marks),
retractions, budgets, KPI windows, SLA clocks, offsets committed only after the effects are durable.

- ``naive_faust`` (A): a tutorial-style Faust agent, one event at a time, awaiting each ZINCRBY.
- ``aiokafka`` (B): a plain aiokafka consumer, ``getmany``, per-batch sums, one Redis pipeline per
  batch: the practical ceiling for Python.
- ``quix`` (C): the same pipeline written with quixstreams, a ``BatchingSink`` writing one pipeline per
  checkpoint.

``python -m pitstop.bench.peers NAME --bootstrap HOST:PORT --redis-url URL --events N ...`` consumes
until it has read N events, printing ``FIRST <unix time>`` when the first event arrives and
``DONE <json>`` at the end (first and last times, events, dead letters, CPU seconds of this process in
between); the harness (:mod:`pitstop.bench.harness`) reads those lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.rules import RulePack, load_rule_pack
from agents.scoring import score_event
from config.directory import Directory, load_directory
from config.settings import Settings
from state.league import boards_for
from streams.events import InvalidEvent, decode_event
from streams.topics import Topics

PEERS = ("naive_faust", "aiokafka", "quix")


def say(line: str) -> None:
    """A line for the harness, on file descriptor 1 itself (Faust's worker redirects ``sys.stdout``)."""
    os.write(1, (line + "\n").encode())


@dataclass
class Work:
    """What every peer shares: the rules, the directory, the topic names, and its counters."""

    pack: RulePack
    directory: Directory
    topics: Topics
    namespace: str
    target: int
    seen: int = 0
    dead: int = 0
    first: float = 0.0
    cpu_first: float = 0.0
    sums: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def from_settings(cls, settings: Settings, namespace: str, target: int) -> Work:
        return cls(
            load_rule_pack(settings.rules_path),
            load_directory(settings.directory_path),
            Topics.from_settings(settings),
            namespace,
            target,
        )

    def awards(self, topic: str, value: bytes, timestamp_ms: int) -> list[tuple[str, str, int]]:
        """(board key, staff id, points) for each board each award of one raw event counts on."""
        if self.seen == 0:
            self.first, self.cpu_first = time.time(), time.process_time()
            say(f"FIRST {self.first:.6f}")
        self.seen += 1
        try:
            event = decode_event(
                value,
                now=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
                topic_family=self.topics.family_of(topic),
            )
            awards = score_event(event, self.pack, self.directory)
        except InvalidEvent:
            self.dead += 1
            return []
        ns = self.namespace
        return [(f"{ns}:{board}", a.staff_id, a.points) for a in awards for board in boards_for(a)]

    def add(self, topic: str, value: bytes, timestamp_ms: int) -> None:
        for board, staff_id, points in self.awards(topic, value, timestamp_ms):
            self.sums[board, staff_id] += points

    def take_sums(self) -> dict[tuple[str, str], int]:
        sums, self.sums = self.sums, defaultdict(int)
        return sums

    def done(self) -> bool:
        return self.seen >= self.target

    def report(self) -> None:
        last = time.time()
        result = {
            "first": self.first,
            "last": last,
            "events": self.seen,
            "dead": self.dead,
            "cpu_s": time.process_time() - self.cpu_first,
            "eps": self.seen / max(last - self.first, 1e-9),
        }
        say("DONE " + orjson.dumps(result).decode())


async def run_aiokafka(work: Work, bootstrap: str, redis_url: str, group: str) -> None:
    """Peer B: ``getmany`` batches, per-batch sums, one pipelined round trip per batch."""
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaConsumer

    from state.connection import client_options

    # Pitstop's own client options (no deadline per reply, which redis-py 8 arms by default): the ceiling
    # should not pay a cost the engine does not.
    redis = aioredis.from_url(redis_url, **client_options())
    consumer = AIOKafkaConsumer(
        *work.topics.sources,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        while not work.done():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for messages in batches.values():
                for m in messages:
                    work.add(m.topic, m.value, m.timestamp)
            if sums := work.take_sums():
                async with redis.pipeline(transaction=False) as pipe:
                    for (board, staff_id), points in sums.items():
                        pipe.zincrby(board, points, staff_id)
                    await pipe.execute()
        work.report()
    finally:
        await consumer.stop()
        await redis.aclose()


def run_quix(work: Work, bootstrap: str, redis_url: str, group: str) -> None:
    """Peer C: quixstreams, stateless, with a batching Redis sink (one pipeline per checkpoint)."""
    import redis as syncredis
    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

    client = syncredis.Redis.from_url(redis_url)

    class RedisBoards(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            sums: defaultdict[tuple[str, str], int] = defaultdict(int)
            for item in batch:
                for board, staff_id, points in item.value:
                    sums[board, staff_id] += points
            try:
                pipe = client.pipeline(transaction=False)
                for (board, staff_id), points in sums.items():
                    pipe.zincrby(board, points, staff_id)
                pipe.execute()
            except syncredis.RedisError as exc:
                raise SinkBackpressureError(retry_after=1.0) from exc
            if work.done():
                app.stop()

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=0.5,
        auto_create_topics=False,
        loglevel="WARNING",
        state_dir=tempfile.mkdtemp(prefix="pitstop-quix-"),  # stateless, but its default is ./state (a package here)
    )
    sink = RedisBoards()
    for name in work.topics.sources:
        topic = app.topic(name, value_deserializer="bytes", key_deserializer="bytes")
        sdf = app.dataframe(topic)

        def score(value: bytes, key: Any, timestamp: int, headers: Any, name: str = name) -> list[Any]:
            return work.awards(name, value, timestamp)

        sdf = sdf.apply(score, metadata=True)
        sdf.sink(sink)
    app.run()
    work.report()


def run_naive_faust(work: Work, bootstrap: str, redis_url: str, group: str) -> None:
    """Peer A: what a Faust tutorial leads to, one event at a time, each Redis call awaited."""
    import faust
    import redis.asyncio as aioredis

    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,  # as Pitstop's worker: the embedded broker joins in session/2
        broker_heartbeat_interval=1,
    )
    redis = aioredis.from_url(redis_url)
    source = app.topic(*work.topics.sources, value_serializer="raw")

    @app.agent(source)
    async def score(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            for board, staff_id, points in work.awards(m.topic, m.value, int(m.timestamp * 1000)):
                await redis.zincrby(board, points, staff_id)
            if work.done():
                work.report()
                os._exit(0)  # a benchmark child: its numbers are printed, nothing else to keep

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


RUNNERS: dict[str, Callable[[Work, str, str, str], Any]] = {
    "aiokafka": lambda w, b, r, g: asyncio.run(run_aiokafka(w, b, r, g)),
    "quix": run_quix,
    "naive_faust": run_naive_faust,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitstop.bench.peers", description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True, help="Redis key prefix of this peer's boards")
    parser.add_argument("--group", required=True, help="consumer group (a new one reads from the start)")
    parser.add_argument("--events", type=int, required=True, help="stop after reading this many events")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    settings = Settings.from_env()  # topic prefix, rule pack and directory, as the engine sees them
    work = Work.from_settings(settings, args.namespace, args.events)
    RUNNERS[args.peer](work, args.bootstrap, args.redis_url, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
