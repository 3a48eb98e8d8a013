"""Fuzzed inputs for the edge of the engine, and chaos G5: thousands of them through the real broker.

The generators (Hypothesis strategies) are shared by the unit-level fuzz tests and by G5:

- events drawn from the published JSON Schemas (any type), sometimes with a phone number planted in
  one of their strings;
- well-formed events of real staff with phone numbers and odd unicode planted in their free text;
- binary junk, JSON oddities (NaN, Infinity, integers beyond 64 bits, deep nesting), invalid UTF-8,
  lone surrogates, payloads of about 1 MB, and valid events sent to the wrong topic;
- record keys that are junk or phone numbers.

G5 produces them to the source topics of a running stack (embedded broker, redis-server, a worker and a
gateway with one kiosk per centre connected), waits until the worker has read every record, and checks:
the worker never crashed; every record was accounted for (scored, repeated or dead-lettered); every
input that cannot be valid is on the dead-letter topic with its six headers; and none of the planted
phone numbers appears in the worker's or the gateway's log, on the dead-letter topic (values, keys,
headers), on the ledger, on the Redis award channel or in any kiosk push.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, Settings
from streams.contract import EVENT_TYPES, FAMILY_TOPICS, schema_for
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

SECRET = "fuzz-scenario-secret-0123456789abcdefgh"  # the run's own token secret
DEAD_LETTER_HEADERS = frozenset(
    {"original.topic", "original.partition", "original.offset", "original.timestamp", "error.kind", "error.message"}
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of the subset of JSON Schema the event contract uses (hypothesis-jsonschema does not
    work with current Hypothesis)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}) for k in kind])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**6)
            )
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 50), 50))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(
            from_schema(schema["items"]), min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 5)
        )
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties:  # free-form attributes
            return st.dictionaries(st.text(max_size=8), from_schema(schema["additionalProperties"]), max_size=4)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"schema construct not covered: {schema}")


_BY_TYPE = {t: from_schema(schema_for(t)) for t in EVENT_TYPES}
# Mobile numbers in the shapes people type them; each fuzz input plants its own, so a leak is traceable.
# The digits come from a seeded Random, not from an integer strategy: Hypothesis favours boundary values
# (9999999999) that it also puts in amounts and ids, which would make a coincidence look like a leak.
phones = st.builds(
    lambda rng, shape: shape.format(n=f"{rng.choice('6789')}{rng.randrange(10**9):09d}"),
    st.randoms(use_true_random=True),
    st.sampled_from(
        ["{n}", "+91 {n}", "+91-{n}", "0{n}", "{n[0]}{n[1]}{n[2]}{n[3]}{n[4]} {n[5]}{n[6]}{n[7]}{n[8]}{n[9]}"]
    ),
)
ODD_TEXT = st.sampled_from(
    ["\u202eevil", "zero\u200bwidth", "\ufeffbom", "nul\x00byte", "emoji \U0001f697\U0001f527", "e\u0301", "\uffff", ""]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


schema_shaped = st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda t: _BY_TYPE[t])


def plant(event: dict[str, Any], spot: int, text: str) -> dict[str, Any]:
    """The event with ``text`` written into one of its string fields (not its type or a time)."""
    keys = [k for k, v in event.items() if isinstance(v, str) and not k.endswith("_at") and k != "type"]
    return {**event, keys[spot % len(keys)]: text} if keys else event


@st.composite
def schema_events(draw: st.DrawFn, phone_numbers: st.SearchStrategy[str] = phones) -> dict[str, Any]:
    """A schema-valid event of any type, sometimes with a phone number planted in one of its strings."""
    event: dict[str, Any] = draw(schema_shaped)
    if draw(st.booleans()):
        event = plant(event, draw(st.integers(0, 20)), draw(st.sampled_from(["", "call "])) + draw(phone_numbers))
    return event


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)[-10:]


@dataclass
class FuzzInput:
    kind: str
    topic: str
    key: bytes | None
    value: bytes
    must_be_dead: bool  # no reading of the contract makes it a valid event
    planted: list[str] = field(default_factory=list)  # the 10-digit numbers planted in it


def _draw_many(strategy: st.SearchStrategy[Any], count: int, at_seed: int) -> list[Any]:
    """``count`` values of a strategy, reproducibly for a seed (Hypothesis's generate phase only)."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(at_seed)
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


def generate(count: int, at_seed: int, topics: Topics, directory_path: Path = DEFAULT_DIRECTORY) -> list[FuzzInput]:
    """``count`` fuzzed inputs of every kind, shuffled."""
    rng = random.Random(at_seed)
    sim = Simulator(load_directory(directory_path), at_seed)
    now = datetime.now(UTC) - timedelta(hours=1)
    sources = [topics.name(t) for t in sorted(set(FAMILY_TOPICS.values()))]
    share = {"schema": 0.35, "planted": 0.20, "junk": 0.13, "json": 0.14, "unicode": 0.10, "wrong_topic": 0.08}
    inputs: list[FuzzInput] = []
    numbers = iter(_draw_many(phones, count, at_seed))

    def phone() -> str:
        return next(numbers, "9876543210")

    draws = st.tuples(schema_shaped, st.integers(0, 20), st.sampled_from(["", "call "]), phones, st.booleans())
    for event, spot, prefix, number, planting in _draw_many(draws, int(count * share["schema"]), at_seed):
        if planting:
            event = plant(event, spot, prefix + number)
        topic = topics.name(FAMILY_TOPICS[event["type"].split(".")[0]])
        planted = [digits_of(number)] if planting and prefix + number in event.values() else []
        inputs.append(FuzzInput("schema", topic, None, orjson.dumps(event), False, planted))

    for _ in range(int(count * share["planted"])):
        event = dict(sim.event(now))
        number = phone()
        spot = rng.choice(["feedback", "reason", "customer_ref", "attributes", "odd"])
        if spot in ("feedback", "reason") and spot in event:
            event[spot] = f"please call me on {number} {rng.choice(['', 'after 5', '🙏'])}"
        elif spot == "customer_ref" and "customer_ref" in event:
            event["customer_ref"] = rng.choice([number, f"c{number}", f"tel{number}"])
        elif spot == "attributes":
            event["attributes"] = {"note": f"ring {number}"}
        else:
            event[rng.choice([k for k in event if isinstance(event[k], str) and k != "type"])] = _odd(rng) + number
        inputs.append(
            FuzzInput("planted", topic_for(topics, event), None, orjson.dumps(event), False, [digits_of(number)])
        )

    for junk in _draw_many(st.binary(max_size=4096), int(count * share["junk"]), at_seed):
        inputs.append(FuzzInput("junk", rng.choice(sources), None, junk, True))

    for value in _draw_many(JSON_VALUES, int(count * share["json"]), at_seed):
        number = phone()
        if rng.random() < 0.5:  # NaN, Infinity and big integers are what the standard library writes
            raw = json.dumps({"type": "survey.csat", "feedback": number, "junk": value}).encode()
        else:
            raw = json.dumps(value).encode()  # a bare value or a random object: never a whole event
            number = ""
        inputs.append(FuzzInput("json", rng.choice(sources), None, raw, True, [digits_of(number)] if number else []))

    for _ in range(int(count * share["unicode"])):
        event = dict(sim.event(now))
        text = orjson.dumps(event)
        breakage = rng.choice(["overlong", "surrogate", "truncated", "control"])
        if breakage == "overlong":  # invalid UTF-8 inside a string
            raw = text.replace(b'"type"', b'"ty\xc0\xafpe"', 1)
        elif breakage == "surrogate":
            raw = text[:-1] + b',"x":"\\ud800"}'
        elif breakage == "truncated":
            raw = text[: rng.randrange(1, len(text) - 1)]
        else:
            raw = text[:-1] + b',"y":"\x01\x02"}'
        inputs.append(FuzzInput("unicode", topic_for(topics, event), None, raw, True))

    for _ in range(int(count * share["wrong_topic"])):
        event = dict(sim.event(now))
        right = topic_for(topics, event)
        inputs.append(
            FuzzInput("wrong_topic", rng.choice([t for t in sources if t != right]), None, orjson.dumps(event), True)
        )

    while len(inputs) < count - 5:  # the rest: ordinary valid events, so the pushes have something to say
        event = dict(sim.event(now))
        inputs.append(FuzzInput("valid", topic_for(topics, event), None, orjson.dumps(event), False))
    for _ in range(5):  # about 1 MB each, with a phone number at the end
        number = phone()
        raw = orjson.dumps({"type": "survey.csat", "feedback": "x" * 1_000_000 + f" {number}"})
        inputs.append(FuzzInput("oversize", rng.choice(sources), None, raw, True, [digits_of(number)]))

    for item in inputs:  # keys: mostly the centre, sometimes junk or a phone number
        roll = rng.random()
        if roll < 0.05:
            number = phone()
            item.key, item.planted = number.encode(), [*item.planted, digits_of(number)]
        elif roll < 0.10:
            item.key = rng.randbytes(rng.randrange(0, 40))
        elif roll < 0.15:
            item.key = None
        else:
            item.key = b"C01"
    rng.shuffle(inputs)
    return inputs


def _odd(rng: random.Random) -> str:
    return rng.choice(["\u202e", "\u200b", "\ufeff", "\U0001f697 ", "e\u0301 ", ""])


def find_planted(haystack: str, planted: set[str]) -> set[str]:
    """Planted 10-digit numbers present in a text, whatever separators were put between their digits."""
    joined = re.sub(r"(?<=\d)[ \t.\-()+]{1,3}(?=\d)", "", haystack)  # not across lines or parts
    found: set[str] = set()
    for run in re.findall(r"\d{10,}", joined):
        found |= {run[i : i + 10] for i in range(len(run) - 9)} & planted
    return found


async def _produce(bootstrap: str, inputs: list[FuzzInput]) -> list[tuple[str, int, int]]:
    """Produce every input; returns where each landed (topic, partition, offset), in input order."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(i.topic, i.value, key=i.key) for i in inputs]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


def run(*, count: int, at_seed: int, workdir: Path) -> dict[str, Any]:
    import threading

    import redis

    from pitstop.services import Service, free_port, start_redis, start_tansu, worker_events_read
    from streams.topics import ensure_topics, read_topic

    t0 = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    topics = Topics(f"g5{run_id}.")
    inputs = generate(count, at_seed, topics)
    generate_s = time.monotonic() - t0
    planted = {n for i in inputs for n in i.planted}

    services: list[Service] = []
    broker_url = os.environ.get("PITSTOP_BROKER")
    if broker_url is None:
        services.append(start_tansu(log_dir=workdir))
        broker_url = services[-1].url
    services.append(start_redis(appendonly=False, log_dir=workdir))
    redis_url = services[-1].url
    metrics_port, gateway_port = free_port(), free_port()
    namespace = f"g5{run_id}"
    env = {
        **os.environ,
        "PITSTOP_BROKER": broker_url,
        "PITSTOP_REDIS_URL": redis_url,
        "PITSTOP_TOPIC_PREFIX": namespace,
        "PITSTOP_REDIS_NAMESPACE": namespace,
        "PITSTOP_APP_ID": f"pitstop-{namespace}",
        "PITSTOP_WORKER_METRICS_PORT": str(metrics_port),
        "PITSTOP_GATEWAY_PORT": str(gateway_port),
        "PITSTOP_TOKEN_SECRET": SECRET,
    }
    bootstrap = broker_url.removeprefix("kafka://")
    logs = {name: workdir / f"{name}.log" for name in ("worker", "gateway")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    channel: list[str] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:  # everything the gateway pushes comes from these two channels
        pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"{namespace}:awards", f"{namespace}:board-changes")
        while listening.is_set():
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                channel.append(bytes(message["data"]).decode(errors="replace"))
        pubsub.close()

    listener = threading.Thread(target=listen, daemon=True)
    try:
        asyncio.run(ensure_topics(Settings.from_env(env)))
        listener.start()
        for name, log_path in logs.items():
            with log_path.open("wb") as log:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "pitstop", name], env=env, stdout=log, stderr=subprocess.STDOUT
                )
        while worker_events_read(metrics_port) < 0:
            if procs["worker"].poll() is not None:
                raise RuntimeError(f"the worker exited at start; see {logs['worker']}")
            time.sleep(0.2)
        landed, pushes = asyncio.run(_produce_with_kiosks(bootstrap, inputs, gateway_port, metrics_port))
        read = worker_events_read(metrics_port)
        exits = {name: proc.poll() for name, proc in procs.items() if proc.poll() is not None}

        async def read_all(topic: str) -> list[Any]:
            return [m async for batch in read_topic(bootstrap, topic) for m in batch]

        dead = asyncio.run(read_all(topics.dead_letters))
        ledger = asyncio.run(read_all(topics.ledger))
    finally:
        listening.clear()
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for service in reversed(services):
            service.stop()
    listener.join(5)

    dead_at = {
        (_header(m, "original.topic"), _header(m, "original.partition"), _header(m, "original.offset")) for m in dead
    }
    must_be_dead = [(i, where) for i, where in zip(inputs, landed, strict=True) if i.must_be_dead]
    missing = [i.kind for i, (topic, part, offset) in must_be_dead if (topic, str(part), str(offset)) not in dead_at]
    ours = {"original.partition", "original.offset", "original.timestamp"}  # numbers Pitstop writes itself
    dlq_text = "\n".join(
        part.decode(errors="replace")
        for m in dead
        for part in (m.value or b"", m.key or b"", *(bytes(v) for k, v in m.headers if k not in ours))
    )
    leaks = {
        "worker_log": find_planted(logs["worker"].read_text(errors="replace"), planted),
        "gateway_log": find_planted(logs["gateway"].read_text(errors="replace"), planted),
        "dead_letters": find_planted(dlq_text, planted),
        "ledger": find_planted("\n".join(m.value.decode(errors="replace") for m in ledger), planted),
        "award_channel": find_planted("\n".join(channel), planted),
        "kiosk_pushes": find_planted("\n".join(pushes), planted),
    }
    tracebacks = sum(path.read_text(errors="replace").count("Traceback") for path in logs.values())
    kinds: dict[str, int] = {}
    for item in inputs:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    return {
        "scenario": "G5",
        "inputs": len(inputs),
        "by_kind": kinds,
        "planted_phone_numbers": len(planted),
        "crashes": len(exits) + tracebacks,
        "unaccounted": len(inputs) - read,
        "must_be_dead": len(must_be_dead),
        "must_be_dead_missing_from_dlq": len(missing),
        "dead_letters": len(dead_at),
        "dead_letters_without_headers": sum(1 for m in dead if not {k for k, _ in m.headers} >= DEAD_LETTER_HEADERS),
        "ledger_records": len(ledger),
        "award_channel_messages": len(channel),
        "kiosk_pushes": len(pushes),
        "phone_numbers_found": {where: len(found) for where, found in leaks.items()},
        "generate_seconds": round(generate_s, 1),
        "seconds": round(time.monotonic() - t0, 1),
        "details": {"missing_kinds": sorted(set(missing)), "leaked": _contexts(dlq_text, set().union(*leaks.values()))},
    }


def _contexts(text: str, numbers: set[str], limit: int = 5) -> list[str]:
    """Where leaked numbers were seen on the dead-letter topic (for the report)."""
    found = []
    for number in sorted(numbers)[:limit]:
        at = re.search(r"[ \t.\-()+]{0,3}".join(number), text)
        found.append(f"{number}: {text[max(0, at.start() - 80) : at.end() + 40]!r}" if at else number)
    return found


async def _produce_with_kiosks(
    bootstrap: str, inputs: list[FuzzInput], gateway_port: int, metrics_port: int
) -> tuple[list[tuple[str, int, int]], list[str]]:
    """One kiosk per centre connected while every input is produced and read; returns where each input
    landed and every message the kiosks received."""
    from websockets.asyncio.client import connect

    from dashboards.tokens import issue_token
    from pitstop.services import worker_events_read

    received: list[str] = []
    stop = asyncio.Event()

    async def kiosk(centre: str) -> None:
        for _ in range(100):  # the gateway may still be starting
            try:
                async with connect(f"ws://127.0.0.1:{gateway_port}/ws", max_size=None) as ws:
                    await ws.send(
                        orjson.dumps({"type": "auth", "token": issue_token(SECRET, "kiosk", centre)}).decode()
                    )
                    while not stop.is_set():
                        try:
                            received.append(str(await asyncio.wait_for(ws.recv(), 0.5)))
                        except TimeoutError:
                            continue
                    return
            except OSError:
                await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(kiosk(c)) for c in sorted(load_directory(DEFAULT_DIRECTORY).centres)]
    await asyncio.sleep(1.0)
    landed = await _produce(bootstrap, inputs)
    deadline = time.monotonic() + 300
    while await asyncio.to_thread(worker_events_read, metrics_port) < len(inputs) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # the last pushes
    stop.set()
    await asyncio.gather(*tasks)
    return landed, received


def _header(message: Any, name: str) -> str:
    return next((bytes(v).decode(errors="replace") for k, v in message.headers if k == name), "")


def main(*, quick: bool, as_json: bool, seed_: int, count: int | None) -> int:
    from pitstop.chaos import print_result

    workdir = Path(tempfile.mkdtemp(prefix="pitstop-g5-"))
    result = run(count=count or (2000 if quick else 10_000), at_seed=seed_, workdir=workdir)
    if quick:
        result["scenario"] = "G5-quick"
    ok = (
        result["crashes"] == 0
        and result["unaccounted"] == 0
        and result["must_be_dead_missing_from_dlq"] == 0
        and result["dead_letters_without_headers"] == 0
        and not any(result["phone_numbers_found"].values())
    )
    return print_result(result, ok, as_json=as_json, logs=workdir)
