"""The WebSocket gateway: league changes and award notifications pushed to kiosks and people.

One process serves the static pages, ``/metrics``, ``/healthz`` and the ``/ws`` endpoint. It follows
Redis pub/sub (``{ns}:board-changes`` and ``{ns}:awards``, published by the league's Lua script; the
awards channel carries ledger records, each made a notification here) and pushes, per connected client:

- kiosk: a snapshot of its centre's board for the current season (or the view it asks for), then
  sequenced deltas, at most ``push_hz`` per board per second (a change to a board not pushed within
  the last 1/``push_hz`` s goes out at once; later ones wait for the board's next slot), and a ticker
  of the newest awards on that board (at most five a push, each with its "why");
- technician: its own award notifications, each with its "why", and the badges it holds (again after
  each notification that may earn or take back a badge);
- manager: the open SLA alerts of the centres it covers (its region's, or its one centre), then each
  new alert and clear as it comes (``{ns}:sla-alerts``, published once per alert id by state.alerts).

Protocol: the client sends ``{"type": "auth", "token": ...}`` within 5 s. It may then ask for another
view with ``{"type": "subscribe", "resource": "board:region:west:technician"}`` (a kiosk's region,
state, nation or role views; a manager's narrower alert scope); dashboards.access decides, and anything
it does not grant is refused with 4403. A revoked token is refused, and its open connections closed,
within a moment (``{ns}:revocations``); a connection is closed when its token expires. Each client has
a one-slot, latest-wins outbox (deltas for a board merge; so do ticker pushes, keeping the newest
five awards), so a slow client never holds others back; a client that does not drain its socket within
``SEND_TIMEOUT_S`` is disconnected.

Fan-out is encoded once: each push turns a board's changes into one delta and encodes it once, and
every client of that board with nothing else pending for it is sent those same bytes (as a text frame);
only a client still holding an unsent delta for the board gets the two merged and encoded for it alone.
A client with nothing queued, no send in flight and nothing unsent in its socket's buffer has the frame
written at once (``websockets``' ``broadcast``); the others get it through their outbox and send task.
Ticker pushes go out the same way, encoded once per board; heartbeats are encoded once per beat. Sends are not
wrapped in a per-send timeout: a send that has to wait for the socket to drain is noted with its start
time, and the push tick cuts (4008) any client whose send has waited longer than ``SEND_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from agents.gcpolicy import tune_gc
from agents.kpi import Window
from agents.rules import RulePack, load_rule_pack
from config.directory import Directory
from config.programme import Programme, load_programme
from config.settings import Settings
from config.theme import DEFAULT_COLOURS, Theme, load_theme
from dashboards.access import ResourceError, allowed, parse_resource
from dashboards.feed import BoardFeed, Delta
from dashboards.manager_kpis import manager_kpis
from dashboards.me import summary
from dashboards.spot import SpotError, budget_status, recognition
from dashboards.tokens import Claims, TokenError, verify_token
from state import revocations
from state.alerts import AlertBoard
from state.badges import summarize_badges
from state.budgets import BudgetStore
from state.connection import pooled
from state.kpi import KpiStore
from state.league import League, as_notification, board_key, scope_ids
from streams.topics import Topics

log = logging.getLogger("pitstop.gateway")
STATIC = Path(__file__).resolve().parent / "static"

AUTH_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0
HEARTBEAT_S = 15.0
KPIS_EVERY_S = 60.0  # how often managers get their KPI dashboard again
CLOSE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 4096
MAX_CLIENT_MESSAGES_PER_S = 20
MAX_QUEUED_AWARDS = 100
TICKER_PER_PUSH = 5  # a kiosk's ticker gets at most this many awards per push (the newest)
# Ticker pushes go out at most this often (deltas at push_hz): a scrolling line of awards needs no more,
# and at 1,000 kiosks a ticker with every delta doubled the gateway's sends (docs/benchmarks.md).
TICKER_EVERY_S = 0.5

# Close codes (4000-4999 are the application's own).
CLOSE_BAD_MESSAGE = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_SLOW = 4008


@dataclass(frozen=True)
class GatewayMetrics:
    clients: Gauge
    messages: Counter
    closes: Counter
    snapshots: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        return cls(
            clients=Gauge(
                "pitstop_ws_clients", "Connected, authenticated WebSocket clients", ["kind"], registry=registry
            ),
            messages=Counter("pitstop_ws_messages_sent_total", "Messages sent to clients", ["type"], registry=registry),
            closes=Counter("pitstop_ws_closes_total", "Connections closed by the gateway", ["code"], registry=registry),
            snapshots=Counter("pitstop_ws_snapshots_total", "Board snapshots read from Redis", registry=registry),
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """A message already encoded (JSON, UTF-8), to send as is to any number of clients."""

    type: str
    data: bytes

    @classmethod
    def of(cls, message: dict[str, Any]) -> Frame:
        return cls(str(message["type"]), orjson.dumps(message))


@dataclass(eq=False)
class Client:
    """One authenticated connection and its latest-wins outbox."""

    ws: ServerConnection
    claims: Claims
    board: str | None = None
    view: tuple[str, str, str] | None = None  # the board's (scope, id, role), rolled to each new season
    alert_scope: str | None = None  # a manager's narrower scope (a centre), if it asked for one
    # per board, the delta not sent yet, and its encoding when it is the one every client got (None: merged)
    deltas: dict[str, tuple[Delta, bytes | None]] = field(default_factory=dict)
    ticker: list[dict[str, Any]] | None = None  # the ticker items not sent yet (the newest TICKER_PER_PUSH)
    ticker_frame: bytes | None = None  # their encoding, when shared with the board's other kiosks
    messages: deque[dict[str, Any] | Frame] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED_AWARDS))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None

    def offer_delta(self, delta: Delta, data: bytes | None = None) -> None:
        """Queue a board's delta (``data``: its shared encoding); one still unsent is merged with it."""
        queued = self.deltas.get(delta.board)
        self.deltas[delta.board] = (queued[0].merge(delta), None) if queued else (delta, data)
        self.wake.set()

    def offer_ticker(self, items: list[dict[str, Any]], data: bytes) -> None:
        """Queue a ticker push (``data``: its encoding); one still unsent is merged, the newest items kept."""
        if self.ticker is None:
            self.ticker, self.ticker_frame = items, data
        else:
            self.ticker, self.ticker_frame = [*self.ticker, *items][-TICKER_PER_PUSH:], None
        self.wake.set()

    def offer(self, message: dict[str, Any] | Frame) -> None:
        self.messages.append(message)
        self.wake.set()

    def idle(self) -> bool:
        """Open, nothing waiting in the outbox, and nothing unsent in the socket's buffer (the system took
        every byte so far): a delta or a ticker push may be written at once, in its turn. A slow reader's
        buffer holds bytes, and its deltas wait in the outbox's slot, merged, latest wins."""
        return (
            not self.messages
            and not self.deltas
            and self.ticker is None
            and self.ws.state is State.OPEN
            and not self.ws.transport.get_write_buffer_size()
        )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        redis: aioredis.Redis,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        theme: Theme | None = None,
        programme: Programme | None = None,
        pack: RulePack | None = None,
        send: Callable[[str, bytes, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.redis = redis
        self.league = League(redis, settings.redis_namespace)
        self.registry = registry or CollectorRegistry()
        self.metrics = GatewayMetrics.create(self.registry)
        self.clock = clock
        self.feeds: dict[str, BoardFeed] = {}
        self.board_clients: dict[str, set[Client]] = {}
        self.staff_clients: dict[str, set[Client]] = {}
        self.manager_clients: set[Client] = set()
        self.clients: set[Client] = set()  # every authenticated connection (revocation, expiry)
        self.tickers: dict[str, list[dict[str, Any]]] = {}  # board -> awards for its kiosks' next ticker push
        # (centre, role) -> the boards watched here that an award of such a person counts on (see _to_tickers);
        # emptied whenever a board gains its first client or loses its last
        self.ticker_boards: dict[tuple[str, str | None], list[str]] = {}
        self.sending: dict[Client, float] = {}  # clients whose send waits for their socket, since (monotonic)
        self.theme = theme or Theme("pitstop-default", "Pitstop League", dict(DEFAULT_COLOURS))
        self.programme = programme  # tiers and KPI targets for a person's own page (None: neither)
        self.kpi = KpiStore(redis, settings.redis_namespace, settings.kpi_ttl_s)
        # Spot awards from the manager page: the rule pack (budgets) and where recognitions are produced
        # (topic, key, value); without both, the form is off.
        self.pack = pack
        self.send = send
        self.budgets = BudgetStore(redis, settings.redis_namespace, settings.kpi_ttl_s)
        self.topics = Topics.from_settings(settings)
        self.alerts = AlertBoard(redis, settings.redis_namespace, settings.subject_ttl_s)
        self.last_change_at: dict[str, float] = {}
        self.pushed_at: dict[str, float] = {}  # board -> when (monotonic s) its last delta went out
        self.push_interval = 1.0 / settings.push_hz
        self.behind = False  # the push tick woke late: pushes wait for their slot (see _tick)
        self.server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cuts: set[asyncio.Task[None]] = set()
        self._sent: dict[str, Counter] = {}  # message type -> its pitstop_ws_messages_sent_total child
        self._stopping = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        self.server = await serve(
            self._handle,
            self.settings.bind_host,
            self.settings.gateway_port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=4,
            write_limit=64 * 1024,
            # a client that stops reading stops answering pings: cut within ping_interval + ping_timeout
            ping_interval=8,
            ping_timeout=12,
            close_timeout=3,  # such a client will not answer our close frame either
            # No permessage-deflate: pushes are a few hundred bytes of JSON on a LAN, and deflate costs a
            # zlib stream per connection (most of the gateway's memory at 10k kiosks) and CPU per message
            # per client, which would also defeat sending one encoding to every client of a board.
            compression=None,
        )
        self._tasks = [
            asyncio.create_task(self._follow_changes(), name="follow-changes"),
            asyncio.create_task(self._tick(), name="push-tick"),
        ]
        return self.port

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop following Redis and close every connection (1001), each step bounded in time."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            if pending:
                log.warning("gateway tasks still running after %.0f s: %s", STOP_TIMEOUT_S, pending)
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("connections still open after %.0f s; leaving them", STOP_TIMEOUT_S)

    # --- HTTP -------------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request.headers.get("Host")):
                self.metrics.closes.labels("403").inc()
                return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
            return None
        if path == "/metrics":
            return _response(HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return _response(HTTPStatus.OK, b'{"status":"ok"}', "application/json")
        if path == "/theme.css":
            return _response(HTTPStatus.OK, self.theme.css().encode(), "text/css; charset=utf-8")
        if path == "/theme/logo":
            if self.theme.logo is None:
                return connection.respond(HTTPStatus.NOT_FOUND, "no logo\n")
            return _response(HTTPStatus.OK, self.theme.logo, self.theme.logo_type)
        pages = {
            "/": "kiosk.html",
            "/kiosk": "kiosk.html",
            "/technician": "technician.html",
            "/manager": "manager.html",
        }
        name = pages.get(path) or (path.removeprefix("/static/") if path.startswith("/static/") else None)
        if name is not None and "/" not in name and (STATIC / name).is_file():
            body = (STATIC / name).read_bytes()
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return _response(HTTPStatus.OK, body, f"{content_type}; charset=utf-8")
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        """The gateway's own pages, and the origins of PITSTOP_ALLOWED_ORIGINS; no other."""
        if host is not None and origin.split("://", 1)[-1] == host:
            return True
        return origin.lower() in self.settings.allowed_origins

    # --- WebSocket --------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        claims = await self._authenticate(ws)
        if claims is None:
            return
        client = Client(ws, claims)
        self.clients.add(client)
        self.metrics.clients.labels(claims.kind).inc()
        sender = client.sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._subscribe(client)
            await self._read_loop(client)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            self.metrics.clients.labels(claims.kind).dec()
            self._unsubscribe(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _authenticate(self, ws: ServerConnection) -> Claims | None:
        try:
            raw = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S)
        except TimeoutError:
            await self._close(ws, CLOSE_AUTH_TIMEOUT, "send {type: auth, token} within 5 s")
            return None
        except ConnectionClosed:
            return None
        message = _parse(raw)
        if message is None or message.get("type") != "auth":
            await self._close(ws, CLOSE_BAD_MESSAGE, "the first message must be {type: auth, token}")
            return None
        try:
            claims = verify_token(self.settings.token_secret, message.get("token"))
        except TokenError as exc:
            await self._close(ws, CLOSE_UNAUTHORIZED, str(exc)[:120])
            return None
        known = {
            "kiosk": claims.subject in self.directory.centres,
            "technician": claims.subject in self.directory.staff,
            "manager": bool(self.directory.managed_centres(claims.subject)),
        }
        if not known[claims.kind]:
            await self._close(ws, CLOSE_FORBIDDEN, f"{claims.kind} token for an unknown {claims.kind} subject")
            return None
        try:
            revoked = await revocations.is_revoked(self.redis, self.settings.redis_namespace, claims.token_id)
        except (RedisError, OSError):
            revoked = True  # cannot tell: refuse (deny by default); the client reconnects with backoff
        if revoked:
            await self._close(ws, CLOSE_UNAUTHORIZED, "token revoked")
            return None
        return claims

    async def _read_loop(self, client: Client) -> None:
        window_start, count = self.clock(), 0
        async for raw in client.ws:
            now = self.clock()
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > MAX_CLIENT_MESSAGES_PER_S:
                await self._close(client.ws, CLOSE_RATE_LIMITED, "too many messages")
                return
            message = _parse(raw)
            kind = message.get("type") if message else None
            if kind == "resync" and client.board is not None:
                await self._send_snapshot(client, client.board)
            elif kind == "subscribe" and message is not None:
                if not await self._subscribe_to(client, message.get("resource")):
                    return
            elif kind == "recognize" and message is not None:
                if not await self._recognize(client, message):
                    return
            elif kind == "pong":
                continue
            else:
                await self._close(client.ws, CLOSE_BAD_MESSAGE, "unknown or malformed message")
                return

    async def _send_loop(self, client: Client) -> None:
        """Drain the client's outbox: messages in order, then the ticker, then deltas. A send that has to
        wait for the socket is noted in ``sending``; the push tick cuts one waiting past SEND_TIMEOUT_S."""
        ws, sending, monotonic = client.ws, self.sending, time.monotonic
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.messages or client.deltas or client.ticker is not None:
                    if client.messages:
                        message = client.messages.popleft()
                        kind, data = (
                            (message.type, message.data)
                            if isinstance(message, Frame)
                            else (str(message["type"]), orjson.dumps(message))
                        )
                    elif client.ticker is not None:
                        kind = "ticker"
                        data = client.ticker_frame or orjson.dumps({"type": "ticker", "items": client.ticker})
                        client.ticker = client.ticker_frame = None
                    else:
                        _, (delta, shared) = client.deltas.popitem()
                        kind, data = "delta", shared or orjson.dumps(self._delta_message(delta))
                    sending[client] = monotonic()
                    # on an open socket with room in its buffer this returns without suspending
                    await ws.send(data, text=True)
                    del sending[client]
                    self._sent_counter(kind).inc()
        except ConnectionClosed:
            pass
        finally:
            sending.pop(client, None)

    def _sent_counter(self, kind: str) -> Counter:
        counter = self._sent.get(kind)
        if counter is None:
            counter = self._sent[kind] = self.metrics.messages.labels(kind)
        return counter

    def _cut_slow(self, now: float) -> None:
        """Close (4008) the clients whose send has waited for their socket longer than SEND_TIMEOUT_S."""
        for client, since in list(self.sending.items()):
            if now - since > SEND_TIMEOUT_S:
                del self.sending[client]
                if client.sender is not None:
                    client.sender.cancel()
                task = asyncio.create_task(self._close(client.ws, CLOSE_TOO_SLOW, "client too slow"))
                self._cuts.add(task)
                task.add_done_callback(self._cuts.discard)

    async def _close(self, ws: ServerConnection, code: int, reason: str) -> None:
        self.metrics.closes.labels(str(code)).inc()
        try:
            await asyncio.wait_for(ws.close(code, reason), CLOSE_TIMEOUT_S)
        except ConnectionClosed:
            pass
        except TimeoutError:
            # The close frame is sent, but a client that floods us fills our inbound queue so its reply
            # is never read: drop the connection rather than wait.
            ws.transport.abort()

    # --- subscriptions ----------------------------------------------------------------------------

    async def _subscribe_to(self, client: Client, raw: object) -> bool:
        """Switch the client to the resource it asks for, if its token grants it; False if it was closed."""
        try:
            resource = parse_resource(raw)
        except ResourceError as exc:
            await self._close(client.ws, CLOSE_BAD_MESSAGE, str(exc)[:120])
            return False
        if not allowed(client.claims, resource, self.directory):
            await self._close(client.ws, CLOSE_FORBIDDEN, f"not allowed: {str(resource)[:100]}")
            return False
        if resource.kind == "board":
            scope, scope_id, role = resource.parts
            self._leave_board(client)
            client.view = (scope, scope_id, role)
            await self._join_board(client)
        elif resource.kind == "alerts":
            client.alert_scope = resource.parts[0]
            client.offer(await self._alerts_message(client))
        else:  # awards: a technician's own, which it has from connecting
            client.offer({"type": "subscribed", "resource": str(resource)})
        return True

    async def _join_board(self, client: Client) -> None:
        board = self._board_of(client)
        client.board = board
        clients = self.board_clients.get(board)
        if clients is None:
            clients = self.board_clients[board] = set()
            self.ticker_boards.clear()
        clients.add(client)
        await self._send_snapshot(client, board)

    def _leave_board(self, client: Client) -> None:
        if client.board is None:
            return
        clients = self.board_clients.get(client.board, set())
        clients.discard(client)
        if not clients:
            self.board_clients.pop(client.board, None)
            self.feeds.pop(client.board, None)
            self.ticker_boards.clear()
        client.board = None

    async def _subscribe(self, client: Client) -> None:
        claims = client.claims
        welcome: dict[str, Any] = {
            "type": "welcome",
            "kind": claims.kind,
            "subject": claims.subject,
            "title": self.theme.title,
        }
        centre = self.directory.centre(self._home_centre(claims))
        if claims.kind == "kiosk" and centre is not None:  # the views a kiosk may switch to (add :ROLE)
            ids = scope_ids(centre.id, centre.region, centre.state)
            welcome["views"] = {scope: f"board:{scope}:{scope_id}" for scope, scope_id in ids.items()}
        client.offer(welcome)
        if claims.kind == "kiosk":
            client.view = ("centre", claims.subject, "all")
            await self._join_board(client)
        elif claims.kind == "technician":
            self.staff_clients.setdefault(claims.subject, set()).add(client)
            recent = await self.league.recent_awards(claims.subject, 20)
            client.offer({"type": "recent", "awards": recent})
            client.offer(await self._badges_message(claims.subject))
            client.offer(await self._me_message(claims.subject))
        elif claims.kind == "manager":
            self.manager_clients.add(client)
            client.offer(await self._alerts_message(client))
            client.offer(await self._kpis_message(client))
            if claims.staff is not None and self.send is not None and self.pack is not None:
                client.offer(self._team_message(client))
                await self._offer_budget(client)

    def _unsubscribe(self, client: Client) -> None:
        self._leave_board(client)
        if client.claims.kind == "technician":
            self.staff_clients.get(client.claims.subject, set()).discard(client)
        self.manager_clients.discard(client)

    def _board_of(self, client: Client) -> str:
        """The board of the client's view for the current season, in the time zone of the token's centre
        (a kiosk's, a technician's, a workshop manager's; a region's first centre for a regional one)."""
        assert client.view is not None
        scope, scope_id, role = client.view
        centre = self.directory.centres.get(self._home_centre(client.claims))
        zone = centre.timezone if centre else UTC
        season = datetime.fromtimestamp(self.clock(), UTC).astimezone(zone).strftime("%Y-%m")
        return board_key(season, scope, scope_id, role)

    def _home_centre(self, claims: Claims) -> str:
        if claims.kind == "technician":
            person = self.directory.person(claims.subject)
            return person.centre_id if person else ""
        if claims.kind == "manager":
            return min(self.directory.managed_centres(claims.subject), default="")
        return claims.subject

    def _manager_centres(self, client: Client) -> set[str]:
        return self.directory.managed_centres(client.alert_scope or client.claims.subject)

    async def _alerts_message(self, client: Client) -> dict[str, Any]:
        centres = self._manager_centres(client)
        active = [a for a in await self.alerts.active() if a.get("centre_id") in centres]
        recent = [a for a in await self.alerts.recent(200) if a.get("centre_id") in centres][:50]
        return {"type": "alerts", "scope": client.claims.subject, "alerts": active, "recent": recent}

    async def _kpis_message(self, client: Client) -> dict[str, Any]:
        centres = self._manager_centres(client)
        zone = self.directory.centres[min(centres)].timezone
        today = datetime.fromtimestamp(self.clock(), UTC).astimezone(zone).date()
        return await manager_kpis(self.kpi, self.league, self.directory, centres, today)

    # --- spot awards (manager page) ------------------------------------------------------------

    def _team_message(self, client: Client) -> dict[str, Any]:
        """The people a manager's token may recognise: those of its centres, the giver aside."""
        centres = self._manager_centres(client)
        people = [
            {"staff_id": s.id, "name": s.name, "role": s.role, "centre_id": s.centre_id}
            for s in sorted(self.directory.staff.values(), key=lambda s: (s.centre_id, s.name))
            if s.centre_id in centres and s.id != client.claims.staff
        ]
        return {"type": "team", "people": people}

    async def _offer_budget(self, client: Client) -> None:
        assert client.claims.staff is not None and self.pack is not None
        now = datetime.fromtimestamp(self.clock(), UTC)
        status = await budget_status(self.budgets, self.pack, self.directory, client.claims.staff, now)
        if status is not None:
            client.offer(status)

    async def _recognize(self, client: Client, message: dict[str, Any]) -> bool:
        """A spot award from the manager page: validated, produced as a recognition.given event for the
        worker to grant or refuse from the budget. Bad input gets an error message; False if closed."""
        giver = self.directory.person(client.claims.staff) if client.claims.staff else None
        if client.claims.kind != "manager" or giver is None or self.send is None:
            await self._close(client.ws, CLOSE_FORBIDDEN, "this token cannot give spot awards")
            return False
        recipients = {p["staff_id"] for p in self._team_message(client)["people"]}
        try:
            event, raw = recognition(
                message, giver, recipients, self.directory, datetime.fromtimestamp(self.clock(), UTC)
            )
        except SpotError as exc:
            client.offer({"type": "recognize_error", "error": str(exc)})
            return True
        try:
            await self.send(self.topics.name("recognitions"), str(event["centre_id"]).encode(), raw)
        except Exception as exc:  # the broker: say so, keep the connection
            log.warning("recognition not produced (%r)", exc)
            client.offer({"type": "recognize_error", "error": "not sent: the broker did not answer, try again"})
            return True
        client.offer(
            {
                "type": "recognize_sent",
                "event_id": event["event_id"],
                "staff_id": event["people"][0]["staff_id"],
                "points": event["points"],
            }
        )
        return True

    async def _refresh_kpis(self) -> None:
        """Each manager's dashboard again, computed once per scope."""
        done: dict[frozenset[str], dict[str, Any]] = {}
        for client in list(self.manager_clients):
            scope = frozenset(self._manager_centres(client))
            if scope not in done:
                done[scope] = await self._kpis_message(client)
            client.offer(done[scope])

    def _on_alert(self, alert: dict[str, Any]) -> None:
        for client in list(self.manager_clients):
            if alert.get("centre_id") in self._manager_centres(client):
                client.offer({"type": "alert", "alert": alert})

    async def _send_snapshot(self, client: Client, board: str) -> None:
        feed = self.feeds.setdefault(board, BoardFeed(board))
        version, rows = await self.league.board(board)
        self.metrics.snapshots.inc()
        if feed.version is None:
            feed.on_snapshot(version)
        client.deltas.pop(board, None)
        client.offer(
            {
                "type": "snapshot",
                "board": board,
                "seq": version,
                "season": board.split(":")[1],
                "scope": {"kind": board.split(":")[2], "id": board.split(":")[3], "name": self._scope_name(board)},
                "role": board.split(":")[4],
                "entries": [self._entry(staff_id, points) for staff_id, points in rows],
                "as_of": self._as_of(board),
            }
        )

    def _scope_name(self, board: str) -> str:
        _, _, scope, scope_id, _ = board.split(":")
        if scope == "centre":
            centre = self.directory.centres.get(scope_id)
            return centre.name if centre else scope_id
        return "India" if scope == "nation" else scope_id

    def _entry(self, staff_id: str, points: int) -> dict[str, Any]:
        person = self.directory.staff.get(staff_id)
        return {
            "staff_id": staff_id,
            "name": person.name if person else staff_id,
            "role": person.role if person else None,
            "points": points,
        }

    def _delta_message(self, delta: Delta) -> dict[str, Any]:
        message = {
            "type": "delta",
            "board": delta.board,
            "prev_seq": delta.prev_seq,
            "seq": delta.seq,
            "entries": [self._entry(s, p) for s, p in sorted(delta.scores.items())],
            "as_of": self._as_of(delta.board),
        }
        if delta.src is not None:
            message["src"] = delta.src  # the oldest source event's time (ms) behind it
            message["pushed"] = int(time.time() * 1000)  # when it was encoded to go out (ms): a stage time
        return message

    def _as_of(self, board: str) -> str:
        stamp = self.last_change_at.get(board) or self.clock()
        return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")

    # --- following Redis ---------------------------------------------------------------------------

    async def _follow_changes(self) -> None:
        ns = self.settings.redis_namespace
        changes, awards, alerts = f"{ns}:board-changes", f"{ns}:awards", f"{ns}:sla-alerts"
        revoked = revocations.channel(ns)
        delay = 0.1
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(changes, awards, alerts, revoked)
                await self._resnapshot_all()  # anything missed while (re)connecting
                delay = 0.1
                # get_message with a timeout, not listen(): a task blocked in redis-py's listen() can
                # swallow its cancellation, which hung shutdown; this loop checks the stop flag each second.
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    if channel == revoked:
                        token_id = message["data"].decode()
                        await self._close_where(partial(_has_token_id, token_id), "token revoked")
                        continue
                    data = orjson.loads(message["data"])
                    if channel == alerts:
                        self._on_alert(data)
                        continue
                    # the league publishes one array per ledger batch (a single object: a replay's reset)
                    for item in data if isinstance(data, list) else [data]:
                        if channel == changes:
                            await self._on_board_change(item)
                        else:
                            await self._on_award(item)
            except (RedisError, OSError) as exc:
                log.warning("Redis pub/sub lost (%r); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _close_where(self, which: Callable[[Client], bool], reason: str) -> None:
        """Close (4401) the connections whose token ``which`` picks: revoked, or expired."""
        for client in [c for c in self.clients if which(c)]:
            self.clients.discard(client)
            await self._close(client.ws, CLOSE_UNAUTHORIZED, reason)

    async def _on_board_change(self, data: dict[str, Any]) -> None:
        board = data["board"]
        self.last_change_at[board] = self.clock()
        feed = self.feeds.get(board)
        if feed is None:
            return  # nobody watches this board here
        scores = data["scores"] if isinstance(data["scores"], dict) else {}
        src = data.get("src")
        src = int(src) if isinstance(src, int | float) and not isinstance(src, bool) else None
        # `reset`: the board was replaced whole (a ledger generation activated, pitstop replay)
        if data.get("reset") or not feed.on_change(int(data["ver"]), scores, src):
            await self._resnapshot(board)
        elif not self.behind and time.monotonic() - self.pushed_at.get(board, -1e9) >= self.push_interval:
            self._push(board, feed)  # a board that had no push within the interval: at once (see _tick)

    def _push(self, board: str, feed: BoardFeed) -> None:
        """The board's pending changes as one delta, encoded once for all the board's clients."""
        self.pushed_at[board] = time.monotonic()
        delta = feed.flush()
        clients = self.board_clients.get(board)
        if delta is not None and clients:
            data = orjson.dumps(self._delta_message(delta))
            for client in self._write_to_idle(clients, "delta", data):
                client.offer_delta(delta, data)

    def _write_to_idle(self, clients: Iterable[Client], kind: str, data: bytes) -> list[Client]:
        """A frame for many clients: one with nothing queued, in flight or unsent in its socket's buffer
        gets it written now (one broadcast, no wake-up of its send task: the gateway's CPU at 10,000 kiosks
        fell from ~92 % of a core to 78 %). Returns the others, for their outbox."""
        ready: list[ServerConnection] = []
        busy: list[Client] = []
        sending = self.sending
        for client in clients:
            if client not in sending and client.idle():
                ready.append(client.ws)
            else:
                busy.append(client)
        if ready:
            broadcast(ready, data, text=True)
            self._sent_counter(kind).inc(len(ready))
        return busy

    async def _on_award(self, record: dict[str, Any]) -> None:
        """An item of the awards channel: a ledger record (or a notification an earlier version published)."""
        kind = record["type"] if "type" in record else record.get("kind", "award")
        if kind == "award" and int(record.get("points") or 0) > 0:
            self._to_tickers(record)
        staff_id = str(record.get("staff_id"))
        clients = list(self.staff_clients.get(staff_id, ()))
        if not clients and record.get("event_type") != "recognition.given":
            return  # nobody here is shown it: no notification to make (most awards, at a kiosk-only gateway)
        data = as_notification(record)
        for client in clients:
            client.offer(data)
        if clients and (data.get("badge") or data.get("type") in ("retraction", "correction")):
            badges = await self._badges_message(staff_id)
            for client in clients:
                client.offer(badges)
        if clients:
            me = await self._me_message(staff_id)
            for client in clients:
                client.offer(me)
        if data.get("event_type") == "recognition.given":  # a giver's budget moved (or a refusal came)
            inputs = data.get("inputs") or {}
            giver = inputs.get("budget_of") or (staff_id if data.get("type") == "refusal" else None)
            for client in [c for c in self.manager_clients if giver and c.claims.staff == giver]:
                if data.get("type") == "refusal":
                    client.offer(data)
                await self._offer_budget(client)

    async def _me_message(self, staff_id: str) -> dict[str, Any]:
        """The person's standing: today, this month, rank and neighbours, next tier, KPIs vs targets."""
        person = self.directory.staff[staff_id]
        centre = self.directory.centres[person.centre_id]
        today = datetime.fromtimestamp(self.clock(), UTC).astimezone(centre.timezone).date()
        _, rows = await self.league.board(board_key(today.strftime("%Y-%m"), "centre", centre.id))
        recent = await self.league.recent_awards(staff_id, 50)
        targets = self.programme.targets.get(person.role, {}) if self.programme else {}
        kpis = await self.kpi.window_kpis("p", staff_id, Window.of("month", today)) if targets else {}
        names = {s: self.directory.staff[s].name for s, _ in rows if s in self.directory.staff}
        return summary(
            staff_id,
            rows=rows,
            names=names,
            recent=recent,
            today=today,
            zone=centre.timezone,
            tiers=self.programme.tiers if self.programme else (),
            kpis=kpis,
            targets=targets,
        )

    def _to_tickers(self, data: dict[str, Any]) -> None:
        """An award, for the tickers of the kiosks whose board it counts on (name, points, why)."""
        centre = self.directory.centre(str(data.get("centre_id")))
        if centre is None:
            return
        person = self.directory.person(str(data.get("staff_id")))
        role = person.role if person else None
        boards = self.ticker_boards.get((centre.id, role))
        if boards is None:
            covers = set(scope_ids(centre.id, centre.region, centre.state).items())
            boards = self.ticker_boards[centre.id, role] = [
                board
                for board in self.board_clients
                for _, _, scope, scope_id, board_role in [board.split(":")]
                if (scope, scope_id) in covers and board_role in ("all", role)
            ]
        if not boards:
            return
        item = {
            "name": person.name if person else data.get("staff_id"),
            "points": data.get("points"),
            "why": data.get("why"),
            "badge": (data.get("badge") or {}).get("name"),
        }
        for board in boards:
            items = self.tickers.setdefault(board, [])
            items.append(item)
            del items[:-TICKER_PER_PUSH]

    async def _badges_message(self, staff_id: str) -> dict[str, Any]:
        held = summarize_badges(await self.league.badges(staff_id))
        return {"type": "badges", "badges": [b.to_json() for b in held]}

    async def _resnapshot(self, board: str) -> None:
        self.feeds[board] = BoardFeed(board)
        for client in list(self.board_clients.get(board, ())):
            await self._send_snapshot(client, board)

    async def _resnapshot_all(self) -> None:
        for board in list(self.board_clients):
            await self._resnapshot(board)
        for client in list(self.manager_clients):  # alerts missed while (re)connecting
            client.offer(await self._alerts_message(client))

    async def _tick(self) -> None:
        """Four times per push interval: one coalesced delta for each board with changes waiting whose
        last push is an interval old (a board stays within push_hz); every 15 s a heartbeat. A change to
        a board without a push in the last interval goes out at once (``_on_board_change``) unless the
        previous tick woke late."""
        interval = self.push_interval
        step = interval / 4
        last_heartbeat = self.clock()
        last_season_check = last_expiry_check = last_kpis = last_ticker = self.clock()
        pushed_at, monotonic = self.pushed_at, time.monotonic
        last_cut = monotonic()
        while True:
            asleep = monotonic()
            await asyncio.sleep(step)
            # A tick that wakes late means the gateway is behind (at 10,000 kiosks it runs at a full core):
            # then a quiet board's change waits for its slot like the others instead of going out at once,
            # which measured slower there (p50 1.1-1.4 s against 0.5 s): fewer, fuller pushes catch up.
            self.behind = monotonic() - asleep > step * 1.5
            due = monotonic() - interval
            for board, feed in list(self.feeds.items()):
                if feed.pending and pushed_at.get(board, due) <= due:
                    self._push(board, feed)
            tickers: dict[str, list[dict[str, Any]]] = {}
            if self.clock() - last_ticker >= TICKER_EVERY_S - step / 2:
                last_ticker = self.clock()
                tickers, self.tickers = self.tickers, {}
            for board, items in tickers.items():
                data = orjson.dumps({"type": "ticker", "items": items})
                kiosks = [c for c in self.board_clients.get(board, ()) if c.claims.kind == "kiosk"]
                for client in self._write_to_idle(kiosks, "ticker", data):
                    client.offer_ticker(items, data)
            if monotonic() - last_cut >= 1.0:  # a send may wait SEND_TIMEOUT_S: looking once a second is enough
                last_cut = monotonic()
                self._cut_slow(last_cut)
            now = self.clock()
            if now - last_heartbeat >= HEARTBEAT_S:
                last_heartbeat = now
                beat = Frame.of({"type": "heartbeat", "t": int(now * 1000)})
                for clients in [*self.board_clients.values(), *self.staff_clients.values(), self.manager_clients]:
                    for client in clients:
                        client.offer(beat)
            if now - last_season_check >= 10.0:
                last_season_check = now
                await self._roll_seasons()
            if now - last_kpis >= KPIS_EVERY_S:
                last_kpis = now
                try:
                    await self._refresh_kpis()
                except (RedisError, OSError) as exc:
                    log.warning("manager KPIs not refreshed (%r)", exc)
            if now - last_expiry_check >= 1.0:
                last_expiry_check = now
                await self._close_where(partial(_expired_by, now), "token expired")

    async def _roll_seasons(self) -> None:
        """At midnight on the 1st (centre time) every board view moves to the new season's board."""
        for board, clients in list(self.board_clients.items()):
            for client in list(clients):
                if client.view is not None and self._board_of(client) != board:
                    self._leave_board(client)
                    await self._join_board(client)


def _has_token_id(token_id: str, client: Client) -> bool:
    return client.claims.token_id == token_id


def _expired_by(now: float, client: Client) -> bool:
    return client.claims.expires_at <= now


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status.value, status.phrase, headers, body)


async def run_gateway(settings: Settings) -> None:
    """``pitstop gateway``: serve until cancelled (SIGINT/SIGTERM)."""
    from config.directory import load_directory

    directory = load_directory(settings.directory_path)
    theme = load_theme(settings.theme_path)
    programme = load_programme(settings.programme_path)
    pack = load_rule_pack(settings.rules_path)
    # A burst of connections (every kiosk reconnecting after a restart) waits for a pooled connection
    # instead of failing past the pool's size (a failed revocation check refuses the kiosk).
    redis = pooled(settings.redis_url, max_connections=64, wait_s=20)
    producer = Recognitions(settings.bootstrap_servers)
    gateway = Gateway(settings, directory, redis, theme=theme, programme=programme, pack=pack, send=producer.send)
    port = await gateway.start()
    tune_gc()
    log.info("gateway on http://%s:%d (kiosk page /kiosk, WebSocket /ws)", settings.bind_host, port)
    print(f"GATEWAY_PORT={port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
        await producer.close()
        await redis.aclose()


def main(settings: Settings) -> None:
    """Run the gateway on uvloop until SIGINT/SIGTERM (what ``pitstop gateway`` should call)."""
    import uvloop

    uvloop.run(run_gateway(settings))


class Recognitions:
    """Produces the manager page's spot awards onto the broker (acks=all), starting the producer when
    the first one is sent, so a gateway runs (and serves every page) while the broker is away."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: Any = None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=10_000)
            try:
                await asyncio.wait_for(producer.start(), 15)
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        await asyncio.wait_for(self._producer.send_and_wait(topic, value, key=key), 15)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
