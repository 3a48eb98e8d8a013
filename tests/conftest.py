"""Shared test settings: one time unit, scaled by PITSTOP_TEST_TIMEOUT_FACTOR on slow machines."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitstop.services import Service, start_redis

ROOT = Path(__file__).resolve().parent.parent
UNIT = float(os.environ.get("PITSTOP_TEST_TIMEOUT_FACTOR", "1"))


def seconds(n: float) -> float:
    """A timeout of ``n`` base seconds, scaled for the machine."""
    return n * UNIT


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    """A private redis-server for the session (tests use their own namespaces inside it)."""
    service = start_redis(appendonly=False)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
