"""Sans-I/O board feeds: turning Redis change messages into sequenced, coalesced deltas.

Each change message from the league carries a board, its new version ``ver`` (one higher per
message) and the *absolute* new scores of the people who changed. A :class:`BoardFeed` merges the
messages that arrive between two ticks into one delta ``{prev_seq, seq, scores}``. Because scores are
absolute, a client holding version ``S`` may apply any delta with ``prev_seq <= S < seq``; a delta
with ``prev_seq > S`` means it missed something and must ask for a snapshot.

A gap in the versions the gateway itself receives (a lost pub/sub message, a reconnect) cannot be
patched from deltas, so the feed reports it and the gateway sends fresh snapshots instead.

A change message may carry ``src``: the time (ms) of the oldest source event behind it. A delta keeps
the oldest ``src`` of the changes it merges, so ``receive time - src`` is the age of its oldest news.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delta:
    board: str
    prev_seq: int
    seq: int
    scores: dict[str, int]
    src: int | None = None  # oldest source-event time (ms) among the changes, if they carried one

    def merge(self, later: Delta) -> Delta:
        """This delta followed by ``later`` (for a client that has not been sent this one yet)."""
        scores = {**self.scores, **later.scores}
        return Delta(self.board, self.prev_seq, later.seq, scores, _oldest(self.src, later.src))


def _oldest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass
class BoardFeed:
    """Versions and pending scores of one board, as seen by one gateway."""

    board: str
    version: int | None = None  # highest version received (None: not known yet)
    sent: int | None = None  # version the last delta (or snapshot) brought clients to
    pending: dict[str, int] = field(default_factory=dict)
    pending_src: int | None = None  # oldest ``src`` among the pending changes

    def on_change(self, version: int, scores: dict[str, Any], src: int | None = None) -> bool:
        """Take one change message. Returns False when versions jumped: a snapshot is needed."""
        if self.version is not None and version <= self.version:
            return True  # already have it (e.g. included in a snapshot)
        if self.version is not None and version != self.version + 1:
            return False
        if self.version is None:
            self.sent = version - 1
        self.version = version
        for staff_id, score in scores.items():
            self.pending[str(staff_id)] = int(score)
        self.pending_src = _oldest(self.pending_src, src)
        return True

    def on_snapshot(self, version: int) -> None:
        """A snapshot at ``version`` was read and sent: pending changes up to it are now redundant."""
        if self.version is None or version >= self.version:
            self.version = version
            self.sent = version
            self.pending.clear()
            self.pending_src = None

    def flush(self) -> Delta | None:
        """The delta of everything received since the last flush, or None."""
        if not self.pending or self.version is None or self.sent is None:
            return None
        delta = Delta(self.board, self.sent, self.version, self.pending, self.pending_src)
        self.pending = {}
        self.pending_src = None
        self.sent = self.version
        return delta


def accept_delta(client_seq: int, delta_prev: int, delta_seq: int) -> str:
    """What a client holding ``client_seq`` does with a delta: 'apply', 'ignore' or 'resync'."""
    if delta_seq <= client_seq:
        return "ignore"
    if delta_prev > client_seq:
        return "resync"
    return "apply"
