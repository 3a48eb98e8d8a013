"""Spot-award budgets in Redis: one hash per (rule, giver, month), ``{ns}:budget:{rule}|{giver}|{month}``:

- ``used`` -> the points granted from it so far;
- ``e:{event_id}`` -> the decision on that event: ``g`` (granted, counted whole in ``used``), ``G``
  (granted, restored from the ledger: counted award by award) or ``r:{used when refused}``;
- ``a:{award_id}`` -> 1: a restored grant's award already counted in ``used``.

:data:`DECIDE_LUA` takes a batch's claims in one atomic call: an event decided before gets the same
decision (a batch scored again after a crash changes nothing); a new one is granted if it fits in what
is left, else refused. Two workers giving from one budget at once (a giver whose recipients work in
centres on different partitions) therefore never overspend it. See :mod:`agents.budgets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from agents.budgets import Claim, Decision
from agents.scoring import Award

DECIDE_LUA = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local field = 'e:' .. ARGV[3 * i - 1]
  local points, limit = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local known = redis.call('HGET', key, field)
  if not known then
    local used = tonumber(redis.call('HGET', key, 'used') or '0')
    if used + points <= limit then
      redis.call('HINCRBY', key, 'used', points)
      known = 'g'
    else
      known = 'r:' .. used
    end
    redis.call('HSET', key, field, known)
    redis.call('EXPIRE', key, ttl)
  end
  out[i] = known
end
return out
"""

# Per ledger entry (ARGV after the ttl: event field, decision, award id, points): an event without a
# decision gets the ledger's; a restored grant counts each of its awards once, whichever batch of the
# ledger it comes in (a grant's awards, one per recipient, are keyed by person, so partitions apart),
# and however often the ledger holds it. A grant decided live is already counted whole.
RESTORE_LUA = """
local key = KEYS[1]
for i = 2, #ARGV, 4 do
  local known = redis.call('HGET', key, ARGV[i])
  if not known then
    known = ARGV[i + 1]
    redis.call('HSET', key, ARGV[i], known)
  end
  if known == 'G' and redis.call('HSETNX', key, 'a:' .. ARGV[i + 2], 1) == 1 then
    redis.call('HINCRBY', key, 'used', tonumber(ARGV[i + 3]))
  end
end
redis.call('EXPIRE', key, tonumber(ARGV[1]))
return 1
"""


class BudgetStore:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int = 100 * 24 * 3600) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s
        self._decide = redis.register_script(DECIDE_LUA)
        self._restore = redis.register_script(RESTORE_LUA)

    def _key(self, pool: str) -> str:
        return f"{self.ns}:budget:{pool}"

    async def decide(self, claims: Sequence[Claim]) -> list[Decision | None]:
        """Each claim's decision (``None`` for one refused outright), in one atomic step."""
        asked = [i for i, c in enumerate(claims) if not c.refused]
        decisions: list[Decision | None] = [None] * len(claims)
        if asked:
            args: list[str | int] = [self.ttl_s]
            for i in asked:
                args += [claims[i].event_id, claims[i].points, claims[i].limit]
            raw = await self._decide(keys=[self._key(claims[i].pool) for i in asked], args=args)
            for i, value in zip(asked, raw, strict=True):
                decisions[i] = Decision.decode(value.decode() if isinstance(value, bytes) else value)
        return decisions

    async def used(self, pool: str) -> int:
        """Points granted from a pool (``rule|giver|YYYY-MM``) so far."""
        return int(await self.redis.hget(self._key(pool), "used") or 0)

    async def restore(self, entries: Iterable[Award]) -> int:
        """Put back the decisions ledger entries hold (``pitstop rebuild``, the worker's ledger gap
        replay), in any number of calls over the ledger's batches; returns how many events.

        Decisions already in Redis stay, and so does what they count: a grant decided but not yet on
        the ledger keeps counting, one already counted is not counted again.
        """
        pools: dict[str, list[str | int]] = {}
        events: set[str] = set()
        for pool, event_id, decision, award_id, points in from_ledger(entries):
            pools.setdefault(pool, []).extend([f"e:{event_id}", decision, award_id, points])
            events.add(event_id)
        for pool, args in pools.items():
            await self._restore(keys=[self._key(pool)], args=[self.ttl_s, *args])
        return len(events)


def from_ledger(entries: Iterable[Award]) -> list[tuple[str, str, str, str, int]]:
    """(pool, event id, decision to restore, award id, points) per ledger entry that took from a budget
    or was refused. A grant's entries (one per recipient) give the same decision; their points add up."""
    found = []
    for a in entries:
        if a.kind == "award" and "budget_of" in a.inputs:
            pool = f"{a.rule_id}|{a.inputs['budget_of']}|{a.inputs['budget_month']}"
            found.append((pool, a.event_id, "G", a.award_id, a.points))
        elif a.kind == "refusal" and "budget_month" in a.inputs:
            pool = f"{a.rule_id}|{a.staff_id}|{a.inputs['budget_month']}"
            found.append((pool, a.event_id, f"r:{a.inputs['budget_used']}", a.award_id, 0))
    return found
