"""A real single-node Apache Kafka broker (KRaft) built from Maven Central jars.

Used by integration tests (Faust / aiokafka) and runnable on its own::

    python -m pitstop.apache_kafka               # fetch jars, start, print KAFKA_BOOTSTRAP=..., run until ^C
    python -m pitstop.apache_kafka --fetch-only  # only download the jars, print the libs directory

The jar closure is resolved by ``mvn dependency:copy-dependencies`` from ``kafka_dist/pom.xml`` into a cache
directory (``$PITSTOP_CACHE_DIR/kafka-<version>`` or ``~/.cache/pitstop/kafka-<version>``). Set
``PITSTOP_MAVEN_REPO`` to use a specific local Maven repository (``-Dmaven.repo.local``), e.g. a fresh one to
simulate a clean CI machine.

Requires ``java`` (17) and ``mvn`` on PATH (or ``JAVA_HOME``). Only the readiness probe uses a third-party
package (aiokafka); everything else is stdlib.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, TypeVar

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "ApacheKafkaError",
    "KafkaJarsError",
    "KafkaStartError",
    "KafkaToolMissingError",
    "ensure_jars",
    "main",
]

_T = TypeVar("_T")

DIST_DIR: Final[Path] = Path(__file__).resolve().parent / "kafka_dist"
POM_PATH: Final[Path] = DIST_DIR / "pom.xml"
LOG4J_PATH: Final[Path] = DIST_DIR / "log4j.properties"

_MARKER_NAME: Final = ".complete"
_POM_NS: Final = "{http://maven.apache.org/POM/4.0.0}"

# Small-machine JVM flags (2 cores): small heap, serial GC, C1 only for fast startup, IPv4 loopback.
BROKER_JVM_OPTS: Final[tuple[str, ...]] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)
FORMAT_JVM_OPTS: Final[tuple[str, ...]] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)


class ApacheKafkaError(RuntimeError):
    """Base class for every error raised by this module."""


class KafkaToolMissingError(ApacheKafkaError):
    """``java`` or ``mvn`` is not installed / not on PATH."""


class KafkaJarsError(ApacheKafkaError):
    """Resolving or copying the broker jars with Maven failed."""


class KafkaStartError(ApacheKafkaError):
    """Formatting or starting the broker failed, or it did not become ready in time."""


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _read_kafka_version(pom: Path = POM_PATH) -> str:
    root = ET.parse(pom).getroot()
    node = root.find(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    if node is None or not (node.text or "").strip():
        raise KafkaJarsError(f"{pom} has no <properties><kafka.version>")
    return (node.text or "").strip()


KAFKA_VERSION: Final[str] = _read_kafka_version()


_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` non-blank lines of ``text``, without ANSI colour codes (Maven emits some even in -B)."""
    kept = [ln for ln in _ANSI_ESCAPE.sub("", text).splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def _file_tail(path: Path, lines: int = 60) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError:
        return f"<{path} not readable>"


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaToolMissingError(
            "`java` not found (neither $JAVA_HOME/bin/java nor on PATH); install a JDK 17, "
            "e.g. `apt-get install openjdk-17-jdk-headless`"
        )
    return found


def _find_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise KafkaToolMissingError("`mvn` not found on PATH; install Maven, e.g. `apt-get install maven`")
    return found


def default_cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("PITSTOP_CACHE_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "pitstop"
    return root / f"kafka-{version}"


def _pom_digest() -> str:
    h = hashlib.sha256(POM_PATH.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so parallel test workers download only once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_jars(
    cache_dir: Path | None = None,
    *,
    maven_repo: Path | None = None,
    timeout: float = 1800.0,
) -> Path:
    """Return a directory holding the broker's jars, downloading them with Maven the first time.

    The copy is reused when ``<cache_dir>/.complete`` exists and records the current POM's hash; the marker is
    written only after a successful copy, so an interrupted download is redone from scratch.
    ``maven_repo`` (or ``$PITSTOP_MAVEN_REPO``) sets ``-Dmaven.repo.local``.
    """
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    libs = cache / "libs"
    marker = cache / _MARKER_NAME
    digest = _pom_digest()

    def complete() -> bool:
        try:
            return marker.read_text(encoding="utf-8").strip() == digest and any(libs.glob("kafka_2.13-*.jar"))
        except OSError:
            return False

    if complete():
        return libs
    java = _find_java()  # the jars are useless without it: fail early, before a long download
    mvn = _find_mvn()
    with _locked(cache / ".lock"):
        if complete():  # another process finished while we waited for the lock
            return libs
        marker.unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ]
        env_repo = os.environ.get("PITSTOP_MAVEN_REPO")
        repo = maven_repo or (Path(env_repo) if env_repo else None)
        if repo is not None:
            cmd.append(f"-Dmaven.repo.local={repo.expanduser().resolve()}")
        env = dict(os.environ)
        env.setdefault("JAVA_HOME", str(Path(java).resolve().parent.parent))
        try:
            proc = subprocess.run(
                cmd,
                cwd=str(DIST_DIR),
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaJarsError(f"`{' '.join(cmd)}` timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0:
            # Maven prints [ERROR] lines on stdout, the JVM's own failures on stderr: show both tails.
            raise KafkaJarsError(
                f"`{' '.join(cmd)}` failed with exit code {proc.returncode}\n"
                f"--- stderr (tail) ---\n{_tail(proc.stderr)}\n--- stdout (tail) ---\n{_tail(proc.stdout)}"
            )
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaJarsError(f"Maven succeeded but {libs} holds no kafka_2.13 jar:\n{_tail(proc.stdout)}")
        marker.write_text(digest + "\n", encoding="utf-8")
    return libs


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback TCP ports (bound to port 0 together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _random_cluster_id() -> str:
    """What Kafka's ``Uuid.randomUuid().toString()`` prints: 16 random bytes, base64url, no padding, and,
    like Kafka's own, never starting with '-' (the storage tool would read it as an option: 1 start in 64
    failed with "argument --cluster-id/-t: expected one argument")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion, also when the caller is itself inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[_T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    t = threading.Thread(target=runner, name="pitstop-kafka-probe", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


class _ThisThreadOnly(logging.Filter):
    """Drops the log records emitted by one thread (the probe's expected "Unable connect to ..." errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.ident


_AIOKAFKA_LOGGERS: Final = ("aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.admin.client")


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    flt = _ThisThreadOnly()
    loggers = [logging.getLogger(name) for name in _AIOKAFKA_LOGGERS]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


async def _probe(bootstrap: str, timeout_s: float) -> list[str]:
    """One real Kafka request (Metadata via the admin client); a bare TCP connect is not enough in KRaft."""
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

    with _quiet_aiokafka():
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="pitstop-readiness-probe",
        )
        try:
            async with asyncio.timeout(timeout_s * 2):
                await admin.start()
                topics: list[str] = list(await admin.list_topics())
                return topics
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


# ----------------------------------------------------------------------------------------------------
# the broker
# ----------------------------------------------------------------------------------------------------


class ApacheKafka:
    """A combined broker+controller KRaft node on free loopback ports, with a fresh temporary data dir.

    >>> with ApacheKafka() as kafka:
    ...     print(kafka.bootstrap)      # 127.0.0.1:PORT
    """

    def __init__(
        self,
        *,
        libs_dir: Path | None = None,
        cache_dir: Path | None = None,
        startup_timeout: float = 90.0,
        keep_dir: bool = False,
        work_dir: Path | None = None,
        extra_properties: Mapping[str, str] | None = None,
        jvm_opts: Sequence[str] = BROKER_JVM_OPTS,
    ) -> None:
        self._libs_dir = libs_dir
        self._cache_dir = cache_dir
        self.startup_timeout = startup_timeout
        self.keep_dir = keep_dir
        self._work_parent = work_dir
        self._extra_properties = dict(extra_properties or {})
        self._jvm_opts = tuple(jvm_opts)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._run_dir: Path | None = None
        self._command: list[str] = []
        self._lock = threading.Lock()
        #: of the last start(): seconds in StorageTool format, and from launch to the first answered request
        self.format_seconds: float | None = None
        self.ready_seconds: float | None = None

    # -- properties -----------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if self._port is None:
            raise ApacheKafkaError("broker not started")
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ApacheKafkaError("broker not started")
        return self._proc.pid

    @property
    def run_dir(self) -> Path:
        """Temporary directory with server.properties, data/ and logs/ (server.log, stdout.log)."""
        if self._run_dir is None:
            raise ApacheKafkaError("broker not started")
        return self._run_dir

    @property
    def server_log(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        if self._port is None or self._controller_port is None or self._run_dir is None:
            raise ApacheKafkaError("ports and run dir are chosen by start()")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # static quorum: format without --standalone (works on 3.9 and 4.x)
            "controller.quorum.voters": f"1@127.0.0.1:{self._controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self._port},CONTROLLER://127.0.0.1:{self._controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._run_dir / "data"),
            # single node: internal topics must not ask for 3 replicas / min ISR 2
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # test speed: fewer internal partitions, no first-join delay
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # auto-created topics match Faust's topic_partitions=4 used by the tests
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            # small machine: fewer threads, 16 MiB cleaner buffer instead of a 128 MiB heap allocation
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": "16777216",
        }
        props.update(self._extra_properties)
        return props

    def _java_base(self, java: str, libs: Path, opts: Sequence[str], logs_dir: Path) -> list[str]:
        return [
            java,
            *opts,
            f"-Dlog4j.configuration=file:{LOG4J_PATH}",
            f"-Dkafka.logs.dir={logs_dir}",
            "-cp",
            f"{libs}/*",  # expanded by the JVM, never by a shell
        ]

    def start(self) -> ApacheKafka:
        """Format fresh storage, launch the broker and block until it answers a Metadata request."""
        with self._lock:
            if self.is_running():
                return self
            java = _find_java()
            libs = self._libs_dir or ensure_jars(self._cache_dir)
            self._port, self._controller_port = _free_ports(2)
            parent = self._work_parent
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self._run_dir = Path(tempfile.mkdtemp(prefix="pitstop-kafka-", dir=parent))
            try:
                self._format_and_launch(java, libs)
                self._wait_ready()
            except BaseException:
                self._stop_locked()
                raise
            atexit.register(self.stop)
            return self

    def _format_and_launch(self, java: str, libs: Path) -> None:
        run = self.run_dir
        (run / "data").mkdir()
        (run / "logs").mkdir()
        props_path = run / "server.properties"
        props_path.write_text(
            "".join(f"{k}={v}\n" for k, v in self.server_properties().items()),
            encoding="utf-8",
        )
        fmt = [
            # own log dir, so logs/server.log holds only the broker's log
            *self._java_base(java, libs, FORMAT_JVM_OPTS, run / "logs" / "format"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(props_path),
        ]
        t0 = time.monotonic()
        try:
            res = subprocess.run(
                fmt, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaStartError("kafka.tools.StorageTool format timed out after 120s") from exc
        self.format_seconds = time.monotonic() - t0
        if res.returncode != 0:
            raise KafkaStartError(
                f"kafka.tools.StorageTool format failed (exit {res.returncode}):\n"
                f"{_tail(res.stdout)}\n{_tail(res.stderr)}"
            )
        self._command = [*self._java_base(java, libs, self._jvm_opts, run / "logs"), "kafka.Kafka", str(props_path)]
        self._launch()

    def _launch(self) -> None:
        run = self.run_dir
        with (run / "logs" / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(run),
                # own session: a ^C in the terminal reaches only us; we stop the broker cleanly
                start_new_session=True,
            )

    def _failure_report(self) -> str:
        run = self.run_dir
        return (
            f"--- {run / 'logs' / 'server.log'} (tail) ---\n{_file_tail(run / 'logs' / 'server.log')}\n"
            f"--- {run / 'logs' / 'stdout.log'} (tail) ---\n{_file_tail(run / 'logs' / 'stdout.log', 20)}"
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        last: BaseException | None = None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise KafkaStartError(f"Kafka broker exited with code {rc} during startup\n{self._failure_report()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaStartError(
                    f"Kafka at {self.bootstrap} not ready after {self.startup_timeout:g}s "
                    f"(last probe error: {last!r})\n{self._failure_report()}"
                )
            try:
                _run_coroutine(_probe(self.bootstrap, max(1.0, min(5.0, remaining))))
            except Exception as exc:  # connection refused, timeouts, KafkaError, ...
                last = exc
                time.sleep(0.25)
            else:
                self.ready_seconds = time.monotonic() - t0
                return

    def bounce(self, *, kill: bool = False, down_s: float = 1.0) -> float:
        """Stop the broker (SIGTERM, a controlled shutdown, or SIGKILL), keep its data, start it again on
        the same ports ``down_s`` later and wait until it answers. Returns the seconds it was unreachable."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise ApacheKafkaError("broker not running")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            time.sleep(down_s)
            self._launch()
            self._wait_ready()
            return time.monotonic() - t0

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Kafka's shutdown hook stops it cleanly), SIGKILL after ``timeout`` s, then clean up."""
        with self._lock:
            self._stop_locked(timeout)
        atexit.unregister(self.stop)

    def _stop_locked(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if self._run_dir is not None and not self.keep_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------


class _Interrupted(BaseException):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pitstop.apache_kafka",
        description=f"Run a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) from Maven Central jars.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"jar cache (default: {default_cache_dir()})")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness (default: 90)")
    parser.add_argument("--fetch-only", action="store_true", help="only download the jars and print the libs directory")
    parser.add_argument("--keep", action="store_true", help="keep the broker's temp dir on exit")
    args = parser.parse_args(argv)

    try:
        libs = ensure_jars(args.cache_dir)
    except ApacheKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the marker is not written, so the next call downloads again
        print("interrupted", file=sys.stderr)
        return 130
    if args.fetch_only:
        print(libs, flush=True)
        return 0

    stop_requested = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        if starting:
            raise _Interrupted(signum)

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    kafka = ApacheKafka(libs_dir=libs, startup_timeout=args.timeout, keep_dir=args.keep)
    try:
        try:
            kafka.start()
        except ApacheKafkaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        starting = False
        print(f"KAFKA_BOOTSTRAP={kafka.bootstrap}", flush=True)
        print(
            f"kafka {KAFKA_VERSION} pid={kafka.pid} dir={kafka.run_dir} (^C to stop)",
            file=sys.stderr,
            flush=True,
        )
        while not stop_requested.wait(1.0):
            if not kafka.is_running():
                print(f"error: broker died\n{kafka._failure_report()}", file=sys.stderr)
                return 1
        return 0
    except _Interrupted as exc:
        return 128 + int(exc.args[0])
    finally:
        starting = False
        kafka.stop()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
