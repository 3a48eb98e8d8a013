"""``pitstop demo``: the whole engine on one machine, started by one command.

Starts the embedded Kafka-protocol broker and a redis-server (unless ``PITSTOP_BROKER`` /
``PITSTOP_REDIS_URL`` point at running ones), creates the topics, then runs the worker, the gateway
and the simulator as child processes, prints the kiosk URL, and stops everything it started on
Ctrl-C (or SIGTERM, or after ``--duration`` seconds), in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from config.directory import load_directory
from config.settings import Settings
from dashboards.tokens import issue_token
from pitstop.services import Service, ServiceError, free_port, start_redis, start_tansu
from streams.topics import ensure_topics


def _say(message: str) -> None:
    print(f"[pitstop demo] {message}", flush=True)


def run_demo(*, rate: float, port: int, duration: float | None, centre: str | None, seed: int) -> int:
    t0 = time.monotonic()
    settings = Settings.from_env()
    directory = load_directory(settings.directory_path)
    centre = centre or sorted(directory.centres)[0]
    if centre not in directory.centres:
        _say(f"unknown centre {centre!r}; known: {', '.join(sorted(directory.centres))}")
        return 2
    services: list[Service] = []
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    logs = Path(os.environ.get("PITSTOP_DEMO_LOGS", ".pitstop/demo-logs")).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    try:
        if "PITSTOP_BROKER" not in os.environ:
            broker = start_tansu(log_dir=logs)
            services.append(broker)
            settings = replace(settings, broker=broker.url)
            _say(f"embedded broker (Tansu) on {broker.url}  [{time.monotonic() - t0:.1f}s]")
        else:
            _say(f"using broker {settings.broker}")
        if "PITSTOP_REDIS_URL" not in os.environ:
            redis = start_redis(appendonly=False, log_dir=logs)
            services.append(redis)
            settings = replace(settings, redis_url=redis.url)
            _say(f"redis-server on {redis.url}  [{time.monotonic() - t0:.1f}s]")
        else:
            _say(f"using Redis {settings.redis_url}")
        asyncio.run(ensure_topics(settings))
        gateway_port = port if port and _port_free(port) else free_port()  # 0: any free port
        env = {
            **os.environ,
            "PITSTOP_BROKER": settings.broker,
            "PITSTOP_REDIS_URL": settings.redis_url,
            "PITSTOP_GATEWAY_PORT": str(gateway_port),
            "PITSTOP_WORKER_METRICS_PORT": str(free_port()),
            "PITSTOP_TOKEN_SECRET": settings.token_secret,
            "PYTHONUNBUFFERED": "1",
        }
        python = [sys.executable, "-m", "pitstop"]
        for name, args in (
            ("worker", ["worker"]),
            ("gateway", ["gateway"]),
            ("simulator", ["simulate", "--rate", str(rate), "--seed", str(seed)]),
        ):
            with (logs / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
                children.append((name, subprocess.Popen(python + args, env=env, stdout=log, stderr=subprocess.STDOUT)))
        gateway = dict(children)["gateway"]
        if not _wait_listening(gateway_port, gateway, timeout=30.0):  # the URLs below work once printed
            _say(f"the gateway did not listen on port {gateway_port}; see {logs / 'gateway.log'}")
            return 1
        token = issue_token(settings.token_secret, "kiosk", centre, ttl_s=7 * 86400)
        url = f"http://127.0.0.1:{gateway_port}/kiosk?token={token}"
        _say(f"worker, gateway and simulator ({rate:g} events/s) started  [{time.monotonic() - t0:.1f}s]")
        _say(f"logs in {logs}")
        _say(f"worker metrics: http://127.0.0.1:{env['PITSTOP_WORKER_METRICS_PORT']}/metrics")
        _say(f"gateway metrics: http://127.0.0.1:{gateway_port}/metrics")
        region = directory.centres[centre].region
        giver = next((m.id for m in directory.managers_of(centre)), None)  # gives spot awards from the page
        manager = issue_token(settings.token_secret, "manager", region, ttl_s=7 * 86400, staff=giver)
        _say(f"SLA alerts, KPIs and spot awards for the {region} region's managers:")
        print(f"MANAGER_URL=http://127.0.0.1:{gateway_port}/manager?token={manager}", flush=True)
        _say(f"kiosk for {directory.centres[centre].name} ({centre}):")
        print(f"KIOSK_URL={url}", flush=True)
        _say("press Ctrl-C to stop")
        deadline = None if duration is None else time.monotonic() + duration
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    _say(f"{name} exited with code {child.returncode}; see {logs / (name + '.log')}")
                    stopping = True
            if deadline is not None and time.monotonic() >= deadline:
                stopping = True
            time.sleep(0.2)
        return 0 if all(c.poll() is None for _, c in children) else 1
    except ServiceError as exc:
        _say(str(exc))
        return 1
    finally:
        _say("stopping…")
        for _, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in 15 s; killing it")
                child.kill()
                child.wait()
        for service in reversed(services):
            service.stop()
        _say("stopped")


def _wait_listening(port: int, process: subprocess.Popen[bytes], *, timeout: float) -> bool:
    """Until something accepts connections on the loopback port (False if ``process`` exits or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
