"""What the scorer remembers per subject (a job card, a sale, a survey) so that a later event can take
awards back (:mod:`agents.retractions`). One Redis hash per subject, ``{ns}:subject:{family}:{id}``:

- ``a:{award_id}`` -> an award something may take back later, compactly (what a retraction needs);
- ``t:{event_id}`` -> an event that takes awards back (JSON, :class:`agents.retractions.Taker`);
- ``r:{retraction_id}`` -> ``"{award_id} {points}"``: a retraction already on the ledger.

Every field is written with the same value by whoever writes it, so writing a subject again (a batch
scored twice after a crash) changes nothing. The scorer writes a subject only after the ledger has
acknowledged the records that led to it. Each write renews the hash's expiry (``ttl_s``): a subject
untouched for that long is forgotten, and events about it can no longer take anything back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from agents.retractions import Subject, Taker, keeps
from agents.scoring import Award

# One script call per batch (a pipelined HSET and EXPIRE per subject cost ~20 µs per event in redis-py's
# command packing). ARGV: the TTL, then a JSON object {key: [field, value, field, value, ...]}.
SAVE_LUA = """
local ttl = ARGV[1]
for key, fields in pairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, ttl)
end
return 0
"""
# ARGV: the subjects' keys; returns each one's fields and values, flat (HGETALL), in the keys' order.
LOAD_LUA = """
local found = {}
for i = 1, #ARGV do found[i] = redis.call('HGETALL', ARGV[i]) end
return found
"""


class SubjectStore:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s
        self._save = redis.register_script(SAVE_LUA)
        self._load = redis.register_script(LOAD_LUA)

    def _key(self, subject: str) -> str:
        return f"{self.ns}:subject:{subject}"

    async def load(self, subjects: Iterable[str]) -> dict[str, Subject]:
        keys = list(subjects)
        if not keys:
            return {}
        found = await self._load(args=[self._key(key) for key in keys])  # one call: a pipeline cost ~10 µs a key
        return {
            key: decode(dict(zip(flat[::2], flat[1::2], strict=True)), key)
            for key, flat in zip(keys, found, strict=True)
        }

    async def save(self, subjects: Mapping[str, Subject]) -> None:
        if not subjects:
            return
        batch: dict[str, list[str]] = {}
        for key, subject in subjects.items():
            if fields := encode(subject):
                batch[self._key(key)] = [_text(x) for item in fields.items() for x in item]
        if batch:
            await self._save(args=[self.ttl_s, orjson.dumps(batch)])


def _text(value: object) -> str:
    """A field name or value as JSON text for the save script (values are UTF-8 JSON or plain text)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def from_ledger(awards: Iterable[Award]) -> dict[str, Subject]:
    """What ledger records say about their subjects: the awards that can be taken back and the
    retractions made. (Not the events that took something back: those are not on the ledger.) Used to
    restore subjects when Redis lost them, along with the boards."""
    subjects: dict[str, Subject] = {}
    for award in awards:
        if keeps(award):
            subjects.setdefault(award.subject, Subject()).awards[award.award_id] = award
        elif award.kind == "retraction" and award.subject:
            subjects.setdefault(award.subject, Subject()).taken[award.award_id] = (award.retracts, -award.points)
    return subjects


def encode(subject: Subject) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {f"a:{i}": _compact(a) for i, a in subject.awards.items()}
    fields |= {f"t:{i}": t.to_json() for i, t in subject.takers.items()}
    fields |= {f"r:{i}": f"{original} {points}".encode() for i, (original, points) in subject.taken.items()}
    return fields


def decode(fields: Mapping[bytes | str, bytes | str], key: str) -> Subject:
    """A subject as stored under ``key`` (e.g. "jobcard:JC-1"), which its kept awards name as their subject."""
    subject = Subject()
    for raw_name, value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        kind, _, ident = name.partition(":")
        data = value.encode() if isinstance(value, str) else value
        if kind == "a":
            subject.awards[ident] = _expand(ident, data, key)
        elif kind == "t":
            subject.takers[ident] = Taker.from_json(data)
        elif kind == "r":
            original, points = data.decode().split()
            subject.taken[ident] = (original, int(points))
    return subject


# An award kept under its subject, as a JSON array in this order (a retraction needs no more; inputs and
# multipliers, which it does not repeat, would double the bytes).
_KEPT = ("points", "rule_id", "rule_version", "staff_id", "role", "centre_id", "region", "state", "season")
_KEPT_TAIL = ("occurred_at", "event_id", "event_type", "amount", "why")


def _compact(award: Award) -> bytes:
    values = [getattr(award, name) for name in (*_KEPT, *_KEPT_TAIL)]
    return orjson.dumps([*values, list(award.retracted_by)])


def _expand(award_id: str, data: bytes, subject: str) -> Award:
    *values, retracted_by = orjson.loads(data)
    fields = dict(zip((*_KEPT, *_KEPT_TAIL), values, strict=True))
    return Award(
        award_id=award_id,
        inputs={},
        multipliers=(),
        subject=subject,
        retracted_by=tuple(retracted_by),
        **fields,
    )
