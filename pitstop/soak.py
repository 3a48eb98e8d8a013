"""Chaos G7: a soak. The whole pipeline under a steady load for a while; does memory stay flat?

Runs the embedded broker, redis-server, a worker and a gateway (real processes) with one connected kiosk
per centre, produces simulated events at a fixed rate for ``minutes``, samples every 5 s the worker's and
the gateway's RSS, Redis's memory and the backlog (produced - read by the worker), then stops producing
and measures how long the backlog takes to drain. RSS growth compares the second quarter of the run
(after warm-up) with the last quarter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import redis
from websockets.asyncio.client import connect

from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, Settings
from dashboards.tokens import issue_token
from pitstop.chaos import print_result
from pitstop.services import Service, free_port, rss_mb, start_redis, start_tansu, worker_events_read
from streams.simulator import Simulator, produce_at_rate, topic_for
from streams.topics import Topics, ensure_topics

SECRET = "soak-scenario-secret-0123456789abcdefgh"


def _quarter_mean(values: list[float], quarter: int) -> float:
    n = len(values)
    part = values[n * quarter // 4 : max(n * (quarter + 1) // 4, n * quarter // 4 + 1)]
    return sum(part) / len(part)


async def _run(minutes: float, rate: float, broker: Service, redis_service: Service) -> dict[str, Any]:
    directory = load_directory(DEFAULT_DIRECTORY)
    run = uuid.uuid4().hex[:8]
    metrics_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "PITSTOP_BROKER": broker.url,
        "PITSTOP_REDIS_URL": redis_service.url,
        "PITSTOP_TOPIC_PREFIX": f"soak{run}",
        "PITSTOP_REDIS_NAMESPACE": f"soak{run}",
        "PITSTOP_APP_ID": f"soak{run}",
        "PITSTOP_WORKER_METRICS_PORT": str(metrics_port),
        "PITSTOP_GATEWAY_PORT": str(gateway_port),
        "PITSTOP_TOKEN_SECRET": SECRET,
    }
    topics = Topics(f"soak{run}.")
    await ensure_topics(Settings.from_env(env))
    procs = {
        name: subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", "pitstop", name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        for name in ("worker", "gateway")
    }
    stop = asyncio.Event()
    client = redis.Redis.from_url(redis_service.url)
    try:
        while worker_events_read(metrics_port) < 0:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.2)

        async def kiosk(centre: str) -> int:
            received = 0
            for _ in range(50):  # the gateway may still be starting
                try:
                    async with connect(f"ws://127.0.0.1:{gateway_port}/ws") as ws:
                        token = issue_token(SECRET, "kiosk", centre)
                        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                        while not stop.is_set():
                            try:
                                await asyncio.wait_for(ws.recv(), 1.0)
                                received += 1
                            except TimeoutError:
                                continue
                        return received
                except OSError:
                    await asyncio.sleep(0.2)
            return received

        sim = Simulator(directory, seed=11)
        total = int(minutes * 60 * rate)

        def records() -> Any:
            from datetime import UTC, datetime

            for _ in range(total):
                event = sim.event(datetime.now(UTC))
                yield topic_for(topics, event), str(event["centre_id"]).encode(), orjson.dumps(event)

        kiosks = [asyncio.create_task(kiosk(c)) for c in sorted(directory.centres)]
        producing = asyncio.create_task(produce_at_rate(broker.url.removeprefix("kafka://"), records(), rate))
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        while not producing.done():
            await asyncio.sleep(5.0)
            produced_so_far = min(total, int((time.monotonic() - started) * rate))
            samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "worker_rss_mb": rss_mb(procs["worker"].pid),
                    "gateway_rss_mb": rss_mb(procs["gateway"].pid),
                    "redis_mb": int(client.info("memory")["used_memory"]) / 2**20,
                    "backlog": produced_so_far - worker_events_read(metrics_port),
                }
            )
        produced = await producing
        drain_started = time.monotonic()
        while worker_events_read(metrics_port) < produced and time.monotonic() - drain_started < 120:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        drained_s = round(time.monotonic() - drain_started, 1)
        final_backlog = produced - worker_events_read(metrics_port)
        stop.set()
        pushes = sum(await asyncio.gather(*kiosks))
        worker_rss = [s["worker_rss_mb"] for s in samples]
        gateway_rss = [s["gateway_rss_mb"] for s in samples]
        return {
            "scenario": "G7",
            "minutes": minutes,
            "events": produced,
            "rate_per_s": rate,
            "kiosk_messages": pushes,
            "worker_rss_mb": {
                "q2": round(_quarter_mean(worker_rss, 1), 1),
                "q4": round(_quarter_mean(worker_rss, 3), 1),
            },
            "gateway_rss_mb": {
                "q2": round(_quarter_mean(gateway_rss, 1), 1),
                "q4": round(_quarter_mean(gateway_rss, 3), 1),
            },
            "worker_rss_growth_pct": round(100 * (_quarter_mean(worker_rss, 3) / _quarter_mean(worker_rss, 1) - 1), 1),
            "gateway_rss_growth_pct": round(
                100 * (_quarter_mean(gateway_rss, 3) / _quarter_mean(gateway_rss, 1) - 1), 1
            ),
            "redis_mb_end": round(samples[-1]["redis_mb"], 1),
            "redis_bytes_per_event": round(samples[-1]["redis_mb"] * 2**20 / max(produced, 1)),
            "max_backlog": max(s["backlog"] for s in samples),
            "final_backlog": final_backlog,
            "drain_s": drained_s,
        }
    finally:
        stop.set()
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:  # longer than the worker's own bounded shutdown (20 s), after which it exits by itself
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(*, as_json: bool, minutes: float, rate: float) -> int:
    broker, redis_service = start_tansu(), start_redis(appendonly=False)
    try:
        result = asyncio.run(_run(minutes, rate, broker, redis_service))
    finally:
        redis_service.stop()
        broker.stop()
    ok = result["final_backlog"] == 0 and result["worker_rss_growth_pct"] < 10 and result["gateway_rss_growth_pct"] < 10
    return print_result(result, ok, as_json=as_json)
