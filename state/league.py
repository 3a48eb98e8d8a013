"""The Pitstop League in Redis: monthly sorted sets per centre, region, state and nation, each per role.

Awards reach Redis through one Lua script per ledger batch (:data:`APPLY_LUA`), which in a single
atomic step, for each award not applied before (``HSETNX`` on the season's applied-id hash), adds its
points to every board it belongs to (summed per board and person over the batch: one ``ZINCRBY``
each), keeps the person's recent ledger records, publishes them for notifications, records the highest
ledger offset applied per partition, bumps each changed board's version once and publishes the board's
new scores as one sequenced change.

Key layout, under a namespace ``ns`` (default ``pitstop``):

- ``{ns}:lg:{season}:{scope}:{scope_id}:{role}`` -- a board (ZSET staff_id -> points); scope is
  ``centre``, ``region``, ``state`` or ``nation`` (scope_id ``all``); role is a role or ``all``.
- ``{ns}:versions`` -- HASH board -> version, bumped once per change message.
- ``{ns}:applied:{season}`` -- HASH award_id -> "partition:offset" of the ledger record applied.
- ``{ns}:ledger-offsets`` -- HASH ledger partition -> highest offset applied.
- ``{ns}:recent:{staff_id}`` -- LIST of the person's last 50 ledger records (their JSON, as on the
  ledger; :meth:`League.recent_awards` reads them as notifications).
- ``{ns}:badges:{staff_id}`` -- HASH of the person's badge earnings: ``{award id}:m`` -> what the award
  earned (JSON: badge id and name, event id, event time), ``{award id}`` -> the points left of it after
  retractions and corrections; a badge is held while they are above 0 (:meth:`League.badges`).
- channels ``{ns}:board-changes`` (board, version, the changed scores, ``at``: the apply time in ms, and
  ``src``: the oldest source-event timestamp among the awards in the change, when the ledger said) and
  ``{ns}:awards`` (each applied ledger record, which a gateway turns into the notification a person's
  device receives, :func:`notification_of`). The script publishes one JSON array per batch on each (a
  subscriber paid ~100 µs in redis-py per message); a single object (a replay's reset) means the same.

The ledger record itself is what the script keeps and publishes, not the notification made from it:
making and encoding a notification per record cost the project step 5.5 µs a record, and a gateway
only needs one for a person who is connected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis

from agents.scoring import Award
from state.badges import BadgeEarned, badge_target_of, held_badges

SCOPES = ("centre", "region", "state", "nation")
RECENT_AWARDS = 50

APPLY_LUA = """
-- ARGV: namespace, the call (JSON, see League.apply_entries), 'live' or 'rebuild', every record's JSON
-- in one JSON array, then each record's JSON alone: they are passed as they are, not inside the call's
-- JSON, so they are neither escaped nor decoded. The array is what the awards channel gets when every
-- record is applied (joining the records here cost Redis ~4.5 µs a record).
local ns = ARGV[1]
local call = cjson.decode(ARGV[2])
local rebuild = ARGV[3] == 'rebuild'
local sets = call.sets  -- the boards of each board set (a season, centre, region, state and role)
local offsets_key = ns .. ':ledger-offsets'
local changed, src = {}, {}
local sums, sum_order, recent, recent_order = {}, {}, {}, {}  -- summed per call, written once each
local applied_keys = {}  -- season -> its applied-id hash
local set_src = {}  -- board set -> the oldest source timestamp among its applied records
local notes, published = {}, {}  -- the applied records' JSON (for the awards channel) and board changes
local results, records = {}, 0
for _, batch in ipairs(call.partitions) do  -- one batch per ledger partition
  local partition = tostring(batch.partition)
  local last = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
  local applied, skipped = 0, 0
  records = records + #batch.records
  if not rebuild and batch.records[1].o > last + 1 then
    -- Records between the last applied offset and this batch are missing here (Redis lost its newest
    -- writes, or was flushed): apply nothing of this partition, say where the gap starts; the caller
    -- fills it first.
    table.insert(results, {0, 0, last + 1})
  else
    local top = last
    for _, r in ipairs(batch.records) do
      if rebuild or r.o > last then
        local applied_key = applied_keys[r.s]
        if not applied_key then
          applied_key = ns .. ':applied:' .. r.s
          applied_keys[r.s] = applied_key
        end
        if redis.call('HSETNX', applied_key, r.id, partition .. ':' .. r.o) == 1 then
          applied = applied + 1
          -- summed per board set and person here (tables of tables: no key strings made), per board below
          local of_set = sums[r.b]
          if not of_set then
            of_set = {}
            sums[r.b] = of_set
          end
          local sum = of_set[r.p]
          if not sum then
            sum = {r.b, r.p, 0}
            of_set[r.p] = sum
            table.insert(sum_order, sum)
          end
          sum[3] = sum[3] + r.pts
          if r.sr and (not set_src[r.b] or r.sr < set_src[r.b]) then set_src[r.b] = r.sr end
          if r.t then  -- an entry earning a badge, or taking back (part of) an award that may have earned one
            local held = ns .. ':badges:' .. r.p
            if r.bg then redis.call('HSETNX', held, r.t .. ':m', r.bg) end
            if r.bg or redis.call('HEXISTS', held, r.t .. ':m') == 1 then redis.call('HINCRBY', held, r.t, r.pts) end
          end
          local mine = recent[r.p]
          if not mine then
            mine = {}
            recent[r.p] = mine
            table.insert(recent_order, r.p)
          end
          local note = ARGV[r.n]
          table.insert(mine, note)
          table.insert(notes, note)
        else
          skipped = skipped + 1
        end
      else
        skipped = skipped + 1
      end
      if r.o > top then top = r.o end
    end
    if top > last then redis.call('HSET', offsets_key, partition, top) end
    table.insert(results, {applied, skipped, -1})
  end
end
local board_sums, board_order, people_order = {}, {}, {}  -- board -> person -> points; in first-seen order
for _, sum in ipairs(sum_order) do
  local set, p, pts = sum[1], sum[2], sum[3]
  for _, b in ipairs(sets[set]) do
    local of_board = board_sums[b]
    if not of_board then
      of_board = {}
      board_sums[b] = of_board
      people_order[b] = {}
      table.insert(board_order, b)
    end
    local before = of_board[p]
    if before == nil then
      of_board[p] = pts
      table.insert(people_order[b], p)
    else
      of_board[p] = before + pts
    end
  end
end
for set, ts in pairs(set_src) do
  for _, b in ipairs(sets[set]) do
    if not src[b] or ts < src[b] then src[b] = ts end
  end
end
for _, b in ipairs(board_order) do  -- one ZINCRBY per board and person: the same end scores
  local key, of_board, scores = ns .. ':' .. b, board_sums[b], {}
  for _, p in ipairs(people_order[b]) do
    scores[p] = tonumber(redis.call('ZINCRBY', key, of_board[p], p))
  end
  changed[b] = scores
end
for _, p in ipairs(recent_order) do  -- the newest RECENT, newest first, as one LPUSH per award would leave
  local mine = recent[p]
  local from = math.max(1, #mine - RECENT + 1)
  local key = ns .. ':recent:' .. p
  redis.call('LPUSH', key, unpack(mine, from))
  redis.call('LTRIM', key, 0, RECENT - 1)
end
local now = redis.call('TIME')
local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, b in ipairs(board_order) do
  local ver = redis.call('HINCRBY', ns .. ':versions', b, 1)
  table.insert(published, cjson.encode({board = b, ver = ver, scores = changed[b], src = src[b], at = at}))
end
if #notes == records then
  redis.call('PUBLISH', ns .. ':awards', ARGV[4])
elseif #notes > 0 then  -- some were applied before (a batch read again): only the others
  redis.call('PUBLISH', ns .. ':awards', '[' .. table.concat(notes, ',') .. ']')
end
if #published > 0 then redis.call('PUBLISH', ns .. ':board-changes', '[' .. table.concat(published, ',') .. ']') end
return results
""".replace("RECENT", str(RECENT_AWARDS))


def board_key(season: str, scope: str, scope_id: str, role: str = "all") -> str:
    """The board name (without namespace), e.g. ``lg:2026-11:centre:C01:all``."""
    return f"lg:{season}:{scope}:{scope_id}:{role}"


def scope_ids(centre_id: str, region: str, state: str) -> dict[str, str]:
    """The id of each scope a centre's boards belong to (scope -> id, in SCOPES order)."""
    return {"centre": centre_id, "region": region, "state": state, "nation": "all"}


def boards_for(award: Award) -> list[str]:
    """Every board an award counts on: 4 scopes x (all roles, the person's role); a refusal, none."""
    return _boards(award.kind, award.season, award.centre_id, award.region, award.state, award.role)


def _boards(kind: str, season: str, centre_id: str, region: str, state: str, role: str) -> list[str]:
    if kind == "refusal":
        return []
    return [
        f"lg:{season}:{scope}:{scope_id}:{r}"  # board_key, spelled out: this runs for every ledger record
        for scope, scope_id in zip(SCOPES, (centre_id, region, state, "all"), strict=True)
        for r in ("all", role)
    ]


def notification(award: Award) -> dict[str, Any]:
    """What a person's device receives when the award (or a retraction) lands: the points and the why."""
    return notification_of(award.ledger_fields())


def as_notification(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message of the awards channel or an item of a recent list, as a notification: a ledger record
    is turned into one; a notification (what both held before they held ledger records) already is one
    (a ledger record has no ``type``)."""
    return dict(message) if "type" in message else notification_of(message)


def notification_of(fields: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`notification` of a ledger record's JSON object (:meth:`agents.scoring.Award.ledger_fields`)."""
    badge = fields.get("badge")
    return {
        # "award"; "retraction" or "correction" (`retracts` names the entry); "cap"; "refusal" (0 points)
        "type": fields.get("kind", "award"),
        "award_id": fields["award_id"],
        "retracts": fields.get("retracts", ""),
        "staff_id": fields["staff_id"],
        "points": fields["points"],
        "rule_id": fields["rule_id"],
        "rule_version": fields["rule_version"],
        "why": fields["why"],
        "inputs": fields["inputs"],
        "multipliers": fields["multipliers"],
        "event_id": fields["event_id"],
        "event_type": fields["event_type"],
        "occurred_at": fields["occurred_at"],
        "season": fields["season"],
        "centre_id": fields["centre_id"],
        "badge": {"id": badge["id"], "name": badge["name"]} if badge else None,
    }


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    partition: int
    offset: int
    award: Award
    source_ts: int | None = None  # ms timestamp of the source event's record (its ``source.ts`` header)


class LedgerEntry(NamedTuple):
    """A ledger record as the live projection reads it: its JSON object, not an :class:`Award` (building
    one per record cost the project step more than the rest of its Python work)."""

    partition: int
    offset: int
    fields: Mapping[str, Any]  # the record's JSON object (:meth:`agents.scoring.Award.ledger_fields`)
    source_ts: int | None = None
    raw: bytes | None = None  # the record's value as read (kept and published as it is); None: encode ``fields``

    @classmethod
    def of(cls, record: LedgerRecord) -> LedgerEntry:
        return cls(record.partition, record.offset, record.award.ledger_fields(), record.source_ts)


# What every ledger record carries (schema 1 and 2); the rest have defaults (Award.from_ledger).
_REQUIRED = frozenset(
    [
        "award_id",
        "event_id",
        "event_type",
        "rule_id",
        "rule_version",
        "staff_id",
        "role",
        "centre_id",
        "region",
        "state",
        "season",
        "points",
        "occurred_at",
        "inputs",
        "multipliers",
        "why",
    ]
)


def ledger_fields(raw: bytes) -> dict[str, Any]:
    """A ledger record's value as the projection needs it; ValueError if it is not a ledger record."""
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a ledger record: not JSON ({exc})") from None
    if not isinstance(fields, dict) or not fields.keys() >= _REQUIRED:
        raise ValueError("not a ledger record")
    # the fields the apply script uses as they are (the others become board names through f-strings)
    if (
        type(fields["points"]) is not int
        or type(fields["award_id"]) is not str
        or type(fields["staff_id"]) is not str
        or type(fields["season"]) is not str
    ):
        raise ValueError("ledger record with a field of the wrong type")
    return fields


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int
    gaps: tuple[tuple[int, int, int], ...] = ()  # (partition, first missing offset, batch's first offset)


class League:
    """Applies ledger batches to Redis and reads boards back."""

    def __init__(self, redis: aioredis.Redis, namespace: str = "pitstop") -> None:
        self.redis = redis
        self.ns = namespace
        self._apply = redis.register_script(APPLY_LUA)

    async def apply(self, records: Sequence[LedgerRecord], *, rebuild: bool = False) -> ApplyResult:
        """Apply ledger records (any partitions) at most once each: :meth:`apply_entries`."""
        return await self.apply_entries([LedgerEntry.of(r) for r in records], rebuild=rebuild)

    async def apply_entries(self, entries: Sequence[LedgerEntry], *, rebuild: bool = False) -> ApplyResult:
        """Apply ledger records (any partitions) at most once each, in one script call.

        Live (not rebuild) batches must continue where the partition's recorded offset left off; a
        partition whose batch starts further on is not applied and is reported in ``gaps``.
        """
        call = _ApplyCall()
        for entry in sorted(entries, key=lambda e: (e.partition, e.offset)):
            call.add(entry)
        by_partition = call.by_partition
        if not by_partition:
            return ApplyResult(0, 0)
        partitions = sorted(by_partition)
        payload = orjson.dumps(
            {"sets": call.sets, "partitions": [{"partition": p, "records": by_partition[p]} for p in partitions]}
        )
        every_note = b"[" + b",".join(call.notes) + b"]"
        mode = "rebuild" if rebuild else "live"
        results = await self._apply(args=[self.ns, payload, mode, every_note, *call.notes])
        applied = skipped = 0
        gaps: list[tuple[int, int, int]] = []
        for partition, result in zip(partitions, results, strict=True):
            applied += int(result[0])
            skipped += int(result[1])
            if int(result[2]) >= 0:
                gaps.append((partition, int(result[2]), int(by_partition[partition][0]["o"])))
        return ApplyResult(applied, skipped, tuple(gaps))

    async def board(self, board: str, limit: int = 500) -> tuple[int, list[tuple[str, int]]]:
        """A consistent (version, [(staff_id, points)...]) snapshot, highest first, ties by staff id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(f"{self.ns}:versions", board)
            pipe.zrevrange(f"{self.ns}:{board}", 0, limit - 1, withscores=True)
            version, entries = await pipe.execute()
        rows = sorted(((_text(m), int(s)) for m, s in entries), key=lambda e: (-e[1], e[0]))
        return int(version or 0), rows

    async def recent_awards(self, staff_id: str, limit: int = RECENT_AWARDS) -> list[dict[str, Any]]:
        """The person's newest awards (and retractions, refusals...), newest first, as notifications."""
        raw = await self.redis.lrange(f"{self.ns}:recent:{staff_id}", 0, limit - 1)
        return [as_notification(orjson.loads(r)) for r in raw]

    async def badges(self, staff_id: str) -> list[BadgeEarned]:
        """The badges a person holds, one per award that earned one, in event-time order."""
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(f"{self.ns}:badges:{staff_id}")).items()}
        return held_badges(
            (orjson.loads(meta), int(raw.get(target.removesuffix(":m"), "0")))
            for target, meta in raw.items()
            if target.endswith(":m")
        )

    async def ledger_offsets(self) -> dict[int, int]:
        raw = await self.redis.hgetall(f"{self.ns}:ledger-offsets")
        return {int(k): int(v) for k, v in raw.items()}

    async def clear(self) -> int:
        """Delete the league's projection keys (boards, versions, applied ids, offsets, recent awards, badges).

        Other keys of the namespace (the scorer's seen-event marks) are left alone.
        """
        deleted = 0
        for pattern in ("lg:*", "versions", "applied:*", "ledger-offsets", "recent:*", "badges:*"):
            async for key in self.redis.scan_iter(match=f"{self.ns}:{pattern}", count=1000):
                deleted += int(await self.redis.unlink(key))
        return deleted


class _ApplyCall:
    """The arguments of one APPLY_LUA call, built a record at a time.

    Records of the same season, centre, region, state and role count on the same boards: each distinct
    list of boards (a board set) is sent once, and a record names its set by number. A record's JSON
    (what the recent list keeps and the awards channel carries) is a script argument of its own (``n`` is
    its place in ARGV)."""

    FIRST_NOTE = 5  # ARGV[1..4]: namespace, this call's JSON, mode, every record's JSON in one JSON array

    def __init__(self) -> None:
        self.by_partition: dict[int, list[dict[str, Any]]] = {}
        self.sets: list[list[str]] = []
        self.set_of: dict[tuple[str, ...], int] = {}  # (season, centre, region, state, role) or ("refusal",)
        self.notes: list[bytes] = []

    def add(self, entry: LedgerEntry) -> None:
        f = entry.fields
        kind = f.get("kind", "award")
        where = ("refusal",) if kind == "refusal" else (f["season"], f["centre_id"], f["region"], f["state"], f["role"])
        board_set = self.set_of.get(where)
        if board_set is None:
            self.sets.append(_boards(kind, f["season"], f["centre_id"], f["region"], f["state"], f["role"]))
            board_set = self.set_of[where] = len(self.sets)  # Lua counts from 1
        self.notes.append(entry.raw if entry.raw is not None else orjson.dumps(f))
        item = {
            "o": entry.offset,
            "id": f["award_id"],
            "s": f["season"],
            "p": f["staff_id"],
            "pts": f["points"],
            "b": board_set,
            "n": self.FIRST_NOTE + len(self.notes) - 1,
        }
        if entry.source_ts is not None:
            item["sr"] = entry.source_ts
        if target := badge_target_of(f):
            item["t"] = target[0]
            if target[1] is not None:
                item["bg"] = orjson.dumps(target[1]).decode()
        self.by_partition.setdefault(entry.partition, []).append(item)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
