"""Chaos G2: rebalances and broker bounces on Apache Kafka, checked against the oracle.

Two workers in one consumer group read a seeded stream (repeats and malformed records included, as in
G1) from a real Apache Kafka broker started here from its Maven jars. While the events flow:

- the workers are stopped and started alternately (SIGTERM, then a fresh process): each step moves
  partitions between them, a rebalance;
- the broker is bounced, keeping its data: half of the bounces with SIGTERM (a controlled shutdown),
  half with SIGKILL (log recovery on restart);
- one worker is frozen with SIGSTOP for longer than its session while the other takes its partitions,
  then thawed: it wakes up with a batch in hand and a stale group generation, so its offset commit fails
  during the rebalance that follows (the situation of Faust issue #316). Its late writes must not count.

Then the same checker as G1 runs (lost, duplicated, Σ points vs the oracle, Redis vs the ledger fold,
dead letters vs injected, the G4 replay), and the workers' logs are searched for the failed commits, so
the report shows the injection really happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from config.settings import Settings
from pitstop.apache_kafka import ApacheKafka
from pitstop.chaos import Report, WorkerProcess, _check, _wait_until_settled, make_plan, print_result
from pitstop.oracle import Oracle
from pitstop.services import free_port, start_redis, worker_events_read
from streams.simulator import produce_at_rate
from streams.topics import Topics, ensure_topics

SESSION_S = 6.0  # Apache Kafka's minimum session timeout: a frozen worker is evicted quickly
FREEZE_S = SESSION_S + 4.0
FREEZE_ATTEMPTS = 3
FREEZE_SHARE = 0.25  # of the events, held back to keep the worker busy while it is frozen
SETTLE_S = 3.0  # quiet time after each step, so one disruption is over before the next begins
# What aiokafka / Faust log when the group coordinator refuses an offset commit because the group moved on
# (not a commit lost to a broker that is down: that is the bounces' business).
COMMIT_REFUSED = re.compile(
    r"OffsetCommit failed .*(?:UnknownMemberId|IllegalGeneration|RebalanceInProgress)"
    r"|CommitFailedError|Commit cannot be completed"
)
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


@dataclass
class Step:
    action: str  # "stop", "start", "bounce-term", "bounce-kill" or "freeze"
    worker: str = ""  # "a" or "b" for stop / start / freeze
    seconds: float = 0.0  # how long the step took (for a bounce: how long the broker was unreachable)
    ended_at: float = 0.0  # wall-clock time.time() when it ended (for a freeze: the last thaw)
    attempts: int = 0  # freezes: how many it took to see a refused commit


def plan_steps(rebalances: int, bounces: int) -> list[Step]:
    """Stop/start the two workers alternately (a, a, b, b, ...), with the bounces spread evenly between
    them and the freeze after the first restart, when both workers are in the group."""
    moves = [Step(("stop", "start")[i % 2], "ab"[(i // 2) % 2]) for i in range(rebalances)]
    steps: list[Step] = []
    every = max(1, len(moves) // (bounces + 1))
    done_bounces = 0
    for n, move in enumerate(moves, 1):
        steps.append(move)
        if n == 2:
            steps.append(Step("freeze", "a"))
        if n % every == 0 and done_bounces < bounces:
            steps.append(Step("bounce-kill" if done_bounces % 2 else "bounce-term"))
            done_bounces += 1
    steps += [Step("bounce-kill" if b % 2 else "bounce-term") for b in range(done_bounces, bounces)]
    return steps


async def _drive(
    steps: list[Step],
    workers: dict[str, WorkerProcess],
    kafka: ApacheKafka,
    window_s: float,
    feed: Feed,
) -> None:
    started = time.monotonic()
    spacing = window_s / (len(steps) + 1)
    rng = random.Random(len(steps))
    for n, step in enumerate(steps, 1):
        await asyncio.sleep(max(SETTLE_S, n * spacing - (time.monotonic() - started)))
        t0 = time.monotonic()
        if step.action == "stop":
            other = workers["b" if step.worker == "a" else "a"]
            while not await asyncio.to_thread(other.joined):  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.1)  # someone must be left to take the partitions over
            await asyncio.to_thread(workers[step.worker].stop)
        elif step.action == "start":
            workers[step.worker].start()
            while not await asyncio.to_thread(workers[step.worker].joined):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        elif step.action == "freeze":
            frozen, other = workers[step.worker], workers["b" if step.worker == "a" else "a"]
            while not (await asyncio.to_thread(frozen.joined) and await asyncio.to_thread(other.joined)):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            # Freeze it while it is working, so it wakes up with offsets to commit. Each attempt brings
            # its own share of the events (held back from the main stream), so there is work to freeze
            # however long the earlier steps took. A worker whose offsets were all committed just before
            # the freeze only finds out from its heartbeat and rejoins without trying a commit: then
            # freeze it again (up to FREEZE_ATTEMPTS times).
            for attempt in range(FREEZE_ATTEMPTS):
                feeding = asyncio.create_task(feed.attempt(attempt))
                await _until_processing(frozen)
                frozen.pause()
                await asyncio.sleep(FREEZE_S)  # past its session: the group evicts it and rebalances
                frozen.resume()
                step.ended_at = time.time()
                step.attempts += 1
                await asyncio.sleep(SESSION_S)  # let it find out and rejoin before the next disruption
                await feeding
                if refused_commits(frozen.log_path, step.ended_at - 1, time.time()):
                    break
            await feed.rest()
            step.seconds = time.monotonic() - t0
            continue
        else:
            step.seconds = await asyncio.to_thread(
                kafka.bounce, kill=step.action == "bounce-kill", down_s=rng.uniform(0.5, 2.0)
            )
            step.ended_at = time.time()
            continue
        step.seconds = time.monotonic() - t0
        step.ended_at = time.time()


@dataclass
class Feed:
    """The events held back from the main stream for the freeze: one share per freeze attempt, produced
    while that attempt waits for the worker to be busy; the shares no attempt needed follow at the end."""

    bootstrap: str
    shares: list[list[tuple[str, bytes, bytes]]]
    rate: float
    used: int = 0

    @classmethod
    def hold_back(cls, bootstrap: str, records: list[tuple[str, bytes, bytes]], rate: float) -> tuple[Feed, list[Any]]:
        """Split off the last FREEZE_SHARE of ``records``; returns the feed and the main stream."""
        held = max(FREEZE_ATTEMPTS, int(len(records) * FREEZE_SHARE))
        main, reserve = records[:-held], records[-held:]
        size = -(-held // FREEZE_ATTEMPTS)
        return cls(bootstrap, [reserve[i : i + size] for i in range(0, held, size)], rate), main

    async def attempt(self, n: int) -> None:
        self.used = n + 1
        await produce_at_rate(self.bootstrap, self.shares[n], self.rate, idempotent=True)

    async def rest(self) -> None:
        for share in self.shares[self.used :]:
            await produce_at_rate(self.bootstrap, share, self.rate, idempotent=True)
        self.used = len(self.shares)


async def _until_processing(worker: WorkerProcess) -> None:
    """Wait (30 s at most) until the worker's count of events read has grown in three polls in a row."""
    port = int(worker.env["PITSTOP_WORKER_METRICS_PORT"])
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            growing, last = 0, await asyncio.to_thread(worker_events_read, port)
            while growing < 3:
                await asyncio.sleep(0.3)
                now = await asyncio.to_thread(worker_events_read, port)
                growing = growing + 1 if now > last else 0
                last = now


def refused_commits(log_path: Path, since: float, until: float) -> int:
    """Offset commits the coordinator refused, logged by one worker between two wall-clock times."""
    count = 0
    for line in log_path.read_text(errors="replace").splitlines():
        stamp = LOG_TIME.match(line)
        if stamp is None or not COMMIT_REFUSED.search(line):
            continue
        at = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000
        count += since <= at <= until
    return count


def run(*, quick: bool, seed: int, events: int | None, workdir: Path) -> tuple[Report, list[Step], dict[str, int]]:
    events = events or (4000 if quick else 30_000)
    rebalances, bounces = (4, 2) if quick else (10, 4)
    window_s = 45.0 if quick else 150.0
    t0 = time.monotonic()
    settings = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    topics = Topics(f"g2{run_id}.")
    namespace = f"g2{run_id}"
    redis_service = start_redis(appendonly=True, log_dir=workdir)
    workers: dict[str, WorkerProcess] = {}
    try:
        with ApacheKafka(work_dir=workdir, keep_dir=True) as kafka:
            env = {
                **os.environ,
                "PITSTOP_BROKER": f"kafka://{kafka.bootstrap}",
                "PITSTOP_REDIS_URL": redis_service.url,
                "PITSTOP_TOPIC_PREFIX": f"g2{run_id}",
                "PITSTOP_REDIS_NAMESPACE": namespace,
                "PITSTOP_APP_ID": f"pitstop-g2{run_id}",  # one group for both workers
                "PITSTOP_BROKER_SESSION_TIMEOUT_S": str(SESSION_S),
                "PITSTOP_BROKER_HEARTBEAT_INTERVAL_S": "1",
            }
            for name in ("a", "b"):
                worker_env = {**env, "PITSTOP_WORKER_METRICS_PORT": str(free_port())}
                workers[name] = WorkerProcess(worker_env, workdir / f"worker-{name}.log")
            plan = make_plan(
                seed, events, settings.directory_path, topics, dup_rate=0.05, bad_rate=0.02, follow_ups=0.05
            )
            asyncio.run(ensure_topics(Settings.from_env(env)))
            for worker in workers.values():
                worker.start()
            steps = plan_steps(rebalances, bounces)

            async def drive() -> None:
                rate = len(plan.records) / window_s
                feed, main = Feed.hold_back(kafka.bootstrap, list(plan.records), rate)
                await asyncio.gather(
                    produce_at_rate(kafka.bootstrap, main, rate, idempotent=True),
                    _drive(steps, workers, kafka, window_s, feed),
                )
                await feed.rest()  # a plan without a freeze still sends every event

            asyncio.run(drive())
            expected = Oracle(settings.rules_path, settings.directory_path).fold(plan.valid_events)
            client = redis.Redis.from_url(redis_service.url)
            _wait_until_settled(client, namespace, len(expected), list(workers.values()), timeout=300)
            report = _check(kafka.bootstrap, topics, client, namespace, plan, expected, kills=0, started=t0)
            for worker in workers.values():
                worker.stop()
    finally:
        for worker in workers.values():
            worker.stop()
        redis_service.stop()
    # Refused commits of the thawed worker in the seconds after its thaw, and of anyone at any time.
    after_thaw = sum(
        refused_commits(workers[s.worker].log_path, s.ended_at - 1, s.ended_at + 15)
        for s in steps
        if s.action == "freeze"
    )
    failed_commits = {
        "after_thaw": after_thaw,
        **{name: refused_commits(w.log_path, 0, time.time() + 1) for name, w in workers.items()},
    }
    report.scenario = "G2-quick" if quick else "G2"
    report.details.update(
        rebalances=sum(1 for s in steps if s.action in ("stop", "start")),
        bounces=sum(1 for s in steps if s.action.startswith("bounce")),
        freezes=sum(s.attempts for s in steps if s.action == "freeze"),
        steps=[f"{s.action}{':' + s.worker if s.worker else ''} {s.seconds:.1f}s" for s in steps],
        refused_commits=failed_commits,
        worker_crashes=sum(w.crashes for w in workers.values()),
    )
    report.seconds = round(time.monotonic() - t0, 1)
    return report, steps, failed_commits


def main(*, quick: bool, as_json: bool, seed: int, events: int | None) -> int:
    # The harness's own producer complains loudly while the broker is down; that is the point here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="pitstop-g2-"))
    report, _, failed_commits = run(quick=quick, seed=seed, events=events, workdir=workdir)
    result: dict[str, Any] = dict(report.__dict__)
    # The freeze must have produced a refused commit, or the scenario did not test what it claims.
    injected = failed_commits["after_thaw"] > 0
    result["failed_commit_injected"] = injected
    return print_result(result, report.ok and injected, as_json=as_json, logs=workdir)
