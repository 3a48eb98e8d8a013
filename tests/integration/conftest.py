"""Real infrastructure for integration tests: a Kafka-protocol broker, redis-server, and the worker and
gateway as real processes (``python -m pitstop worker|gateway``).

The broker is chosen by ``PITSTOP_TEST_BROKER``: unset or ``embedded`` starts the embedded broker
(Tansu); ``apache`` fetches and starts Apache Kafka 3.9 (pitstop.apache_kafka); ``kafka://HOST:PORT``
uses a running one. Each test module gets its own topic prefix, Redis namespace and processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from pitstop.services import Service, free_port, start_redis, start_tansu
from streams.simulator import topic_for
from streams.topics import Topics, read_topic
from tests.conftest import ROOT, seconds

SECRET = "integration-test-secret-0123456789abcdef"


@dataclass
class Broker:
    kind: str
    bootstrap: str

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    choice = os.environ.get("PITSTOP_TEST_BROKER", "embedded")
    if choice == "embedded":
        service = start_tansu(log_dir=tmp_path_factory.mktemp("tansu"))
        try:
            yield Broker("embedded", service.url.removeprefix("kafka://"))
        finally:
            service.stop()
    elif choice == "apache":
        from pitstop.apache_kafka import ApacheKafka

        with ApacheKafka() as kafka:
            yield Broker("apache", kafka.bootstrap)
    elif choice.startswith("kafka://"):
        yield Broker("external", choice.removeprefix("kafka://"))
    else:
        raise pytest.UsageError(f"PITSTOP_TEST_BROKER={choice!r}: expected embedded, apache or kafka://HOST:PORT")


@pytest.fixture(scope="module")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A private redis-server per module, so a test may FLUSHALL without touching other modules."""
    service = start_redis(log_dir=tmp_path_factory.mktemp("redis"))
    try:
        yield service
    finally:
        service.stop()


@dataclass
class Stack:
    """The worker and gateway processes of one test module, and helpers to talk to them."""

    broker: Broker
    redis_url: str
    env: dict[str, str]
    topics: Topics
    namespace: str
    gateway_port: int
    worker_metrics_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/ws"

    def token(self, kind: str, subject: str) -> str:
        from dashboards.tokens import issue_token

        return issue_token(SECRET, kind, subject)

    async def produce(self, *items: dict[str, Any] | tuple[str, bytes]) -> None:
        """Produce events (dicts go to their family's topic) or raw ``(topic base name, bytes)`` records."""
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, acks="all")
        await producer.start()
        try:
            for item in items:
                if isinstance(item, dict):
                    await producer.send_and_wait(
                        topic_for(self.topics, item), orjson.dumps(item), key=str(item["centre_id"]).encode()
                    )
                else:
                    await producer.send_and_wait(self.topics.name(item[0]), item[1], key=b"C01")
        finally:
            await producer.stop()

    async def read_topic(self, topic: str) -> list[Any]:
        """Every record currently on a topic, all partitions, from offset 0."""
        return [m async for batch in read_topic(self.broker.bootstrap, topic) for m in batch]

    async def ledger(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in await self.read_topic(self.topics.ledger)]

    async def wait_for(self, what: str, check: Any, timeout: float = 30.0) -> Any:
        """Poll the async or sync ``check`` until it returns something truthy."""
        deadline = time.monotonic() + seconds(timeout)
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            self.assert_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = self.logs[name].read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {process.returncode}:\n{tail}")

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        """Start ``pitstop <name>`` (worker or gateway), its output appended to its log."""
        with self.logs[name].open("ab") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "pitstop", name],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(seconds(30))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait_ready(self) -> None:
        """Until the worker has partitions and the gateway serves."""
        deadline = time.monotonic() + seconds(90)
        while (_metric(self.worker_metrics_port, "pitstop_worker_assigned_partitions") or 0) <= 0 or _metric(
            self.gateway_port, "pitstop_ws_snapshots_total"
        ) is None:
            self.assert_alive()
            assert time.monotonic() < deadline, "worker or gateway not ready after 90 s"
            time.sleep(0.1)

    def run_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pitstop", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=seconds(120),
            check=False,
        )


def _metric(port: int, name: str) -> float | None:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


@contextlib.contextmanager
def running_stack(
    broker: Broker, redis_service: Service, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A worker and a gateway with their own topic prefix and Redis namespace; ``env`` adds settings."""
    run = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp(f"stack-{run}")
    full_env = {
        **os.environ,
        "PITSTOP_BROKER": broker.url,
        "PITSTOP_REDIS_URL": redis_service.url,
        "PITSTOP_TOPIC_PREFIX": f"t{run}",
        "PITSTOP_REDIS_NAMESPACE": f"t{run}",
        "PITSTOP_APP_ID": f"pitstop-t{run}",
        "PITSTOP_GATEWAY_PORT": str(free_port()),
        "PITSTOP_WORKER_METRICS_PORT": str(free_port()),
        "PITSTOP_TOKEN_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    stack = Stack(
        broker,
        redis_service.url,
        full_env,
        Topics(f"t{run}."),
        f"t{run}",
        int(full_env["PITSTOP_GATEWAY_PORT"]),
        int(full_env["PITSTOP_WORKER_METRICS_PORT"]),
    )
    try:
        for name in ("worker", "gateway"):
            stack.logs[name] = logs / f"{name}.log"
            stack.start(name)
        stack.wait_ready()
        yield stack
    finally:
        for process in stack.processes.values():
            process.terminate()
        for process in stack.processes.values():
            try:
                process.wait(seconds(20))
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def stack(broker: Broker, redis_service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(broker, redis_service, tmp_path_factory) as running:
        yield running
