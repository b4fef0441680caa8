"""``telemetry-export``: a period of the marts, or of raw product events, to files for notebooks."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import textwrap
from pathlib import Path

from collectors.config import settings_from_command_line

PROG = "telemetry-export"
FORMATS = ("parquet", "jsonl", "csv")

EPILOG = textwrap.dedent(
    """\
    The period is [--from, --to): --to is exclusive, like the DAGs' windows; --last-days N is the N whole UTC days
    before today. A mart is cut by the period column its dbt config names (day, week_start, hour_start,
    minute_start; session_start for fct_sessions); rows whose period starts in the period are written. Marts
    rebuilt whole (fct_retention_weekly, fct_retention_weekly_average) have no period column and are written whole.
    Raw product events are cut by their timestamp.

    Each table becomes OUT/<table>.<format> (raw events: raw.product_events.<format>), replaced whole, and
    OUT/inventory.json lists rows per table and day, the files (rows, bytes, SHA-256) and the records refused in
    the period, per day, source and reason (raw.rejects and the counts the cleanup keeps in quality.rejects_daily).

    Types: Parquet keeps them (timestamptz as timestamp[us, UTC], dates as date32, numeric with a declared
    precision as decimal128, unconstrained numeric as float64, arrays as lists, jsonb as JSON text); JSON lines
    has exact numbers, RFC 3339 timestamps and arrays as arrays; CSV is PostgreSQL's own text of every value
    (arrays as {a,b}).

    examples:
      telemetry-export --mart fct_event_counts_daily --from 2026-01-01 --to 2026-01-08 --format parquet --out exports
      telemetry-export --all-marts --last-days 7 --out exports
      telemetry-export --raw-events --from 2026-01-05 --to 2026-01-06 --format jsonl --out exports
      telemetry-export --list
    """
)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-01") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a period of the marts, or of raw product events, to Parquet, JSON lines or CSV, "
        "with an inventory file. The database is TELEMETRY_DATABASE_URL unless --database-url is given.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to export (any combination)")
    what.add_argument("--mart", action="append", default=[], metavar="NAME", help="a mart (repeatable)")
    what.add_argument("--all-marts", action="store_true", help="every mart")
    what.add_argument("--raw-events", action="store_true", help="raw product events (raw.product_events)")
    what.add_argument("--list", action="store_true", help="list the marts and their period columns, and exit")
    period = parser.add_argument_group("period (UTC days)")
    period.add_argument("--from", dest="start", type=_date, metavar="DATE", help="first day, e.g. 2026-01-01")
    period.add_argument("--to", dest="end", type=_date, metavar="DATE", help="day after the last (exclusive)")
    period.add_argument("--last-days", type=_positive, metavar="N", help="the N whole days before today")
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=FORMATS, default="parquet", help="file format [parquet]")
    output.add_argument("--out", type=Path, metavar="DIR", help="export directory (created if missing)")
    output.add_argument("--batch-size", type=_positive, default=50_000, help="rows per fetch and row group [50000]")
    output.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars on stderr [when stderr is a terminal]")  # fmt: skip
    parser.add_argument("--database-url", help="PostgreSQL URL [TELEMETRY_DATABASE_URL]")
    parser.add_argument("--database-url-file", type=Path, help="read the URL from this file's first line")
    return parser


def main(argv: list[str] | None = None) -> int:
    from collectors.config import default_dbt_project
    from collectors.export.tables import UnknownMart, mart_tables, raw_events_table

    parser = build_parser()
    args = parser.parse_args(argv)
    marts = mart_tables(default_dbt_project())
    if args.list:
        for name, table in marts.items():
            print(f"{name}\t{table.period_column or '(whole table)'}")
        return 0
    if not (args.mart or args.all_marts or args.raw_events):
        parser.error("nothing to export: give --mart NAME, --all-marts or --raw-events (--list shows the marts)")
    unknown = [n for n in args.mart if n not in marts]
    if unknown:
        parser.error(str(UnknownMart(unknown[0], list(marts))))
    if args.last_days is not None and (args.start or args.end):
        parser.error("give either --last-days or --from/--to, not both")
    if args.last_days is not None:
        args.end = dt.datetime.now(dt.UTC).date()
        args.start = args.end - dt.timedelta(days=args.last_days)
    if args.start is None or args.end is None:
        parser.error("the period is missing: give --from and --to, or --last-days")
    if args.out is None:
        parser.error("--out DIR is required")
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            parser.error("--format parquet needs pyarrow: pip install 'telemetry-warehouse[export]'")

    from collectors.export.run import ExportError, Period, export

    try:
        period = Period(args.start, args.end)
    except ValueError as error:
        parser.error(str(error))
    tables = [marts[n] for n in (list(marts) if args.all_marts else dict.fromkeys(args.mart))]
    if args.raw_events:
        tables.append(raw_events_table())
    settings = settings_from_command_line(args, PROG)
    if settings is None:
        return 2
    progress = sys.stderr.isatty() if args.progress is None else args.progress

    def report(done: object) -> None:
        file = done.file  # type: ignore[attr-defined]
        print(f"{file.path}\t{file.rows} rows\t{file.bytes} bytes")

    try:
        result = export(
            settings.database_url,
            tables,
            period,
            args.out,
            args.format,
            batch_size=args.batch_size,
            progress=progress,
            on_table=report,
        )
    except ExportError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    rejects = result.rejects.get("total")
    print(f"{args.out / 'inventory.json'}\t{len(result.tables)} files, rejects in the period: {rejects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
