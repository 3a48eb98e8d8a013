"""``pitstop bench``: Pitstop's throughput and event->kiosk latency, beside the peers, in one run.

One run, on one machine, against its own embedded broker and redis-server:

1. **Events**: pre-generated and seeded (:class:`streams.simulator.Simulator`, the demo's mix with
   tickets and 5 % follow-ups; keyed by centre, strong performers score more often), produced once to
   the source topics of a bench topic prefix.
2. **Throughput**: each pipeline reads all of them, alone on the machine: the engine (``--workers``
   ``pitstop worker`` processes, everything on; with more than one, also a single worker, on the same
   events under topics of its own), then the peers of :mod:`pitstop.bench.peers`, one process each. Events per second
   are counted from the first event read to the last effect in Redis, and the CPU each process spent in
   between is divided by the events.
3. **Latency** (open loop): a fresh engine and a gateway, ``kiosks`` WebSocket kiosks connected (a
   separate process, spread over 127.0.0.x source addresses), then events produced at fixed rates, each
   step on a fresh clock. Stage times, all cumulative from the moment the event was produced: consumed
   and awarded (from the ledger's headers and timestamps), applied in Redis (board-change messages),
   pushed (gateway) and received on a kiosk. A step is sustained when the engine's backlog did not grow
   over its second half.

``--quick`` keeps the run under five minutes; ``--json`` prints one JSON object instead of the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from config.directory import load_directory
from config.settings import Settings
from pitstop.services import (
    Service,
    cpu_seconds,
    free_port,
    rss_mb,
    start_redis,
    start_tansu,
    worker_events_read,
    worker_metrics,
)
from streams.simulator import Simulator, topic_for
from streams.topics import Topics, ensure_topics

PREFIX = "bench."
QUICK_EVENTS = 50_000
FULL_EVENTS = 200_000
QUICK_RATES = (1000, 3000, 10_000, 20_000)
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))  # one per core, as it would be deployed; 4 partitions
NAIVE_EVENTS = 10_000  # the naive Faust peer reads at most this many (its rate is what is compared)


class BenchError(RuntimeError):
    """A pipeline did not finish or a service did not start; the message says which and why."""


# --- processes ------------------------------------------------------------------------------


@dataclass
class Child:
    """A benchmark child process whose stdout lines are read, timestamped, on a thread."""

    name: str
    process: subprocess.Popen[bytes]
    lines: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

    @classmethod
    def spawn(
        cls, name: str, args: list[str], env: dict[str, str], log: IO[bytes] | None = None, cwd: Path | None = None
    ) -> Child:
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=log or subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
        child = cls(name, process)
        threading.Thread(target=child._read, daemon=True, name=f"read-{name}").start()
        return child

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log = [*self.log[-40:], line]
            self.lines.put((time.time(), line))

    def expect(self, prefix: str, timeout: float) -> tuple[float, str]:
        """What follows ``prefix`` on the next line holding it (and when it was read); BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if prefix in line:  # Faust's worker may put terminal control codes before it
                return at, line.split(prefix, 1)[1].strip()
        tail = "\n".join(self.log[-15:])
        raise BenchError(f"{self.name}: no {prefix!r} line within {timeout:.0f}s (exit {self.process.poll()}):\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Workers:
    """The engine under test: ``count`` ``pitstop worker`` processes of one app, sharing its partitions
    (each step is one consumer group), each with a /metrics port of its own."""

    children: list[Child]
    ports: list[int]

    @classmethod
    def spawn(cls, st: Stack, run: str, count: int, source: Path | None = None) -> Workers:
        children, ports = [], []
        for i in range(count):
            port = free_port()
            env = st.env(app_id=f"bench-{run}", redis_namespace=f"bench-{run}", worker_metrics_port=str(port))
            if source is not None:  # another checkout's worker (a before/after comparison)
                env["PYTHONPATH"] = str(source)
            name = run if count == 1 else f"{run}-{i + 1}"
            with (st.logs / f"{name}.log").open("ab") as log:
                children.append(Child.spawn(name, [sys.executable, "-m", "pitstop", "worker"], env, log, cwd=source))
            ports.append(port)
        return cls(children, ports)

    def check(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise BenchError(f"{child.name}: the worker exited with code {child.process.returncode}")

    def texts(self) -> list[str]:
        return [worker_metrics(port) or "" for port in self.ports]

    def events_read(self) -> int:
        """Source records read by all the workers; -1 while one of them does not answer."""
        counts = [worker_events_read(port) for port in self.ports]
        return -1 if min(counts) < 0 else sum(counts)

    def wait_joined(self, partitions: int, timeout: float = 90) -> None:
        """Until the workers hold ``partitions`` partitions between them, each at least one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            held = [metric_sums(text).get("pitstop_worker_assigned_partitions", 0) for text in self.texts()]
            if sum(held) >= partitions and min(held) > 0:
                return
            time.sleep(0.2)
        raise BenchError(f"the workers did not take the {partitions} partitions within {timeout:.0f}s")

    def pids(self) -> dict[str, int]:
        if len(self.children) == 1:
            return {"worker": self.children[0].process.pid}
        return {f"worker-{i}": child.process.pid for i, child in enumerate(self.children, 1)}

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(child.process.pid) for child in self.children)

    def stop(self) -> None:
        for child in self.children:
            child.stop()


# --- the run's infrastructure -----------------------------------------------------------------


@dataclass
class Stack:
    broker: Service
    redis: Service
    settings: Settings  # the bench's topic prefix, broker and Redis
    logs: Path

    @property
    def topics(self) -> Topics:
        return Topics.from_settings(self.settings)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PITSTOP_BROKER": self.settings.broker,
            "PITSTOP_REDIS_URL": self.settings.redis_url,
            "PITSTOP_TOPIC_PREFIX": self.settings.topic_prefix,
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"PITSTOP_{k.upper()}": v for k, v in extra.items()})
        return env

    def infra_cpu(self) -> dict[str, float]:
        return {"broker": cpu_seconds(self.broker.process.pid), "redis": cpu_seconds(self.redis.process.pid)}


@contextlib.contextmanager
def stack(logs: Path) -> Iterator[Stack]:
    broker = start_tansu(log_dir=logs)
    try:
        redis = start_redis(appendonly=False, log_dir=logs)
        try:
            settings = replace(
                Settings.from_env({}), broker=broker.url, redis_url=redis.url, topic_prefix=PREFIX.rstrip(".") + "-"
            )
            yield Stack(broker, redis, settings, logs)
        finally:
            redis.stop()
    finally:
        broker.stop()


# --- events -------------------------------------------------------------------------------------


def generate(
    settings: Settings, count: int, *, seed: int, end: datetime, spacing: timedelta
) -> list[tuple[str, bytes, bytes]]:
    """``count`` seeded events as (topic, key, value), event times ``spacing`` apart, ending at ``end``."""
    directory = load_directory(settings.directory_path)
    sim = Simulator(directory, seed, follow_ups=0.05, tickets=True)
    topics = Topics.from_settings(settings)
    start = end - spacing * count
    out = []
    for event in sim.stream(start, count, spacing):
        # a copy of its own size: each orjson output keeps a 4 KiB allocation (pitstop/replay.py)
        out.append((topic_for(topics, event), str(event["centre_id"]).encode(), bytes(memoryview(orjson.dumps(event)))))
    return out


async def produce_all(bootstrap: str, records: Sequence[tuple[str, bytes, bytes]]) -> float:
    """Produce every record as fast as the broker takes them; returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


# --- throughput ----------------------------------------------------------------------------------

METRIC = re.compile(r"^(pitstop_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.e+-]+)$", re.M)


def metric_sums(text: str) -> dict[str, float]:
    """Each counter family of a /metrics text summed over its labels (``_total`` dropped)."""
    sums: dict[str, float] = {}
    for name, value in METRIC.findall(text):
        sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def ledger_records_made(m: dict[str, float]) -> float:
    """How many ledger records the worker has produced: awards (caps and window awards among them),
    retractions, refusals and corrections each make one."""
    return sum(
        m.get(k, 0.0) for k in ("pitstop_awards", "pitstop_retractions", "pitstop_refusals", "pitstop_corrections")
    )


@dataclass
class Throughput:
    name: str
    events: int
    seconds: float
    cpu_us_per_event: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def engine_throughput(
    st: Stack,
    records: Sequence[tuple[str, bytes, bytes]],
    run: str,
    timeout: float,
    name: str = "engine",
    workers: int = 1,
    profile: Path | None = None,
    source: Path | None = None,
) -> Throughput:
    """``pitstop worker`` processes, joined, then the events produced: from the first event read to the
    last award applied.

    The workers take their partitions before the first event is produced, so a late joiner's rebalance
    is not timed. Progress is watched in Redis (the ledger offsets the league has applied, 20 times a
    second) and in the workers' /metrics (twice a second: a scrape costs a worker CPU). The first event
    read is the earliest ``consumed.ts`` header on the ledger."""
    engine = Workers.spawn(st, run, workers, source)
    ns = f"bench-{run}"
    client = redis_client(st.settings.redis_url)
    spy: subprocess.Popen[bytes] | None = None
    try:
        engine.wait_joined(st.settings.topic_partitions * (len(st.topics.sources) + 1))
        cpu0 = {**st.infra_cpu(), "worker": engine.cpu_seconds()}
        if profile is not None:
            spy = py_spy(engine.children[0].process.pid, profile / f"{run}.txt")
        produced_s = asyncio.run(produce_all(st.settings.bootstrap_servers, records))
        events = len(records)
        deadline = time.monotonic() + timeout
        last_offsets: list[bytes] = []
        first_applied = last = next_scrape = 0.0
        while time.monotonic() < deadline:
            engine.check()
            offsets = sorted(client.hvals(f"{ns}:ledger-offsets"))
            now = time.time()
            if offsets != last_offsets:
                first_applied = first_applied or now
                last_offsets, last = offsets, now
            if offsets and now >= next_scrape:
                next_scrape = now + 0.5
                texts = engine.texts()
                m = summed_metrics(texts)
                applied = m.get("pitstop_ledger_applied", 0.0) + m.get("pitstop_ledger_skipped", 0.0)
                if m.get("pitstop_events", 0.0) >= events and applied >= ledger_records_made(m):
                    cpu1 = {**st.infra_cpu(), "worker": engine.cpu_seconds()}
                    cpu = {k: (cpu1[k] - cpu0[k]) / events * 1e6 for k in cpu1}
                    # a worker older than the consumed.ts header: from its first apply (its first batch not counted)
                    first = (
                        asyncio.run(first_consumed(st.settings.bootstrap_servers, st.topics.ledger)) or first_applied
                    )
                    result = Throughput(name, events, last - first, cpu)
                    result.extra = {
                        "workers": workers,
                        "produced_s": round(produced_s, 2),
                        "batch_mean": batch_means(texts),
                    }
                    return result
            time.sleep(0.05)
        raise BenchError(f"{run}: not done within {timeout:.0f}s")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        client.close()
        engine.stop()


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


async def first_consumed(bootstrap: str, topic: str) -> float | None:
    """The earliest ``consumed.ts`` (when the worker read the source batch) on a ledger, in unix seconds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        stamps: list[int] = []
        for tp in parts:
            got = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            for m in got.get(tp, []):
                stamps += [int(v) for k, v in (m.headers or ()) if k == "consumed.ts"]
        return min(stamps) / 1000 if stamps else None
    finally:
        await consumer.stop()


BATCH = re.compile(r'^pitstop_batch_records_(sum|count)\{stage="([a-z]+)"\} ([0-9.e+]+)$', re.M)


def summed_metrics(texts: Iterable[str]) -> dict[str, float]:
    """Workers' /metrics texts, summed by metric name."""
    total: dict[str, float] = {}
    for text in texts:
        for name, value in metric_sums(text).items():
            total[name] = total.get(name, 0.0) + value
    return total


def batch_means(texts: Iterable[str]) -> dict[str, float]:
    """Mean records per batch of each worker stage, over the workers' /metrics texts."""
    found: dict[str, dict[str, float]] = {}
    for text in texts:
        for kind, stage, value in BATCH.findall(text):
            totals = found.setdefault(stage, {})
            totals[kind] = totals.get(kind, 0.0) + float(value)
    return {stage: round(v["sum"] / v["count"], 1) for stage, v in found.items() if v.get("count")}


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample a process with py-spy until SIGINT, into a flame graph."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    fmt = "raw" if out.suffix == ".txt" else "flamegraph"
    args = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--output", str(out), "--format", fmt]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peer_throughput(st: Stack, peer: str, events: int, timeout: float) -> Throughput:
    ns = f"bench-{peer}"
    args = [
        sys.executable,
        "-m",
        "pitstop.bench.peers",
        peer,
        "--bootstrap",
        st.settings.bootstrap_servers,
        "--redis-url",
        st.settings.redis_url,
        "--namespace",
        ns,
        "--group",
        f"bench-{peer}-{int(time.time())}",
        "--events",
        str(events),
    ]
    with (st.logs / f"peer-{peer}.log").open("ab") as log:
        child = Child.spawn(peer, args, st.env(), log, cwd=st.logs)  # a Faust peer keeps its data folder there
    try:
        child.expect("FIRST", timeout)
        cpu0 = st.infra_cpu()
        _, done = child.expect("DONE", timeout)
        cpu1 = st.infra_cpu()
        result = orjson.loads(done)
        cpu = {k: (cpu1[k] - cpu0[k]) / events * 1e6 for k in cpu1}
        cpu[peer] = result["cpu_s"] / events * 1e6
        return Throughput(peer, int(result["events"]), float(result["last"] - result["first"]), cpu)
    finally:
        child.stop()


# --- latency, open loop ---------------------------------------------------------------------------

STAGES = ("consumed", "awarded", "applied", "pushed", "received")


def percentiles(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float | int | None]:
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = (round(float(v), 1) for v in np.percentile(arr, [50, 95, 99]))
    return {"n": len(arr), "p50": p50, "p95": p95, "p99": p99, "max": round(float(arr.max()), 1)}


@dataclass
class Step:
    rate: int
    seconds: float
    start: float = 0.0  # unix seconds: the step's first and last produce
    end: float = 0.0
    sent: int = 0
    backlog: list[tuple[float, float]] = field(default_factory=list)  # (unix time, events not yet read)
    drained_s: float | None = None
    applied_ms: list[float] = field(default_factory=list)  # board change applied - its oldest event produced
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)

    @property
    def achieved(self) -> float:
        return self.sent / (self.end - self.start) if self.end > self.start else 0.0

    @property
    def sustained(self) -> bool:
        """The backlog did not grow over the step's second half, and ended under half a second of events."""
        half = [b for t, b in self.backlog if t >= self.start + (self.end - self.start) / 2]
        if not half:
            return False
        allowance = max(200.0, self.rate * 0.5)
        return half[-1] <= allowance and half[-1] - half[0] <= allowance


async def open_loop(producer: Any, records: Sequence[tuple[str, bytes, bytes]], step: Step) -> None:
    """Produce at the step's rate on a fixed schedule (every 5 ms what is due), whether or not the engine
    keeps up: a slow system shows as latency and backlog, not as a slower producer."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    step.start = time.time()
    sent = 0
    while sent < len(records):
        due = min(len(records), int((loop.time() - t0) * step.rate) + 1)
        for topic, key, value in records[sent:due]:
            await producer.send(topic, value, key=key)
        sent = due
        await asyncio.sleep(0.005)
    await producer.flush()
    step.end = time.time()
    step.sent = sent


async def watch_changes(redis_url: str, ns: str, sink: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """(apply time, apply - oldest source event) of every board change with a ``src``, in ms."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{ns}:board-changes")
    try:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                data = orjson.loads(message["data"])
                for change in data if isinstance(data, list) else [data]:
                    if "src" in change and "at" in change:
                        sink.append((change["at"] / 1000, change["at"] - change["src"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def ledger_stages(bootstrap: str, topic: str) -> list[tuple[float, float, float]]:
    """(produced, consumed - produced, awarded - produced) for every ledger record with stage headers."""
    from streams.topics import read_topic

    out: list[tuple[float, float, float]] = []
    async for batch in read_topic(bootstrap, topic):
        for m in batch:
            headers = dict(m.headers or ())
            if b"" in (headers.get("source.ts", b""), headers.get("consumed.ts", b"")):
                continue
            produced = int(headers["source.ts"])
            out.append((produced / 1000, int(headers["consumed.ts"]) - produced, m.timestamp - produced))
    return out


def latency(st: Stack, opts: Options, say: Any) -> dict[str, Any]:
    """A fresh engine and gateway, kiosks connected, then each rate for ``step_s`` seconds."""
    from pitstop.bench.fanout import KioskPool, start_gateway

    run = "latency"
    st = replace(st, settings=replace(st.settings, topic_prefix="bench-live-"))  # topics of its own
    asyncio.run(ensure_topics(st.settings))
    ns = f"bench-{run}"
    engine = Workers.spawn(st, run, opts.workers, opts.engine_from)
    gateway = None
    pools: list[Any] = []
    try:
        gateway = start_gateway(st.settings.redis_url, ns)
        pool = KioskPool.start(gateway.port, opts.kiosks)
        pools.append(pool)
        say(f"{pool.connected:,} kiosks connected ({pool.failed} failed) in {pool.connect_s:.1f}s")
        engine.wait_joined(st.settings.topic_partitions * (len(st.topics.sources) + 1))
        steps = asyncio.run(run_steps(st, opts, engine, gateway, pool, ns, say))
        samples = pool.stop()
        say(f"kiosks received {pool.deltas:,} deltas ({len(samples):,} with a source time), {pool.dropped} dropped")
        gateway_rss = rss_mb(gateway.process.pid)
        stages = asyncio.run(ledger_stages(st.settings.bootstrap_servers, st.topics.ledger))
    finally:
        for pool in pools:
            pool.close()
        if gateway is not None:
            gateway.stop()
        engine.stop()
    report_steps = []
    for step in steps:
        inside = [s for s in stages if step.start <= s[0] <= step.end]
        kiosk = [(ms, pushed) for at, ms, pushed in samples if step.start <= at - ms / 1000 <= step.end]
        report_steps.append(
            {
                "rate": step.rate,
                "achieved_rate": round(step.achieved),
                "events": step.sent,
                "sustained": step.sustained,
                "backlog_end": int(step.backlog[-1][1]) if step.backlog else None,
                "drained_s": step.drained_s,
                "stages_ms": {
                    "consumed": percentiles([s[1] for s in inside]),
                    "awarded": percentiles([s[2] for s in inside]),
                    "applied": percentiles(step.applied_ms),
                    "pushed": percentiles([pushed for _, pushed in kiosk if pushed >= 0]),
                    "received": percentiles([ms for ms, _ in kiosk]),
                },
                "cpu_us_per_event": {k: round(v, 1) for k, v in step.cpu_us_per_event.items()},
            }
        )
    return {"kiosks": pool.connected, "gateway_rss_mb": round(gateway_rss, 1), "steps": report_steps}


async def events_read(engine: Workers) -> float:
    """Source records the workers have read so far (their /metrics, read off the loop; 0 while one is silent)."""
    return float(max(0, await asyncio.to_thread(engine.events_read)))


async def run_steps(
    st: Stack, opts: Options, engine: Workers, gateway: Any, pool: Any, ns: str, say: Any
) -> list[Step]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=st.settings.bootstrap_servers, acks="all", linger_ms=2)
    await producer.start()
    changes: list[tuple[float, float]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_changes(st.settings.redis_url, ns, changes, stop))
    procs = {**engine.pids(), "gateway": gateway.process.pid, **pool.pids()}
    procs |= {"broker": st.broker.process.pid, "redis": st.redis.process.pid, "bench": os.getpid()}
    steps: list[Step] = []
    total = 0
    try:
        for i, rate in enumerate(opts.rates):
            if steps and not steps[-1].sustained:
                say(f"{rate:,}/s: skipped ({steps[-1].rate:,}/s was not sustained)")
                continue
            step = Step(rate, opts.step_s)
            count = int(rate * opts.step_s)
            now = datetime.now(UTC)
            records = generate(
                st.settings,
                count,
                seed=opts.seed + 1 + i,
                end=now + timedelta(seconds=opts.step_s),
                spacing=timedelta(seconds=1 / rate),
            )
            cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            produce = asyncio.create_task(open_loop(producer, records, step))
            while not produce.done():
                await asyncio.sleep(0.5)
                read = await events_read(engine)
                step.backlog.append((time.time(), total + (step.sent or int((time.time() - step.start) * rate)) - read))
            await produce
            total += step.sent
            cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            step.cpu_us_per_event = {k: (cpu1[k] - cpu0[k]) / max(step.sent, 1) * 1e6 for k in cpu1}
            read = await events_read(engine)
            step.backlog.append((time.time(), total - read))
            drain_start = time.monotonic()
            while read < total and time.monotonic() - drain_start < 120:
                await asyncio.sleep(0.25)
                read = await events_read(engine)
            step.drained_s = round(time.monotonic() - drain_start, 2)
            await asyncio.sleep(1.0)  # the last changes reach the kiosks
            step.applied_ms = [ms for at, ms in changes if step.start <= at - ms / 1000 <= step.end]
            say(f"{rate:,}/s: achieved {step.achieved:,.0f}/s, sustained {step.sustained}, drained {step.drained_s}s")
            steps.append(step)
    finally:
        stop.set()
        await watcher
        await producer.stop()
    return steps


# --- replay -----------------------------------------------------------------------------------------


def replay_run(st: Stack, events: int, seed: int, say: Any) -> dict[str, Any]:
    """``pitstop replay`` over ``events`` events on topics of their own: every one scored again (KPI
    windows, subjects, budgets) into a shadow namespace, the shadow ledger kept in memory."""
    st = replace(st, settings=replace(st.settings, topic_prefix="bench-replay-"))
    asyncio.run(ensure_topics(st.settings))
    # The events in chunks, so a million of them are never all held at once.
    end, spacing, chunk = datetime.now(UTC), timedelta(milliseconds=1), 100_000
    for start in range(0, events, chunk):
        n = min(chunk, events - start)
        records = generate(st.settings, n, seed=seed + start, end=end - spacing * (events - start - n), spacing=spacing)
        asyncio.run(produce_all(st.settings.bootstrap_servers, records))
    say(f"replay: {events:,} events produced")
    env = st.env(redis_namespace="bench-replay")
    args = [sys.executable, "-m", "pitstop", "replay", "--name", "bench", "--json"]
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"pitstop replay exited with {done.returncode}: {done.stderr[-2000:]}")
    report = orjson.loads(done.stdout.strip().splitlines()[-1])
    seconds = float(report["seconds"])
    return {
        "events": int(report["records"]),
        "ledger_entries": int(report["entries"]),
        "seconds": round(seconds, 1),
        "command_seconds": round(wall, 1),
        "eps": round(int(report["records"]) / seconds) if seconds else None,
    }


# --- running it -----------------------------------------------------------------------------------


@dataclass
class Options:
    events: int
    rates: tuple[int, ...]
    step_s: float
    kiosks: int
    peers: tuple[str, ...]
    seed: int
    quick: bool
    profile: Path | None = None  # py-spy flame graphs of the engine's throughput run go here
    engine_from: Path | None = None  # run the engine of another checkout (before/after comparisons)
    fanout: tuple[int, ...] = ()  # kiosk counts for fan-out runs (pitstop.bench.fanout)
    replay: int = 0  # events re-scored by pitstop replay (0: no replay run)
    workers: int = 1  # pitstop worker processes of the engine (they share its partitions): one per core


def run(opts: Options, say: Any = print) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="pitstop-bench-"))
    report: dict[str, Any] = {"events": opts.events, "logs": str(logs), "machine": machine(), "workers": opts.workers}
    with stack(logs) as st:
        asyncio.run(ensure_topics(st.settings))

        def events_on(settings: Settings) -> list[tuple[str, bytes, bytes]]:
            return generate(
                settings, opts.events, seed=opts.seed, end=datetime.now(UTC), spacing=timedelta(milliseconds=2)
            )

        records = events_on(st.settings)
        sizes = [len(v) for _, _, v in records]
        report["event_bytes_mean"] = round(float(np.mean(sizes)), 1)
        engine = engine_throughput(
            st, records, "engine", 600, workers=opts.workers, profile=opts.profile, source=opts.engine_from
        )
        mean, produced_s = report["event_bytes_mean"], engine.extra["produced_s"]
        say(f"produced {len(records):,} events ({mean:.0f} bytes mean) in {produced_s}s")
        say(f"engine ({opts.workers} worker{'s' if opts.workers > 1 else ''}): {engine.eps:,.0f} events/s")
        results = [engine]
        if opts.workers > 1:  # and as one process, as each peer is: the same events, on topics of its own
            alone = replace(st, settings=replace(st.settings, topic_prefix="bench-one-"))
            asyncio.run(ensure_topics(alone.settings))
            one = engine_throughput(
                alone, events_on(alone.settings), "engine-one", 600, "engine_1_worker", source=opts.engine_from
            )
            say(f"engine (1 worker): {one.eps:,.0f} events/s")
            results.append(one)
        for peer in opts.peers:
            # the naive peer reads a share of the events (at its speed all of them would take minutes)
            count = min(opts.events, NAIVE_EVENTS) if peer == "naive_faust" else opts.events
            results.append(peer_throughput(st, peer, count, timeout=600))
            say(f"{peer}: {results[-1].eps:,.0f} events/s")
        if opts.rates:
            report["latency"] = latency(st, opts, say)
            report["kiosks"] = report["latency"]["kiosks"]
            first = report["latency"]["steps"][0]
            report["p99_event_to_kiosk_ms"] = first["stages_ms"]["received"]["p99"]
            report["p99_event_to_kiosk_at_eps"] = first["rate"]
            sustained = [s["rate"] for s in report["latency"]["steps"] if s.get("sustained")]
            report["sustained_eps"] = max(sustained) if sustained else 0
        if opts.replay:
            try:
                report["replay"] = replay_run(st, opts.replay, opts.seed + 100, say)
            except (BenchError, subprocess.TimeoutExpired) as exc:  # the rest of the run is still reported
                report["replay"] = {"events": opts.replay, "error": str(exc)[-500:]}
                say(f"replay failed: {exc}")
            else:
                say(f"replay: {report['replay']['events']:,} events in {report['replay']['seconds']} s")
        if opts.fanout:
            from pitstop.bench.fanout import run_fanout

            report["fanout"] = []
            for kiosks in opts.fanout:
                found = asyncio.run(run_fanout(kiosks, seconds=20, changes_per_s=20, redis=st.redis))
                say(f"fan-out {kiosks:,} kiosks: p99 {found['p99_ms']} ms, gateway {found['gateway_rss_mb']} MB")
                report["fanout"].append(found)
    report["throughput"] = [
        {
            "pipeline": r.name,
            "events": r.events,
            "seconds": round(r.seconds, 3),
            "eps": round(r.eps),
            "cpu_us_per_event": {k: round(v, 1) for k, v in r.cpu_us_per_event.items()},
            **r.extra,
        }
        for r in results
    ]
    by = {r.name: r.eps for r in results}
    report["engine_eps"] = round(by["engine"])
    if "engine_1_worker" in by:
        report["engine_one_worker_eps"] = round(by["engine_1_worker"])
    for peer, key in (
        ("naive_faust", "peer_naive_faust_eps"),
        ("aiokafka", "peer_aiokafka_eps"),
        ("quix", "peer_quix_eps"),
    ):
        if peer in by:
            report[key] = round(by[peer])
            report[f"ratio_to_{peer}"] = round(by["engine"] / by[peer], 3) if by[peer] else None
    return report


def machine() -> str:
    import platform

    return f"{platform.machine()} {os.cpu_count()} cores CPython {platform.python_version()}"


def tables(report: dict[str, Any]) -> str:
    """The report as Markdown tables (what docs/benchmarks.md records)."""
    out = [f"machine: {report['machine']}; {report['events']:,} events of {report['event_bytes_mean']:.0f} bytes"]
    out += ["", "| pipeline | events | events/s | vs engine | CPU µs/event (process) |", "|---|---|---|---|---|"]
    engine = report["engine_eps"]
    for r in report["throughput"]:
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_us_per_event"].items())
        ratio = f"{engine / r['eps']:.2f}x" if not r["pipeline"].startswith("engine") and r["eps"] else ""
        name = f"engine, {r['workers']} worker{'s' if r['workers'] > 1 else ''}" if "workers" in r else r["pipeline"]
        out.append(f"| {name} | {r['events']:,} | {r['eps']:,} | {ratio} | {cpu} |")
    if "latency" in report:
        lat = report["latency"]
        out += ["", f"open loop, {lat['kiosks']:,} kiosks connected, gateway {lat['gateway_rss_mb']} MB at the end", ""]
        out.append("| rate | achieved | sustained | stage | p50 ms | p95 ms | p99 ms | max ms | n |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for step in lat["steps"]:
            for stage, p in step["stages_ms"].items():
                out.append(
                    f"| {step['rate']:,} | {step['achieved_rate']:,} | {step['sustained']} | {stage} | {p['p50']} "
                    f"| {p['p95']} | {p['p99']} | {p['max']} | {p['n']:,} |"
                )
        out += ["", "| rate | CPU µs/event per process |", "|---|---|"]
        for step in lat["steps"]:
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in step["cpu_us_per_event"].items())
            out.append(f"| {step['rate']:,} | {cpu} |")
    if (replay := report.get("replay")) and "error" in replay:
        out.append(f"replay of {replay['events']:,} events failed: {replay['error']}")
    elif replay:
        out.append(
            f"replay: {replay['events']:,} events re-scored in {replay['seconds']} s ({replay['eps']:,} events/s), "
            f"{replay['ledger_entries']:,} ledger entries; the command took {replay['command_seconds']} s"
        )
    for found in report.get("fanout", []):
        out.append(
            f"fan-out {found['kiosks']:,} kiosks ({found['connected']:,} connected): p50 {found['p50_ms']} ms, "
            f"p99 {found['p99_ms']} ms, gateway {found['gateway_rss_mb']} MB, {found['gateway_cpu_pct']} % CPU"
        )
    keys = ("engine_eps", "peer_aiokafka_eps", "peer_quix_eps", "peer_naive_faust_eps", "p99_event_to_kiosk_ms")
    out += ["", ", ".join(f"{k}={report.get(k)}" for k in (*keys, "kiosks", "sustained_eps", "bench_seconds"))]
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short run (under five minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    parser.add_argument("--micro", action="store_true", help="only the in-process micro-benchmark (no broker)")
    parser.add_argument("--events", type=_count, help=f"events per throughput run ({QUICK_EVENTS:,} quick)")
    parser.add_argument(
        "--rates",
        type=_count,
        nargs="*",
        help="open-loop rates, events/s (1000 3000 10000 20000; none: no latency run)",
    )
    parser.add_argument("--step-s", type=_seconds, help="seconds per rate step (5 quick, 20 otherwise)")
    parser.add_argument("--kiosks", type=_kiosks, default=1000, help="kiosks connected during the rate steps")
    parser.add_argument("--fanout", type=_kiosks, nargs="*", help="kiosk fan-out runs (1000 2000 10000; not quick)")
    parser.add_argument("--peers", nargs="*", choices=PEER_NAMES, help="peers to run (all by default)")
    parser.add_argument("--replay", type=_count_or_none, help="events re-scored by pitstop replay (1,000,000; 0: none)")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of the engine's run into this folder")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=DEFAULT_WORKERS,
        help=f"pitstop worker processes of the engine, sharing its partitions (one per core: {DEFAULT_WORKERS})",
    )
    parser.add_argument("--engine-from", type=Path, help="run the engine of another checkout (before/after)")


PEER_NAMES = ("aiokafka", "quix", "naive_faust")


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 10,000,000")
    return value


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4:
        raise argparse.ArgumentTypeError(f"{text} workers: between 1 and 4 (the ledger has 4 partitions to share)")
    return value


def _count_or_none(text: str) -> int:
    return 0 if text.strip() == "0" else _count(text)


def _kiosks(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 50_000:
        raise argparse.ArgumentTypeError(f"{text} kiosks: between 0 and 50,000 (250 source addresses)")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s is not between 1 and 3600")
    return value


def run_from_args(args: argparse.Namespace) -> int:
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.micro:
        from pitstop.bench.micro import run_micro, table

        micro = run_micro()
        print(orjson.dumps(micro).decode() if args.json else table(micro))
        return 0
    if args.engine_from is not None and not (args.engine_from / "pitstop" / "__main__.py").is_file():
        print(f"pitstop bench: {args.engine_from} is not a Pitstop checkout", file=sys.stderr)
        return 2
    opts = Options(
        events=args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS),
        rates=tuple(QUICK_RATES if args.rates is None else args.rates),
        step_s=args.step_s or (5.0 if args.quick else 20.0),
        kiosks=args.kiosks,
        peers=tuple(args.peers) if args.peers is not None else PEER_NAMES,
        seed=7,
        quick=args.quick,
        profile=args.profile,
        engine_from=args.engine_from,
        workers=args.workers,
        fanout=tuple(args.fanout) if args.fanout is not None else (() if args.quick else (1000, 2000, 10_000)),
        replay=args.replay if args.replay is not None else (0 if args.quick else 1_000_000),
    )
    # SIGTERM (a timeout, an orchestrator) unwinds like Ctrl-C, so every process the run started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    report = run(opts, say=say)
    report["bench_seconds"] = round(time.monotonic() - started, 1)
    print(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode() if args.json else tables(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitstop bench", description="throughput and latency beside the peers")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
