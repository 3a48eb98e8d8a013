"""Notification delivery against real local servers (an aiohttp HTTP receiver, an aiosmtpd SMTP server)
and a real redis-server: signed webhooks, e-mail, retries with backoff, permanent failures dead-lettered
at once, per-recipient rate limits, and digests queued once a day."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiosmtpd.controller import Controller

from agents.digest import Digests
from agents.notify import Dispatcher
from config.directory import load_directory
from config.notifications import Notifications, load_notifications
from config.settings import DEFAULT_DIRECTORY
from pitstop.services import Service, free_port
from state.alerts import AlertBoard
from state.league import League
from state.notify import NotifyQueue
from state.sla import SlaStore

SECRET = "functional-webhook-secret"


class Receiver:
    """/ok verifies the signature and answers 200 (401 if it does not verify); /gone 410; /down 503."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, bytes, bool]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers.get("X-Pitstop-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, request.headers.get("X-Pitstop-Signature", ""))
        self.hits.append((request.path, body, valid))
        status = {"/ok": 200 if valid else 401, "/gone": 410, "/down": 503}.get(request.path, 404)
        return web.Response(status=status)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Receiver, int, Mailbox, int]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    http_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    mailbox, smtp_port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        yield receiver, http_port, mailbox, smtp_port
    finally:
        controller.stop()
        await runner.cleanup()


def _config(tmp_path: Path, http_port: int, smtp_port: int, *, per_recipient: int = 100) -> Notifications:
    path = tmp_path / "notifications.yaml"
    base = f"http://127.0.0.1:{http_port}"
    path.write_text(
        "notifications: t\nversion: 1\n"
        "retry: {attempts: 3, first_delay: 1s, max_delay: 1s}\n"
        f"rate_limit: {{per_recipient: {per_recipient}, per: 1h}}\n"
        "digest: {schedule: '0 8 * * *', catch_up: 6h}\n"
        "channels:\n"
        f"  ok: {{type: webhook, url: '{base}/ok', secret_env: SECRET}}\n"
        f"  gone: {{type: webhook, url: '{base}/gone', secret_env: SECRET}}\n"
        f"  down: {{type: webhook, url: '{base}/down', secret_env: SECRET}}\n"
        f"  email: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, from: 'Pitstop <alerts@example.com>'}}\n"
        "routes:\n  - {messages: [digest], to: person, via: [email]}\n"
    )
    return load_notifications(path, {"SECRET": SECRET})


def _job(n: int, channel: str, to: str = "https://unused", recipient: str | None = None) -> dict[str, Any]:
    return {
        "id": f"d{n}",
        "message_id": f"m{n}",
        "kind": "sla.breach",
        "channel": channel,
        "recipient": recipient or channel,
        "to": to,
        "subject": f"SLA breached: ticket T-{n}",
        "text": f"The first response of ticket T-{n} was due.",
        "data": {"n": n},
    }


@pytest.fixture
async def queue(redis_server: Service, namespace: str) -> AsyncIterator[NotifyQueue]:
    client = aioredis.from_url(redis_server.url)
    yield NotifyQueue(client, namespace, 86400)
    await client.aclose()


async def _run(dispatcher: Dispatcher, until: Any, timeout: float = 15.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        if not await dispatcher.step():
            await asyncio.sleep(0.1)


async def test_signed_webhook_and_email_are_delivered_once(
    tmp_path: Path, servers: tuple[Receiver, int, Mailbox, int], queue: NotifyQueue
) -> None:
    receiver, http_port, mailbox, smtp_port = servers
    config = _config(tmp_path, http_port, smtp_port)
    outcomes: list[tuple[str, str]] = []
    dead: list[Any] = []

    async def dead_letter(job: dict[str, Any], reason: str, tries: int) -> None:
        dead.append((job, reason, tries))

    dispatcher = Dispatcher(queue, config, dead_letter, outcome=lambda c, o: outcomes.append((c, o)))
    now = int(time.time() * 1000)
    jobs = [_job(1, "ok"), _job(2, "email", to="s0015@example.com", recipient="S0015")]
    assert await queue.enqueue(jobs, now) == 2
    assert await queue.enqueue(jobs, now) == 0  # queued already
    await _run(dispatcher, lambda: len(outcomes) == 2)
    assert sorted(outcomes) == [("email", "sent"), ("ok", "sent")]
    ((path, body, valid),) = receiver.hits
    assert path == "/ok" and valid and b"T-1" in body
    ((rcpt, raw),) = mailbox.messages
    mail = message_from_bytes(raw)
    assert rcpt == ["s0015@example.com"] and mail["Subject"] == "SLA breached: ticket T-2"
    assert mail["Message-ID"] == "<d2@pitstop>"
    assert await queue.enqueue(jobs, now) == 0  # sent: never queued again
    assert await queue.pending() == 0 and await queue.sent(["d1", "d2"]) == [True, True]
    await dispatcher.sender.close()


async def test_failures_retry_then_dead_letter_while_others_flow(
    tmp_path: Path, servers: tuple[Receiver, int, Mailbox, int], queue: NotifyQueue
) -> None:
    receiver, http_port, _mailbox, smtp_port = servers
    config = _config(tmp_path, http_port, smtp_port)
    dead: list[tuple[dict[str, Any], str, int]] = []

    async def dead_letter(job: dict[str, Any], reason: str, tries: int) -> None:
        dead.append((job, reason, tries))

    outcomes: list[tuple[str, str]] = []
    dispatcher = Dispatcher(queue, config, dead_letter, outcome=lambda c, o: outcomes.append((c, o)))
    now = int(time.time() * 1000)
    await queue.enqueue(
        [
            _job(1, "down"),
            _job(2, "gone"),
            _job(3, "email", to="nobody@example.com", recipient="S0099"),
            _job(4, "ok"),
        ],
        now,
    )
    await dispatcher.step()
    # the good one went at once, beside the failing ones; refusals (410, SMTP 550) are final on the first try
    assert ("ok", "sent") in outcomes
    assert sorted((j["channel"], t) for j, _, t in dead) == [("email", 1), ("gone", 1)]
    assert "HTTP 410" in next(r for j, r, _ in dead if j["channel"] == "gone")
    assert "recipient refused" in next(r for j, r, _ in dead if j["channel"] == "email")
    # the 503 is tried again with backoff, three tries in all, then dead-lettered
    await _run(dispatcher, lambda: len(dead) == 3)
    job, reason, tries = dead[-1]
    assert job["channel"] == "down" and tries == 3 and "HTTP 503 (after 3 tries)" in reason
    assert [p for p, _, _ in receiver.hits].count("/down") == 3
    assert outcomes.count(("down", "retried")) == 2
    assert await queue.pending() == 0
    await dispatcher.sender.close()


async def test_a_recipient_over_its_rate_limit_waits_for_the_next_window(
    tmp_path: Path, servers: tuple[Receiver, int, Mailbox, int], queue: NotifyQueue
) -> None:
    _receiver, http_port, _mailbox, smtp_port = servers
    config = _config(tmp_path, http_port, smtp_port, per_recipient=2)
    outcomes: list[tuple[str, str]] = []

    async def dead_letter(job: dict[str, Any], reason: str, tries: int) -> None:
        raise AssertionError("nothing may be dead-lettered")

    dispatcher = Dispatcher(queue, config, dead_letter, outcome=lambda c, o: outcomes.append((c, o)))
    now = int(time.time() * 1000)
    await queue.enqueue([_job(n, "ok") for n in range(3)], now)
    await dispatcher.step()
    assert sorted(outcomes) == [("ok", "rate_limited"), ("ok", "sent"), ("ok", "sent")]
    assert await queue.pending() == 1  # kept, for the next hour's window; not dropped, not a failed try
    (waiting,) = await queue.redis.zrange(f"{queue.ns}:notify:queue", 0, -1, withscores=True)
    window_ms = 3_600_000
    assert waiting[1] % window_ms == 0 and waiting[1] > now  # the start of the next window
    assert await queue.redis.hget(f"{queue.ns}:notify:tries", waiting[0]) == b"0"
    await dispatcher.sender.close()


async def test_digests_are_queued_once_a_day(
    tmp_path: Path, servers: tuple[Receiver, int, Mailbox, int], queue: NotifyQueue
) -> None:
    _, http_port, _, smtp_port = servers
    config = _config(tmp_path, http_port, smtp_port)
    directory = load_directory(DEFAULT_DIRECTORY)
    client = queue.redis
    digests = Digests(
        directory,
        config,
        (),
        league=League(client, queue.ns),
        sla=SlaStore(client, queue.ns, 86400),
        alerts=AlertBoard(client, queue.ns, 86400),
        queue=queue,
    )
    morning = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 08:30 in India: every demo centre is due
    queued = await digests.tick(morning)
    assert queued == 20  # the demo directory has an e-mail address for each centre's manager
    assert await digests.tick(morning + timedelta(minutes=1)) == 0
    for key in [k async for k in client.scan_iter(match=f"{queue.ns}:digest:*")]:
        await client.delete(key)  # as if the worker died after queueing, before marking the day done
    assert await digests.tick(morning + timedelta(minutes=2)) == 0  # the same delivery ids: nothing twice
    assert await digests.tick(morning + timedelta(hours=7)) == 0  # past the catch-up: not sent late
    assert await digests.tick(morning + timedelta(days=1)) == 20  # the next day
