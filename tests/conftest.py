"""Shared test settings: one time unit, scaled by PITSTOP_TEST_TIMEOUT_FACTOR on slow machines."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = float(os.environ.get("PITSTOP_TEST_TIMEOUT_FACTOR", "1"))


def seconds(n: float) -> float:
    """A timeout of ``n`` base seconds, scaled for the machine."""
    return n * UNIT
