"""Settings from PITSTOP_* variables: defaults, and a SettingsError naming the variable for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES, Settings, SettingsError


def error_for(**env: str) -> str:
    """The SettingsError message for the given PITSTOP_ variables (names without the prefix)."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({f"PITSTOP_{name}": value for name, value in env.items()})
    return str(info.value)


def test_defaults() -> None:
    """With no variables set, every setting has its documented default."""
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.broker, settings.bootstrap_servers) == ("kafka://127.0.0.1:9092", "127.0.0.1:9092")
    assert (settings.redis_url, settings.redis_namespace) == ("redis://127.0.0.1:6379/0", "pitstop")
    assert (settings.directory_path, settings.rules_path) == (DEFAULT_DIRECTORY, DEFAULT_RULES)
    assert (settings.max_event_bytes, settings.max_future_skew_s, settings.dedup_ttl_s) == (65536, 900.0, 691200)
    assert (settings.bind_host, settings.gateway_port, settings.push_hz) == ("127.0.0.1", 8765, 10.0)
    assert (settings.broker_session_timeout_s, settings.broker_heartbeat_interval_s) == (10.0, 1.0)
    assert settings.topic_prefix == ""


def test_empty_variable_keeps_the_default() -> None:
    """A variable set to the empty string counts as unset."""
    assert Settings.from_env({"PITSTOP_GATEWAY_PORT": "", "PITSTOP_BROKER": ""}) == Settings()


def test_valid_values_are_parsed(tmp_path: Path) -> None:
    """Good values are parsed to their types; several brokers get the kafka:// scheme each."""
    settings = Settings.from_env(
        {
            "PITSTOP_BROKER": "a:9092;kafka://b:9093",
            "PITSTOP_GATEWAY_PORT": "9000",
            "PITSTOP_BATCH_WITHIN_S": "0.25",
            "PITSTOP_DIRECTORY": str(tmp_path),
            "PITSTOP_TOPIC_PREFIX": "dev-1",
        }
    )
    assert (settings.broker, settings.bootstrap_servers) == ("kafka://a:9092;kafka://b:9093", "a:9092,b:9093")
    assert (settings.gateway_port, settings.batch_within_s) == (9000, 0.25)
    assert (settings.directory_path, settings.topic_prefix) == (tmp_path, "dev-1")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BROKER", "http://broker:9092", "expected kafka://HOST:PORT (several separated by ';')"),
        ("BROKER", "localhost", "expected kafka://HOST:PORT (several separated by ';')"),
        ("REDIS_URL", "http://cache", "expected a redis://, rediss:// or unix:// URL"),
        ("GATEWAY_PORT", "70000", "expected an integer from 0 to 65535"),
        ("GATEWAY_PORT", "-1", "expected an integer from 0 to 65535"),
        ("GATEWAY_PORT", "abc", "invalid literal for int() with base 10: 'abc'"),
        ("BATCH_SIZE", "-5", "expected an integer from 1 to 100000"),
        ("TOPIC_PARTITIONS", "0", "expected an integer from 1 to 1024"),
        ("MAX_FUTURE_SKEW_S", "-1", "expected a number from 0 to 604800"),
        ("BATCH_WITHIN_S", "nan", "expected a number from 0.001 to 10"),
        ("PUSH_HZ", "inf", "expected a number from 0.1 to 10"),
        ("DEDUP_TTL_S", "1.5", "invalid literal for int() with base 10: '1.5'"),
        ("DIRECTORY", "/nonexistent/pitstop/directory.yaml", "no such file or directory"),
        ("RULES", "/nonexistent/pitstop/rules.yaml", "no such file or directory"),
        ("SLA", "/nonexistent/pitstop/sla.yaml", "no such file or directory"),
        ("NOTIFICATIONS", "/nonexistent/pitstop/notifications.yaml", "no such file or directory"),
        ("SLA_TICK_S", "0", "expected a number from 0.1 to 60"),
        ("TOPIC_PREFIX", "bad prefix", "expected 1-63 characters of letters, digits, '.', '_' or '-'"),
        ("BIND_HOST", "a b", "expected a host name or IP address"),
        ("SHUTDOWN_TIMEOUT_S", "0", "expected a number from 1 to 600"),
        ("DATA_DIR", "/etc/hostname", "exists and is not a directory"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, expected: str) -> None:
    """Each unusable value raises SettingsError naming the variable, the value and what was expected."""
    assert error_for(**{name: value}) == f"PITSTOP_{name}={value!r}: {expected}"


def test_short_secret_is_refused() -> None:
    """A token secret under 32 characters is refused, naming the variable."""
    message = error_for(TOKEN_SECRET="too-short-secret")
    assert message.startswith("PITSTOP_TOKEN_SECRET=")
    assert message.endswith(": a token secret needs at least 32 characters")


def test_short_secret_is_not_echoed() -> None:
    """The error for a bad token secret does not repeat the secret."""
    assert "too-short-secret" not in error_for(TOKEN_SECRET="too-short-secret")


def test_heartbeat_must_be_a_third_of_the_session_timeout() -> None:
    """A heartbeat interval above a third of the session timeout is refused, naming both variables."""
    assert error_for(BROKER_HEARTBEAT_INTERVAL_S="5") == (
        "PITSTOP_BROKER_HEARTBEAT_INTERVAL_S must be at most a third of PITSTOP_BROKER_SESSION_TIMEOUT_S "
        "(got 5.0 and 10.0)"
    )
    ok = Settings.from_env({"PITSTOP_BROKER_HEARTBEAT_INTERVAL_S": "3", "PITSTOP_BROKER_SESSION_TIMEOUT_S": "9"})
    assert (ok.broker_heartbeat_interval_s, ok.broker_session_timeout_s) == (3.0, 9.0)


@pytest.mark.parametrize("broker", ["kafka://broker:70000", "broker:99999", "broker:0"])
def test_broker_port_out_of_range_is_refused(broker: str) -> None:
    """A broker port outside 1-65535 is refused, naming PITSTOP_BROKER."""
    assert error_for(BROKER=broker).startswith(f"PITSTOP_BROKER={broker!r}: ")
