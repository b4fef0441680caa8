"""``telemetry-ops``: which windows to build again and why (``plan``), building them (``reconcile``), and
rebuilding any range of days with every grain that reads them (``rebuild``)."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import sys
import textwrap
import uuid
from pathlib import Path

from collectors.config import Settings, settings_from_command_line
from collectors.orchestration.cadences import MODEL_FAMILIES, parse_instant
from collectors.orchestration.rebuild import OPS_DAG_ID, Step
from collectors.orchestration.reconcile import DEFAULT_LOOKBACK, Plan, Planned

PROG = OPS_DAG_ID

EPILOG = textwrap.dedent(
    """\
    plan and reconcile compare the ingest ledger (quality.ingest_batches: rows per raw table and hour, and when
    they arrived) with the build ledger (quality.dbt_builds). A window within the look-back is planned when a part
    of its cadence was never built for it, when rows of its hours arrived after its last build started, or when a
    window it reads (a day of a week or a month) was rebuilt after it or is planned before it. Windows are built
    hour, day, week, month, each cadence's consecutive windows as one range run, with the dbt build its DAG runs.
    A window is due once TELEMETRY_RELIABILITY_LAG_WINDOWS windows have passed after it (the lag its DAG waits
    before reliability); until then it is pending, listed and not built.

    rebuild takes UTC days [--from, --to): every hour of them, the days, and every week and month that holds one.

    examples:
      telemetry-ops plan
      telemetry-ops plan --lookback-days 30 --json
      telemetry-ops reconcile
      telemetry-ops rebuild --from 2026-01-01 --to 2026-07-01 --dry-run
      telemetry-ops rebuild --family day_log --from 2026-01-01 --to 2026-07-01
    """
)


def _date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-01") from None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _instant(text: str) -> dt.datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant like 2026-01-01T12:00:00Z") from None


def _days(text: str) -> dt.timedelta:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of days")
    return dt.timedelta(days=days)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find the windows whose raw rows arrived after their build, or that were never built, and "
        "build them again in dependency order; or rebuild a range of days on demand. The database is "
        "TELEMETRY_DATABASE_URL unless --database-url is given.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", help="PostgreSQL URL [TELEMETRY_DATABASE_URL]")
    parser.add_argument("--database-url-file", type=Path, help="read the URL from this file's first line")
    parser.add_argument("--now", type=_instant, help="plan as at this instant (what-if; default: now)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("plan", "print the windows reconcile would build and why; builds nothing"),
        ("reconcile", "build the due windows of the plan, in order"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--lookback-days",
            type=_days,
            default=DEFAULT_LOOKBACK,
            metavar="DAYS",
            help=f"look at windows that overlap the last DAYS days [{DEFAULT_LOOKBACK.days}]",
        )
        command.add_argument("--json", action="store_true", help="print the plan as JSON")
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild UTC days [--from, --to) and every hour, week and month of them",
        description="Rebuild every window of every cadence that overlaps [--from, --to): the hours and days, then "
        "the weeks and months that read them, in that order.",
    )
    rebuild.add_argument("--from", dest="start", type=_date, required=True, metavar="DATE", help="first day")
    rebuild.add_argument("--to", dest="end", type=_date, required=True, metavar="DATE", help="day after the last")
    rebuild.add_argument(
        "--family",
        choices=sorted(MODEL_FAMILIES),
        help="only this model family (recorded with it in quality.dbt_builds, where it covers no window)",
    )
    rebuild.add_argument("--dry-run", action="store_true", help="print the builds; build nothing")
    rebuild.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def _line(item: Planned, *, pending: bool) -> str:
    due = f"  (due {item.due_at.isoformat()})" if pending else ""
    return f"  {item.cadence.name:<8} {item.window}  {item.reason}{due}"


def print_plan(plan: Plan, *, as_json: bool, lag_windows: float) -> None:
    if as_json:
        document = {
            "now": plan.now.isoformat(),
            "since": plan.since.isoformat(),
            "reliability_lag_windows": lag_windows,
            "due": [p.as_dict() for p in plan.due],
            "pending": [p.as_dict() for p in plan.pending],
        }
        print(json.dumps(document, indent=2))
        return
    print(f"as at {plan.now.isoformat()}, windows from {plan.since.isoformat()}, reliability lag {lag_windows:g}")
    print(f"due, in the order they are built ({len(plan.due)}):")
    for item in plan.due:
        print(_line(item, pending=False))
    print(f"pending, until the lag after them has passed ({len(plan.pending)}):")
    for item in plan.pending:
        print(_line(item, pending=True))


def _run(plan: Plan, settings: Settings, run_id: str, family: str | None) -> int:
    from collectors.orchestration.dbt_runner import DbtBuildError
    from collectors.orchestration.rebuild import build_step, run, steps

    def started(step: Step) -> None:  # progress on stderr: stdout holds the plan, JSON with --json
        print(f"building {step}", file=sys.stderr, flush=True)

    try:
        build = functools.partial(
            build_step, database_url=settings.database_url, settings=settings, dag_id=PROG, run_id=run_id, family=family
        )
        done = run(steps(plan.due), build, on_step=started)
    except DbtBuildError as error:
        print(f"{PROG}: {error}\nnothing after it was built; fix it, then run the same command again", file=sys.stderr)
        return 1
    print(f"done: {len(done)} builds for {len(plan.due)} windows; {len(plan.pending)} pending", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from_command_line(args, PROG)
    if settings is None:
        return 2
    now = args.now or dt.datetime.now(dt.UTC)
    lag = settings.reliability_lag_windows
    run_id = f"{args.command}__{now.isoformat(timespec='seconds')}__{uuid.uuid4().hex[:8]}"
    if args.command == "rebuild":
        from collectors.orchestration.reconcile import requested

        if args.start >= args.end:
            parser.error(f"--to ({args.end.date()}) must be after --from ({args.start.date()}): days [--from, --to)")
        wanted = requested(args.start, args.end, now=now, lag_windows=lag)
        print_plan(wanted, as_json=args.json, lag_windows=lag)
        return 0 if args.dry_run else _run(wanted, settings, run_id, args.family)
    import psycopg

    from collectors.orchestration.reconcile_ledgers import current_plan

    try:
        planned = current_plan(settings.database_url, settings, now=now, lookback=args.lookback_days)
    except psycopg.OperationalError as error:
        print(f"{PROG}: cannot read the ledgers ({error}); is TELEMETRY_DATABASE_URL right?", file=sys.stderr)
        return 2
    except psycopg.errors.UndefinedColumn as error:
        print(
            f"{PROG}: {error.diag.message_primary}; migrate the warehouse first: telemetry-db migrate", file=sys.stderr
        )
        return 2
    print_plan(planned, as_json=args.json, lag_windows=lag)
    return 0 if args.command == "plan" else _run(planned, settings, run_id, None)


if __name__ == "__main__":
    sys.exit(main())
