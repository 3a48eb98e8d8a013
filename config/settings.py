"""Typed, frozen settings read once from the environment.

Every variable is validated when read; a bad value raises :class:`SettingsError` naming the variable,
the value and what was expected, so a misconfigured worker refuses to start instead of misbehaving.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_DIRECTORY = CONFIG_DIR / "demo" / "directory.yaml"
DEFAULT_RULES = CONFIG_DIR / "rules" / "default.yaml"
DEFAULT_PROGRAMME = CONFIG_DIR / "programmes" / "default.yaml"
DEFAULT_SLA = CONFIG_DIR / "sla" / "default.yaml"
DEFAULT_NOTIFICATIONS = CONFIG_DIR / "notifications" / "default.yaml"
DEFAULT_THEME = CONFIG_DIR / "theme" / "default.yaml"

T = TypeVar("T")


class SettingsError(ValueError):
    """An environment variable has a value Pitstop cannot use. Retrying does not help; fix the value."""


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    directory_path: Path = DEFAULT_DIRECTORY
    rules_path: Path = DEFAULT_RULES
    programme_path: Path = DEFAULT_PROGRAMME  # tiers and contests (config/programme.py)
    sla_path: Path = DEFAULT_SLA  # SLA policies, business hours, holidays (config/sla.py)
    notifications_path: Path = DEFAULT_NOTIFICATIONS  # channels and routes (config/notifications.py)
    theme_path: Path = DEFAULT_THEME  # the pages' title, logo and colours (config/theme.py)
    sla_tick_s: float = 1.0  # how often the leader fires SLA alerts that are due (and digests)
    topic_prefix: str = ""
    redis_namespace: str = "pitstop"
    # The ledger generation in use ("" for the first): read from the broker's ledger-generations topic
    # at start-up (streams.topics.active_generation), never from the environment.
    ledger_generation: str = ""
    topic_partitions: int = 4
    app_id: str = "pitstop"
    max_event_bytes: int = 64 * 1024
    max_future_skew_s: float = 900.0
    dedup_ttl_s: int = 8 * 24 * 3600
    subject_ttl_s: int = 90 * 24 * 3600  # how long after its last event a job card/sale/survey can take awards back
    allowed_lateness_s: int = 48 * 3600  # a centre's day closes this long (stream time) after it ends
    kpi_ttl_s: int = 120 * 24 * 3600  # how long KPI records and closed-window results are kept
    repeat_complaint_days: int = 30  # a job card reopened within this many days of closing is a repeat complaint
    batch_size: int = 2000
    batch_within_s: float = 0.05
    bind_host: str = "127.0.0.1"  # where the gateway and the worker's /metrics listen
    gateway_port: int = 8765
    worker_metrics_port: int = 0
    token_secret: str = "pitstop-dev-secret-change-me-0123456789"
    # Pages served from other origins that may open WebSockets here (scheme://host[:port]); the gateway's
    # own pages are always allowed, every other origin refused.
    allowed_origins: tuple[str, ...] = ()
    broker_session_timeout_s: float = 10.0
    broker_heartbeat_interval_s: float = 1.0
    push_hz: float = 10.0
    shutdown_timeout_s: float = 20.0  # a worker that has not stopped this long after SIGTERM exits hard
    # Faust's scratch folder. Nothing durable lives there (tables are in memory; Kafka and Redis hold
    # the state), so the default is under the system's temporary folder, not the working directory.
    data_dir: Path = Path(tempfile.gettempdir()) / "pitstop"

    @property
    def bootstrap_servers(self) -> str:
        """The broker URL without its ``kafka://`` scheme, as aiokafka wants it."""
        return ",".join(part.split("://", 1)[-1] for part in self.broker.split(";"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``PITSTOP_*`` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: T, parse: Callable[[str], T]) -> T:
            raw = env.get(f"PITSTOP_{name}")
            if raw is None or raw == "":
                return default
            try:
                return parse(raw)
            except ValueError as exc:
                shown = "<hidden>" if name in _SECRETS else repr(raw)
                raise SettingsError(f"PITSTOP_{name}={shown}: {exc}") from None

        settings = cls(
            broker=get("BROKER", d.broker, _broker_url),
            redis_url=get("REDIS_URL", d.redis_url, _redis_url),
            directory_path=get("DIRECTORY", d.directory_path, _existing_path),
            rules_path=get("RULES", d.rules_path, _existing_path),
            programme_path=get("PROGRAMME", d.programme_path, _existing_path),
            sla_path=get("SLA", d.sla_path, _existing_path),
            notifications_path=get("NOTIFICATIONS", d.notifications_path, _existing_path),
            theme_path=get("THEME", d.theme_path, _existing_path),
            sla_tick_s=get("SLA_TICK_S", d.sla_tick_s, _float_between(0.1, 60)),
            topic_prefix=get("TOPIC_PREFIX", d.topic_prefix, _name),
            redis_namespace=get("REDIS_NAMESPACE", d.redis_namespace, _name),
            topic_partitions=get("TOPIC_PARTITIONS", d.topic_partitions, _int_between(1, 1024)),
            app_id=get("APP_ID", d.app_id, _name),
            max_event_bytes=get("MAX_EVENT_BYTES", d.max_event_bytes, _int_between(512, 16 * 1024 * 1024)),
            max_future_skew_s=get("MAX_FUTURE_SKEW_S", d.max_future_skew_s, _float_between(0, 7 * 86400)),
            dedup_ttl_s=get("DEDUP_TTL_S", d.dedup_ttl_s, _int_between(60, 400 * 86400)),
            subject_ttl_s=get("SUBJECT_TTL_S", d.subject_ttl_s, _int_between(3600, 3660 * 86400)),
            allowed_lateness_s=get("ALLOWED_LATENESS_S", d.allowed_lateness_s, _int_between(0, 31 * 86400)),
            kpi_ttl_s=get("KPI_TTL_S", d.kpi_ttl_s, _int_between(40 * 86400, 3660 * 86400)),
            repeat_complaint_days=get("REPEAT_COMPLAINT_DAYS", d.repeat_complaint_days, _int_between(1, 365)),
            batch_size=get("BATCH_SIZE", d.batch_size, _int_between(1, 100_000)),
            batch_within_s=get("BATCH_WITHIN_S", d.batch_within_s, _float_between(0.001, 10)),
            bind_host=get("BIND_HOST", d.bind_host, _host),
            gateway_port=get("GATEWAY_PORT", d.gateway_port, _int_between(0, 65535)),
            worker_metrics_port=get("WORKER_METRICS_PORT", d.worker_metrics_port, _int_between(0, 65535)),
            token_secret=get("TOKEN_SECRET", d.token_secret, _secret),
            allowed_origins=get("ALLOWED_ORIGINS", d.allowed_origins, _origins),
            broker_session_timeout_s=get(
                "BROKER_SESSION_TIMEOUT_S", d.broker_session_timeout_s, _float_between(1, 300)
            ),
            broker_heartbeat_interval_s=get(
                "BROKER_HEARTBEAT_INTERVAL_S", d.broker_heartbeat_interval_s, _float_between(0.1, 100)
            ),
            push_hz=get("PUSH_HZ", d.push_hz, _float_between(0.1, 10)),
            shutdown_timeout_s=get("SHUTDOWN_TIMEOUT_S", d.shutdown_timeout_s, _float_between(1, 600)),
            data_dir=get("DATA_DIR", d.data_dir, _folder),
        )
        if settings.kpi_ttl_s < settings.allowed_lateness_s + 32 * 86400:
            raise SettingsError(
                "PITSTOP_KPI_TTL_S must cover a month plus PITSTOP_ALLOWED_LATENESS_S (a month's records are read "
                f"when it closes); got {settings.kpi_ttl_s} and {settings.allowed_lateness_s}"
            )
        if settings.broker_heartbeat_interval_s * 3 > settings.broker_session_timeout_s:
            raise SettingsError(
                "PITSTOP_BROKER_HEARTBEAT_INTERVAL_S must be at most a third of "
                f"PITSTOP_BROKER_SESSION_TIMEOUT_S (got {settings.broker_heartbeat_interval_s} and "
                f"{settings.broker_session_timeout_s})"
            )
        return settings


_SECRETS = frozenset({"TOKEN_SECRET"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _name(raw: str) -> str:
    if not _NAME.match(raw):
        raise ValueError("expected 1-63 characters of letters, digits, '.', '_' or '-'")
    return raw


def _broker_url(raw: str) -> str:
    for part in raw.split(";"):
        match = re.match(r"^(kafka://)?[A-Za-z0-9.\-\[\]:]+:(\d{1,5})$", part)
        if not match:
            raise ValueError("expected kafka://HOST:PORT (several separated by ';')")
        if not 1 <= int(match.group(2)) <= 65535:
            raise ValueError(f"port {match.group(2)} is not from 1 to 65535")
    return ";".join(p if p.startswith("kafka://") else f"kafka://{p}" for p in raw.split(";"))


def _redis_url(raw: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://", raw):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


def _existing_path(raw: str) -> Path:
    path = Path(raw)
    if not path.exists():
        raise ValueError("no such file or directory")
    return path


def _folder(raw: str) -> Path:
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise ValueError("exists and is not a directory")
    return path


def _host(raw: str) -> str:
    if not re.match(r"^[A-Za-z0-9.\-:]+$", raw):
        raise ValueError("expected a host name or IP address")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not re.match(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$", part):
            raise ValueError(f"{part!r} is not an origin (scheme://host[:port], several separated by ',')")
        found.append(part.lower())
    return tuple(found)


def _secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("a token secret needs at least 32 characters")
    return raw


def _int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return value

    return parse


def _float_between(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(f"expected a number from {lo} to {hi}")
        return value

    return parse
