"""SLA alerts on real infrastructure: the worker fires them (events and the leader's timer), the
gateway pushes them to managers of the right region, and notifications reach a real SMTP server and
real HTTP receivers, with the failing one ending on notification-dead-letters after its retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from websockets.asyncio.client import connect

from config.settings import DEFAULT_DIRECTORY
from pitstop.services import Service, free_port
from tests.conftest import seconds
from tests.integration.conftest import Broker, Stack, running_stack

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
ALLOWED_S = 20  # P1 first response in the test policy; near breach at 80 % (16 s)


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


class Receiver(http.server.ThreadingHTTPServer):
    """A local HTTP receiver: /ops verifies the webhook signature, /broken always fails, /sms accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes, bool]] = []  # path, headers, body, signature ok
        super().__init__(("127.0.0.1", free_port()), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        stamp, signature = self.headers.get("X-Pitstop-Timestamp", ""), self.headers.get("X-Pitstop-Signature", "")
        expected = (
            "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        )
        valid = hmac.compare_digest(expected, signature) and abs(time.time() - int(stamp or 0)) < 300
        self.server.received.append((self.path, dict(self.headers), body, valid))
        status = 500 if self.path == "/broken" else (200 if self.path == "/sms" or valid else 401)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Mailbox, Receiver, int]]:
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    http_server = Receiver()
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mailbox, http_server, smtp_port
    finally:
        http_server.shutdown()
        http_server.server_close()
        controller.stop()


@pytest.fixture(scope="module")
def sla_stack(
    broker: Broker,
    redis_service: Service,
    tmp_path_factory: pytest.TempPathFactory,
    receivers: tuple[Mailbox, Receiver, int],
) -> Iterator[Stack]:
    _, http_server, smtp_port = receivers
    folder = tmp_path_factory.mktemp("sla-config")
    policy = folder / "sla.yaml"
    policy.write_text(
        "policy: test\nversion: 1\nnear_breach: 0.8\n"
        f"tickets:\n  - {{priority: P1, first_response: {ALLOWED_S}s, resolution: 1h, calendar: always}}\n"
        "  - {priority: P2, first_response: 1h, resolution: 1d}\n"
    )
    # the directory, with a phone number for the C01 support agent (SMS)
    directory = folder / "directory.yaml"
    directory.write_text(
        DEFAULT_DIRECTORY.read_text().replace(
            "{id: S0012, name: Kavya Sharma, role: support_agent, centre: C01}",
            "{id: S0012, name: Kavya Sharma, role: support_agent, centre: C01, phone: '+919800000012'}",
        )
    )
    base = f"http://127.0.0.1:{http_server.server_address[1]}"
    notifications = folder / "notifications.yaml"
    notifications.write_text(
        "notifications: test\nversion: 1\n"
        "retry: {attempts: 3, first_delay: 1s, max_delay: 2s}\n"
        "rate_limit: {per_recipient: 100, per: 1m}\n"
        "channels:\n"
        f"  email: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, from: 'Pitstop <alerts@example.com>'}}\n"
        f"  sms: {{type: sms, url: '{base}/sms', token_env: PITSTOP_TEST_SMS_TOKEN}}\n"
        f"  ops: {{type: webhook, url: '{base}/ops', secret_env: PITSTOP_TEST_WEBHOOK_SECRET}}\n"
        f"  broken: {{type: webhook, url: '{base}/broken', secret_env: PITSTOP_TEST_WEBHOOK_SECRET}}\n"
        "routes:\n"
        "  - {messages: [sla.near_breach, sla.breach, sla.clear], to: managers, via: [email]}\n"
        "  - {messages: [sla.breach], to: assignees, via: [sms]}\n"
        "  - {messages: [sla.near_breach, sla.breach], via: [ops, broken]}\n"
    )
    env = {
        "PITSTOP_SLA": str(policy),
        "PITSTOP_DIRECTORY": str(directory),
        "PITSTOP_NOTIFICATIONS": str(notifications),
        "PITSTOP_TEST_SMS_TOKEN": "sms-token",
        "PITSTOP_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PITSTOP_SLA_TICK_S": "0.5",
    }
    with running_stack(broker, redis_service, tmp_path_factory, env) as stack:
        yield stack


def _ticket(kind: str, ticket: str, at: datetime, opened: datetime, centre: str = "C01") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{kind}-{ticket}-{uuid.uuid4().hex[:6]}",
        "type": kind,
        "occurred_at": at.isoformat(),
        "centre_id": centre,
        "people": [{"staff_id": "S0012", "role": "support_agent"}],
        "ticket_id": ticket,
        "priority": "P1",
    }
    if kind == "ticket.opened":
        event |= {"channel": "phone", "customer_ref": "cust_a81f30c2"}
    else:
        event |= {
            "opened_at": opened.isoformat(),
            "response_due_at": (opened + timedelta(seconds=ALLOWED_S)).isoformat(),
        }
    return event


async def _alerts(stack: Stack, ticket: str) -> list[dict[str, Any]]:
    records = await stack.read_topic(stack.topics.sla_alerts)
    return [a for a in (orjson.loads(r.value) for r in records) if a["item_id"] == ticket]


def _kinds(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(kind, clock) -> the distinct alert ids on the topic."""
    out: dict[tuple[str, str], set[str]] = {}
    for a in alerts:
        out.setdefault((a["type"], a["clock"]), set()).add(a["alert_id"])
    return out


async def _manager(stack: Stack, region: str) -> tuple[Any, list[dict[str, Any]]]:
    ws = await connect(stack.ws_url())
    await ws.send(orjson.dumps({"type": "auth", "token": stack.token("manager", region)}).decode())
    got: list[dict[str, Any]] = []

    async def read() -> None:
        async for raw in ws:
            got.append(orjson.loads(raw))

    task = asyncio.create_task(read())
    await stack.wait_for("manager welcome", lambda: any(m["type"] == "alerts" for m in got), timeout=15)
    return (ws, task), got


async def test_near_breach_then_breach_once_and_none_when_answered_in_time(sla_stack: Stack) -> None:
    west, west_got = await _manager(sla_stack, "west")  # C01 is in the west
    north, north_got = await _manager(sla_stack, "north")
    now = datetime.now(UTC).replace(microsecond=0)
    opened = now - timedelta(seconds=ALLOWED_S - 8)  # near breach in ~4 s, breach in ~8 s
    late, answered = f"T-{uuid.uuid4().hex[:6]}", f"T-{uuid.uuid4().hex[:6]}"
    await sla_stack.produce(
        _ticket("ticket.opened", late, opened, opened),
        _ticket("ticket.opened", answered, opened, opened),
        _ticket("ticket.first_response", answered, opened + timedelta(seconds=5), opened),
    )
    await sla_stack.wait_for(
        "the breach alert", lambda: _has(sla_stack, late, ("sla.breach", "first_response")), timeout=60
    )
    await asyncio.sleep(seconds(4))  # more ticks: nothing more may come
    kinds = _kinds(await _alerts(sla_stack, late))
    assert {k: len(v) for k, v in kinds.items()} == {
        ("sla.near_breach", "first_response"): 1,
        ("sla.breach", "first_response"): 1,
    }
    assert await _alerts(sla_stack, answered) == []

    # the manager of the west sees both, once each; the manager of the north sees neither
    def pushed(got: list[dict[str, Any]]) -> list[str]:
        return [m["alert"]["type"] for m in got if m["type"] == "alert" and m["alert"]["item_id"] == late]

    await sla_stack.wait_for("both alerts pushed to the west", lambda: len(pushed(west_got)) >= 2, timeout=15)
    assert sorted(pushed(west_got)) == ["sla.breach", "sla.near_breach"]
    assert pushed(north_got) == []
    snapshot = next(m for m in west_got if m["type"] == "alerts")
    assert all(a["region"] == "west" for a in snapshot["alerts"])

    # a late first response clears both (two clear events), and the alert list empties for it
    await sla_stack.produce(_ticket("ticket.first_response", late, datetime.now(UTC), opened))
    await sla_stack.wait_for("two clears", lambda: _count(sla_stack, late, "sla.clear", 2), timeout=30)
    await sla_stack.wait_for(
        "the alert list without them",
        lambda: not [a for a in _active(sla_stack) if a["item_id"] == late],
        timeout=15,
    )
    for ws, task in (west, north):
        task.cancel()
        await ws.close()


async def _has(stack: Stack, ticket: str, kind: tuple[str, str]) -> bool:
    return kind in _kinds(await _alerts(stack, ticket))


async def _count(stack: Stack, ticket: str, kind: str, wanted: int) -> bool:
    return len({a["alert_id"] for a in await _alerts(stack, ticket) if a["type"] == kind}) == wanted


def _active(stack: Stack) -> list[dict[str, Any]]:
    found = stack.redis.hvals(stack.key("sla:active"))
    return [orjson.loads(v) for v in found]  # type: ignore[union-attr]


async def test_sigkill_across_the_deadline_still_gives_one_of_each(sla_stack: Stack) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    opened = now - timedelta(seconds=ALLOWED_S - 10)  # near in ~6 s, breach in ~10 s
    ticket = f"T-{uuid.uuid4().hex[:6]}"
    await sla_stack.produce(_ticket("ticket.opened", ticket, opened, opened))
    await sla_stack.wait_for(
        "the near breach", lambda: _has(sla_stack, ticket, ("sla.near_breach", "first_response")), timeout=60
    )
    worker = sla_stack.processes["worker"]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    deadline = opened + timedelta(seconds=ALLOWED_S)
    # the deadline passes with no worker running
    await asyncio.sleep(max(0.0, (deadline + timedelta(seconds=3) - datetime.now(UTC)).total_seconds()))
    assert not await _has(sla_stack, ticket, ("sla.breach", "first_response"))
    sla_stack.start("worker")
    await sla_stack.wait_for(
        "the breach after the restart",
        lambda: _has(sla_stack, ticket, ("sla.breach", "first_response")),
        timeout=90,
    )
    await asyncio.sleep(seconds(4))
    alerts = await _alerts(sla_stack, ticket)
    kinds = _kinds(alerts)
    assert {k: len(v) for k, v in kinds.items()} == {
        ("sla.near_breach", "first_response"): 1,
        ("sla.breach", "first_response"): 1,
    }
    print(f"sla-alerts records for {ticket}: {len(alerts)} (distinct alerts: 2)")
    # the sinks keep one of each: the recent list
    recent = [orjson.loads(v) for v in sla_stack.redis.lrange(sla_stack.key("sla:recent"), 0, -1)]  # type: ignore[union-attr]
    mine = [a["type"] for a in recent if a["item_id"] == ticket]
    assert sorted(mine) == ["sla.breach", "sla.near_breach"]


async def test_notifications_reach_smtp_sms_and_a_signed_webhook_and_the_broken_one_is_dead_lettered(
    sla_stack: Stack, receivers: tuple[Mailbox, Receiver, int]
) -> None:
    mailbox, http_server, _ = receivers
    now = datetime.now(UTC).replace(microsecond=0)
    opened = now - timedelta(seconds=ALLOWED_S - 4)  # breach in ~4 s
    ticket = f"T-{uuid.uuid4().hex[:6]}"
    await sla_stack.produce(_ticket("ticket.opened", ticket, opened, opened))

    def mails() -> list[Any]:
        found = [message_from_bytes(body) for _, body in mailbox.messages]
        return [m for m in found if ticket in str(m["Subject"]) or ticket in m.get_payload()]

    def posts(path: str) -> list[tuple[dict[str, str], bytes, bool]]:
        return [(h, b, ok) for p, h, b, ok in http_server.received if p == path and ticket.encode() in b]

    await sla_stack.wait_for("the breach e-mail", lambda: any("breached" in str(m["Subject"]) for m in mails()), 60)
    await sla_stack.wait_for("the signed webhook", lambda: len(posts("/ops")) >= 2, 30)
    await sla_stack.wait_for("the SMS", lambda: len(posts("/sms")) >= 1, 30)
    breach_mail = next(m for m in mails() if "breached" in str(m["Subject"]))
    assert breach_mail["To"] == "s0015@example.com"  # the C01 manager
    assert all(ok for _, _, ok in posts("/ops"))  # every webhook body carried a valid HMAC signature
    sms = orjson.loads(posts("/sms")[0][1])
    assert sms["to"] == "+919800000012" and posts("/sms")[0][0]["Authorization"] == "Bearer sms-token"

    async def dead() -> list[Any]:
        records = await sla_stack.read_topic(sla_stack.topics.notification_dead_letters)
        return [r for r in records if ticket.encode() in (r.value or b"")]

    letters = await sla_stack.wait_for("the broken webhook's deliveries dead-lettered", lambda: _two(dead), 60)
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["channel"] == "broken" and headers["tries"] == "3"
        assert "HTTP 500" in headers["error"]
    assert len(posts("/broken")) == 6  # two alerts (near and breach), three tries each
    # exactly one e-mail per alert, whatever was retried elsewhere
    subjects = sorted(str(m["Subject"]).split(":")[0] for m in mails())
    assert subjects == ["SLA breached", "SLA close to breach"]


async def _two(dead: Any) -> Any:
    found = await dead()
    return found if len(found) >= 2 else None


async def test_after_redis_loses_everything_a_rebuild_restores_alerts_and_clocks_without_repeats(
    sla_stack: Stack, receivers: tuple[Mailbox, Receiver, int]
) -> None:
    """FLUSHALL, then `pitstop rebuild`: the alert list comes back from sla-alerts, running clocks from the
    ticket events; the leader fires their passed deadlines again under the old ids, so no alert is doubled
    at any sink: no e-mail is sent twice, no manager sees an alert twice."""
    mailbox, _, _ = receivers
    now = datetime.now(UTC).replace(microsecond=0)
    opened = now - timedelta(seconds=ALLOWED_S - 3)  # breach in ~3 s, never answered
    ticket = f"T-{uuid.uuid4().hex[:6]}"
    await sla_stack.produce(_ticket("ticket.opened", ticket, opened, opened))
    await sla_stack.wait_for("its breach", lambda: _has(sla_stack, ticket, ("sla.breach", "first_response")), 60)
    await sla_stack.wait_for("its e-mails", lambda: sum(ticket in str(b) for _, b in mailbox.messages) >= 2, 30)
    before_mail = len(mailbox.messages)
    recent_before = {
        orjson.loads(v)["alert_id"]
        for v in sla_stack.redis.lrange(sla_stack.key("sla:recent"), 0, -1)  # type: ignore[union-attr]
    }
    west, west_got = await _manager(sla_stack, "west")

    sla_stack.redis.flushall()
    result = sla_stack.run_cli("rebuild")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout.strip().splitlines()[-1])["sla"]
    assert report["alerts_applied"] == len(recent_before) and report["clock_ops"] > 0
    recent_after = {
        orjson.loads(v)["alert_id"]
        for v in sla_stack.redis.lrange(sla_stack.key("sla:recent"), 0, -1)  # type: ignore[union-attr]
    }
    assert recent_after == recent_before
    running = sla_stack.redis.zrange(sla_stack.key("sla:open"), 0, -1)  # type: ignore[union-attr]
    assert f"ticket:{ticket}:first_response".encode() in running  # never answered: running again

    # the leader fires the restored clock's passed deadline again: the same id, kept once everywhere
    await sla_stack.wait_for(
        "the breach fired again onto the topic",
        lambda: _records(sla_stack, ticket, "sla.breach", 2),
        timeout=60,
    )
    await asyncio.sleep(seconds(4))
    kinds = _kinds(await _alerts(sla_stack, ticket))
    assert {k: len(v) for k, v in kinds.items()} == {
        ("sla.near_breach", "first_response"): 1,
        ("sla.breach", "first_response"): 1,
    }
    assert len(mailbox.messages) == before_mail  # nothing sent twice
    pushed = [m for m in west_got if m["type"] == "alert"]
    assert pushed == []  # the rebuild published nothing; the repeat was not new
    ws, task = west
    task.cancel()
    await ws.close()


async def _records(stack: Stack, ticket: str, kind: str, count: int) -> bool:
    return len([a for a in await _alerts(stack, ticket) if a["type"] == kind]) >= count
