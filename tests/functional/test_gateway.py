"""The WebSocket gateway against a real Redis: protocol, pushes and refusals (no broker involved)."""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agents.rules import Badge
from agents.scoring import Award
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY
from dashboards import gateway as gateway_module
from dashboards.gateway import Gateway
from dashboards.tokens import issue_token
from pitstop.services import Service
from state.league import League, LedgerRecord
from tests.conftest import seconds
from tests.functional.conftest import award, running_gateway

SECRET = "functional-test-secret-0123456789abcdef"


@pytest.fixture
async def gateway(redis_server: Service, namespace: str) -> AsyncIterator[Gateway]:
    async with running_gateway(redis_server.url, namespace, SECRET) as gw:
        yield gw


DIRECTORY = load_directory(DEFAULT_DIRECTORY)


def _season() -> str:
    return datetime.now(UTC).astimezone(DIRECTORY.centres["C01"].timezone).strftime("%Y-%m")


def _award(staff_id: str, points: int, n: int) -> Award:
    return replace(award(n, staff_id, points, season=_season()), award_id=f"a{n}", why=f"Recognised: good work {n}")


async def _open(gw: Gateway, kind: str | None = None, subject: str = "", **auth: Any) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{gw.port}/ws")
    if kind is not None:
        await ws.send(orjson.dumps({"type": "auth", "token": issue_token(SECRET, kind, subject), **auth}).decode())
    return ws


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
    return message


async def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), seconds(10))
    return info.value.rcvd.code if info.value.rcvd else None


async def test_kiosk_gets_snapshot_then_coalesced_sequenced_deltas(gateway: Gateway, namespace: str) -> None:
    """A kiosk sees its centre's board, then at most a few deltas carrying the latest absolute scores."""
    league = League(gateway.redis, namespace)
    await league.apply([LedgerRecord(0, 0, _award("S0001", 10, 0))])
    kiosk = await _open(gateway, "kiosk", "C01")
    assert (await _recv(kiosk))["type"] == "welcome"
    snapshot = await _recv(kiosk)
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1
    assert [(e["staff_id"], e["points"], e["name"]) for e in snapshot["entries"]] == [("S0001", 10, "Ayaan Gupta")]
    for n in range(1, 21):  # 20 changes in one burst
        await league.apply([LedgerRecord(0, n, _award("S0002" if n % 2 else "S0001", 5, n))])
    deltas, tickers = [], []
    while not deltas or deltas[-1]["seq"] < 21 or not tickers:  # tickers go out at most twice a second
        message = await _recv(kiosk)
        assert message["type"] in ("delta", "ticker")
        (deltas if message["type"] == "delta" else tickers).append(message)
    assert len(deltas) < 20  # coalesced to the push tick, not one per change
    # the ticker carries the newest awards with their why, at most five a push
    assert tickers and all(1 <= len(t["items"]) <= 5 for t in tickers)
    assert {i["why"] for t in tickers for i in t["items"]} <= {f"Recognised: good work {n}" for n in range(1, 21)}
    assert {i["name"] for t in tickers for i in t["items"]} <= {"Ayaan Gupta", "Deepak Pillai"}
    assert deltas[0]["prev_seq"] <= 1 and all(a["seq"] == b["prev_seq"] for a, b in itertools.pairwise(deltas))
    final = {e["staff_id"]: e["points"] for d in deltas for e in d["entries"]}
    assert final == {"S0001": 60, "S0002": 50}
    await kiosk.close()


async def _tickers_until(ws: ClientConnection, why: str) -> list[str]:
    """The whys of the ticker items a kiosk is sent until one carries ``why`` (deltas skipped)."""
    seen: list[str] = []
    while why not in seen:
        message = await _recv(ws)
        if message["type"] == "ticker":
            seen += [i["why"] for i in message["items"]]
    return seen


async def test_ticker_items_go_to_the_boards_they_count_on(gateway: Gateway, namespace: str) -> None:
    """An award is on the ticker of its centre's kiosks and of a kiosk watching its region, not on another
    centre's; a board first watched after the gateway has sent tickers gets its awards too."""
    league = League(gateway.redis, namespace)
    c01, c02 = await _open(gateway, "kiosk", "C01"), await _open(gateway, "kiosk", "C02")
    for ws in (c01, c02):
        assert [(await _recv(ws))["type"] for _ in range(2)] == ["welcome", "snapshot"]
    c02_award = replace(_award("S0016", 5, 1), centre_id="C02", why="at C02")
    await league.apply([LedgerRecord(0, 0, c02_award)])
    await _tickers_until(c02, "at C02")
    region = await _open(gateway, "kiosk", "C01")  # then watching its region's board
    await _recv(region)
    await _recv(region)
    await region.send('{"type": "subscribe", "resource": "board:region:west:all"}')
    assert (await _recv(region))["type"] == "snapshot"
    await league.apply(
        [LedgerRecord(0, 1, _award("S0001", 5, 2)), LedgerRecord(0, 2, replace(c02_award, award_id="b"))]
    )
    assert "at C02" not in await _tickers_until(c01, "Recognised: good work 2")
    assert {"Recognised: good work 2", "at C02"} <= set(await _tickers_until(region, "at C02"))
    for ws in (c01, c02, region):
        await ws.close()


async def test_technician_gets_own_awards_with_why_only(gateway: Gateway, namespace: str) -> None:
    """A technician is sent their own awards (recent ones first) and never someone else's."""
    league = League(gateway.redis, namespace)
    await league.apply([LedgerRecord(0, 0, _award("S0001", 10, 0))])
    me = await _open(gateway, "technician", "S0001")
    assert (await _recv(me))["type"] == "welcome"
    recent = await _recv(me)
    assert recent["type"] == "recent" and [a["award_id"] for a in recent["awards"]] == ["a0"]
    assert await _recv(me) == {"type": "badges", "badges": []}
    standing = await _recv(me)
    assert standing["type"] == "me" and (standing["month_points"], standing["rank"], standing["of"]) == (10, 1, 1)
    await league.apply([LedgerRecord(0, 1, _award("S0002", 7, 1)), LedgerRecord(0, 2, _award("S0001", 9, 2))])
    award = await _recv(me)
    assert award["type"] == "award" and award["award_id"] == "a2" and award["points"] == 9
    assert award["why"] == "Recognised: good work 2"
    standing = await _recv(me)  # the standing again, after the person's own award only
    assert standing["type"] == "me" and (standing["month_points"], standing["rank"], standing["of"]) == (19, 1, 2)
    assert [(n["staff_id"], n["points"], n["me"]) for n in standing["neighbours"]] == [
        ("S0001", 19, True),
        ("S0002", 7, False),
    ]
    await me.close()


async def test_a_badge_earned_reaches_the_person_and_a_retraction_takes_it_back(
    gateway: Gateway, namespace: str
) -> None:
    """An award earning a badge is followed by the person's badges, with it; taking the award back
    (in full) sends the badges again, without it."""
    league = League(gateway.redis, namespace)
    me = await _open(gateway, "technician", "S0001")
    assert [(await _recv(me))["type"] for _ in range(4)] == ["welcome", "recent", "badges", "me"]
    star = Badge("csat-star", "CSAT star")
    earned = replace(_award("S0001", 100, 0), badge=star)
    await league.apply([LedgerRecord(0, 0, earned)])
    award = await _recv(me)
    assert award["type"] == "award" and award["badge"] == {"id": "csat-star", "name": "CSAT star"}
    (held,) = (await _recv(me))["badges"]
    assert (held["badge"], held["name"], held["count"]) == ("csat-star", "CSAT star", 1)
    assert [e["award_id"] for e in held["earned"]] == ["a0"]
    assert (await _recv(me))["type"] == "me"
    retraction = replace(_award("S0001", -100, 1), kind="retraction", retracts="a0")
    await league.apply([LedgerRecord(0, 1, retraction)])
    assert (await _recv(me))["type"] == "retraction"
    assert await _recv(me) == {"type": "badges", "badges": []}
    assert (await _recv(me))["month_points"] == 0
    await me.close()


@pytest.mark.parametrize(
    ("first_message", "code"),
    [
        ({"type": "auth", "token": "not-a-jwt"}, 4401),
        ({"type": "auth", "token": issue_token("another-secret-0123456789-abcdefghij", "kiosk", "C01")}, 4401),
        ({"type": "auth", "token": issue_token(SECRET, "kiosk", "C01", ttl_s=10, now=time.time() - 3600)}, 4401),
        ({"type": "auth", "token": issue_token(SECRET, "kiosk", "C99")}, 4403),
        ({"type": "auth", "token": issue_token(SECRET, "technician", "S9999")}, 4403),
        ({"type": "hello"}, 4400),
        ("not json", 4400),
    ],
    ids=["garbage-token", "wrong-secret", "expired", "unknown-centre", "unknown-staff", "not-auth", "not-json"],
)
async def test_bad_first_message_is_refused_with_its_close_code(
    gateway: Gateway, first_message: Any, code: int
) -> None:
    """Each kind of bad authentication gets its own close code."""
    ws = await _open(gateway)
    await ws.send(first_message if isinstance(first_message, str) else orjson.dumps(first_message).decode())
    assert await _closed_with(ws) == code


async def test_silent_client_is_closed_after_the_auth_timeout(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that never authenticates is closed with 4408."""
    monkeypatch.setattr(gateway_module, "AUTH_TIMEOUT_S", 0.3)
    ws = await _open(gateway)
    assert await _closed_with(ws) == 4408


async def test_unknown_message_and_flood_are_refused(gateway: Gateway) -> None:
    """After auth, an unknown message closes with 4400; a flood with 4429; other clients are unaffected."""
    other = await _open(gateway, "kiosk", "C01")
    assert (await _recv(other))["type"] == "welcome"
    bad = await _open(gateway, "kiosk", "C01")
    await bad.send('{"type": "subscribe-everything"}')
    assert await _closed_with(bad) == 4400
    flood = await _open(gateway, "kiosk", "C01")
    for _ in range(50):
        await flood.send('{"type": "pong"}')
    assert await _closed_with(flood) == 4429
    assert (await _recv(other))["type"] == "snapshot"
    await other.send('{"type": "resync"}')
    assert (await _recv(other))["type"] == "snapshot"
    await other.close()


async def test_oversize_message_is_refused(gateway: Gateway) -> None:
    """A message above 4 KiB closes the connection with 1009."""
    ws = await _open(gateway)
    await ws.send("x" * 10_000)
    assert await _closed_with(ws) == 1009


async def test_foreign_origin_is_refused_and_pages_are_served(gateway: Gateway) -> None:
    """A browser page from another origin cannot open the socket; the kiosk page and metrics are served."""
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{gateway.port}/ws", origin="http://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    base = f"http://127.0.0.1:{gateway.port}"
    page = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/kiosk").read().decode())
    assert "Pitstop League" in page and "/static/kiosk.js" in page
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/metrics").read().decode())
    assert "pitstop_ws_clients" in metrics
    with pytest.raises(urllib.error.HTTPError):
        await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/static/../gateway.py"))


async def test_managers_see_the_alerts_of_their_region_only(gateway: Gateway, namespace: str) -> None:
    """A manager gets the open alerts of its region's centres on connecting, then each new alert and clear
    of those centres, once; an alert applied twice is pushed once; other regions' alerts never come."""
    from agents.sla import Alert
    from state.alerts import AlertBoard

    board = AlertBoard(gateway.redis, namespace, 3600)

    def alert(n: int, centre: str, kind: str = "sla.breach", **extra: Any) -> Alert:
        region = DIRECTORY.centres[centre].region
        return Alert.from_json(
            {
                "alert_id": f"al{n}",
                "type": kind,
                "item_kind": "ticket",
                "item_id": f"T-{n}",
                "clock": "first_response",
                "centre_id": centre,
                "region": region,
                "people": ["S0012"],
                "deadline_ms": 1_700_000_000_000 + n,
                "fired_ms": 1_700_000_000_000 + n,
                "source": "timer",
                **extra,
            }
        )

    await board.apply([(alert(1, "C01"), []), (alert(2, "C05"), [])], 0)  # C01 west, C05 north
    west = await _open(gateway, "manager", "west")
    assert (await _recv(west))["type"] == "welcome"
    opening = await _recv(west)
    assert opening["type"] == "alerts" and [a["alert_id"] for a in opening["alerts"]] == ["al1"]
    dashboard = await _recv(west)  # the KPI dashboard of the region's centres
    assert dashboard["type"] == "kpis" and [s["id"] for s in dashboard["sites"]] == sorted(
        c.id for c in DIRECTORY.centres.values() if c.region == "west"
    )
    assert len(dashboard["csat_trend"]) == 14
    north = await _open(gateway, "manager", "north")
    await _recv(north)
    assert [a["alert_id"] for a in (await _recv(north))["alerts"]] == ["al2"]
    assert (await _recv(north))["type"] == "kpis"

    new = await board.apply([(alert(3, "C02"), []), (alert(3, "C02"), []), (alert(4, "C06"), [])], 0)
    assert new == {"al3", "al4"}
    assert await board.apply([(alert(3, "C02"), [])], 0) == set()
    pushed = await _recv(west)
    assert pushed["type"] == "alert" and pushed["alert"]["alert_id"] == "al3"
    assert (await _recv(north))["alert"]["alert_id"] == "al4"
    await board.apply([(alert(5, "C01", "sla.clear", clears="al1", outcome="late"), [])], 0)
    cleared = await _recv(west)
    assert cleared["alert"]["type"] == "sla.clear" and cleared["alert"]["clears"] == "al1"
    assert [a["alert_id"] for a in await board.active()] == ["al2", "al3", "al4"]
    with pytest.raises(TimeoutError):  # nothing else for the north: not al3, not al5, not al3 twice
        await asyncio.wait_for(north.recv(), 0.5)
    # a workshop manager (a token for one centre) sees that centre only
    workshop = await _open(gateway, "manager", "C02")
    await _recv(workshop)
    assert [a["alert_id"] for a in (await _recv(workshop))["alerts"]] == ["al3"]
    assert [s["id"] for s in (await _recv(workshop))["sites"]] == ["C02"]
    await board.apply([(alert(6, "C01"), []), (alert(7, "C02"), [])], 0)
    assert (await _recv(workshop))["alert"]["alert_id"] == "al7"
    for ws in (west, north, workshop):
        await ws.close()


async def test_a_manager_gives_spot_awards_from_the_page(redis_server: Service, namespace: str) -> None:
    """A manager token naming its person gets its team and budget; a valid form becomes a recognition.given
    event that passes contract v1; bad input gets a specific error and the connection stays; a token
    without a person is refused (4403)."""
    from agents.rules import load_rule_pack
    from config.settings import DEFAULT_RULES
    from streams.events import decode_event

    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    async with running_gateway(
        redis_server.url, namespace, SECRET, pack=load_rule_pack(DEFAULT_RULES), send=send
    ) as gw:
        ws = await connect(f"ws://127.0.0.1:{gw.port}/ws")
        token = issue_token(SECRET, "manager", "west", staff="S0015")  # the C01 manager
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        got = {m["type"]: m for m in [await _recv(ws) for _ in range(5)]}
        assert set(got) == {"welcome", "alerts", "kpis", "team", "budget"}
        team = {p["staff_id"] for p in got["team"]["people"]}
        assert "S0001" in team and "S0015" not in team and "S0061" not in team  # west only, not the giver
        assert (got["budget"]["budget"], got["budget"]["used"], got["budget"]["left"]) == (2000, 0, 2000)

        async def ask(**message: Any) -> dict[str, Any]:
            await ws.send(orjson.dumps({"type": "recognize", **message}).decode())
            return await _recv(ws)

        for bad, error in [
            ({"staff_id": "S0061", "points": 10, "reason": "Great work"}, "choose someone from your centres"),
            (
                {"staff_id": "S0001", "points": 0, "reason": "Great work"},
                "points must be a whole number from 1 to 1000",
            ),
            ({"staff_id": "S0001", "points": 10, "reason": "ok"}, "say why in 3 to 280 characters"),
            ({"staff_id": "S0001", "points": 10, "reason": "call me on +91 98000 00012"}, "phone number"),
        ]:
            reply = await ask(**bad)
            assert reply["type"] == "recognize_error" and error in reply["error"], (bad, reply)
        assert sent == []
        reply = await ask(staff_id="S0001", points=25, reason="Stayed late for an urgent job")
        assert reply["type"] == "recognize_sent" and (reply["staff_id"], reply["points"]) == ("S0001", 25)
        ((topic, key, value),) = sent
        event = decode_event(value, now=datetime.now(UTC), topic_family="recognition")
        assert (topic, key, event.type, event.centre_id) == ("recognitions", b"C01", "recognition.given", "C01")
        assert event.data["awarded_by"] == "S0015" and event.data["points"] == 25
        await ws.close()

        plain = await connect(f"ws://127.0.0.1:{gw.port}/ws")
        await plain.send(orjson.dumps({"type": "auth", "token": issue_token(SECRET, "manager", "west")}).decode())
        await _recv(plain)
        await plain.send('{"type": "recognize", "staff_id": "S0001", "points": 5, "reason": "Great work"}')
        assert await _closed_with(plain) == 4403


async def test_deltas_carry_the_oldest_source_time_of_their_changes(gateway: Gateway, namespace: str) -> None:
    """A board change carrying `src` (ms) gives its delta `src`, the oldest of the changes the delta
    coalesces; a delta of changes without one has none."""
    kiosk = await _open(gateway, "kiosk", "C01")
    assert (await _recv(kiosk))["type"] == "welcome"
    snapshot = await _recv(kiosk)
    board, seq = snapshot["board"], snapshot["seq"]
    srcs = {seq + 1: 1_700_000_000_500, seq + 2: None, seq + 3: 1_700_000_000_400}

    async def publish(version: int, src: int | None) -> None:
        change: dict[str, Any] = {"board": board, "ver": version, "scores": {"S0001": version}}
        if src is not None:
            change["src"] = src
        await gateway.redis.publish(f"{namespace}:board-changes", orjson.dumps(change))

    for version, src in srcs.items():
        await publish(version, src)
    deltas: list[dict[str, Any]] = []
    while not deltas or deltas[-1]["seq"] < seq + 3:
        message = await _recv(kiosk)
        if message["type"] == "delta":
            deltas.append(message)
    for delta in deltas:
        carried = [s for v in range(delta["prev_seq"] + 1, delta["seq"] + 1) if (s := srcs.get(v)) is not None]
        assert delta.get("src") == (min(carried) if carried else None), delta
    assert min(d["src"] for d in deltas if "src" in d) == 1_700_000_000_400
    await publish(seq + 4, None)
    later = await _recv(kiosk)
    assert later["type"] == "delta" and later["seq"] == seq + 4 and "src" not in later
    await kiosk.close()


async def test_kiosks_of_a_board_share_one_encoding_and_a_pending_delta_merges(
    gateway: Gateway, namespace: str
) -> None:
    """Two kiosks of one board get the very same delta text; a delta offered to a client that still holds
    one for that board merges with it (latest scores, first prev_seq, last seq) and is encoded for it alone."""
    from dashboards.feed import Delta
    from dashboards.gateway import Client

    league = League(gateway.redis, namespace)
    kiosks = [await _open(gateway, "kiosk", "C01") for _ in range(2)]
    for kiosk in kiosks:
        assert [(await _recv(kiosk))["type"] for _ in range(2)] == ["welcome", "snapshot"]
    await league.apply([LedgerRecord(0, 0, _award("S0001", 10, 0))])

    async def next_delta(ws: ClientConnection) -> str | bytes:
        while True:
            raw = await asyncio.wait_for(ws.recv(), seconds(5))
            if orjson.loads(raw)["type"] == "delta":
                return raw

    first, second = [await next_delta(k) for k in kiosks]
    assert first == second and orjson.loads(first)["entries"][0]["points"] == 10
    for kiosk in kiosks:
        await kiosk.close()

    client = Client(ws=None, claims=None)  # type: ignore[arg-type]
    client.offer_delta(Delta("b", 1, 2, {"S1": 5, "S2": 1}), b"shared")
    assert client.deltas["b"] == (Delta("b", 1, 2, {"S1": 5, "S2": 1}), b"shared")
    client.offer_delta(Delta("b", 2, 4, {"S1": 7}), b"shared-later")
    assert client.deltas["b"] == (Delta("b", 1, 4, {"S1": 7, "S2": 1}), None)


async def test_a_client_whose_send_waits_too_long_is_cut(gateway: Gateway, namespace: str) -> None:
    """A client whose send has waited for its socket longer than SEND_TIMEOUT_S is closed with 4008 at the
    next push tick; another kiosk keeps its connection and its next delta."""
    slow, other = await _open(gateway, "kiosk", "C01"), await _open(gateway, "kiosk", "C01")
    for ws in (slow, other):
        assert [(await _recv(ws))["type"] for _ in range(2)] == ["welcome", "snapshot"]
    clients = {c.ws.remote_address[1]: c for c in gateway.clients}
    client = clients[slow.local_address[1]]
    gateway.sending[client] = time.monotonic() - gateway_module.SEND_TIMEOUT_S - 0.5
    assert await _closed_with(slow) == 4008
    await League(gateway.redis, namespace).apply([LedgerRecord(0, 0, _award("S0001", 10, 0))])
    while (message := await _recv(other))["type"] != "delta":
        pass
    assert message["entries"][0]["points"] == 10
    await other.close()


async def test_a_change_to_a_quiet_board_goes_out_at_once_and_later_ones_wait_for_its_slot(
    redis_server: Service, namespace: str
) -> None:
    """push_hz 0.2: a board's slot is every 5 s, the gateway looks every 1.25 s. The first change to a
    board not pushed for a slot is sent at once (well before the first look); the next two, coming
    right after, wait for the board's next slot and go out as one delta."""
    async with running_gateway(redis_server.url, namespace, SECRET, push_hz=0.2) as gw:
        kiosk = await _open(gw, "kiosk", "C01")
        assert (await _recv(kiosk))["type"] == "welcome"
        snapshot = await _recv(kiosk)
        board, seq = snapshot["board"], snapshot["seq"]

        async def publish(version: int) -> None:
            change = {"board": board, "ver": version, "scores": {"S0001": version}}
            await gw.redis.publish(f"{namespace}:board-changes", orjson.dumps(change))

        await publish(seq + 1)
        first = orjson.loads(await asyncio.wait_for(kiosk.recv(), 1.0))  # the gateway's first look is at 1.25 s
        assert (first["type"], first["prev_seq"], first["seq"]) == ("delta", seq, seq + 1)
        await publish(seq + 2)
        await publish(seq + 3)
        second = orjson.loads(await asyncio.wait_for(kiosk.recv(), seconds(10)))
        assert (second["type"], second["prev_seq"], second["seq"]) == ("delta", seq + 1, seq + 3)
        await kiosk.close()
