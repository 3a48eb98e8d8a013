"""Helpers shared by the functional tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from agents.scoring import Award
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY, Settings
from dashboards.gateway import Gateway


def award(
    n: int, staff_id: str = "S0001", points: int = 10, *, role: str = "technician", season: str = "2026-11"
) -> Award:
    """A five-star CSAT award number ``n`` at centre C01 (west, MH)."""
    return Award(
        award_id=f"award-{n}",
        event_id=f"e{n}",
        event_type="survey.csat",
        rule_id="survey.csat_five_star",
        rule_version=1,
        staff_id=staff_id,
        role=role,
        centre_id="C01",
        region="west",
        state="MH",
        season=season,
        points=points,
        occurred_at="2026-11-23T10:00:00+05:30",
        inputs={"rating": 5},
        multipliers=(),
        why=f"Five-star rating {n}",
    )


@contextlib.asynccontextmanager
async def running_gateway(redis_url: str, namespace: str, secret: str, **options: Any) -> AsyncIterator[Gateway]:
    """A gateway on a free port over a real Redis; ``options`` go to its Settings, except ``pack`` and
    ``send`` (the spot-award form), which go to the Gateway."""
    extra = {k: options.pop(k) for k in ("pack", "send") if k in options}
    settings = replace(Settings(), redis_namespace=namespace, gateway_port=0, token_secret=secret, **options)
    client = aioredis.from_url(redis_url)
    gateway = Gateway(settings, load_directory(DEFAULT_DIRECTORY), client, **extra)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
        await client.aclose()
