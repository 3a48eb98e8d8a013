"""Helpers shared by the functional tests."""

from __future__ import annotations

from agents.scoring import Award


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
