"""The ``notifier`` command."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError

from notifier import costs, logs
from notifier.config import Settings, check_settings, load_settings, resolve_config_path
from notifier.errors import ConfigError, NotifierError
from notifier.guard import template_drift
from notifier.progress import terminal_progress
from notifier.store import ledger, registry, reports
from notifier.store.engine import make_engine
from notifier.store.migrate import (
    DatabaseNotAtHeadError,
    current_revisions,
    head_revisions,
    require_head,
    upgrade,
)

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3

log = structlog.get_logger("notifier.cli")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    logs.configure()
    try:
        return int(args.handler(args, env))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseNotAtHeadError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    except SQLAlchemyError as exc:
        print(
            f"notifier: the database could not be used: {exc.__class__.__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    except (
        NotifierError
    ) as exc:  # start-up checks, WhatsApp or Wix unreachable: say it, no traceback
        print(f"notifier: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifier", description=__doc__)
    parser.add_argument(
        "--config", help="config file (default: $NOTIFIER_CONFIG or ./notifier.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon: pollers, dispatcher and webhook server")
    run.add_argument("--role", choices=["all", "poller", "web"], default="all")
    run.set_defaults(handler=_run)

    poll = sub.add_parser("poll", help="one sync + dispatch for every store, then exit")
    poll.add_argument("--once", action="store_true", required=True)
    poll.set_defaults(handler=_poll_once)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(handler=_db)

    config = sub.add_parser("config", help="configuration")
    config.add_argument("action", choices=["check"])
    config.set_defaults(handler=_config_check)

    templates = sub.add_parser("templates", help="message templates")
    templates.add_argument("action", choices=["check"])
    templates.set_defaults(handler=_templates_check)

    report = sub.add_parser("costs", help="the message-cost log")
    report.add_argument("--since", type=_day, help="first day, YYYY-MM-DD (inclusive)")
    report.add_argument("--until", type=_day, help="last day, YYYY-MM-DD (inclusive)")
    report.add_argument("--store")
    report.add_argument("--group-by", choices=costs.GROUP_BYS, default="day")
    report.add_argument("--format", choices=["table", "csv", "json"])
    report.add_argument(
        "--messages", action="store_true", help="one CSV line per message instead (CSV only)"
    )
    report.add_argument("--database-url", help="read this database instead of the configured one")
    report.set_defaults(handler=_costs)

    demo = sub.add_parser("demo", help="the whole job against sandbox Wix and WhatsApp servers")
    demo.add_argument("--duration", type=float, help="exit 0 after this many seconds")
    demo.add_argument("--database-url", help="database to use (default: a new SQLite file)")
    demo.set_defaults(handler=_demo)
    return parser


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return load_settings(resolve_config_path(args.config, env, Path.cwd()), env)


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from notifier.daemon import run_daemon  # noqa: PLC0415 - keeps `notifier costs` light

    # On a terminal, a store's first (baseline) sync shows a live count of orders and pages.
    progress = terminal_progress(sys.stderr, baseline_only=True)
    return run_daemon(_settings(args, env), role=args.role, progress=progress)


def _poll_once(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from notifier.daemon import poll_once  # noqa: PLC0415

    return poll_once(_settings(args, env), progress=terminal_progress(sys.stderr))


def _db(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = env.get("NOTIFIER_DATABASE_URL") or _settings(args, env).database_url
    engine = make_engine(url)
    try:
        if args.action == "upgrade":
            upgrade(engine)
        current, heads = current_revisions(engine), head_revisions()
    finally:
        engine.dispose()
    print(
        f"database at {', '.join(sorted(current)) or 'empty'}; head is {', '.join(sorted(heads))}"
    )
    return 0 if current == heads else EXIT_DATABASE


def _config_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    path = resolve_config_path(args.config, env, Path.cwd())
    problems = check_settings(path, env)
    if not problems:
        print(f"{path}: OK")
        return 0
    print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    for problem in problems:
        print(f"- {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _templates_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from notifier.bootstrap import build  # noqa: PLC0415

    runtime = build(_settings(args, env))
    try:
        require_head(runtime.engine)
        missing = runtime.refresh_templates()
        with runtime.engine.connect() as conn:
            stored = registry.load_templates(conn)
        configured = sorted(
            {
                (rule.template, language)
                for store in runtime.stores
                for rule in store.settings.rules
                for language in rule.languages
            }
        )
    finally:
        runtime.close()
    drifted = [d for key in configured if key in stored and (d := template_drift(stored[key]))]
    for problem in missing:
        print(f"- missing: {problem}", file=sys.stderr)
    for problem in drifted:
        print(f"- held: {problem}", file=sys.stderr)
    if not missing and not drifted:
        print("templates OK")
        return 0
    print(
        f"{len(missing)} configured template(s) missing, {len(drifted)} held (not APPROVED UTILITY)"
    )
    return 1


def _costs(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    problem = _costs_arguments_problem(args)
    if problem:
        print(f"notifier costs: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    url = args.database_url or env.get("NOTIFIER_DATABASE_URL") or _settings(args, env).database_url
    engine = make_engine(url)
    try:
        require_head(engine)
        with engine.connect() as conn:
            rows = ledger.rows(conn, since=args.since, until=args.until, store=args.store)
            failures = reports.failure_reasons(
                conn, since=args.since, until=args.until, store=args.store
            )
    finally:
        engine.dispose()
    if args.messages:
        print(costs.rows_to_csv(rows), end="")
        return 0
    report = dataclasses.replace(
        costs.build_report(rows, group_by=args.group_by), top_failures=tuple(failures)
    )
    chosen = args.format or "table"
    render = {"table": costs.to_table, "csv": costs.to_csv, "json": costs.to_json}[chosen]
    print(render(report), end="" if chosen == "csv" else "\n")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _costs_arguments_problem(args: argparse.Namespace) -> str | None:
    if args.since and args.until and args.since > args.until:
        return f"--since {args.since} is after --until {args.until}"
    if args.messages and args.format not in (None, "csv"):
        return f"--messages writes CSV; drop --format {args.format} or use --format csv"
    return None


def _demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from notifier.demo import run_demo  # noqa: PLC0415

    return run_demo(duration=args.duration, database_url=args.database_url)


if __name__ == "__main__":
    raise SystemExit(main())
