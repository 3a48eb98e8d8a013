"""``pitstop bench``: Pitstop's throughput and event->kiosk latency, beside the peers, in one run.

One run, on one machine, against its own embedded broker and redis-server:

1. **Events**: pre-generated and seeded (:class:`streams.simulator.Simulator`, the demo's mix with
   tickets and 5 % follow-ups; keyed by centre, strong performers score more often), produced once to
   the source topics of a bench topic prefix.
2. **Throughput**: each pipeline reads all of them from the start, alone on the machine: the engine
   (``pitstop worker``, everything on), then the peers of :mod:`pitstop.bench.peers`. Events per second
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from config.directory import load_directory
from config.settings import Settings
from pitstop.services import Service, free_port, rss_mb, start_redis, start_tansu, worker_metrics
from streams.simulator import Simulator, topic_for
from streams.topics import Topics, ensure_topics

PREFIX = "bench."
QUICK_EVENTS = 50_000
FULL_EVENTS = 200_000
QUICK_RATES = (1000, 3000, 10_000, 20_000)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A pipeline did not finish or a service did not start; the message says which and why."""


# --- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Child:
    """A benchmark child process whose stdout lines are read, timestamped, on a thread."""

    name: str
    process: subprocess.Popen[bytes]
    lines: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

    @classmethod
    def spawn(cls, name: str, args: list[str], env: dict[str, str], log: IO[bytes] | None = None) -> Child:
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=log or subprocess.STDOUT, start_new_session=True
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
        """The next line starting with ``prefix`` (and when it was read); BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if line.startswith(prefix):
                return at, line[len(prefix) :].strip()
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
        out.append((topic_for(topics, event), str(event["centre_id"]).encode(), orjson.dumps(event)))
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


def engine_throughput(st: Stack, events: int, run: str, timeout: float, profile: Path | None = None) -> Throughput:
    """``pitstop worker`` over the produced events: from the first event read to the last award applied.

    Progress is watched in Redis (the ledger offsets the league has applied, 20 times a second) and in
    the worker's /metrics (twice a second: a scrape costs the worker CPU). The first event read is the
    earliest ``consumed.ts`` header on the ledger."""
    port = free_port()
    ns = f"bench-{run}"
    env = st.env(app_id=f"bench-{run}", redis_namespace=ns, worker_metrics_port=str(port))
    with (st.logs / f"{run}.log").open("ab") as log:
        child = Child.spawn(run, [sys.executable, "-m", "pitstop", "worker"], env, log)
    client = redis_client(st.settings.redis_url)
    spy: subprocess.Popen[bytes] | None = None
    try:
        cpu0: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        last_offsets: list[bytes] = []
        last = next_scrape = 0.0
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise BenchError(f"{run}: the worker exited with code {child.process.returncode}; see {log.name}")
            offsets = sorted(client.hvals(f"{ns}:ledger-offsets"))
            now = time.time()
            if offsets != last_offsets:
                if not last_offsets:
                    cpu0 = {**st.infra_cpu(), "worker": cpu_seconds(child.process.pid)}
                    if profile is not None:
                        spy = py_spy(child.process.pid, profile / f"{run}.txt")
                last_offsets, last = offsets, now
            if offsets and now >= next_scrape:
                next_scrape = now + 0.5
                text = worker_metrics(port) or ""
                m = metric_sums(text)
                applied = m.get("pitstop_ledger_applied", 0.0) + m.get("pitstop_ledger_skipped", 0.0)
                if m.get("pitstop_events", 0.0) >= events and applied >= ledger_records_made(m):
                    cpu1 = {**st.infra_cpu(), "worker": cpu_seconds(child.process.pid)}
                    cpu = {k: (cpu1[k] - cpu0[k]) / events * 1e6 for k in cpu1}
                    first = asyncio.run(first_consumed(st.settings.bootstrap_servers, st.topics.ledger))
                    result = Throughput("engine", events, last - first, cpu)
                    result.extra = {"batch_mean": batch_means(text)}
                    return result
            time.sleep(0.05)
        raise BenchError(f"{run}: not done within {timeout:.0f}s")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        client.close()
        child.stop()


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


async def first_consumed(bootstrap: str, topic: str) -> float:
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
        if not stamps:
            raise BenchError(f"no consumed.ts header on {topic}")
        return min(stamps) / 1000
    finally:
        await consumer.stop()


BATCH = re.compile(r'^pitstop_batch_records_(sum|count)\{stage="([a-z]+)"\} ([0-9.e+]+)$', re.M)


def batch_means(text: str) -> dict[str, float]:
    """Mean records per batch of each worker stage, from its /metrics."""
    found: dict[str, dict[str, float]] = {}
    for kind, stage, value in BATCH.findall(text):
        found.setdefault(stage, {})[kind] = float(value)
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
        child = Child.spawn(peer, args, st.env(), log)
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

STAGES = ("consumed", "awarded", "applied", "received")


def percentiles(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float | int | None]:
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"n": len(arr), "p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1), "max": round(arr.max(), 1)}


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
                change = orjson.loads(message["data"])
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
    ns, port = f"bench-{run}", free_port()
    env = st.env(app_id=f"bench-{run}", redis_namespace=ns, worker_metrics_port=str(port))
    with (st.logs / f"{run}-worker.log").open("ab") as log:
        worker = Child.spawn(run, [sys.executable, "-m", "pitstop", "worker"], env, log)
    gateway = None
    try:
        gateway = start_gateway(st.settings.redis_url, ns)
        pool = KioskPool.start(gateway.port, opts.kiosks)
        say(f"{pool.connected:,} kiosks connected ({pool.failed} failed) in {pool.connect_s:.1f}s")
        wait_joined(port, worker, timeout=90)
        steps = asyncio.run(run_steps(st, opts, port, worker, gateway, pool, ns, say))
        samples = pool.stop()
        gateway_rss = rss_mb(gateway.process.pid)
        stages = asyncio.run(ledger_stages(st.settings.bootstrap_servers, st.topics.ledger))
    finally:
        if gateway is not None:
            gateway.stop()
        worker.stop()
    report_steps = []
    for step in steps:
        inside = [s for s in stages if step.start <= s[0] <= step.end]
        received = [ms for at, ms in samples if step.start <= at - ms / 1000 <= step.end]
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
                    "received": percentiles(received),
                },
                "cpu_us_per_event": {k: round(v, 1) for k, v in step.cpu_us_per_event.items()},
            }
        )
    return {"kiosks": pool.connected, "gateway_rss_mb": round(gateway_rss, 1), "steps": report_steps}


def wait_joined(port: int, worker: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise BenchError(f"the latency worker exited with code {worker.process.returncode}")
        m = metric_sums(worker_metrics(port) or "")
        if m.get("pitstop_worker_assigned_partitions", 0) >= 2 * 4:  # every source and ledger partition
            return
        time.sleep(0.2)
    raise BenchError("the latency worker did not join within 90 s")


async def run_steps(
    st: Stack, opts: Options, port: int, worker: Child, gateway: Any, pool: Any, ns: str, say: Any
) -> list[Step]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=st.settings.bootstrap_servers, acks="all", linger_ms=2)
    await producer.start()
    changes: list[tuple[float, float]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_changes(st.settings.redis_url, ns, changes, stop))
    procs = {"worker": worker.process.pid, "gateway": gateway.process.pid, **pool.pids()}
    procs |= {"broker": st.broker.process.pid, "redis": st.redis.process.pid, "bench": os.getpid()}
    steps, total = [], 0
    try:
        for i, rate in enumerate(opts.rates):
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
                read = metric_sums(await asyncio.to_thread(worker_metrics, port) or "").get("pitstop_events", 0.0)
                step.backlog.append((time.time(), total + (step.sent or int((time.time() - step.start) * rate)) - read))
            await produce
            total += step.sent
            cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            step.cpu_us_per_event = {k: (cpu1[k] - cpu0[k]) / max(step.sent, 1) * 1e6 for k in cpu1}
            read = metric_sums(await asyncio.to_thread(worker_metrics, port) or "").get("pitstop_events", 0.0)
            step.backlog.append((time.time(), total - read))
            drain_start = time.monotonic()
            while read < total and time.monotonic() - drain_start < 120:
                await asyncio.sleep(0.25)
                read = metric_sums(await asyncio.to_thread(worker_metrics, port) or "").get("pitstop_events", 0.0)
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


def run(opts: Options, say: Any = print) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="pitstop-bench-"))
    report: dict[str, Any] = {"events": opts.events, "logs": str(logs), "machine": machine()}
    with stack(logs) as st:
        asyncio.run(ensure_topics(st.settings))
        records = generate(
            st.settings, opts.events, seed=opts.seed, end=datetime.now(UTC), spacing=timedelta(milliseconds=2)
        )
        sizes = [len(v) for _, _, v in records]
        report["event_bytes_mean"] = round(float(np.mean(sizes)), 1)
        seconds = asyncio.run(produce_all(st.settings.bootstrap_servers, records))
        say(f"produced {len(records):,} events ({report['event_bytes_mean']:.0f} bytes mean) in {seconds:.1f}s")
        results = [engine_throughput(st, opts.events, "engine", timeout=600, profile=opts.profile)]
        say(f"engine: {results[-1].eps:,.0f} events/s")
        for peer in opts.peers:
            results.append(peer_throughput(st, peer, opts.events, timeout=600))
            say(f"{peer}: {results[-1].eps:,.0f} events/s")
        if opts.rates:
            report["latency"] = latency(st, opts, say)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pitstop bench", description="throughput and latency beside the peers")
    parser.add_argument("--quick", action="store_true", help="a short run (under five minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--peers", nargs="*", choices=("aiokafka", "quix", "naive_faust"), default=None)
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs of the engine into this folder")
    args = parser.parse_args(argv)
    opts = Options(
        events=QUICK_EVENTS if args.quick else FULL_EVENTS,
        rates=QUICK_RATES,
        step_s=10.0 if args.quick else 30.0,
        kiosks=1000,
        peers=tuple(args.peers) if args.peers is not None else ("aiokafka", "quix", "naive_faust"),
        seed=7,
        quick=args.quick,
        profile=args.profile,
    )
    report = run(opts, say=(lambda m: print(m, file=sys.stderr, flush=True)))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
