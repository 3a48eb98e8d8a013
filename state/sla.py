"""SLA clocks in Redis, and the alerts they fire, decided atomically.

Two Lua scripts change the state, each in one atomic step:

- :data:`OBSERVE_LUA` applies a batch's clock ops (agents.sla.plan): starts clocks, stops them, and
  fires the alerts an event shows (a response after its deadline is a breach; an event about the item
  after its near-breach point shows the near breach), with a clear for each alert a stop ends;
- :data:`TICK_LUA` (the leader-only timer) fires the alerts whose moment has passed for clocks that
  are still running, and hands back alerts left in the outbox by a process that died before producing.

Every alert fired goes into the outbox in the same step; the caller produces it to ``sla-alerts`` and
then removes it. So an alert is never lost, and one produced twice has the same id (sinks keep one).

Key layout under a namespace ``ns``:

- ``{ns}:sla:c:{clock id}`` -- the clock (JSON: meta, alerts fired and cleared), kept ``ttl`` seconds
  after its last change; once stopped, only a marker (stop time, alert ids) kept ``stopped_ttl``
  seconds, so late events about it do not start it again;
- ``{ns}:sla:due`` -- ZSET ``{clock id}|near`` / ``{clock id}|breach`` -> when to fire (ms);
- ``{ns}:sla:open`` -- ZSET running clock id -> deadline (ms), for digests and the overdue list;
- ``{ns}:sla:outbox`` -- HASH alert id -> alert JSON, until produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from agents.sla import ClockOp

_COMMON = """
local ns, now, ttl, stopped_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local function aid(cid, kind, deadline)
  return string.sub(redis.sha1hex(cid .. '|' .. kind .. '|' .. string.format('%d', deadline)), 1, 24)
end
local function fire(cid, c, kind, source, extra)
  local deadline = kind == 'sla.near_breach' and c.m.near_ms or c.m.due_ms
  local id = aid(cid, kind, deadline)
  local alert = {alert_id = id, type = kind, deadline_ms = deadline, fired_ms = now, source = source}
  for k, v in pairs(c.m) do alert[k] = v end
  for k, v in pairs(extra or {}) do alert[k] = v end
  local body = cjson.encode(alert)
  redis.call('HSET', ns .. ':sla:outbox', id, body)
  table.insert(out, body)
  return id
end
local function save(cid, c)
  if c.stop ~= nil then
    -- done: only a marker stays (no meta), so a late opening does not start the clock again
    local marker = {m = cjson.decode('{}'), stop = c.stop, f = c.f, cl = c.cl}
    redis.call('SET', ns .. ':sla:c:' .. cid, cjson.encode(marker), 'EX', stopped_ttl)
  else
    redis.call('SET', ns .. ':sla:c:' .. cid, cjson.encode(c), 'EX', ttl)
  end
end
local function unschedule(cid)
  redis.call('ZREM', ns .. ':sla:due', cid .. '|near', cid .. '|breach')
  redis.call('ZREM', ns .. ':sla:open', cid)
end
"""

OBSERVE_LUA = (
    _COMMON
    + """
local ops = cjson.decode(ARGV[5])
for _, op in ipairs(ops) do
  local key = ns .. ':sla:c:' .. op.id
  local raw = redis.call('GET', key)
  local c = raw and cjson.decode(raw) or nil
  if c == nil and op.m ~= nil then
    c = {m = op.m, f = {}, cl = {}}
    if op.op ~= 'stop' then
      redis.call('ZADD', ns .. ':sla:open', op.m.due_ms, op.id)
      if op.m.near_ms < op.m.due_ms then redis.call('ZADD', ns .. ':sla:due', op.m.near_ms, op.id .. '|near') end
      redis.call('ZADD', ns .. ':sla:due', op.m.due_ms, op.id .. '|breach')
    end
  end
  if c ~= nil and c.stop == nil then
    if op.op == 'stop' then
      c.stop = op.at
      unschedule(op.id)
      local late = op.at > c.m.due_ms
      if late and c.f.breach == nil then
        c.f.breach = fire(op.id, c, 'sla.breach', 'event', {closed = true, done_at = op.at})
        c.cl[c.f.breach] = 1
      end
      for kind, id in pairs(c.f) do
        if c.cl[id] == nil then
          c.cl[id] = 1
          local cleared = string.sub(redis.sha1hex(id .. '|sla.clear'), 1, 24)
          local body = {alert_id = cleared, type = 'sla.clear', clears = id, done_at = op.at,
                        outcome = late and 'late' or 'met', deadline_ms = c.m.due_ms, fired_ms = now,
                        source = 'event'}
          for k, v in pairs(c.m) do if body[k] == nil then body[k] = v end end
          local encoded = cjson.encode(body)
          redis.call('HSET', ns .. ':sla:outbox', cleared, encoded)
          table.insert(out, encoded)
        end
      end
    elseif op.op == 'touch' then
      if op.at >= c.m.near_ms and c.f.near == nil and op.at < c.m.due_ms then
        c.f.near = fire(op.id, c, 'sla.near_breach', 'event')
        redis.call('ZREM', ns .. ':sla:due', op.id .. '|near')
      end
      if op.at >= c.m.due_ms and c.f.breach == nil then
        c.f.breach = fire(op.id, c, 'sla.breach', 'event')
        redis.call('ZREM', ns .. ':sla:due', op.id .. '|near', op.id .. '|breach')
      end
    end
    save(op.id, c)
  elseif c == nil and op.op == 'stop' then
    -- a stop for an item never seen opened and without deadlines: remember it stopped
    save(op.id, {m = cjson.decode('{}'), stop = op.at, f = {}, cl = {}})
  end
end
return out
"""
)

TICK_LUA = (
    _COMMON
    + """
local limit, stale = tonumber(ARGV[5]), tonumber(ARGV[6])
local due = redis.call('ZRANGEBYSCORE', ns .. ':sla:due', '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZREM', ns .. ':sla:due', member)
  local sep = string.find(member, '|[^|]*$')
  local cid, which = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local raw = redis.call('GET', ns .. ':sla:c:' .. cid)
  if raw then
    local c = cjson.decode(raw)
    if c.stop == nil and c.f[which] == nil then
      if which == 'near' and now < c.m.due_ms then
        c.f.near = fire(cid, c, 'sla.near_breach', 'timer')
      elseif which == 'breach' then
        c.f.breach = fire(cid, c, 'sla.breach', 'timer')
      end
      save(cid, c)
    end
  end
end
local fresh = {}
for _, body in ipairs(out) do fresh[body] = true end
local pending = redis.call('HGETALL', ns .. ':sla:outbox')
for i = 2, #pending, 2 do
  local body = pending[i]
  if not fresh[body] and cjson.decode(body).fired_ms < now - stale then table.insert(out, body) end
end
return out
"""
)


class SlaStore:
    """The clocks of one namespace. ``observe`` for a batch's ops, ``tick`` for the timer."""

    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int, stopped_ttl_s: int = 8 * 86400) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s  # a running clock, after its last change
        self.stopped_ttl_s = stopped_ttl_s  # the marker of a stopped one
        self._observe = redis.register_script(OBSERVE_LUA)
        self._tick = redis.register_script(TICK_LUA)

    async def observe(self, ops: Sequence[ClockOp], now_ms: int) -> list[dict[str, Any]]:
        """Apply the ops; the alerts they fire (also left in the outbox until :meth:`produced`)."""
        if not ops:
            return []
        payload = orjson.dumps([op.to_json() for op in ops])
        found = await self._observe(args=[self.ns, now_ms, self.ttl_s, self.stopped_ttl_s, payload])
        return [orjson.loads(body) for body in found]

    async def tick(self, now_ms: int, *, limit: int = 1000, stale_ms: int = 10_000) -> list[dict[str, Any]]:
        """Fire what is due by ``now_ms``; also return outbox alerts older than ``stale_ms`` (a process
        fired them and died before producing them)."""
        found = await self._tick(args=[self.ns, now_ms, self.ttl_s, self.stopped_ttl_s, limit, stale_ms])
        return [orjson.loads(body) for body in found]

    async def produced(self, alert_ids: Sequence[str]) -> None:
        if alert_ids:
            await self.redis.hdel(f"{self.ns}:sla:outbox", *alert_ids)

    async def clock(self, clock_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.ns}:sla:c:{clock_id}")
        return orjson.loads(raw) if raw else None

    async def open_clocks(self, due_before_ms: float = float("inf")) -> list[dict[str, Any]]:
        """The running clocks (their meta), soonest deadline first."""
        ids = await self.redis.zrangebyscore(
            f"{self.ns}:sla:open", "-inf", due_before_ms if due_before_ms != float("inf") else "+inf"
        )
        if not ids:
            return []
        raws = await self.redis.mget([f"{self.ns}:sla:c:{i.decode() if isinstance(i, bytes) else i}" for i in ids])
        return [orjson.loads(r)["m"] for r in raws if r]
