"""The chaos oracle and the engine agree award for award, on the default pack and on a pack that uses
expressions, formulas and effective windows (two implementations, one answer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from agents.rules import load_rule_pack
from agents.scoring import score_event
from config.directory import Directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.oracle import Oracle
from streams.events import decode_event
from streams.simulator import Simulator

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # the windows below switch at 2026-12-01 00:00 IST

LANGUAGE_PACK = """\
pack: language
version: 1
rules:
  - id: survey.good
    version: 1
    event: survey.csat
    roles: [technician, service_advisor, support_agent, sales_executive]
    when: "rating >= 4 and subject_kind in ('jobcard', 'ticket')"
    points: "rating * 2.5"
    effective_to: 2026-12-01T00:00:00+05:30
    why: "Good rating"
  - id: survey.good
    version: 2
    event: survey.csat
    roles: [technician, service_advisor]
    when: "rating >= 4"
    points: "min(rating * 4, 18)"
    effective_from: 2026-12-01T00:00:00+05:30
    why: "Good rating"
  - id: upsell.value
    version: 1
    event: sale.upsell
    roles: [service_advisor, technician, sales_executive]
    when: "amount > 0"
    points: "max(amount / 1000, 1)"
    multipliers:
      - {name: big, when: "amount >= 20000 and line != 'tyres'", factor: 1.2}
    why: "Upsell worth {amount}"
  - id: jobcard.quick
    version: 1
    event: jobcard.closed
    roles: [technician]
    when: "on_time and turnaround_ratio < 0.9"
    points: 5
    why: "Quick job"
"""


def _events(directory: Directory, count: int) -> list[bytes]:
    sim = Simulator(directory, seed=3)
    return [orjson.dumps(sim.event(START + timedelta(minutes=5 * i))) for i in range(count)]


@pytest.mark.parametrize("pack_text", [None, LANGUAGE_PACK], ids=["default-pack", "language-pack"])
def test_oracle_and_engine_agree(tmp_path: Path, directory: Directory, pack_text: str | None) -> None:
    path = DEFAULT_RULES
    if pack_text is not None:
        path = tmp_path / "pack.yaml"
        path.write_text(pack_text, encoding="utf-8")
    pack = load_rule_pack(path)
    oracle = Oracle(path, DEFAULT_DIRECTORY)
    engine: dict[str, int] = {}
    expected: dict[str, int] = {}
    fired: set[tuple[str, int]] = set()
    for raw in _events(directory, 3000):  # ~10 days of events across the window switch
        event = decode_event(raw, now=START + timedelta(days=30))
        awards = score_event(event, pack, directory)
        engine |= {a.award_id: a.points for a in awards}
        fired |= {(a.rule_id, a.rule_version) for a in awards}
        expected |= {a.award_id: a.points for a in oracle.awards(orjson.loads(raw))}
    assert engine == expected
    assert len(engine) > 1000
    if pack_text is not None:  # every rule fired, both versions of the windowed one
        assert fired == {("survey.good", 1), ("survey.good", 2), ("upsell.value", 1), ("jobcard.quick", 1)}


def test_oracle_and_engine_spend_budgets_alike(tmp_path: Path, directory: Directory) -> None:
    """With budgets tight enough to run out, the engine (re-scoring in order, as the topics are read) and
    the oracle grant and refuse the same recognitions: the same entries, refusals included."""
    from agents.budgets import BudgetBook
    from agents.pipeline import SourceRecord, score_decoded

    path = tmp_path / "pack.yaml"
    path.write_text(DEFAULT_RULES.read_text(encoding="utf-8").replace("budget: 2000 ", "budget: 60   "), "utf-8")
    pack = load_rule_pack(path)
    raws = _events(directory, 3000)
    decoded = [
        (SourceRecord("recognitions", 0, n, None, raw, 0), decode_event(raw, now=START + timedelta(days=30)))
        for n, raw in enumerate(raws)
    ]
    result = score_decoded(decoded, pack=pack, directory=directory, budget_book=BudgetBook())
    expected = Oracle(path, DEFAULT_DIRECTORY).fold(orjson.loads(raw) for raw in raws)
    assert {a.award_id: (a.staff_id, a.points) for _, a in result.awards} == {
        i: (e.staff_id, e.points) for i, e in expected.items()
    }
    refused = {a.award_id for _, a in result.awards if a.kind == "refusal"}
    assert refused == {i for i, e in expected.items() if e.points == 0}
    grants = sum(1 for _, a in result.awards if "budget_of" in a.inputs)
    assert len(refused) >= 10 and grants >= 10  # the budget really ran out, and not at once
