"""Spot-award budgets: what a giver (a manager recognising someone) may give per month, and refusals.

A rule on an event a person gives (``recognition.given``, whose ``awarded_by`` names the giver) may
carry ``budget: N``: the points one giver may give through it per calendar month (the giver's centre's
time zone, by event time). A giver's ``spot_budget`` in the directory replaces N for that person.

One event is granted or refused whole, for all its recipients, in the order the events arrive, by one
atomic step in Redis (:class:`state.budgets.BudgetStore`) that also remembers the decision per event,
so an event scored again after a crash gets the decision it got the first time; :class:`BudgetBook`
takes the same decisions in memory, for re-scoring the topics (``pitstop rules diff``, the replay
checks), where the events come in topic order. A refusal is a ledger
entry of kind ``refusal`` (no points, on no board) addressed to the giver, saying why; a grant adds
``budget_of``, ``budget_month`` and ``budget`` to each award's inputs, from which
:func:`state.budgets.from_ledger` restores the budgets. A grant does not record how much of the month
was used before it: that depends on the order a giver's recognitions arrive in, and the ledger of
granted recognitions must not (only which one is refused when a budget runs out does).

Decisions that need no budget state are taken here: a giver not in the directory or suspended at the
event's time, or a recognition bigger than the whole budget, is refused outright. (A giver among the
recipients never gets this far: the event contract refuses it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agents.rules import Rule, RulePack
from agents.scoring import Award, award_id
from config.directory import Directory, Staff
from streams.contract import GIVER_FIELDS

if TYPE_CHECKING:  # the pipeline settles budgets in memory through this module
    from agents.pipeline import ScoredEvent


@dataclass(frozen=True, slots=True)
class Claim:
    """One event's awards from one budgeted rule: what they take from the giver's month."""

    index: int  # of the event in the batch's scored list
    event_id: str
    rule: Rule
    giver_id: str
    giver: Staff | None
    month: str  # "2026-11"
    points: int  # all recipients together
    limit: int
    refused: str = ""  # a reason known without the budget's state (then no Redis decision is needed)

    @property
    def pool(self) -> str:
        return f"{self.rule.id}|{self.giver_id}|{self.month}"


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    used: int = 0  # a refusal: the points of the month already used when it was refused

    def encode(self) -> str:
        return "g" if self.granted else f"r:{self.used}"

    @classmethod
    def decode(cls, text: str) -> Decision:
        flag, _, used = text.partition(":")
        return cls(True) if flag in ("g", "G") else cls(False, int(used))  # G: a grant restored from the ledger


class BudgetBook:
    """Budgets in memory, decided by the rule :data:`state.budgets.DECIDE_LUA` applies in Redis: an event
    decided before keeps its decision; a new one is granted if it fits in what is left of its pool."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}
        self.decided: dict[tuple[str, str], Decision] = {}

    def decide(self, found: Sequence[Claim]) -> list[Decision | None]:
        decisions: list[Decision | None] = []
        for claim in found:
            if claim.refused:
                decisions.append(None)
                continue
            known = self.decided.get((claim.pool, claim.event_id))
            if known is None:
                used = self.used.get(claim.pool, 0)
                if used + claim.points <= claim.limit:
                    known = Decision(True)
                    self.used[claim.pool] = used + claim.points
                else:
                    known = Decision(False, used)
                self.decided[(claim.pool, claim.event_id)] = known
            decisions.append(known)
        return decisions


def claims(scored: Sequence[ScoredEvent], pack: RulePack, directory: Directory) -> list[Claim]:
    """The budget claims of a batch's scored events, in batch order."""
    found: list[Claim] = []
    budgeted = {rule.id: rule for rule in pack.rules if rule.budget is not None}
    if not budgeted:
        return found
    for index, item in enumerate(scored):
        field = GIVER_FIELDS.get(item.event.type)
        if field is None:
            continue
        by_rule: dict[str, int] = {}
        for award in item.awards:
            if award.kind == "award" and award.rule_id in budgeted:
                by_rule[award.rule_id] = by_rule.get(award.rule_id, 0) + award.points
        if not by_rule:
            continue
        giver_id = str(item.event.data[field])
        giver = directory.person(giver_id)
        centre = directory.centre(giver.centre_id if giver else item.event.centre_id)
        zone = centre.timezone if centre else None
        month = item.event.occurred_at.astimezone(zone).strftime("%Y-%m")
        for rule_id, points in by_rule.items():
            rule = budgeted[rule_id]
            assert rule.budget is not None
            limit = giver.spot_budget if giver and giver.spot_budget is not None else rule.budget
            claim = Claim(index, item.event.event_id, rule, giver_id, giver, month, points, limit)
            found.append(replace(claim, refused=_refused_outright(claim, item)))
    return found


def _refused_outright(claim: Claim, item: ScoredEvent) -> str:
    if claim.giver is None:
        return f"{claim.giver_id} is not in the directory, so has no budget to give from"
    if claim.giver.suspended_at(item.event.occurred_at):
        return f"{claim.giver_id} was suspended at the time of the recognition"
    if claim.limit == 0:
        return f"{claim.giver_id} has no spot-award budget (spot_budget 0 in the directory)"
    if claim.points > claim.limit:
        return f"{claim.points} points is more than the whole monthly budget of {claim.limit}"
    return ""


def settle(scored: list[ScoredEvent], found: Sequence[Claim], decisions: Sequence[Decision | None]) -> None:
    """Apply each claim's decision to its event's awards, in place (``None``: refused outright)."""
    for claim, decision in zip(found, decisions, strict=True):
        item = scored[claim.index]
        mine = [a for a in item.awards if a.kind == "award" and a.rule_id == claim.rule.id]
        others = [a for a in item.awards if a not in mine]
        if decision is not None and decision.granted:
            inputs = {"budget_of": claim.giver_id, "budget_month": claim.month, "budget": claim.limit}
            kept = [replace(a, inputs={**a.inputs, **inputs}) for a in mine]
            scored[claim.index] = replace(item, awards=tuple(others + kept))
            continue
        used = decision.used if decision else 0
        reason = claim.refused or (
            f"{claim.points} points would pass the {claim.month} budget "
            f"({used} of {claim.limit} used, {claim.limit - used} left)"
        )
        scored[claim.index] = replace(item, awards=tuple([*others, refusal(claim, mine, reason, used)]))


def refusal(claim: Claim, refused: Sequence[Award], reason: str, used: int) -> Award:
    """The ledger entry telling the giver their recognition gave nothing, and why."""
    first = refused[0]
    giver = claim.giver
    recipients = sorted({a.staff_id for a in refused})
    return replace(
        first,
        award_id=award_id(first.event_id, f"refusal:{claim.rule.id}", claim.rule.version, claim.giver_id),
        kind="refusal",
        rule_id=claim.rule.id,
        staff_id=claim.giver_id,
        role=giver.role if giver else "manager",
        points=0,
        inputs={
            "asked": claim.points,
            "budget": claim.limit,
            "budget_month": claim.month,
            "budget_used": used,
            "recipients": recipients,
        },
        multipliers=(),
        why=f"Recognition of {', '.join(recipients)} refused: {reason}",
        retracted_by=(),
        badge=None,
    )
