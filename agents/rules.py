"""Rule packs: loading, validation and pure evaluation (no Faust, no Redis).

A rule fires on one event type for the people on the event whose role it lists, when every
condition in ``when`` holds over the event's facts. Its points are ``base x matching multipliers``,
rounded half up to a whole number. See ``config/rules/default.yaml`` for the format.
"""

from __future__ import annotations

import ast
import difflib
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import CodeType
from typing import Any, cast

from simpleeval import EvalWithCompoundTypes, InvalidExpression, safe_add, safe_mult

from config.loading import ConfigError, Located, load_yaml
from streams.contract import (
    CORRECTABLE,
    DERIVED_FACTS,
    EVENT_TYPES,
    GIVER_FIELDS,
    KPI_METRICS,
    RETRACTING,
    ROLES,
    WINDOW_KINDS,
    WINDOW_TYPES,
    window_rule_facts,
)
from streams.events import Event, parse_time

Facts = Mapping[str, Any]

ENVELOPE_FACTS = ("event_id", "type", "occurred_at", "centre_id", "customer_ref")

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "ne": lambda a, b: bool(a != b),
    "lt": lambda a, b: bool(a < b),
    "lte": lambda a, b: bool(a <= b),
    "gt": lambda a, b: bool(a > b),
    "gte": lambda a, b: bool(a >= b),
    "in": lambda a, b: a in b,
}
_RULE_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_RULE_KEYS = {
    "id",
    "version",
    "event",
    "roles",
    "when",
    "points",
    "multipliers",
    "why",
    "effective_from",
    "effective_to",
    "exclude",
    "retracted_by",
    "cap",
    "budget",
    "badge",
}
_BADGE_ID = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_BADGE_KEYS = {"id", "name", "description"}
CAP_KINDS = ("day", "week", "month")
FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}
# The Python expression constructs a rule may use: arithmetic, comparisons, and/or/not, x if c else y,
# tuples/lists for `in`, and the functions above. No attributes, subscripts, lambdas or comprehensions.
_ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Expression,
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.UnaryOp,
        ast.Not,
        ast.USub,
        ast.UAdd,
        ast.BinOp,
        ast.Add,
        ast.Sub,
        ast.Mult,
        ast.Div,
        ast.Mod,
        ast.Compare,
        ast.Eq,
        ast.NotEq,
        ast.Lt,
        ast.LtE,
        ast.Gt,
        ast.GtE,
        ast.In,
        ast.NotIn,
        ast.Name,
        ast.Load,
        ast.Constant,
        ast.Tuple,
        ast.List,
        ast.Call,
        ast.IfExp,
        ast.Attribute,  # only kpi.<name> (checked in _expression)
    }
)
_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.Subscript: "indexing (a[b])",
    ast.Pow: "powers (**)",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.NamedExpr: "assignment (:=)",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.Starred: "starred arguments",
    ast.FloorDiv: "floor division (//)",
    ast.BitAnd: "bit operators",
    ast.BitOr: "bit operators",
    ast.BitXor: "bit operators",
    ast.LShift: "bit operators",
    ast.RShift: "bit operators",
    ast.Invert: "bit operators",
    ast.Is: "'is' (use ==)",
    ast.keyword: "keyword arguments (name=value)",
    ast.IsNot: "'is not' (use !=)",
}


@dataclass(frozen=True, slots=True)
class Condition:
    fact: str
    op: str
    value: Any

    def reads(self) -> tuple[str, ...]:
        return (self.fact,)

    def holds(self, facts: Facts) -> bool:
        actual = facts.get(self.fact)
        if actual is None:
            return False
        try:
            return _OPS[self.op](actual, self.value)
        except TypeError:  # e.g. comparing a string fact with a number: the condition does not hold
            return False


@dataclass(frozen=True, slots=True)
class Expression:
    """A safe expression over an event's facts, e.g. ``rating >= 4 and feedback_length > 20`` or
    ``min(amount / 1000, 50)``. Validated when the pack loads (allowed constructs, known facts and
    functions); evaluated as simpleeval evaluates it. Numbers are Decimals, so ``0.1 + 0.2 == 0.3``."""

    source: str
    tree: ast.AST  # simpleeval's parse of the source, float literals turned into Decimals
    names: tuple[str, ...]
    # One evaluator per expression, its names swapped per call: building one costs ~50 us, more than
    # the evaluation. Scoring runs on one thread (the worker's event loop).
    evaluator: EvalWithCompoundTypes = field(init=False, repr=False, compare=False)
    # The tree translated to Python bytecode (see _Compiled), or None: then the evaluator walks it.
    compiled: _Compiled | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # simpleeval adds its own names to the functions dict it is given, hence the copy
        object.__setattr__(self, "evaluator", EvalWithCompoundTypes(functions=dict(FUNCTIONS)))
        object.__setattr__(self, "compiled", _Compiled.of(self.tree, self.names))

    def reads(self) -> tuple[str, ...]:
        return self.names

    def value(self, facts: Facts) -> Any:
        """The expression's value; raises :class:`ExpressionError` when it cannot be computed for these
        facts (a fact missing from the event, a division by zero, a string compared with a number)."""
        compiled = self.compiled
        if compiled is not None:
            names = {alias: _number(v) for name, alias in compiled.aliases if (v := facts.get(name)) is not None}
            try:
                return eval(compiled.code, compiled.scope, names)
            except NameError:  # a fact without a value: what simpleeval raises for it
                raise ExpressionError(f"{self.source}: NameNotDefined") from None
            except (InvalidExpression, TypeError, ArithmeticError, ValueError) as exc:
                raise ExpressionError(f"{self.source}: {type(exc).__name__}") from None
        names = {n: _number(facts[n]) for n in self.names if facts.get(n) is not None}
        try:
            self.evaluator.names = names
            return self.evaluator.eval(self.source, previously_parsed=self.tree)
        except (InvalidExpression, TypeError, ArithmeticError, ValueError) as exc:
            raise ExpressionError(f"{self.source}: {type(exc).__name__}") from None

    def holds(self, facts: Facts) -> bool:
        """As a condition: true only when it evaluates to exactly ``True``."""
        try:
            return self.value(facts) is True
        except ExpressionError:
            return False


# The functions a compiled expression can call, and simpleeval's own + and * (which refuse to build
# strings or lists longer than it allows), under names no fact can have.
_CALLABLE = {f"_fn_{name}": function for name, function in FUNCTIONS.items()}
_BINARY: dict[type[ast.operator], str | None] = {
    ast.Add: "_add",
    ast.Mult: "_mul",
    ast.Sub: None,
    ast.Div: None,
    ast.Mod: None,
}
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_UNARY = (ast.Not, ast.USub, ast.UAdd)
_MAX_DEPTH = 40  # deeper trees are left to simpleeval, which is what limits how deep they may go
_SIMPLEEVAL_NAMES = frozenset((*FUNCTIONS, "list", "tuple", "dict", "set"))


@dataclass(frozen=True, slots=True)
class _Compiled:
    """An expression's tree as a Python code object that computes what simpleeval computes from it,
    some 10x faster. It is built from a fresh tree of only the constructs below (the same ones
    simpleeval evaluates for a rule: no attributes, subscripts, lambdas, comprehensions or keyword
    arguments), in which every fact is a renamed local, the only callables are min, max and abs, and
    ``+`` and ``*`` are simpleeval's own length-checked functions; it runs without builtins. A tree with
    anything else is not compiled (the evaluator walks it)."""

    code: CodeType
    scope: dict[str, Any]  # the globals: functions and Decimal literals
    aliases: tuple[tuple[str, str], ...]  # (fact, the local that holds it)

    @classmethod
    def of(cls, tree: ast.AST, names: tuple[str, ...]) -> _Compiled | None:
        body = tree.value if isinstance(tree, ast.Expr) else tree.body if isinstance(tree, ast.Expression) else None
        if body is None or _SIMPLEEVAL_NAMES.intersection(names):
            return None
        aliases = {name: f"_f{n}" for n, name in enumerate(names)}
        scope: dict[str, Any] = {"__builtins__": {}, "_add": safe_add, "_mul": safe_mult, **_CALLABLE}
        translated = _translate(body, aliases, scope, 0)
        if translated is None:
            return None
        expression = ast.fix_missing_locations(ast.Expression(body=translated))
        code = compile(expression, "<rule expression>", "eval")
        return cls(code, scope, tuple(aliases.items()))


def _translate(node: ast.AST, aliases: Mapping[str, str], scope: dict[str, Any], depth: int) -> ast.expr | None:
    """A new tree for ``node`` for :class:`_Compiled` (``scope`` gets the Decimal literals), or None."""
    if depth > _MAX_DEPTH:
        return None

    def sub(child: ast.AST) -> ast.expr | None:
        return _translate(child, aliases, scope, depth + 1)

    def all_of(children: list[ast.expr]) -> list[ast.expr] | None:
        out = [sub(child) for child in children]
        return None if any(x is None for x in out) else cast(list[ast.expr], out)

    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return ast.Name(id=aliases[node.id], ctx=ast.Load()) if node.id in aliases else None
    if isinstance(node, ast.Constant):
        value = node.value
        if type(value) in (bool, int, float, str, type(None)):
            return ast.Constant(value=value)
        if isinstance(value, Decimal):
            name = f"_k{len(scope)}"
            scope[name] = value
            return ast.Name(id=name, ctx=ast.Load())
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = sub(node.left), sub(node.right)
        if left is None or right is None:
            return None
        helper = _BINARY[type(node.op)]
        if helper is None:
            return ast.BinOp(left=left, op=type(node.op)(), right=right)
        return ast.Call(func=ast.Name(id=helper, ctx=ast.Load()), args=[left, right], keywords=[])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
        operand = sub(node.operand)
        return None if operand is None else ast.UnaryOp(op=type(node.op)(), operand=operand)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or) and len(node.values) >= 2:
        values = all_of(node.values)
        return None if values is None else ast.BoolOp(op=type(node.op)(), values=values)
    if isinstance(node, ast.Compare) and node.ops and all(isinstance(op, _COMPARISONS) for op in node.ops):
        left, comparators = sub(node.left), all_of(node.comparators)
        if left is None or comparators is None or len(comparators) != len(node.ops):
            return None
        return ast.Compare(left=left, ops=[type(op)() for op in node.ops], comparators=comparators)
    if isinstance(node, ast.IfExp):
        test, body, orelse = sub(node.test), sub(node.body), sub(node.orelse)
        if test is None or body is None or orelse is None:
            return None
        return ast.IfExp(test=test, body=body, orelse=orelse)
    if isinstance(node, ast.Tuple | ast.List) and isinstance(node.ctx, ast.Load):
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return None
        elts = all_of(node.elts)
        if elts is None:
            return None
        return (
            ast.Tuple(elts=elts, ctx=ast.Load()) if isinstance(node, ast.Tuple) else ast.List(elts=elts, ctx=ast.Load())
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and f"_fn_{node.func.id}" in _CALLABLE:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return None
        args = all_of(node.args)
        if args is None:
            return None
        return ast.Call(func=ast.Name(id=f"_fn_{node.func.id}", ctx=ast.Load()), args=args, keywords=[])
    return None


class ExpressionError(ValueError):
    """An expression has no value for an event's facts; the rule does not fire."""


def _number(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, float) else value


@dataclass(frozen=True, slots=True)
class Multiplier:
    name: str
    when: tuple[Condition | Expression, ...]
    factor: Decimal


@dataclass(frozen=True, slots=True)
class Badge:
    """A badge of the pack's catalogue: earned with each award of a rule that names it."""

    id: str
    name: str  # what the person reads
    description: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: int
    on: str
    roles: frozenset[str]
    when: tuple[Condition | Expression, ...]
    points: int | str | Expression  # a whole number, the name of the fact holding them, or a formula
    multipliers: tuple[Multiplier, ...]
    why: str
    line: int = 0
    effective_from: datetime | None = None  # by event time: from (inclusive) ...
    effective_to: datetime | None = None  # ... to (exclusive)
    exclude_groups: frozenset[str] = frozenset()  # directory groups this rule never awards
    retracted_by: tuple[str, ...] = ()  # event types that take this rule's awards back (agents.retractions)
    caps: tuple[tuple[str, int], ...] = ()  # (day|week|month, most points per person): settled when it closes
    budget: int | None = None  # points a giver (the event's `awarded_by`) may give per month (agents.budgets)
    badge: Badge | None = None  # the badge each award of this rule earns (from the pack's `badges`)
    # what reads() returns, worked out on its first call (scoring asks for it once per award)
    _reads: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def in_effect(self, occurred_at: datetime) -> bool:
        """Whether an event at this event time falls in the rule's effective window."""
        if self.effective_from is not None and occurred_at < self.effective_from:
            return False
        return self.effective_to is None or occurred_at < self.effective_to

    def reads(self) -> tuple[str, ...]:
        """The facts this rule reads, in a stable order (recorded on each award as its inputs)."""
        if self._reads is None:
            object.__setattr__(self, "_reads", self._names_read())
        assert self._reads is not None
        return self._reads

    def _names_read(self) -> tuple[str, ...]:
        names: list[str] = [n for c in self.when for n in c.reads()]
        for m in self.multipliers:
            names += [n for c in m.when for n in c.reads()]
        if isinstance(self.points, str):
            names.append(self.points)
        elif isinstance(self.points, Expression):
            names += self.points.reads()
        names += [n for _, n, _, _ in string.Formatter().parse(self.why) if n]
        return tuple(dict.fromkeys(names))


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class Outcome:
    """What one rule gives one event, before it is split per person."""

    rule: Rule
    points: int
    inputs: dict[str, Any]
    multipliers: tuple[tuple[str, str], ...]  # (name, factor) of the multipliers that applied
    why: str


@dataclass(frozen=True)
class RulePack:
    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str = ""
    badges: tuple[Badge, ...] = ()

    @property
    def retractable_types(self) -> frozenset[str]:
        """Event types with a rule whose awards some later event may take back."""
        return frozenset(rule.on for rule in self.rules if rule.retracted_by)

    @property
    def window_kinds(self) -> frozenset[str]:
        """The windows (day, week, month, 30d) that something happens at when they close: rules fire on
        them, or caps are settled."""
        kinds = {WINDOW_TYPES[rule.on] for rule in self.rules if rule.on in WINDOW_TYPES}
        return frozenset(kinds | {kind for rule in self.rules for kind, _ in rule.caps})

    @property
    def capped(self) -> dict[str, Rule]:
        """The rules with a cap, by id."""
        return {rule.id: rule for rule in self.rules if rule.caps}

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        return self._by_type().get(event_type, ())

    def _by_type(self) -> dict[str, tuple[Rule, ...]]:
        cached: dict[str, tuple[Rule, ...]] | None = self.__dict__.get("_index")
        if cached is None:
            index: dict[str, list[Rule]] = {}
            for rule in self.rules:
                index.setdefault(rule.on, []).append(rule)
            cached = {k: tuple(v) for k, v in index.items()}
            object.__setattr__(self, "_index", cached)
        return cached


# --- evaluation ----------------------------------------------------------------------------------


def event_facts(event: Event) -> dict[str, Any]:
    """The facts rules can read: the event's fields plus the derived ones for its type."""
    facts: dict[str, Any] = dict(event.data)
    data = event.data
    if event.type == "jobcard.closed":
        _durations(
            facts,
            event.occurred_at,
            data["opened_at"],
            data["promised_at"],
            ("turnaround_minutes", "promised_minutes", "turnaround_ratio", "on_time"),
        )
    elif event.type == "ticket.first_response":
        _durations(
            facts,
            event.occurred_at,
            data["opened_at"],
            data["response_due_at"],
            ("response_minutes", "allowed_minutes", "response_ratio", "responded_in_time"),
        )
    elif event.type == "ticket.resolved":
        _durations(
            facts,
            event.occurred_at,
            data["opened_at"],
            data["resolution_due_at"],
            ("resolution_minutes", "allowed_minutes", "resolution_ratio", "within_sla"),
        )
    return facts


def _durations(facts: dict[str, Any], done: datetime, opened: str, due: str, names: tuple[str, str, str, str]) -> None:
    opened_at, due_at = parse_time(opened), parse_time(due)
    took = _minutes((done - opened_at).total_seconds())
    allowed = _minutes((due_at - opened_at).total_seconds())
    facts[names[0]] = took
    facts[names[1]] = allowed
    facts[names[2]] = round(took / allowed, 4) if allowed > 0 else None
    facts[names[3]] = done <= due_at


def _minutes(seconds: float) -> int | float:
    minutes = round(seconds / 60, 1)
    return int(minutes) if minutes.is_integer() else minutes


def evaluate(rule: Rule, facts: Facts) -> Outcome | None:
    """Apply one rule to an event's facts; ``None`` when it does not fire or gives no points."""
    if not all(c.holds(facts) for c in rule.when):
        return None
    if isinstance(rule.points, Expression):
        try:
            formula = rule.points.value(facts)
        except ExpressionError:
            return None
        if not isinstance(formula, int | Decimal) or isinstance(formula, bool) or not formula > 0:
            return None  # a formula that gives no positive number awards nothing
        total = Decimal(formula)
    else:
        base = facts.get(rule.points) if isinstance(rule.points, str) else rule.points
        if isinstance(base, float) and base.is_integer():  # JSON Schema's "integer" accepts 25.0
            base = int(base)
        if not isinstance(base, int) or isinstance(base, bool) or base <= 0:
            return None
        total = Decimal(base)
    applied: list[tuple[str, str]] = []
    for multiplier in rule.multipliers:
        if all(c.holds(facts) for c in multiplier.when):
            total *= multiplier.factor
            applied.append((multiplier.name, str(multiplier.factor)))
    points = int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if points <= 0:
        return None
    inputs = {name: facts.get(name) for name in rule.reads()}
    known = {k: v for k, v in inputs.items() if v is not None}
    # str.format_map is ~10x faster; it cannot look up a dotted name such as {kpi.csat_mean_month}
    why = _TEMPLATE.format(rule.why, known) if "{kpi." in rule.why else rule.why.format_map(_Blank(known))
    if applied:
        why += " (" + ", ".join(f"{name} x{factor}" for name, factor in applied) + ")"
    return Outcome(rule, points, inputs, tuple(applied), why)


class _Template(string.Formatter):
    """``why`` templates: ``{name}`` is looked up whole (``{kpi.csat_mean_month}`` names one fact); a fact
    without a value reads "?"."""

    def format(self, template: str, /, *args: Any, **kwargs: Any) -> str:
        return self.vformat(template, (), args[0])

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return kwargs.get(field_name, _MISSING), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        return "?" if value is _MISSING else super().format_field(value, format_spec)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


_MISSING = object()
_TEMPLATE = _Template()


# --- loading and validation ----------------------------------------------------------------------


def load_rule_pack(path: Path) -> RulePack:
    """Load and validate a rule pack; the first problem raises :class:`ConfigError` with file and line."""
    document, lines = load_yaml(path) if path.exists() else (None, {})
    if document is None:
        raise ConfigError(path, None, "no such file" if not path.exists() else "the file is empty")
    if not isinstance(document, dict):
        raise ConfigError(path, 1, "expected a mapping with 'pack', 'version' and 'rules'")
    top = Located(document, path, 1)
    unknown = sorted(set(document) - {"pack", "version", "rules", "badges"})
    if unknown:
        raise top.error(f"unknown top-level key(s): {', '.join(map(str, unknown))}")
    name = document.get("pack")
    if not isinstance(name, str) or not name:
        raise top.error("'pack' must name the pack")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise top.error("'version' must be a whole number from 1")
    items = document.get("rules")
    if not isinstance(items, list) or not items:
        raise top.error("'rules' must be a non-empty list")
    badges = _badges(top, lines, document.get("badges", []))
    rules: list[Rule] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(path, None, f"rules[{index}] must be a mapping")
        rule = _rule(Located(item, path, lines.get(id(item), 0)), lines, {b.id: b for b in badges})
        for other in rules:
            if other.id != rule.id:
                continue
            # One id may appear again as a new version that takes over at a date: versions differ and
            # their effective windows do not overlap, so an event meets at most one of them.
            if other.version == rule.version:
                raise ConfigError(path, rule.line, f"rule {rule.id} version {rule.version} is defined twice")
            if _overlap(other, rule):
                raise ConfigError(
                    path,
                    rule.line,
                    f"rule {rule.id}: versions {other.version} and {rule.version} are in effect at the same time "
                    f"(give them effective_from / effective_to windows that do not overlap)",
                )
        rules.append(rule)
    given = {rule.badge.id for rule in rules if rule.badge}
    for badge in badges:
        if badge.id not in given:
            line = next((lines.get(id(b), 0) for b in document["badges"] if b.get("id") == badge.id), None)
            raise ConfigError(path, line, f"badge {badge.id}: no rule gives it (add 'badge: {badge.id}' to a rule)")
    return RulePack(name, version, tuple(rules), str(path), badges)


def _badges(top: Located, lines: Mapping[int, int], items: Any) -> tuple[Badge, ...]:
    if not isinstance(items, list):
        raise top.error("'badges' must be a list of {id, name, description}")
    found: list[Badge] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise top.error(f"badges[{index}] must be a mapping with 'id' and 'name'")
        row = Located(item, top.path, lines.get(id(item), top.line))
        row.only(_BADGE_KEYS)
        badge_id = item.get("id")
        if not isinstance(badge_id, str) or not _BADGE_ID.match(badge_id):
            raise row.error("badge 'id' must be lower-case words joined by '-', e.g. flawless-five (at most 40)")
        if any(b.id == badge_id for b in found):
            raise row.error(f"badge {badge_id} is defined twice")
        name, description = item.get("name"), item.get("description", "")
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise row.error(f"badge {badge_id}: 'name' must be the text the person reads (1-60 characters)")
        if not isinstance(description, str) or len(description) > 200:
            raise row.error(f"badge {badge_id}: 'description' must be text of at most 200 characters")
        found.append(Badge(badge_id, name.strip(), description.strip()))
    return tuple(found)


def _overlap(a: Rule, b: Rule) -> bool:
    def starts(r: Rule) -> datetime:
        return r.effective_from or datetime.min.replace(tzinfo=UTC)

    def ends(r: Rule) -> datetime:
        return r.effective_to or datetime.max.replace(tzinfo=UTC)

    return starts(a) < ends(b) and starts(b) < ends(a)


def _rule(row: Located, lines: Mapping[int, int], badges: Mapping[str, Badge]) -> Rule:
    item = row.value
    row.only(_RULE_KEYS)
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise row.error("'id' must be lower-case words separated by dots, e.g. jobcard.flawless")
    label = f"rule {rule_id}"
    version = item.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise row.error(f"{label}: 'version' must be a whole number from 1")
    on = item.get("event")
    if on not in EVENT_TYPES and on not in WINDOW_TYPES:
        raise row.error(
            f"{label}: 'event' must be an event type (one of: {', '.join(sorted(EVENT_TYPES))}) or a KPI window "
            f"closing (one of: {', '.join(WINDOW_TYPES)})"
        )
    roles = item.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise row.error(f"{label}: 'roles' must be a non-empty list of roles")
    bad_roles = [r for r in roles if r not in ROLES]
    if bad_roles:
        raise row.error(f"{label}: unknown role(s) {', '.join(bad_roles)} (one of: {', '.join(ROLES)})")
    known = _known_facts(on)
    when = _conditions(row, label, item.get("when", {}), known)
    points_spec = item.get("points")
    points: int | str | Expression
    if isinstance(points_spec, int) and not isinstance(points_spec, bool) and 1 <= points_spec <= 100_000:
        points = points_spec
    elif isinstance(points_spec, dict) and set(points_spec) == {"fact"} and points_spec["fact"] in known:
        points = str(points_spec["fact"])
    elif isinstance(points_spec, str):
        points = _expression(row, f"{label}: 'points'", points_spec, known)
    else:
        raise row.error(
            f"{label}: 'points' must be a whole number from 1 to 100000, {{fact: NAME}} or a formula such as "
            '"min(amount / 1000, 50)"'
        )
    effective_from, effective_to = row.moment("effective_from", f"{label}: "), row.moment("effective_to", f"{label}: ")
    if effective_from is not None and effective_to is not None and effective_to <= effective_from:
        raise row.error(f"{label}: 'effective_to' must be later than 'effective_from'")
    exclude = item.get("exclude", {})
    if not isinstance(exclude, dict) or set(exclude) - {"groups"}:
        raise row.error(f"{label}: 'exclude' is {{groups: [NAME, ...]}}")
    groups = exclude.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise row.error(f"{label}: 'exclude: groups' must be a list of group names")
    retracted_by = _retracted_by(row, label, on, item.get("retracted_by", []))
    caps = _caps(row, label, on, item.get("cap", {}))
    budget = _budget(row, label, on, item.get("budget"))
    badge_id = item.get("badge", "")
    if not isinstance(badge_id, str):
        raise row.error(f"{label}: 'badge' must be the id of one badge of the pack's 'badges'")
    if badge_id and badge_id not in badges:
        hint = difflib.get_close_matches(badge_id, sorted(badges), n=1)
        defined = f" (did you mean {hint[0]}?)" if hint else f" (defined: {', '.join(sorted(badges)) or 'none'})"
        raise row.error(f"{label}: 'badge' {badge_id!r} is not in the pack's 'badges'{defined}")
    badge = badges.get(badge_id) if badge_id else None
    multipliers = tuple(
        _multiplier(Located(m, row.path, lines.get(id(m), row.line)) if isinstance(m, dict) else row, label, m, known)
        for m in _list(row, label, "multipliers", item.get("multipliers", []))
    )
    why = item.get("why")
    if not isinstance(why, str) or not why.strip() or len(why) > 200:
        raise row.error(f"{label}: 'why' must be the text the person reads (1-200 characters)")
    try:
        placeholders = [n for _, n, spec, conv in string.Formatter().parse(why) if n is not None]
    except ValueError as exc:
        raise row.error(f"{label}: 'why' is not a valid template: {exc}") from None
    for placeholder in placeholders:
        if placeholder not in known:
            raise row.error(f"{label}: 'why' uses {{{placeholder}}}, which is not a fact of {on}")
    return Rule(
        rule_id,
        version,
        on,
        frozenset(roles),
        when,
        points,
        multipliers,
        why,
        row.line,
        effective_from,
        effective_to,
        frozenset(groups),
        retracted_by,
        caps,
        budget,
        badge,
    )


def _caps(row: Located, label: str, on: str, spec: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(spec, dict) or set(spec) - set(CAP_KINDS):
        raise row.error(f"{label}: 'cap' is {{day: N, week: N, month: N}} (any of them): the most points per person")
    if spec and on in WINDOW_TYPES:
        raise row.error(f"{label}: a rule on a window gives once per window: put its limit in 'points', not a cap")
    for kind, value in spec.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
            raise row.error(f"{label}: 'cap': {kind} must be a whole number of points from 1 to 1000000")
    if "week" in spec and "month" in spec:
        raise row.error(f"{label}: 'cap': a week and a month cap cannot be combined (ISO weeks cross months)")
    limits = [spec[k] for k in CAP_KINDS if k in spec]
    if limits != sorted(limits):
        raise row.error(f"{label}: 'cap': a longer period's cap cannot be lower than a shorter one's")
    return tuple((kind, spec[kind]) for kind in CAP_KINDS if kind in spec)


def _budget(row: Located, label: str, on: str, spec: Any) -> int | None:
    if spec is None:
        return None
    if on not in GIVER_FIELDS:
        given = ", ".join(GIVER_FIELDS)
        raise row.error(f"{label}: 'budget' is for events a person gives ({given}), not {on}")
    if not isinstance(spec, int) or isinstance(spec, bool) or not 1 <= spec <= 10_000_000:
        raise row.error(f"{label}: 'budget' must be a whole number of points from 1 to 10000000 (per giver per month)")
    return spec


def _retracted_by(row: Located, label: str, on: str, spec: Any) -> tuple[str, ...]:
    if not isinstance(spec, list) or not all(isinstance(t, str) for t in spec):
        raise row.error(f"{label}: 'retracted_by' must be a list of event types")
    if spec and on in CORRECTABLE:
        raise row.error(
            f"{label}: {on} awards need no 'retracted_by': a survey sent again with the same survey_id "
            "and a later time takes the earlier answer's awards back"
        )
    can = sorted(t for t, targets in RETRACTING.items() if on in targets)
    for event_type in spec:
        if event_type not in can:
            allowed = f"one of: {', '.join(can)}" if can else "nothing takes back an award of this event type"
            raise row.error(f"{label}: 'retracted_by': {event_type} cannot take back a {on} award ({allowed})")
    if len(set(spec)) != len(spec):
        raise row.error(f"{label}: 'retracted_by' lists an event type twice")
    return tuple(spec)


def _expression(row: Located, label: str, source: str, known: frozenset[str]) -> Expression:
    """Parse and check an expression: allowed constructs only, known facts, known functions."""
    text = source.strip()
    if not text or len(text) > 500:
        raise row.error(f"{label}: an expression is 1-500 characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise row.error(f"{label}: not a valid expression ({exc.msg}{where}): {text}") from None
    for node in ast.walk(tree):
        if type(node) not in _ALLOWED_NODES:
            what = _NODE_NAMES.get(type(node), type(node).__name__)
            raise row.error(f"{label}: {what} not allowed in a rule expression: {text}")
        if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id == "kpi"):
            raise row.error(f"{label}: attribute access (a.b) not allowed in a rule expression (only kpi.NAME): {text}")
    tree = _KpiNames().visit(tree)
    names: list[str] = []
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                shown = node.func.id if isinstance(node.func, ast.Name) else "?"
                raise row.error(f"{label}: unknown function {shown}() (allowed: {', '.join(FUNCTIONS)})")
            if not node.args:
                raise row.error(f"{label}: {node.func.id}() needs at least one argument")
        elif isinstance(node, ast.Name) and id(node) not in called:
            _check_fact(row, label, node.id, known)
            names.append(node.id)
        elif isinstance(node, ast.Constant) and not isinstance(node.value, bool | int | float | str | None):
            raise row.error(f"{label}: only numbers, strings, true/false and None may be written: {text}")
    evaluated = _KpiNames().visit(EvalWithCompoundTypes.parse(text))
    for node in ast.walk(evaluated):  # exact decimal arithmetic: 0.1 + 0.2 == 0.3
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            node.value = cast(Any, Decimal(repr(node.value)))  # simpleeval returns constants as they are
    return Expression(text, evaluated, tuple(dict.fromkeys(names)))


class _KpiNames(ast.NodeTransformer):
    """``kpi.csat_mean_month`` (an attribute of a name) becomes one name, ``"kpi.csat_mean_month"``."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == "kpi":
            return ast.copy_location(ast.Name(id=f"kpi.{node.attr}", ctx=ast.Load()), node)
        return node


def _check_fact(row: Located, label: str, name: str, known: frozenset[str]) -> None:
    if name in known:
        return
    if name.startswith("kpi.") and "window" in known:
        readable = sorted({n.rsplit("_", 1)[1] for n in known if n.startswith("kpi.")}, key=WINDOW_KINDS.index)
        metric, _, kind = name[4:].rpartition("_")
        if metric in KPI_METRICS and kind in WINDOW_KINDS:
            raise row.error(
                f"{label}: {name} is not complete when this window closes (this rule reads "
                f"{', '.join(f'kpi.{metric}_{k}' for k in readable)})"
            )
        raise row.error(
            f"{label}: unknown KPI {name!r}: write kpi.<metric>_<window>, metric one of {', '.join(KPI_METRICS)}; "
            f"window one of {', '.join(readable)}"
        )
    if name.startswith("kpi.") and "window" not in known:
        raise row.error(
            f"{label}: {name} is a KPI; KPIs are read by rules on a window closing (event: window.day, "
            "window.week, window.month or window.30d), because an event's own rules are scored when it arrives, "
            "before its windows are complete"
        )
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    raise row.error(f"{label}: unknown fact {name!r} for this event type{suggestion}")


def _list(row: Located, label: str, key: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise row.error(f"{label}: '{key}' must be a list")
    return value


def _multiplier(row: Located, label: str, item: Any, known: frozenset[str]) -> Multiplier:
    if not isinstance(item, dict) or set(item) - {"name", "when", "factor"}:
        raise row.error(f"{label}: a multiplier is {{name, when, factor}}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise row.error(f"{label}: a multiplier needs a 'name' (e.g. quality, speed)")
    factor = item.get("factor")
    if not isinstance(factor, int | float) or isinstance(factor, bool) or not 0 < factor <= 10:
        raise row.error(f"{label}: multiplier {name}: 'factor' must be a number above 0 and at most 10")
    when = _conditions(row, f"{label}: multiplier {name}", item.get("when"), known)
    if not when:
        raise row.error(f"{label}: multiplier {name}: 'when' must hold at least one condition")
    return Multiplier(name, when, Decimal(str(factor)))


def _conditions(row: Located, label: str, spec: Any, known: frozenset[str]) -> tuple[Condition | Expression, ...]:
    if spec is None:
        return ()
    if isinstance(spec, str):
        return (_expression(row, f"{label}: 'when'", spec, known),)
    if not isinstance(spec, dict):
        raise row.error(f"{label}: 'when' must map facts to values, or be an expression such as \"rating >= 4\"")
    conditions: list[Condition | Expression] = []
    for fact, test in spec.items():
        _check_fact(row, label, str(fact), known)
        if isinstance(test, dict):
            if len(test) != 1 or next(iter(test)) not in _OPS:
                raise row.error(f"{label}: {fact}: write {{op: value}} with op one of {', '.join(_OPS)}")
            op, value = next(iter(test.items()))
            if op == "in" and not isinstance(value, list):
                raise row.error(f"{label}: {fact}: 'in' takes a list")
            if op in ("lt", "lte", "gt", "gte") and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise row.error(f"{label}: {fact}: '{op}' compares with a number")
            conditions.append(Condition(str(fact), str(op), tuple(value) if op == "in" else value))
        else:
            conditions.append(Condition(str(fact), "eq", test))
    return tuple(conditions)


def _known_facts(event_type: str) -> frozenset[str]:
    if event_type in WINDOW_TYPES:
        return frozenset(window_rule_facts(event_type))
    _, properties, _ = EVENT_TYPES[event_type]
    return frozenset((*ENVELOPE_FACTS, *properties, *DERIVED_FACTS.get(event_type, ())))
