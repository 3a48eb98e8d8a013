"""The ``pitstop`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.loading import ConfigError
from config.settings import Settings, SettingsError

if TYPE_CHECKING:  # the commands import what they use when they run (a fast --help)
    from agents.scoring import Award


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0 and at most 1000000")
    return value


def _generation(text: str) -> str:
    from streams.topics import GENERATION_NAME

    if not GENERATION_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: lower-case letters, digits and '-' (at most 40), e.g. nov-restate")
    return text


def _season(text: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a season: write YYYY-MM, e.g. 2026-11")
    return text


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: write YYYY-MM-DD, e.g. 2026-11-20") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pitstop", description="Real-time incentive engine.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run broker, Redis, worker, gateway and a simulator; print the kiosk URL")
    demo.add_argument("--rate", type=_positive, default=20.0, help="simulated events per second (default 20)")
    demo.add_argument("--port", type=_port, default=8765, help="gateway port (default 8765; a free one if taken)")
    demo.add_argument("--centre", help="centre whose kiosk URL is printed (default: the first)")
    demo.add_argument("--seed", type=_count, default=7, help="simulator seed")
    demo.add_argument("--duration", type=_positive, help="stop after this many seconds")

    sub.add_parser("worker", help="run the stream worker (scoring and league projection)")
    sub.add_parser("gateway", help="run the WebSocket gateway and pages")

    sim = sub.add_parser("simulate", help="produce simulated source events")
    sim.add_argument("--rate", type=_positive, default=5.0, help="events per second")
    sim.add_argument("--seed", type=_count, default=7)
    sim.add_argument("--limit", type=_count, help="stop after this many events")

    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild every league board (and the subjects retractions need) from the points ledger, and the SLA "
        "alert list and clocks from their topics",
    )
    rebuild.add_argument("--keep", action="store_true", help="do not clear the projection keys first")

    token = sub.add_parser(
        "token", help="issue an access token for a kiosk, technician or manager, or revoke one (token revoke T)"
    )
    token.add_argument("kind", choices=["kiosk", "technician", "manager", "revoke"])
    token.add_argument("subject", help="centre id (kiosk), staff id (technician), or region or centre id (manager)")
    token.add_argument("--ttl-days", type=_positive, default=30.0, help="how long it lives (at most 366 days)")
    token.add_argument("--json", action="store_true", help="print the token with its id and expiry, as JSON")
    token.add_argument("--staff", help="manager tokens: the manager (staff id) who gives spot awards from the page")

    schemas = sub.add_parser("schemas", help="write or check the published JSON Schema files")
    schemas.add_argument("--write", action="store_true", help="regenerate streams/schemas/*.json")

    sub.add_parser(
        "check-config",
        help="validate the directory, the rule pack, the programme, the SLA policy and the notifications, then exit",
    )

    chaos = sub.add_parser("chaos", help="reliability scenarios (kills, Redis loss, stalled kiosk, soak) with checks")
    chaos.add_argument(
        "--scenario",
        choices=["G1", "G2", "G3", "G5", "G6", "G7"],
        default="G1",
        help="G1 kills the worker, G2 rebalances two workers and bounces Apache Kafka, G3 kills Redis, "
        "G5 fuzzes the edge through the broker, G6 stalls a kiosk among 50, G7 soaks",
    )
    chaos.add_argument("--minutes", type=_positive, help="G7 soak length (default 30, or 1.5 with --quick)")
    chaos.add_argument("--rate", type=_positive, default=200.0, help="G7 events per second (default 200)")
    chaos.add_argument("--quick", action="store_true", help="a short run, as CI does")
    chaos.add_argument("--json", action="store_true", help="print one JSON object")
    chaos.add_argument("--seed", type=_count, default=1)
    chaos.add_argument(
        "--events", type=_count, help="events or inputs (G1/G3 5k|50k, G2 4k|30k, G5 2k|10k: quick|full)"
    )
    chaos.add_argument("--kills", type=_count, help="SIGKILLs of the worker (default 3 quick, 20 full)")
    chaos.add_argument(
        "--rebuild-awards", type=_count, metavar="N", help="instead: time a rebuild of a ledger of N awards"
    )

    rules = sub.add_parser("rules", help="preview a rule pack against the events already on the topics")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    diff = rules_sub.add_parser("diff", help="per person, the point and rank change NEW_PACK would make")
    diff.add_argument("new_pack", type=Path, metavar="NEW_PACK", help="the rule pack to compare with PITSTOP_RULES")
    diff.add_argument("--season", type=_season, help="YYYY-MM (default: the latest season on the topics)")
    diff.add_argument("--centre", help="rank within one centre instead of the nation")
    diff.add_argument("--limit", type=_count, default=50, help="people listed in the table (default 50)")
    diff.add_argument("--json", action="store_true", help="print one JSON object with every change")

    replay = sub.add_parser(
        "replay", help="score every source event again with a rule pack, into shadow boards; --activate makes them live"
    )
    replay.add_argument("--name", type=_generation, required=True, help="the shadow (and the new ledger generation)")
    replay.add_argument("--pack", type=Path, help="the rule pack (default: the configured one)")
    replay.add_argument(
        "--activate", action="store_true", help="make the shadow the ledger and the boards (stop the worker first)"
    )
    replay.add_argument("--drop", action="store_true", help="delete the shadow of this name instead, and exit")
    replay.add_argument("--limit", type=_count, default=30, help="changes listed in the table (default 30)")
    replay.add_argument("--json", action="store_true", help="print one JSON object")

    contest = sub.add_parser("contest", help="contest standings and winners, from the ledger")
    contest.add_argument("contest_id", nargs="?", metavar="ID", help="one contest (default: every contest)")
    contest.add_argument("--all", action="store_true", help="everyone ranked, not only the winners")
    contest.add_argument("--json", action="store_true", help="print one JSON object")

    tiers = sub.add_parser("tiers", help="everyone's tier after a season ends, from the ledger")
    tiers.add_argument("--season", type=_season, required=True, help="YYYY-MM")
    tiers.add_argument("--json", action="store_true", help="print one JSON object")

    badges = sub.add_parser("badges", help="the badges people hold and their streaks, from the ledger")
    badges.add_argument("--person", metavar="STAFF_ID", help="one person (default: everyone holding a badge)")
    badges.add_argument("--json", action="store_true", help="print one JSON object")

    league = sub.add_parser("league", help="a board of any season, current or past, from Redis")
    league.add_argument("--season", type=_season, required=True, help="YYYY-MM")
    league.add_argument("--scope", choices=["centre", "region", "state", "nation"], default="nation")
    league.add_argument("--id", dest="scope_id", default="all", help="centre, region or state id (nation: all)")
    league.add_argument("--role", default="all", help="one role's board (default: all roles)")
    league.add_argument("--limit", type=_count, default=50, help="rows (default 50)")
    league.add_argument("--json", action="store_true", help="print one JSON object")

    kpi = sub.add_parser("kpi", help="a person's or a centre's KPIs for one window, by event time, from Redis")
    whose = kpi.add_mutually_exclusive_group(required=True)
    whose.add_argument("--person", metavar="STAFF_ID")
    whose.add_argument("--centre", metavar="CENTRE_ID")
    kpi.add_argument("--window", choices=["day", "week", "month", "30d"], default="month")
    kpi.add_argument("--on", type=_day, help="a day of the window, YYYY-MM-DD (default: today at the centre)")
    kpi.add_argument("--json", action="store_true", help="print one JSON object")

    bench = sub.add_parser("bench", help="throughput and event->kiosk latency beside the peer pipelines")
    from pitstop.bench.harness import add_arguments as bench_arguments

    bench_arguments(bench)

    kafka = sub.add_parser("kafka", help="fetch Apache Kafka 3.9 with Maven and run a single KRaft broker")
    kafka.add_argument("args", nargs=argparse.REMAINDER, help="options for pitstop.apache_kafka (see --help)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its INFO lines are per-connection chatter
    try:
        return _run(args)
    except (SettingsError, ConfigError) as exc:
        print(f"pitstop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "bench":
        from pitstop.bench.harness import run_from_args

        return run_from_args(args)
    if args.command == "kafka":
        from pitstop.apache_kafka import main as kafka_main

        return kafka_main(args.args)
    if args.command == "demo":
        from pitstop.demo import run_demo

        return run_demo(rate=args.rate, port=args.port, duration=args.duration, centre=args.centre, seed=args.seed)
    if args.command == "chaos":
        from pitstop.chaos import main as chaos_main
        from pitstop.chaos import measure_rebuild

        if args.scenario == "G7":
            from pitstop.soak import main as soak_main

            return soak_main(as_json=args.json, minutes=args.minutes or (1.5 if args.quick else 30.0), rate=args.rate)
        if args.scenario == "G2":
            from pitstop.rebalance import main as rebalance_main

            return rebalance_main(quick=args.quick, as_json=args.json, seed=args.seed, events=args.events)
        if args.scenario == "G5":
            try:
                from pitstop.fuzz import main as fuzz_main
            except ImportError as exc:  # Hypothesis is a test dependency
                print(f"pitstop: G5 needs the test extras (pip install -e '.[test]'): {exc}", file=sys.stderr)
                return 2

            return fuzz_main(quick=args.quick, as_json=args.json, seed_=args.seed, count=args.events)
        if args.scenario == "G6":
            from pitstop.stall import main as stall_main

            return stall_main(as_json=args.json, phase_s=10.0 if args.quick else 30.0)
        if args.rebuild_awards:
            print(json.dumps(measure_rebuild(args.rebuild_awards, seed=args.seed)))
            return 0

        return chaos_main(
            scenario=args.scenario,
            quick=args.quick,
            as_json=args.json,
            seed=args.seed,
            events=args.events,
            kills=args.kills,
        )
    if args.command == "schemas":
        return _schemas(write=args.write)

    settings = Settings.from_env()
    if args.command == "worker":
        from agents.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "gateway":
        from dashboards.gateway import main as run_gateway

        run_gateway(settings)  # on uvloop
        return 0
    if args.command == "check-config":
        from agents.rules import load_rule_pack
        from config.directory import load_directory
        from config.notifications import load_notifications
        from config.programme import load_programme
        from config.sla import load_sla_policy
        from config.theme import load_theme

        directory = load_directory(settings.directory_path)
        theme = load_theme(settings.theme_path)
        pack = load_rule_pack(settings.rules_path)
        programme = load_programme(settings.programme_path, frozenset(r.id for r in pack.rules))
        sla = load_sla_policy(settings.sla_path)
        notifications = load_notifications(settings.notifications_path)
        print(f"{settings.directory_path}: {len(directory.centres)} centres, {len(directory.staff)} staff")
        print(f"{settings.rules_path}: pack {pack.name} v{pack.version}, {len(pack.rules)} rules")
        print(
            f"{settings.programme_path}: programme {programme.name} v{programme.version}, "
            f"{len(programme.tiers)} tiers, {len(programme.contests)} contests"
        )
        print(
            f"{settings.sla_path}: SLA policy {sla.name} v{sla.version}, {len(sla.tickets)} ticket terms, "
            f"{len(sla.calendars)} calendars"
        )
        print(
            f"{settings.notifications_path}: notifications {notifications.name} v{notifications.version}, "
            f"{len(notifications.channels)} channels, {len(notifications.routes)} routes"
        )
        print(f"{settings.theme_path}: theme {theme.name}, title {theme.title!r}, logo {'yes' if theme.logo else 'no'}")
        return 0
    if args.command == "token" and args.kind == "revoke":
        return asyncio.run(_revoke(settings, args.subject))
    if args.command == "token":
        from config.directory import load_directory
        from dashboards.tokens import TokenError, issue_token, verify_token

        directory = load_directory(settings.directory_path)
        known = {
            "kiosk": args.subject in directory.centres,
            "technician": args.subject in directory.staff,
            "manager": bool(directory.managed_centres(args.subject)),
        }
        if not known[args.kind]:
            print(f"pitstop: no {args.kind} subject {args.subject!r} in {settings.directory_path}", file=sys.stderr)
            return 2
        if args.staff is not None:
            person = directory.person(args.staff)
            if args.kind != "manager" or person is None or person.role != "manager":
                print(
                    f"pitstop: --staff must be a manager's staff id (with a manager token); got {args.staff!r}",
                    file=sys.stderr,
                )
                return 2
            if person.centre_id not in directory.managed_centres(args.subject):
                print(f"pitstop: {args.staff} works at {person.centre_id}, outside {args.subject}", file=sys.stderr)
                return 2
        try:
            issued = issue_token(
                settings.token_secret, args.kind, args.subject, ttl_s=int(args.ttl_days * 86400), staff=args.staff
            )
        except TokenError as exc:
            print(f"pitstop: {exc}", file=sys.stderr)
            return 2
        if args.json:
            claims = verify_token(settings.token_secret, issued)
            print(
                json.dumps(
                    {
                        "token": issued,
                        "id": claims.token_id,
                        "kind": claims.kind,
                        "subject": claims.subject,
                        "expires_at": claims.expires_at,
                    }
                )
            )
        else:
            print(issued)
        return 0
    if args.command == "simulate":
        from config.directory import load_directory
        from streams.simulator import run_simulator
        from streams.topics import Topics

        directory = load_directory(settings.directory_path)
        try:
            sent = asyncio.run(
                run_simulator(
                    settings.bootstrap_servers,
                    Topics.from_settings(settings),
                    directory,
                    rate=args.rate,
                    seed=args.seed,
                    limit=args.limit,
                )
            )
        except KeyboardInterrupt:
            return 0
        print(f"sent {sent} events")
        return 0
    if args.command == "rules":
        return _rules_diff(settings, args)
    if args.command == "rebuild":
        return asyncio.run(_rebuild(settings, clear=not args.keep))
    if args.command in ("contest", "tiers"):
        return _standings(settings, args)
    if args.command == "badges":
        return _badges(settings, args)
    if args.command == "replay":
        return _replay(settings, args)
    if args.command == "league":
        return asyncio.run(_league(settings, args))
    if args.command == "kpi":
        return asyncio.run(_kpi(settings, args))
    raise AssertionError(args.command)  # pragma: no cover


def _rules_diff(settings: Settings, args: argparse.Namespace) -> int:
    from agents.preview import decode_sources, diff_packs, read_sources, render
    from agents.rules import load_rule_pack
    from config.directory import load_directory
    from streams.topics import Topics

    new_pack = load_rule_pack(args.new_pack)  # a pack that does not validate stops here, with file:line
    old_pack = load_rule_pack(settings.rules_path)
    directory = load_directory(settings.directory_path)
    if args.centre is not None and args.centre not in directory.centres:
        print(f"pitstop: no centre {args.centre!r} in {settings.directory_path}", file=sys.stderr)
        return 2
    topics = Topics.from_settings(settings)
    decoded = decode_sources(asyncio.run(read_sources(settings.bootstrap_servers, topics)), topics)
    diff = diff_packs(decoded, old_pack, new_pack, directory, season=args.season, centre=args.centre)
    print(json.dumps(diff.to_json()) if args.json else render(diff, args.limit))
    return 0


async def _revoke(settings: Settings, token_or_id: str) -> int:
    """``pitstop token revoke T``: T is a token (its signature is checked) or a token id (``--json`` shows it)."""
    import time

    from dashboards.tokens import MAX_TTL_S, TokenError, verify_token
    from state.connection import connect
    from state.revocations import revoke

    if token_or_id.count(".") == 2:
        try:
            claims = verify_token(settings.token_secret, token_or_id)
        except TokenError as exc:
            print(f"pitstop: nothing to revoke: {exc}", file=sys.stderr)
            return 2
        token_id, expires_at = claims.token_id, claims.expires_at
    elif re.fullmatch(r"[0-9a-f]{32}", token_or_id):
        token_id, expires_at = token_or_id, int(time.time()) + MAX_TTL_S  # its expiry is unknown: the longest
    else:
        print("pitstop: give a token, or a token id (32 hex digits, from pitstop token --json)", file=sys.stderr)
        return 2
    redis = connect(settings.redis_url)
    try:
        done = await revoke(redis, settings.redis_namespace, token_id, expires_at)
    finally:
        await redis.aclose()
    print(json.dumps({"revoked": token_id, "until": expires_at} if done else {"expired": token_id}))
    return 0


async def _rebuild(settings: Settings, *, clear: bool) -> int:
    from config.directory import load_directory
    from config.sla import load_sla_policy
    from state.connection import connect
    from state.rebuild import rebuild_from_ledger, rebuild_sla
    from streams.topics import active_topics

    policy, directory = load_sla_policy(settings.sla_path), load_directory(settings.directory_path)
    topics = await active_topics(settings)
    redis = connect(settings.redis_url)
    try:
        report = await rebuild_from_ledger(
            settings.bootstrap_servers,
            topics.ledger,
            redis,
            settings.redis_namespace,
            clear=clear,
            subject_ttl_s=settings.subject_ttl_s,
        )
        sla = await rebuild_sla(
            settings.bootstrap_servers,
            topics,
            redis,
            settings.redis_namespace,
            policy,
            directory,
            clear=clear,
            ttl_s=settings.subject_ttl_s,
            stopped_ttl_s=settings.dedup_ttl_s,
        )
    finally:
        await redis.aclose()
    print(json.dumps({**report.__dict__, "sla": sla.__dict__}))
    return 0 if report.unreadable == 0 else 1


def _schemas(*, write: bool) -> int:
    from streams.contract import all_schemas
    from streams.docs import render

    root = Path(__file__).resolve().parent.parent
    folder = root / "streams" / "schemas"
    stale = []
    docs = root / "docs" / "events.md"
    if write:
        docs.parent.mkdir(exist_ok=True)
        docs.write_text(render(), encoding="utf-8")
    elif not docs.exists() or docs.read_text(encoding="utf-8") != render():
        stale.append(str(docs.relative_to(root)))
    for name, schema in all_schemas().items():
        path = folder / f"{name}.json"
        text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        if write:
            folder.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path.name)
    if stale:
        print(f"stale schema files (run `pitstop schemas --write`): {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{len(all_schemas())} schema files {'written' if write else 'up to date'} in {folder}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from agents.gcpolicy import BATCH_THRESHOLD, tune_gc
    from agents.rules import load_rule_pack
    from config.directory import load_directory
    from pitstop.replay import ReplayError, drop_shadow, replay

    if args.drop:
        print(f"deleted {asyncio.run(drop_shadow(settings, args.name))} keys of the shadow {args.name}")
        return 0
    pack = load_rule_pack(args.pack or settings.rules_path)  # a pack that does not validate stops here
    directory = load_directory(settings.directory_path)
    try:
        tune_gc(BATCH_THRESHOLD)  # the replay collects between its batches (agents.gcpolicy)
        report = asyncio.run(replay(settings, pack, directory, args.name, activate=args.activate))
    except ReplayError as exc:
        print(f"pitstop: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    print(
        f"replayed {report.records} records with {report.pack}: {report.entries} ledger entries in "
        f"{report.seconds} s, digest {report.digest[:16]}; "
        + ("the same records as the live ledger" if report.matches_live else "differs from the live ledger")
    )
    print(f"{'staff':<8} {'season':<8} {'live':>7} {'shadow':>7} {'change':>7}")
    for change in report.changes[: args.limit]:
        delta = change.shadow - change.live
        print(f"{change.staff_id:<8} {change.season:<8} {change.live:>7} {change.shadow:>7} {delta:>+7}")
    if report.activated:
        print(f"activated: the ledger is now {report.activated}; start the worker with this pack")
    else:
        print(f"shadow boards in Redis namespace {report.namespace} (PITSTOP_REDIS_NAMESPACE for pitstop league)")
    return 0


def _ledger_entries(settings: Settings) -> list[Award]:
    """Every readable entry of the ledger generation in use."""
    from state.standings import read_entries
    from streams.topics import active_topics

    async def read() -> list[Award]:
        return await read_entries(settings.bootstrap_servers, (await active_topics(settings)).ledger)

    return asyncio.run(read())


def _standings(settings: Settings, args: argparse.Namespace) -> int:
    from agents.rules import load_rule_pack
    from config.programme import load_programme
    from state.standings import contest_standings, tiers_after

    pack = load_rule_pack(settings.rules_path)
    programme = load_programme(settings.programme_path, frozenset(r.id for r in pack.rules))
    if args.command == "contest" and args.contest_id is not None and programme.contest(args.contest_id) is None:
        known = ", ".join(c.id for c in programme.contests) or "none"
        print(f"pitstop: no contest {args.contest_id!r} in {settings.programme_path} (known: {known})", file=sys.stderr)
        return 2
    entries = _ledger_entries(settings)
    if args.command == "tiers":
        moves = tiers_after(programme, entries, args.season)
        if args.json:
            print(json.dumps({"season": args.season, "people": [m.to_json() for m in moves]}))
        else:
            print(f"{'staff':<8} {'points':>7}  {'before':<18} {'after':<18} move")
            for m in moves:
                print(f"{m.staff_id:<8} {m.points:>7}  {m.before or '-':<18} {m.after or '-':<18} {m.move}")
        return 0
    chosen = [c for c in programme.contests if args.contest_id in (None, c.id)]
    report: dict[str, dict[str, Any]] = {}
    for contest in chosen:
        standings = contest_standings(contest, entries)
        shown = {k: v if args.all else v[: contest.winners] for k, v in standings.items()}
        report[contest.id] = {
            "name": contest.name,
            "metric": contest.metric,
            "target": contest.target,
            "winners": contest.winners,
            "standings": {scope: [s.to_json() for s in rows] for scope, rows in shown.items()},
        }
    if args.json:
        print(json.dumps(report))
        return 0
    for contest_id, body in report.items():
        print(
            f"{body['name']} ({contest_id}): {body['metric']}"
            + (f", first to {body['target']}" if body["target"] else "")
        )
        for scope, rows in body["standings"].items():
            for row in rows:
                rank, who, score, at = row["rank"], row["staff_id"], row["score"], row["reached_at"]
                print(f"  {scope:<8} #{rank:<3} {who:<8} {score:>12}  reached {at}")
    return 0


def _badges(settings: Settings, args: argparse.Namespace) -> int:
    from config.directory import load_directory
    from state.badges import badges_from_ledger, summarize_badges

    if args.person and load_directory(settings.directory_path).person(args.person) is None:
        print(f"pitstop: no staff {args.person!r} in {settings.directory_path}", file=sys.stderr)
        return 2
    entries = _ledger_entries(settings)
    held = badges_from_ledger(e for e in entries if args.person in (None, e.staff_id))
    report = {staff_id: [b.to_json() for b in summarize_badges(found)] for staff_id, found in held.items()}
    if args.json:
        print(json.dumps({"people": report}))
        return 0
    print(f"{'staff':<8} {'badge':<16} {'name':<20} {'count':>5} {'streak':>6} {'best':>5}  last earned by")
    for staff_id, rows in report.items():
        for row in rows:
            streak = "-" if row["streak"] is None else row["streak"]
            best = "-" if row["best_streak"] is None else row["best_streak"]
            last = row["earned"][-1]["event_id"]
            print(f"{staff_id:<8} {row['badge']:<16} {row['name']:<20} {row['count']:>5} {streak:>6} {best:>5}  {last}")
    if not report:
        print("nobody holds a badge" + (f" ({args.person})" if args.person else ""))
    return 0


async def _league(settings: Settings, args: argparse.Namespace) -> int:
    from state.connection import connect
    from state.league import League, board_key

    redis = connect(settings.redis_url)
    try:
        board = board_key(args.season, args.scope, args.scope_id, args.role)
        version, rows = await League(redis, settings.redis_namespace).board(board, limit=args.limit)
    finally:
        await redis.aclose()
    if args.json:
        print(json.dumps({"board": board, "version": version, "rows": [{"staff_id": s, "points": p} for s, p in rows]}))
    else:
        print(f"{board} (version {version}): {len(rows)} people")
        for rank, (staff_id, points) in enumerate(rows, 1):
            print(f"  #{rank:<4} {staff_id:<8} {points:>8}")
    return 0


async def _kpi(settings: Settings, args: argparse.Namespace) -> int:
    from agents.kpi import Window
    from config.directory import load_directory
    from state.connection import connect
    from state.kpi import KpiStore

    directory = load_directory(settings.directory_path)
    person = directory.person(args.person) if args.person else None
    centre_id = person.centre_id if person else args.centre
    centre = directory.centre(centre_id) if centre_id else None
    if centre is None or (args.person and person is None):
        what = f"staff {args.person!r}" if args.person else f"centre {args.centre!r}"
        print(f"pitstop: no {what} in {settings.directory_path}", file=sys.stderr)
        return 2
    day = args.on or datetime.now(centre.timezone).date()
    window = Window.of(args.window, day)
    redis = connect(settings.redis_url)
    try:
        store = KpiStore(redis, settings.redis_namespace, settings.kpi_ttl_s)
        kpis = await store.window_kpis("p" if person else "c", args.person or centre.id, window)
        closed = (await store.closed([centre.id])).get(centre.id)
    finally:
        await redis.aclose()
    final = closed is not None and window.end <= closed
    report = {
        "scope": "person" if person else "centre",
        "id": args.person or centre.id,
        "centre_id": centre.id,
        "window": window.id,
        "from": window.start.isoformat(),
        "to": window.end.isoformat(),
        "closed": final,  # False: events may still arrive (within the allowed lateness) and change it
        "closed_through": closed.isoformat() if closed else None,
        "kpis": kpis,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    state = "closed" if final else "open: late events may still change it"
    print(f"{report['scope']} {report['id']} ({centre.id}), {window.id} ({window.start} to {window.end}), {state}")
    for name, value in kpis.items():
        print(f"  {name:<24} {'-' if value is None else value}")
    return 0
