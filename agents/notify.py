"""Notifications: who hears about an alert or a digest, and delivering it through its channel.

Planning (:func:`deliveries_for`) is pure: routes (config.notifications) and the directory turn a
message into deliveries, one per (channel, recipient), each with an id derived from the message id,
the channel and the recipient, so the same message always gives the same deliveries.

Delivery runs beside the stream, never in it: the alerts agent only queues deliveries in Redis
(state.alerts), and :class:`Dispatcher` loops in every worker, leasing due deliveries
(state.notify), sending them concurrently, retrying failures with capped, jittered exponential
backoff and sending those that fail for good (a 4xx answer, a refused address, or ``attempts`` tries)
to the ``notification-dead-letters`` topic. Per recipient and channel at most ``rate_limit``
deliveries leave per ``rate_per``; the rest wait for the next window.

Adapters (one per channel type):

- ``webhook``: POST of the JSON body, signed: ``X-Pitstop-Signature: sha256=<hex HMAC-SHA256 of
  "<timestamp>.<body>">`` with ``X-Pitstop-Timestamp``; ``X-Pitstop-Delivery`` is an idempotency key;
- ``smtp``: an e-mail whose Message-ID is derived from the delivery id;
- ``sms`` / ``whatsapp``: POST ``{"to", "text", "idempotency_key"}`` to the provider's endpoint with a
  bearer token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import smtplib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import orjson
from redis.exceptions import RedisError

from agents.sla import Alert, describe
from config.directory import Directory
from config.notifications import Channel, Notifications
from state.notify import Claimed, NotifyQueue

log = logging.getLogger("pitstop.notify")

SIGNATURE_HEADER = "X-Pitstop-Signature"
TIMESTAMP_HEADER = "X-Pitstop-Timestamp"
DELIVERY_HEADER = "X-Pitstop-Delivery"


class PermanentFailure(Exception):
    """Trying again will not help (the receiver refused the message or the address)."""


class TemporaryFailure(Exception):
    """The receiver could not take it now; try again later."""


@dataclass(frozen=True, slots=True)
class Message:
    """Something to tell people: an alert or a digest."""

    id: str
    kind: str  # one of config.notifications.MESSAGE_KINDS
    centre_id: str
    people: tuple[str, ...]  # an alert's item people; a digest's reader
    subject: str
    text: str
    data: dict[str, Any]


def delivery_id(message_id: str, channel: str, recipient: str) -> str:
    return hashlib.sha1(f"{message_id}|{channel}|{recipient}".encode()).hexdigest()[:24]


def deliveries_for(message: Message, config: Notifications, directory: Directory) -> list[dict[str, Any]]:
    """The deliveries of one message, by its routes; people without the address a channel needs are
    left out (logged)."""
    out: dict[str, dict[str, Any]] = {}
    for route in config.routes_for(message.kind):
        if route.to == "managers":
            people = [s.id for s in directory.managers_of(message.centre_id)]
        elif route.to in ("assignees", "person"):
            people = list(message.people)
        else:
            people = []
        for name in route.channels:
            channel = config.channels[name]
            targets: list[tuple[str, str]] = []
            if channel.type == "webhook":
                targets = [(name, channel.url)]
            for staff_id in people:
                person = directory.person(staff_id)
                address = (person.email if channel.type == "smtp" else person.phone) if person else None
                if address:
                    targets.append((staff_id, address))
                else:
                    log.info("%s has no address for %s (%s); not sent there", staff_id, name, channel.type)
            for recipient, address in targets:
                did = delivery_id(message.id, name, recipient)
                out[did] = {
                    "id": did,
                    "message_id": message.id,
                    "kind": message.kind,
                    "channel": name,
                    "recipient": recipient,
                    "to": address,
                    "subject": message.subject,
                    "text": message.text,
                    "data": message.data,
                }
    return list(out.values())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (no replays)."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Sender:
    """The adapters; one aiohttp session for every HTTP channel."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def send(self, channel: Channel, job: dict[str, Any]) -> None:
        if channel.type == "smtp":
            await asyncio.to_thread(_send_mail, channel, job)
            return
        if channel.type == "webhook":
            body = orjson.dumps({k: job[k] for k in ("id", "kind", "subject", "text", "data")})
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(channel.secret, stamp, body),
                DELIVERY_HEADER: job["id"],
            }
        else:
            body = orjson.dumps(
                {"to": job["to"], "text": f"{job['subject']}. {job['text']}", "idempotency_key": job["id"]}
            )
            headers = {"Content-Type": "application/json", DELIVERY_HEADER: job["id"]}
            if channel.secret:
                headers["Authorization"] = f"Bearer {channel.secret}"
        await self._post(channel, body, headers)

    async def _post(self, channel: Channel, body: bytes, headers: dict[str, str]) -> None:
        try:
            async with self._http().post(
                channel.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=channel.timeout_s)
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TemporaryFailure(f"{channel.name}: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in (408, 425, 429):
            raise PermanentFailure(f"{channel.name}: HTTP {status}")
        raise TemporaryFailure(f"{channel.name}: HTTP {status}")


def _send_mail(channel: Channel, job: dict[str, Any]) -> None:
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = job["to"]
    mail["Subject"] = job["subject"]
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{job['id']}@pitstop>"
    mail[DELIVERY_HEADER] = job["id"]
    mail.set_content(job["text"])
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s) as smtp:
            if channel.starttls:
                smtp.starttls()
            if channel.username:
                smtp.login(channel.username, channel.password)
            smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentFailure(f"{channel.name}: recipient refused: {exc.recipients}") from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        if 500 <= exc.smtp_code < 600:
            raise PermanentFailure(f"{channel.name}: SMTP {exc.smtp_code} {text}") from None
        raise TemporaryFailure(f"{channel.name}: SMTP {exc.smtp_code} {text}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TemporaryFailure(f"{channel.name}: {type(exc).__name__}: {exc}") from None


def backoff_s(tries: int, config: Notifications) -> float:
    """Seconds before the next try after ``tries`` failed ones: doubling, capped, with ±50 % jitter."""
    base = config.first_delay.total_seconds() * 2.0 ** max(0, tries - 1)
    return min(base, config.max_delay.total_seconds()) * random.uniform(0.5, 1.5)


Outcome = Callable[[str, str], None]  # (channel, outcome) for the metrics


class Dispatcher:
    """Sends queued deliveries: ``step`` once, or ``run`` until cancelled."""

    def __init__(
        self,
        queue: NotifyQueue,
        config: Notifications,
        dead_letter: Callable[[dict[str, Any], str, int], Awaitable[None]],
        *,
        sender: Sender | None = None,
        outcome: Outcome = lambda channel, outcome: None,
        lease_ms: int = 60_000,
        batch: int = 100,
        concurrency: int = 20,
    ) -> None:
        self.queue = queue
        self.config = config
        self.dead_letter = dead_letter
        self.sender = sender or Sender()
        self.outcome = outcome
        self.lease_ms = lease_ms
        self.batch = batch
        self.limit = asyncio.Semaphore(concurrency)

    async def run(self, interval_s: float = 0.2) -> None:
        try:
            while True:
                try:
                    busy = await self.step()
                except (RedisError, OSError, TimeoutError) as exc:  # Redis away: the queue waits there
                    log.warning("notification dispatch failed (%r); trying again", exc)
                    busy = 0
                if not busy:
                    await asyncio.sleep(interval_s)
        finally:
            await self.sender.close()

    async def step(self) -> int:
        """Claim due deliveries and send them, concurrently; returns how many were claimed."""
        now = int(time.time() * 1000)
        claimed = await self.queue.claim(now, lease_ms=self.lease_ms, limit=self.batch)
        if claimed:
            await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _deliver(self, claimed: Claimed) -> None:
        job, name = claimed.job, claimed.job["channel"]
        channel = self.config.channels.get(name)
        if channel is None:  # the configuration changed since it was queued
            await self._dead(claimed, f"channel {name!r} is no longer configured")
            return
        window_ms = int(self.config.rate_per.total_seconds() * 1000)
        window = int(time.time() * 1000) // window_ms
        if await self.queue.count(f"{name}:{job['recipient']}:{window}", window_ms * 2) > self.config.rate_limit:
            self.outcome(name, "rate_limited")
            await self.queue.later(claimed.id, (window + 1) * window_ms, refund=True)
            return
        async with self.limit:
            try:
                await self.sender.send(channel, job)
            except PermanentFailure as exc:
                await self._dead(claimed, str(exc))
            except TemporaryFailure as exc:
                await self._again(claimed, str(exc))
            except Exception as exc:  # an adapter bug must not stop the other deliveries: a failed try
                log.exception("delivery %s via %s raised", claimed.id, name)
                await self._again(claimed, f"{name}: {type(exc).__name__}: {exc}")
            else:
                self.outcome(name, "sent")
                await self.queue.done(claimed.id)

    async def _again(self, claimed: Claimed, reason: str) -> None:
        """A failed try: another one after the backoff, or the dead-letter topic after the last."""
        name = claimed.job["channel"]
        if claimed.tries >= self.config.attempts:
            await self._dead(claimed, f"{reason} (after {claimed.tries} tries)")
            return
        self.outcome(name, "retried")
        delay = backoff_s(claimed.tries, self.config)
        log.info("delivery %s via %s failed (%s); try %d in %.1fs", claimed.id, name, reason, claimed.tries + 1, delay)
        await self.queue.later(claimed.id, int((time.time() + delay) * 1000))

    async def _dead(self, claimed: Claimed, reason: str) -> None:
        log.warning("delivery %s via %s dead-lettered: %s", claimed.id, claimed.job["channel"], reason)
        await self.dead_letter(claimed.job, reason, claimed.tries)
        self.outcome(claimed.job["channel"], "dead_letter")
        await self.queue.done(claimed.id)


def alert_message(alert: Alert, directory: Directory) -> Message:
    """The message of an alert."""
    subject, text = describe(alert, directory)
    return Message(alert.alert_id, alert.type, alert.centre_id, alert.people, subject, text, alert.data)


def plan_alerts(
    alerts: Sequence[Alert], config: Notifications, directory: Directory
) -> list[tuple[Alert, list[dict[str, Any]]]]:
    return [(a, deliveries_for(alert_message(a, directory), config, directory)) for a in alerts]
