"""The scoring step for a batch of raw source records, free of Faust and Redis.

``score_batch`` turns raw Kafka records into ledger awards and dead letters. The Faust agent in
:mod:`agents.worker` only moves bytes in and out around it, so this is where an event's path from
topic to ledger can be read (and tested) in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents import budgets
from agents.retractions import Subject, Taker, settle, tracked_subject
from agents.rules import RulePack
from agents.scoring import Award, score_event
from config.directory import Directory
from streams.events import Event, InvalidEvent, decode_event
from streams.topics import Topics

log = logging.getLogger("pitstop.scoring")
INTERNAL_ERROR = "internal_error"


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class SourceRecord:
    """One record as read from a source topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # when the broker (or producer) stamped it: the arrival time

    @classmethod
    def from_consumer(cls, m: Any) -> SourceRecord:
        """From an aiokafka ``ConsumerRecord`` (whose timestamp is already in milliseconds)."""
        return cls(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: SourceRecord
    kind: str
    message: str
    event_type: str | None = None  # known when the event was valid but could not be scored

    def headers(self) -> list[tuple[str, bytes]]:
        r = self.record
        return [
            ("original.topic", r.topic.encode()),
            ("original.partition", str(r.partition).encode()),
            ("original.offset", str(r.offset).encode()),
            ("original.timestamp", str(r.timestamp_ms).encode()),
            ("error.kind", self.kind.encode()),
            ("error.message", self.message.encode()[:1000]),
        ]


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class ScoredEvent:
    record: SourceRecord
    event: Event
    awards: tuple[Award, ...]


@dataclass
class BatchResult:
    scored: list[ScoredEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: list[ScoredEvent] = field(default_factory=list)  # repeats of an event id: no awards
    changed_subjects: set[str] = field(default_factory=set)

    @property
    def awards(self) -> Iterable[tuple[SourceRecord, Award]]:
        for item in self.scored:
            for award in item.awards:
                yield item.record, award


def decode_batch(
    records: Sequence[SourceRecord],
    *,
    topics: Topics,
    now: datetime,
    max_event_bytes: int = 64 * 1024,
    max_future_skew: timedelta = timedelta(minutes=15),
) -> tuple[list[tuple[SourceRecord, Event]], list[DeadLetter]]:
    """Validate each record against the contract; invalid ones become dead letters. Never raises.

    "Too far in the future" is judged against the record's own broker timestamp (its arrival), so a
    replay months later takes the same decisions; ``now`` stands in for records without one.
    """
    decoded: list[tuple[SourceRecord, Event]] = []
    dead: list[DeadLetter] = []
    for record in records:
        arrival = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC) if record.timestamp_ms > 0 else now
        try:
            if record.value is None:
                raise InvalidEvent("not_json", "empty record (tombstone)")
            event = decode_event(
                record.value,
                now=arrival,
                max_bytes=max_event_bytes,
                max_future_skew=max_future_skew,
                topic_family=topics.family_of(record.topic),
            )
        except InvalidEvent as exc:
            dead.append(DeadLetter(record, exc.kind, exc.message))
        else:
            decoded.append((record, event))
    return decoded, dead


def score_decoded(
    decoded: Sequence[tuple[SourceRecord, Event]],
    *,
    pack: RulePack,
    directory: Directory,
    already_seen: Set[str] = frozenset(),
    subjects: dict[str, Subject] | None = None,
    budget_book: budgets.BudgetBook | None = None,
) -> BatchResult:
    """Score validated events; repeats of an event id (earlier batches or this one) are set aside.

    With ``subjects`` (what was seen before of the subjects of this batch's tracked events, see
    :func:`subjects_to_load`), retractions are scored too and ``subjects`` is updated in place; the
    subjects changed are listed in ``result.changed_subjects`` (to be stored once the ledger has them).
    With ``budget_book``, recognitions drawing on a giver's budget are granted or refused in memory, in
    the events' order (re-scoring the topics; the worker decides them in Redis, :mod:`agents.budgets`).
    Nothing raises: every event ends in exactly one of ``scored``, ``dead`` or ``duplicates``.
    """
    result = BatchResult()
    retractable = pack.retractable_types
    seen_here: set[str] = set()
    for record, event in decoded:
        if event.event_id in already_seen or event.event_id in seen_here:
            result.duplicates.append(ScoredEvent(record, event, ()))
            continue
        try:
            awards = score_event(event, pack, directory)
        except InvalidEvent as exc:
            result.dead.append(DeadLetter(record, exc.kind, exc.message, event.type))
            continue
        except Exception as exc:  # a rule bug must not stop the stream: park the event, say what broke
            # The exception's text may quote event values (personal data): name its type; the traceback
            # (which can) goes to DEBUG only.
            log.error(
                "scoring failed for event at %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
            )
            log.debug("scoring failure", exc_info=True)
            result.dead.append(DeadLetter(record, INTERNAL_ERROR, f"scoring failed: {type(exc).__name__}", event.type))
            continue
        if subjects is not None and (key := tracked_subject(event, retractable)):
            awards += settle(subjects.setdefault(key, Subject()), awards, Taker.of(event))
            result.changed_subjects.add(key)
        seen_here.add(event.event_id)
        result.scored.append(ScoredEvent(record, event, tuple(awards)))
    if budget_book is not None and (found := budgets.claims(result.scored, pack, directory)):
        budgets.settle(result.scored, found, budget_book.decide(found))
    return result


def subjects_to_load(decoded: Sequence[tuple[SourceRecord, Event]], pack: RulePack) -> list[str]:
    """The subjects whose records scoring these events needs (:func:`agents.retractions.tracked_subject`)."""
    retractable = pack.retractable_types
    return sorted({key for _, event in decoded if (key := tracked_subject(event, retractable))})


def score_batch(
    records: Sequence[SourceRecord],
    *,
    pack: RulePack,
    directory: Directory,
    topics: Topics,
    now: datetime,
    already_seen: Set[str] = frozenset(),
    max_event_bytes: int = 64 * 1024,
    max_future_skew: timedelta = timedelta(minutes=15),
) -> BatchResult:
    """``decode_batch`` then ``score_decoded``: raw records to awards, dead letters and repeats."""
    decoded, dead = decode_batch(
        records, topics=topics, now=now, max_event_bytes=max_event_bytes, max_future_skew=max_future_skew
    )
    result = score_decoded(decoded, pack=pack, directory=directory, already_seen=already_seen)
    result.dead[:0] = dead
    return result
