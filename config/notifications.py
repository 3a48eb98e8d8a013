"""Notification channels and routes: who hears about what, and through which channel.

A notifications file (``PITSTOP_NOTIFICATIONS``, default ``config/notifications/default.yaml``) names
channels (webhook, SMTP e-mail, SMS and WhatsApp provider APIs) and routes (which message kinds go to
whom, through which channels), with the retry and rate-limit policy. Secrets are never written in the
file: a channel names the environment variable holding each one. Validated on load; the first problem
is refused with file, line and reason. Delivery is :mod:`agents.notify`; see docs/sla.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError

from config.loading import CONFIG_NAME, Located, load_document
from config.sla import parse_duration

CHANNEL_TYPES = ("webhook", "smtp", "sms", "whatsapp")
MESSAGE_KINDS = ("sla.near_breach", "sla.breach", "sla.clear", "digest")
RECIPIENTS = ("managers", "assignees", "person")  # the centre's managers, the item's people, a digest's reader
_ENV = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
_FROM = re.compile(r"^[^\r\n<>]{0,80}<?[^@\s<>]+@[^@\s<>]+>?$")


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str
    url: str = ""  # webhook, sms, whatsapp: where to POST
    secret: str = ""  # webhook: the HMAC key; sms/whatsapp: the provider's bearer token
    host: str = ""  # smtp
    port: int = 0
    sender: str = ""  # smtp From:
    starttls: bool = False
    username: str = ""
    password: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Route:
    kinds: frozenset[str]
    to: str | None  # None: the channel itself is the recipient (a webhook)
    channels: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Notifications:
    name: str
    version: int
    channels: dict[str, Channel]
    routes: tuple[Route, ...]
    attempts: int  # tries before a delivery is dead-lettered
    first_delay: timedelta  # backoff: first_delay * 2**(try-1), capped at max_delay, with jitter
    max_delay: timedelta
    rate_limit: int  # deliveries per recipient and channel...
    rate_per: timedelta  # ...per this long; more wait for the next window (never dropped)
    digest_schedule: str = "0 8 * * *"  # cron, in each centre's own time zone (agents.digest)
    digest_catch_up: timedelta = timedelta(hours=6)  # a digest missed (no worker) is still sent this long after
    source: str = ""

    def routes_for(self, kind: str) -> list[Route]:
        return [r for r in self.routes if kind in r.kinds]


def _duration(item: Located, key: str, default: str) -> timedelta:
    try:
        return parse_duration(item.value.get(key, default))
    except ValueError as exc:
        raise item.error(f"'{key}': {exc}") from None


def _secret(item: Located, key: str, env: Mapping[str, str], *, required: bool) -> str:
    name = item.value.get(key)
    if name is None:
        if required:
            raise item.error(f"'{key}' must name the environment variable holding the secret")
        return ""
    if not isinstance(name, str) or not _ENV.match(name):
        raise item.error(f"'{key}' must be an environment variable name (A-Z, 0-9, _), got {name!r}")
    value = env.get(name)
    if not value:
        raise item.error(f"environment variable {name} (named by '{key}') is not set")
    return value


def _channel(name: str, item: Located, env: Mapping[str, str]) -> Channel:
    kind = item.value.get("type")
    if kind not in CHANNEL_TYPES:
        raise item.error(f"channel {name!r}: 'type' must be one of {', '.join(CHANNEL_TYPES)}; got {kind!r}")
    timeout = item.value.get("timeout_s", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 120:
        raise item.error(f"channel {name!r}: 'timeout_s' must be a number from 0.1 to 120")
    if kind == "smtp":
        item.only({"type", "host", "port", "from", "starttls", "username_env", "password_env", "timeout_s"})
        host, port, sender = item.value.get("host"), item.value.get("port", 25), item.value.get("from")
        if not isinstance(host, str) or not re.match(r"^[A-Za-z0-9.\-:]+$", host):
            raise item.error(f"channel {name!r}: 'host' must be a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise item.error(f"channel {name!r}: 'port' must be from 1 to 65535")
        if not isinstance(sender, str) or not _FROM.match(sender):
            raise item.error(f"channel {name!r}: 'from' must be an address, e.g. Pitstop <alerts@example.com>")
        starttls = item.value.get("starttls", False)
        if not isinstance(starttls, bool):
            raise item.error(f"channel {name!r}: 'starttls' must be true or false")
        return Channel(
            name,
            kind,
            host=host,
            port=port,
            sender=sender,
            starttls=starttls,
            username=_secret(item, "username_env", env, required=False),
            password=_secret(item, "password_env", env, required=False),
            timeout_s=float(timeout),
        )
    secret_key = "secret_env" if kind == "webhook" else "token_env"
    item.only({"type", "url", secret_key, "timeout_s"})
    url = item.value.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise item.error(f"channel {name!r}: 'url' must be an http:// or https:// URL, got {url!r}")
    return Channel(
        name,
        kind,
        url=str(url),
        secret=_secret(item, secret_key, env, required=kind == "webhook"),
        timeout_s=float(timeout),
    )


def load_notifications(path: Path, env: Mapping[str, str] | None = None) -> Notifications:
    """Load and validate a notifications file; secrets are read from ``env`` (default: the process's)."""
    env = os.environ if env is None else env
    doc = load_document(
        path,
        "notifications",
        {"notifications", "version", "retry", "rate_limit", "digest", "channels", "routes"},
        "this configuration",
    )
    document, top, located = doc.top.value, doc.top, doc.section

    retry = located(document.get("retry", {}), "retry")
    retry.only({"attempts", "first_delay", "max_delay"})
    attempts = retry.value.get("attempts", 6)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 50:
        raise retry.error("'attempts' must be a whole number from 1 to 50")
    first_delay, max_delay = _duration(retry, "first_delay", "2s"), _duration(retry, "max_delay", "5m")
    if max_delay < first_delay:
        raise retry.error("'max_delay' must be at least 'first_delay'")
    limit = located(document.get("rate_limit", {}), "rate_limit")
    limit.only({"per_recipient", "per"})
    per_recipient = limit.value.get("per_recipient", 30)
    if isinstance(per_recipient, bool) or not isinstance(per_recipient, int) or not 1 <= per_recipient <= 100_000:
        raise limit.error("'per_recipient' must be a whole number from 1 to 100000")
    per = _duration(limit, "per", "1h")
    digest = located(document.get("digest", {}), "digest")
    digest.only({"schedule", "catch_up"})
    schedule = digest.value.get("schedule", "0 8 * * *")
    try:
        CronSim(schedule, datetime.now(UTC)) if isinstance(schedule, str) else None
    except CronSimError as exc:
        raise digest.error(f"'schedule' {schedule!r} is not a cron expression: {exc}") from None
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise digest.error(f"'schedule' must be a five-field cron expression, e.g. '0 8 * * mon-sat'; got {schedule!r}")
    catch_up = _duration(digest, "catch_up", "6h")
    if catch_up > timedelta(hours=23):
        raise digest.error("'catch_up' must be under a day (a digest is for its day)")

    channels: dict[str, Channel] = {}
    for channel_name, spec in located(document.get("channels", {}), "channels").value.items():
        if not isinstance(channel_name, str) or not CONFIG_NAME.match(channel_name):
            raise top.error(f"channel name {channel_name!r} is not a valid name")
        channels[channel_name] = _channel(channel_name, located(spec, f"channels.{channel_name}"), env)

    raw_routes = document.get("routes", [])
    if not isinstance(raw_routes, list):
        raise top.error("'routes' must be a list")
    routes = []
    for raw in raw_routes:
        item = located(raw, "routes[]")
        item.only({"messages", "to", "via"})
        kinds, to, via = item.value.get("messages"), item.value.get("to"), item.value.get("via")
        if not isinstance(kinds, list) or not kinds or any(k not in MESSAGE_KINDS for k in kinds):
            raise item.error(f"'messages' must list message kinds from {', '.join(MESSAGE_KINDS)}; got {kinds!r}")
        if to is not None and to not in RECIPIENTS:
            raise item.error(f"'to' must be one of {', '.join(RECIPIENTS)} (or left out for webhooks); got {to!r}")
        if to == "person" and kinds != ["digest"]:
            raise item.error("'to: person' is for digests only (messages: [digest])")
        if not isinstance(via, list) or not via or any(v not in channels for v in via):
            raise item.error(f"'via' must list defined channels ({', '.join(sorted(channels)) or 'none defined'})")
        for channel_name in via:
            personal = channels[channel_name].type != "webhook"
            if personal and to is None:
                raise item.error(f"channel {channel_name!r} sends to people: say who with 'to'")
            if not personal and to is not None:
                raise item.error(f"channel {channel_name!r} is a webhook: it takes no 'to'")
        routes.append(Route(frozenset(kinds), to, tuple(via), item.line))
    return Notifications(
        name=doc.name,
        version=doc.version,
        channels=channels,
        routes=tuple(routes),
        attempts=attempts,
        first_delay=first_delay,
        max_delay=max_delay,
        rate_limit=per_recipient,
        rate_per=per,
        digest_schedule=schedule,
        digest_catch_up=catch_up,
        source=str(path),
    )
