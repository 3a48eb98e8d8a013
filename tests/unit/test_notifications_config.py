"""Notification channels, routes and digests: valid files load, secrets come from the environment,
every invalid file is refused with file, line and reason; deliveries follow the routes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agents.digest import due_slot, manager_digest, next_tier, person_digest
from agents.notify import Message, deliveries_for, delivery_id, sign, verify
from config.directory import load_directory
from config.loading import ConfigError
from config.notifications import load_notifications
from config.programme import Tier
from config.settings import DEFAULT_DIRECTORY, DEFAULT_NOTIFICATIONS

DIRECTORY = load_directory(DEFAULT_DIRECTORY)
IST = ZoneInfo("Asia/Kolkata")
ENV = {"HOOK_SECRET": "s3cret-value", "SMS_TOKEN": "tok"}
GOOD = """notifications: t
version: 1
retry: {attempts: 4, first_delay: 1s, max_delay: 30s}
digest: {schedule: "30 8 * * mon-sat", catch_up: 2h}
channels:
  email: {type: smtp, host: 127.0.0.1, port: 2525, from: "Pitstop <alerts@example.com>"}
  sms: {type: sms, url: "https://sms.example.com/v1/send", token_env: SMS_TOKEN}
  ops: {type: webhook, url: "https://ops.example.com/hook", secret_env: HOOK_SECRET}
routes:
  - {messages: [sla.breach, sla.near_breach], to: managers, via: [email]}
  - {messages: [sla.breach], to: assignees, via: [sms, email]}
  - {messages: [sla.breach], via: [ops]}
  - {messages: [digest], to: person, via: [email]}
"""


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "notifications.yaml"
    path.write_text(text)
    return load_notifications(path, ENV if env is None else env)


def test_the_default_sends_nothing() -> None:
    config = load_notifications(DEFAULT_NOTIFICATIONS, {})
    assert config.routes == () and config.channels == {}


def test_a_full_file_loads_with_its_secrets(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    assert config.channels["ops"].secret == "s3cret-value" and config.channels["sms"].secret == "tok"  # type: ignore[attr-defined]
    assert config.attempts == 4 and config.digest_catch_up == timedelta(hours=2)  # type: ignore[attr-defined]


def test_deliveries_follow_routes_and_addresses(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    directory_file = tmp_path / "directory.yaml"
    directory_file.write_text(
        DEFAULT_DIRECTORY.read_text().replace(
            "{id: S0012, name: Kavya Sharma, role: support_agent, centre: C01}",
            "{id: S0012, name: Kavya Sharma, role: support_agent, centre: C01, phone: '+919800000012'}",
        )
    )
    directory = load_directory(directory_file)
    message = Message("a1", "sla.breach", "C01", ("S0012", "S0013"), "SLA breached", "text", {})
    found = {(d["channel"], d["recipient"], d["to"]) for d in deliveries_for(message, config, directory)}  # type: ignore[arg-type]
    assert found == {
        ("email", "S0015", "s0015@example.com"),  # the C01 manager
        ("sms", "S0012", "+919800000012"),  # S0013 has no phone: left out
        ("ops", "ops", "https://ops.example.com/hook"),
    }
    again = deliveries_for(message, config, directory)  # type: ignore[arg-type]
    assert sorted(d["id"] for d in again) == sorted(
        delivery_id("a1", c, r) for c, r in [("email", "S0015"), ("sms", "S0012"), ("ops", "ops")]
    )
    near = Message("a2", "sla.near_breach", "C01", ("S0012",), "s", "t", {})
    assert [d["channel"] for d in deliveries_for(near, config, directory)] == ["email"]  # type: ignore[arg-type]


def test_webhook_signatures() -> None:
    body = b'{"id":"x"}'
    signature = sign("key", "1700000000", body)
    assert verify("key", "1700000000", body, signature, now=1700000010)
    assert not verify("key", "1700000000", body + b" ", signature, now=1700000010)  # body changed
    assert not verify("other", "1700000000", body, signature, now=1700000010)  # wrong key
    assert not verify("key", "1700000000", body, signature, now=1700009999)  # replayed later
    assert not verify("key", "soon", body, signature, now=1700000010)


H = "notifications: t\nversion: 1\n"


@pytest.mark.parametrize(
    ("text", "env", "line", "reason"),
    [
        ("version: 1\n", ENV, 1, "'notifications' must name this configuration"),
        (H + "retry: {attempts: 0}\n", ENV, 3, "'attempts' must be a whole number from 1 to 50"),
        (H + "retry: {first_delay: 10m, max_delay: 1m}\n", ENV, 3, "'max_delay' must be at least 'first_delay'"),
        (H + "rate_limit: {per: soon}\n", ENV, 3, "'per': expected a duration"),
        (H + "digest: {schedule: '0 8 * * funday'}\n", ENV, 3, "is not a cron expression"),
        (H + "digest: {schedule: '0 8 * *'}\n", ENV, 3, "is not a cron expression"),
        (H + "digest: {catch_up: 2d}\n", ENV, 3, "'catch_up' must be under a day"),
        (H + "channels:\n  x: {type: pigeon}\n", ENV, 4, "'type' must be one of webhook, smtp, sms, whatsapp"),
        (
            H + "channels:\n  x: {type: webhook, url: 'ftp://a', secret_env: HOOK_SECRET}\n",
            ENV,
            4,
            "'url' must be an http",
        ),
        (
            H + "channels:\n  x: {type: webhook, url: 'https://a'}\n",
            ENV,
            4,
            "'secret_env' must name the environment variable",
        ),
        (
            H + "channels:\n  x: {type: webhook, url: 'https://a', secret_env: NOPE}\n",
            ENV,
            4,
            "NOPE (named by 'secret_env') is not set",
        ),
        (H + "channels:\n  x: {type: webhook, url: 'https://a', secret: plain}\n", ENV, 4, "unknown key(s): secret"),
        (H + "channels:\n  x: {type: smtp, host: 'a b', from: 'a@b.c'}\n", ENV, 4, "'host' must be a host name"),
        (
            H + "channels:\n  x: {type: smtp, host: mail, port: 0, from: 'a@b.c'}\n",
            ENV,
            4,
            "'port' must be from 1 to 65535",
        ),
        (H + "channels:\n  x: {type: smtp, host: mail, from: nobody}\n", ENV, 4, "'from' must be an address"),
        (
            H + "routes:\n  - {messages: [sla.oops], to: managers, via: []}\n",
            ENV,
            4,
            "'messages' must list message kinds",
        ),
        (
            H + "channels: {}\nroutes:\n  - {messages: [sla.breach], to: managers, via: [email]}\n",
            ENV,
            5,
            "'via' must list defined channels",
        ),
        (
            H
            + "channels:\n  e: {type: smtp, host: m, from: 'a@b.c'}\nroutes:\n  - {messages: [sla.breach], via: [e]}\n",
            ENV,
            6,
            "channel 'e' sends to people: say who with 'to'",
        ),
        (
            H + "channels:\n  o: {type: webhook, url: 'https://a', secret_env: HOOK_SECRET}\n"
            "routes:\n  - {messages: [sla.breach], to: managers, via: [o]}\n",
            ENV,
            6,
            "channel 'o' is a webhook: it takes no 'to'",
        ),
        (
            H
            + "channels:\n  e: {type: smtp, host: m, from: 'a@b.c'}\n"
            + "routes:\n  - {messages: [sla.breach], to: person, via: [e]}\n",
            ENV,
            6,
            "'to: person' is for digests only",
        ),
    ],
)
def test_invalid_files_are_refused(tmp_path: Path, text: str, env: dict[str, str], line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, env)
    assert caught.value.line == line, caught.value
    assert reason in caught.value.reason, caught.value


def test_digest_slots_are_in_each_centres_time_zone() -> None:
    now = datetime(2026, 12, 1, 3, 10, tzinfo=UTC)  # 08:40 in India, 03:10 in London
    slot = due_slot("30 8 * * *", IST, now, timedelta(hours=2))
    assert slot == datetime(2026, 12, 1, 8, 30, tzinfo=IST)
    assert due_slot("30 8 * * *", ZoneInfo("Europe/London"), now, timedelta(hours=2)) is None  # not yet there
    late = now + timedelta(hours=3)  # three hours after the slot, past the catch-up
    assert due_slot("30 8 * * *", IST, late, timedelta(hours=2)) is None
    assert due_slot("30 8 * * mon-fri", IST, datetime(2026, 12, 5, 3, 10, tzinfo=UTC), timedelta(hours=2)) is None


def test_digest_texts() -> None:
    tiers = (Tier("Silver", 500, 400, ()), Tier("Gold", 1500, 1200, ()))
    assert next_tier(620, tiers) == ("Gold", 880) and next_tier(2000, tiers) is None
    person, centre = DIRECTORY.staff["S0012"], DIRECTORY.centres["C01"]
    now_ms = int(datetime(2026, 12, 1, 3, 0, tzinfo=UTC).timestamp() * 1000)
    clock = {
        "item_kind": "ticket",
        "item_id": "T-9",
        "clock": "resolution",
        "priority": "P2",
        "centre_id": "C01",
        "people": ["S0012"],
        "due_ms": now_ms + 3_600_000,
    }
    overdue = clock | {"item_id": "T-8", "due_ms": now_ms - 60_000}
    message = person_digest(
        person, centre, date(2026, 12, 1), points=620, rank=3, tiers=tiers, clocks=[clock, overdue], now_ms=now_ms
    )
    assert message.id == "digest:S0012:2026-12-01" and message.people == ("S0012",)
    assert "620 points, #3 at Pitstop Andheri" in message.text and "880 more points for Gold" in message.text
    assert (
        "Overdue: P2 ticket T-8" in message.text
        and "Due today: P2 ticket T-9 (resolution) due 01 Dec 09:30" in message.text
    )
    breach = {"type": "sla.breach", "centre_id": "C01", "fired_ms": now_ms - 1000}
    summary = manager_digest(
        DIRECTORY.staff["S0015"],
        centre,
        date(2026, 12, 1),
        clocks=[overdue],
        active=[breach],
        recent=[breach],
        now_ms=now_ms,
    )
    assert summary.data == {
        "overdue_jobcards": 0,
        "overdue_tickets": 1,
        "open_alerts": 1,
        "breaches_24h": 1,
        "date": "2026-12-01",
    }


def test_backoff_doubles_up_to_its_cap_with_jitter(tmp_path: Path) -> None:
    from agents.notify import backoff_s

    config = _load(tmp_path, GOOD)  # first_delay 1s, max_delay 30s
    for tries, base in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)):
        waits = [backoff_s(tries, config) for _ in range(200)]  # type: ignore[arg-type]
        assert base * 0.5 <= min(waits) and max(waits) <= base * 1.5
        assert max(waits) - min(waits) > base * 0.2  # jittered, so retries of many do not line up
