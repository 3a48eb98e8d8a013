"""Kiosk fan-out benchmark: N kiosk WebSocket clients on one gateway process, board changes applied
through the league's Lua script, delivery latency measured at the clients.

``python -m pitstop.bench.fanout --kiosks 1000 2000 10000 --seconds 20 [--json]``

What runs, per kiosk count (each gets a fresh gateway and Redis namespace; Redis is shared):

- a redis-server of its own on a free loopback port (``pitstop.services.start_redis``), unless
  ``--redis-url`` names one;
- one gateway in its own process, ``python -m pitstop gateway``, configured through ``PITSTOP_*``
  variables (Redis URL, namespace, port, token secret), its output in a log file; it is stopped
  (SIGTERM, then SIGKILL) whatever happens, Ctrl-C included;
- N kiosk clients (:mod:`pitstop.bench.wsclient`, a lean RFC 6455 client: the websockets library's
  cost ~60 µs per message, half a core at 1,000 events/s on the machine being measured), each with its
  own kiosk token, that authenticate and subscribe as ``dashboards/static/kiosk.js`` does: ``auth``,
  then the centre's snapshot; a kiosk showing another view sends ``subscribe`` with
  ``views[view] + ":all"`` from the welcome. The mix: 75 % on their centre's board, 15 % on their
  region's, 10 % on the nation's, the centres taken in turn. Like a browser, clients answer pings and
  send none, and keep a sequence number per board; a gap asks for a ``resync``.
  They connect from 127.0.0.2, 127.0.0.3, ... (``local_addr``), at most ``--per-ip`` (4000) per
  source address, so no address runs short of ephemeral ports; loopback only;
- a driver in this process that calls ``state.league.League.apply`` with one ledger record (an
  award, as agents.scoring makes them) per change, at ``changes_per_s``, on centres taken at random.
  It is the only writer of the namespace, so it knows each board's version after each apply, and
  notes the wall-clock time just before the call: **delivery latency** is the client's receive time
  minus that time, one sample per change per client that shows its board (a coalesced delta covering
  three versions gives three samples). When a delta carries ``src`` (the oldest source-event time,
  ms), ``src_p50/p99`` are receive minus ``src`` too (each record's ``source_ts`` is the time it was
  made; one sample per delta, its oldest change, so above the per-change figures when deltas coalesce).

The load generator runs in ``--procs`` processes (default: one up to 1,000 kiosks, then one per 2,500,
2 to 4), each a uvloop event loop. Why: on the 2-core machine this was written on, the clients' own CPU
(the websockets library's client then) was measured at about 8 % of a core per 1,000 kiosks receiving
~2,300 deltas/s plus their tickers, and 34-53 % in total at 10,000 kiosks receiving 6,000-12,000
deltas/s; the full demand at 10,000 kiosks and 20 changes/s is ~23,000 deltas/s plus about as many ticker
pushes, more than one process on one core can parse without its receive queue adding to every sample
(extrapolated, not A/B-measured against one or two processes). Four processes let that work use both
cores; more would only add memory and context switches on two. With :mod:`pitstop.bench.wsclient`
the clients took 5.6-6 % per 1,000 kiosks and 31-34 % at 10,000. Each run reports the load generator's
CPU, so a saturated one shows.

Reported per kiosk count: kiosks connected, how long connecting all of them took and the p50/p99
of one kiosk's connect (TCP + handshake + auth + its snapshot, and the view's snapshot), delta
messages received, delivery latency p50/p95/p99/max (ms), ``src`` latency when present, the
gateway's RSS (MiB) and CPU (% of one core, from ``/proc/<pid>/stat``, over the measured window)
at the end, the load generator's CPU, and clients dropped (connections that ended during the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from agents.scoring import Award
from config.directory import Directory, load_directory
from config.settings import DEFAULT_DIRECTORY
from dashboards.tokens import issue_token
from pitstop.services import Service, cpu_seconds, free_port, rss_mb, start_redis
from state.league import League, LedgerRecord, board_key, scope_ids

SECRET = "fanout-benchmark-secret-0123456789abcdef"
VIEWS = (("centre", 75), ("region", 15), ("nation", 10))  # share of kiosks (%) on each view
PER_IP = 4000  # kiosks per source address (the ephemeral range is ~28,000 ports per address)
CONNECT_CONCURRENCY = 64  # connects in flight, over all client processes
DRAIN_S = 1.5  # after the last change, how long the clients keep receiving
_interrupted = False  # set by main()'s SIGINT/SIGTERM handler; checked between phases


def _check_interrupted() -> None:
    """Raise if Ctrl-C came (a cancellation alone can be swallowed inside a Redis call)."""
    if _interrupted:
        raise KeyboardInterrupt


UVLOOP_GATEWAY = (
    sys.executable,
    "-c",
    "from config.settings import Settings; from dashboards.gateway import main; main(Settings.from_env())",
)


@dataclass(frozen=True, slots=True)
class KioskSpec:
    token: str
    centre: str
    view: str  # centre, region or nation
    local_ip: str


@dataclass
class ClientReport:
    """What one client process saw."""

    connected: int = 0
    failed: int = 0
    dropped: int = 0
    deltas: int = 0
    resyncs: int = 0
    connect_ms: list[float] = field(default_factory=list)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    src_ms: array[float] = field(default_factory=lambda: array("d"))
    src_at: array[float] = field(default_factory=lambda: array("d"))  # receive time (unix s) of each src sample
    pushed_ms: array[float] = field(default_factory=lambda: array("d"))  # the gateway's push time - src, or -1
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# --- the kiosk clients (one or more processes) ---------------------------------------------------


def _client_process(conn: Connection, port: int, specs: list[KioskSpec], concurrency: int) -> None:
    """Entry of a load-generator process: connect the kiosks, receive until told to stop, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (Ctrl-C reaches the whole group)
    import uvloop

    uvloop.run(_clients(conn, port, specs, concurrency))


async def _clients(conn: Connection, port: int, specs: list[KioskSpec], concurrency: int) -> None:
    from pitstop.bench.wsclient import KioskSocket, connect_kiosk

    report = ClientReport()
    gate = asyncio.Semaphore(concurrency)
    settled = asyncio.Event()
    stopping = False
    # (board, client's seq before, delta's seq, receive time, src ms or -1), resolved at the end
    boards: dict[str, int] = {}
    rec_board, rec_lo, rec_hi, rec_src, rec_pushed = array("i"), array("q"), array("q"), array("q"), array("q")
    rec_t = array("d")
    sockets: list[KioskSocket] = []

    def settle() -> None:
        if report.connected + report.failed == len(specs):
            settled.set()

    async def expect(ws: KioskSocket, kind: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = orjson.loads(await ws.recv())
            if message["type"] == kind:
                return message

    async def kiosk(spec: KioskSpec) -> None:
        nonlocal stopping
        try:
            async with gate:
                started = time.perf_counter()
                ws = await asyncio.wait_for(connect_kiosk("127.0.0.1", port, local_addr=(spec.local_ip, 0)), 60)
                sockets.append(ws)
                ws.send(orjson.dumps({"type": "auth", "token": spec.token}))
                welcome = await asyncio.wait_for(expect(ws, "welcome"), 60)
                snapshot = await asyncio.wait_for(expect(ws, "snapshot"), 60)
                if spec.view != "centre":
                    resource = f"{welcome['views'][spec.view]}:all"
                    ws.send(orjson.dumps({"type": "subscribe", "resource": resource}))
                    snapshot = await asyncio.wait_for(expect(ws, "snapshot"), 60)
                report.connect_ms.append((time.perf_counter() - started) * 1000)
        except Exception as exc:
            report.failed += 1
            if len(report.errors) < 5:
                report.errors.append(repr(exc)[:200])
            settle()
            return
        report.connected += 1
        settle()
        board, seq = snapshot["board"], int(snapshot["seq"])
        index = boards.setdefault(board, len(boards))

        def on_message(raw: bytes) -> None:  # called from the socket's data_received: no task per message
            nonlocal board, seq, index
            now = time.time()
            message = orjson.loads(raw)
            kind = message["type"]
            if kind == "delta":
                if message["board"] != board or message["seq"] <= seq:
                    return
                if message["prev_seq"] > seq:
                    report.resyncs += 1
                    ws.send(b'{"type":"resync"}')
                    return
                report.deltas += 1
                rec_board.append(index)
                rec_lo.append(seq)
                rec_hi.append(int(message["seq"]))
                rec_t.append(now)
                rec_src.append(int(message.get("src", -1)))
                rec_pushed.append(int(message.get("pushed", -1)))
                seq = int(message["seq"])
            elif kind == "snapshot":
                board, seq = message["board"], int(message["seq"])
                index = boards.setdefault(board, len(boards))

        ws.listen(on_message)
        await ws.closed
        if not stopping:
            report.dropped += 1

    tasks = [asyncio.create_task(kiosk(spec)) for spec in specs]
    if not specs:
        settled.set()
    await settled.wait()
    conn.send(("connected", report.connected, report.failed))
    command = await _recv(conn)  # "stop", with the version -> apply time table
    assert command[0] == "stop"
    applied: dict[str, dict[int, float]] = command[1]
    stopping = True
    for ws in sockets:
        ws.abort()
    await asyncio.gather(*tasks, return_exceptions=True)
    names = {index: board for board, index in boards.items()}
    for i in range(len(rec_t)):
        if rec_src[i] >= 0:
            report.src_ms.append(rec_t[i] * 1000 - rec_src[i])
            report.src_at.append(rec_t[i])
            report.pushed_ms.append(rec_pushed[i] - rec_src[i] if rec_pushed[i] >= 0 else -1.0)
        times = applied.get(names[rec_board[i]])
        if times is None:
            continue
        for version in range(rec_lo[i] + 1, rec_hi[i] + 1):
            at = times.get(version)
            if at is not None:
                report.latencies_ms.append((rec_t[i] - at) * 1000)
    report.cpu_s = cpu_seconds(os.getpid())
    conn.send(("report", report))


# --- the driver, the gateway, the run ----------------------------------------------------------


def plan_kiosks(directory: Directory, kiosks: int, secret: str, per_ip: int = PER_IP) -> list[KioskSpec]:
    """Kiosk ``i``: centre ``i mod centres``, its view by the VIEWS shares, source 127.0.0.(2 + i // per_ip)."""
    centres = sorted(directory.centres)
    addresses = max(1, math.ceil(kiosks / per_ip))
    if addresses > 250:
        raise ValueError(f"{kiosks} kiosks need more than 250 source addresses at {per_ip} each")
    cycle = [view for view, share in VIEWS for _ in range(share)]
    specs = []
    for i in range(kiosks):
        centre = centres[i % len(centres)]
        view = cycle[(i // len(centres) * 37) % len(cycle)]  # views spread evenly over the centres
        specs.append(KioskSpec(issue_token(secret, "kiosk", centre), centre, view, f"127.0.0.{2 + i % addresses}"))
    return specs


def default_procs(kiosks: int) -> int:
    return 1 if kiosks <= 1000 else min(4, max(2, math.ceil(kiosks / 2500)))


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(redis_url: str, namespace: str, *, command: Sequence[str] | None = None) -> Gateway:
    """``pitstop gateway`` in its own process (and session: Ctrl-C reaches us, we stop it)."""
    port = free_port()
    env = {
        **os.environ,
        "PITSTOP_REDIS_URL": redis_url,
        "PITSTOP_REDIS_NAMESPACE": namespace,
        "PITSTOP_GATEWAY_PORT": str(port),
        "PITSTOP_BIND_HOST": "127.0.0.1",
        "PITSTOP_TOKEN_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = Path(tempfile.mkstemp(prefix="pitstop-fanout-gateway-", suffix=".log")[1])
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command or [sys.executable, "-m", "pitstop", "gateway"]),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gateway = Gateway(process, port, log_path)
    deadline = time.monotonic() + 60
    while b"GATEWAY_PORT=" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(f"the gateway did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return gateway


async def _recv(conn: Connection) -> Any:
    """One message from the other end of a pipe, without blocking the loop while none is there."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def ready() -> None:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking; a long message comes in parts
        try:
            future.set_result(conn.recv())
        except (EOFError, OSError) as exc:
            future.set_exception(exc)

    loop.add_reader(conn.fileno(), ready)
    try:
        return await future
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # and sends block too, rather than fail half-way


class Driver:
    """Applies one award per change through League.apply and notes when each board version was applied."""

    def __init__(self, league: League, directory: Directory, season: str, seed: int = 7) -> None:
        self.league = league
        self.directory = directory
        self.season = season
        self.random = random.Random(seed)
        self.staff = sorted(directory.staff.values(), key=lambda s: s.id)
        self.versions: dict[str, int] = {}
        self.applied: dict[str, dict[int, float]] = {}
        self.offset = 0
        self.apply_ms: list[float] = []

    async def change(self) -> None:
        person = self.random.choice(self.staff)
        centre = self.directory.centres[person.centre_id]
        now = time.time()
        award = Award(
            award_id=f"fanout-{uuid.uuid4().hex}",
            event_id=f"fanout-e{self.offset}",
            event_type="recognition.given",
            rule_id="recognition.spot",
            rule_version=1,
            staff_id=person.id,
            role=person.role,
            centre_id=centre.id,
            region=centre.region,
            state=centre.state,
            season=self.season,
            points=self.random.randint(1, 50),
            occurred_at=datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            inputs={},
            multipliers=(),
            why="Fan-out benchmark",
        )
        # source_ts: as if the source event had been produced just now, so receive - src is end to end here
        await self.league.apply([LedgerRecord(0, self.offset, award, source_ts=int(now * 1000))])
        self.apply_ms.append((time.time() - now) * 1000)
        self.offset += 1
        for scope, scope_id in scope_ids(centre.id, centre.region, centre.state).items():
            for role in ("all", person.role):
                board = board_key(self.season, scope, scope_id, role)
                version = self.versions.get(board, 0) + 1
                self.versions[board] = version
                if role == "all":
                    self.applied.setdefault(board, {})[version] = now

    async def run(self, seconds: float, changes_per_s: float) -> None:
        start = time.monotonic()
        n = 0
        while (due := start + n / changes_per_s) < start + seconds:
            _check_interrupted()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.change()
            n += 1


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pct(values: Sequence[float] | np.ndarray[Any, Any], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


@dataclass
class KioskPool:
    """Kiosk client processes connected to a gateway, for a run whose changes come from elsewhere (the
    engine, in ``pitstop bench``): only the ``src`` latency (receive - oldest source event) is known."""

    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]]
    connected: int = 0
    failed: int = 0
    connect_s: float = 0.0
    deltas: int = 0  # received, over all kiosks (known after stop)
    dropped: int = 0

    @classmethod
    def start(cls, port: int, kiosks: int, *, procs: int | None = None, timeout: float = 180.0) -> KioskPool:
        """Connect ``kiosks`` clients (tokens signed with :data:`SECRET`, as :func:`start_gateway` sets)."""
        specs = plan_kiosks(load_directory(DEFAULT_DIRECTORY), kiosks, SECRET)
        procs = procs or default_procs(kiosks)
        context = multiprocessing.get_context("spawn")
        pool = cls([])
        started = time.perf_counter()
        share = max(1, CONNECT_CONCURRENCY // procs)
        for p in range(procs):
            ours, theirs = context.Pipe()
            worker = context.Process(target=_client_process, args=(theirs, port, specs[p::procs], share), daemon=True)
            worker.start()
            theirs.close()
            pool.workers.append((worker, ours))
        try:
            for _, conn in pool.workers:
                if not conn.poll(timeout):
                    raise RuntimeError(f"kiosks not connected within {timeout:.0f}s")
                _, ok, bad = conn.recv()
                pool.connected, pool.failed = pool.connected + ok, pool.failed + bad
        except BaseException:
            pool.close()
            raise
        pool.connect_s = time.perf_counter() - started
        return pool

    def pids(self) -> dict[str, int]:
        return {f"kiosks-{i}": w.pid for i, (w, _) in enumerate(self.workers) if w.pid is not None}

    def stop(self, timeout: float = 120.0) -> list[tuple[float, float, float]]:
        """Disconnect; every (receive time in unix s, receive - src, push - src in ms or -1) the kiosks saw."""
        try:
            for _, conn in self.workers:
                conn.send(("stop", {}))
            samples: list[tuple[float, float, float]] = []
            for _, conn in self.workers:
                if not conn.poll(timeout):
                    raise RuntimeError(f"kiosk reports not received within {timeout:.0f}s")
                report: ClientReport = conn.recv()[1]
                samples += zip(report.src_at, report.src_ms, report.pushed_ms, strict=True)
                self.deltas += report.deltas
                self.dropped += report.dropped
            return samples
        finally:
            self.close()

    def close(self) -> None:
        for process, conn in self.workers:
            if process.is_alive():
                process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()


async def run_fanout(
    kiosks: int,
    *,
    seconds: float,
    changes_per_s: float,
    redis_url: str | None = None,
    redis: Service | None = None,
    procs: int | None = None,
    per_ip: int = PER_IP,
    settle_s: float = 2.0,
    gateway_command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One measurement: a fresh gateway, ``kiosks`` clients, ``seconds`` of changes. Everything it
    starts is stopped before it returns or raises (a redis-server only if it started it)."""
    import redis.asyncio as aioredis

    directory = load_directory(DEFAULT_DIRECTORY)
    own_redis: Service | None = None
    if redis_url is None and redis is None:
        own_redis = redis = start_redis(appendonly=False)
    url = redis_url or (redis.url if redis is not None else "")
    namespace = f"fanout-{uuid.uuid4().hex[:8]}"
    procs = procs or default_procs(kiosks)
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    gateway: Gateway | None = None
    client = aioredis.from_url(url)
    try:
        specs = plan_kiosks(directory, kiosks, SECRET, per_ip)
        season = datetime.now(UTC).astimezone(directory.centres["C01"].timezone).strftime("%Y-%m")
        gateway = start_gateway(url, namespace, command=gateway_command)
        share = max(1, CONNECT_CONCURRENCY // procs)
        started = time.perf_counter()
        for p in range(procs):
            ours, theirs = context.Pipe()
            worker = context.Process(
                target=_client_process, args=(theirs, gateway.port, specs[p::procs], share), daemon=True
            )
            worker.start()
            theirs.close()
            workers.append((worker, ours))
        connected = failed = 0
        for _, conn in workers:
            _, ok, bad = await _recv(conn)
            connected, failed = connected + ok, failed + bad
        connect_s = time.perf_counter() - started
        _check_interrupted()
        await asyncio.sleep(settle_s)  # the snapshots' aftermath settles before anything is measured
        driver = Driver(League(client, namespace), directory, season)
        cpu_before, t_before = cpu_seconds(gateway.process.pid), time.monotonic()
        load_cpu_before = sum(cpu_seconds(w.pid) for w, _ in workers if w.pid is not None)
        await driver.run(seconds, changes_per_s)
        await asyncio.sleep(DRAIN_S)
        _check_interrupted()
        cpu = (cpu_seconds(gateway.process.pid) - cpu_before) / (time.monotonic() - t_before)
        load_cpu = (sum(cpu_seconds(w.pid) for w, _ in workers if w.pid is not None) - load_cpu_before) / (
            time.monotonic() - t_before
        )
        gateway_rss = rss_mb(gateway.process.pid)
        stored = {_text(k): int(v) for k, v in (await client.hgetall(f"{namespace}:versions")).items()}
        assert all(stored.get(b) == v for b, v in driver.versions.items()), "another writer in the namespace"
        for _, conn in workers:
            conn.send(("stop", driver.applied))
        reports: list[ClientReport] = [(await _recv(conn))[1] for _, conn in workers]
        latencies = np.concatenate([np.frombuffer(r.latencies_ms, dtype=np.float64) for r in reports])
        src = np.concatenate([np.frombuffer(r.src_ms, dtype=np.float64) for r in reports])
        connect_ms = [ms for r in reports for ms in r.connect_ms]
        return {
            "kiosks": kiosks,
            "connected": connected,
            "failed": failed,
            "connect_s": round(connect_s, 1),
            "connect_p50_ms": _pct(connect_ms, 50),
            "connect_p99_ms": _pct(connect_ms, 99),
            "changes": driver.offset,
            "changes_per_s": changes_per_s,
            "seconds": seconds,
            "deltas": sum(r.deltas for r in reports),
            "samples": len(latencies),
            "p50_ms": _pct(latencies, 50),
            "p95_ms": _pct(latencies, 95),
            "p99_ms": _pct(latencies, 99),
            "max_ms": round(float(latencies.max()), 1) if len(latencies) else None,
            "src_p50_ms": _pct(src, 50),
            "src_p99_ms": _pct(src, 99),
            "apply_p50_ms": _pct(driver.apply_ms, 50),
            "gateway_rss_mb": round(gateway_rss, 1),
            "gateway_cpu_pct": round(cpu * 100, 1),
            "procs": procs,
            "load_cpu_pct": round(load_cpu * 100, 1),
            "resyncs": sum(r.resyncs for r in reports),
            "dropped": sum(r.dropped for r in reports),
            "errors": [e for r in reports for e in r.errors][:5],
        }
    finally:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()
        for process, conn in workers:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        if gateway is not None:
            gateway.stop()
            if os.environ.get("FANOUT_KEEP_LOG"):
                print(gateway.log_path, file=sys.stderr)
            else:
                with contextlib.suppress(OSError):
                    gateway.log_path.unlink()
        with contextlib.suppress(Exception):
            await client.aclose()
        if own_redis is not None:
            own_redis.stop()


COLUMNS = (
    ("kiosks", "kiosks"),
    ("connected", "connected"),
    ("connect s", "connect_s"),
    ("connect p99 ms", "connect_p99_ms"),
    ("deltas", "deltas"),
    ("p50 ms", "p50_ms"),
    ("p95 ms", "p95_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("src p50/p99 ms", "src"),
    ("gateway RSS MB", "gateway_rss_mb"),
    ("gateway CPU %", "gateway_cpu_pct"),
    ("load CPU % (procs)", "load"),
    ("dropped", "dropped"),
)


def table(results: Sequence[dict[str, Any]]) -> str:
    def cell(result: dict[str, Any], key: str) -> str:
        if key == "src":
            return "-" if result["src_p50_ms"] is None else f"{result['src_p50_ms']}/{result['src_p99_ms']}"
        if key == "load":
            return f"{result['load_cpu_pct']} ({result['procs']})"
        return str(result[key])

    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, key) for _, key in COLUMNS) + " |" for r in results]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitstop.bench.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--kiosks", type=int, nargs="+", default=[1000, 2000, 10000])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long changes are applied, per count")
    parser.add_argument("--changes-per-s", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=None, help="client processes (default: by kiosk count)")
    parser.add_argument("--per-ip", type=int, default=PER_IP, help="kiosks per source address")
    parser.add_argument("--redis-url", default=None, help="a running Redis (default: start one)")
    parser.add_argument(
        "--gateway-loop",
        choices=("cli", "uvloop"),
        default="cli",
        help="cli: `pitstop gateway` as it is; uvloop: dashboards.gateway.main (the gateway on uvloop)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per kiosk count, one a line")
    args = parser.parse_args(argv)

    async def run_all() -> list[dict[str, Any]]:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def interrupt() -> None:
            global _interrupted
            _interrupted = True
            if task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupt)
        redis = None if args.redis_url else start_redis(appendonly=False)
        results = []
        try:
            for kiosks in args.kiosks:
                _check_interrupted()
                result = await run_fanout(
                    kiosks,
                    seconds=args.seconds,
                    changes_per_s=args.changes_per_s,
                    redis_url=args.redis_url,
                    redis=redis,
                    procs=args.procs,
                    per_ip=args.per_ip,
                    gateway_command=UVLOOP_GATEWAY if args.gateway_loop == "uvloop" else None,
                )
                results.append(result)
                if args.json:
                    print(orjson.dumps(result).decode(), flush=True)
                else:
                    print(f"{kiosks} kiosks: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms", flush=True)
        finally:
            if redis is not None:
                redis.stop()
        return results

    try:
        results = asyncio.run(run_all())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    if not args.json:
        print(table(results))
    return 0 if all(r["connected"] == r["kiosks"] and r["dropped"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
