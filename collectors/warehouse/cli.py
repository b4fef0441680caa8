"""``telemetry-db``: migrate the warehouse and manage the daily partitions of raw.*."""

from __future__ import annotations

import argparse
import sys

from collectors.config import Settings
from collectors.warehouse.db import RAW_TABLES, connect
from collectors.warehouse.maintenance import prepare_database
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import (
    ReattachError,
    detached_partitions,
    ensure_partitions,
    partitions_older_than,
    reattach,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-db",
        description="Migrate the telemetry warehouse and manage raw partitions. "
        "The database is TELEMETRY_DATABASE_URL unless --database-url is given.",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL [TELEMETRY_DATABASE_URL]")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the raw and quality schemas to the newest migration")
    commands.add_parser("prepare", help="migrate, then create every partition the retention needs")
    partitions = commands.add_parser("partitions", help="create or list daily partitions")
    actions = partitions.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create partitions from the retention back to --ahead days ahead")
    create.add_argument("--ahead", type=int, help="days ahead [TELEMETRY_PARTITIONS_AHEAD_DAYS, 3]")
    create.add_argument("--back", type=int, help="days back (default: each table's retention)")
    expired = actions.add_parser("expired", help="list partitions older than the retention (drops nothing)")
    expired.add_argument("--table", choices=RAW_TABLES, help="one table (default: all)")
    expired.add_argument("--days", type=int, help="age in days (default: the table's retention)")
    actions.add_parser(
        "detached",
        help="list the partitions the weekly cleanup detached and when each will be dropped",
    )
    reattach = actions.add_parser(
        "reattach",
        help="put a detached partition back into its raw table, whole (before its drop_after)",
        description="Put a partition the weekly cleanup detached back into its raw table with every row it held. "
        "Rebuild the windows it feeds afterwards if its rows changed.",
    )
    reattach.add_argument("name", help="the partition, e.g. message_samples_p20260105 (see: partitions detached)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    if args.command == "migrate":
        upgrade(settings.database_url)
        print("schema is at the newest migration")
    elif args.command == "prepare":
        created = prepare_database(settings)
        print("partitions created: " + ", ".join(f"{t}={n}" for t, n in created.items()))
    elif args.action == "create":
        if args.ahead is not None:
            settings.partitions_ahead_days = args.ahead
        with connect(settings.database_url) as conn:
            created = ensure_partitions(
                conn, settings.retention, ahead_days=settings.partitions_ahead_days, back_days=args.back
            )
        print("partitions created: " + ", ".join(f"{t}={n}" for t, n in created.items()))
    elif args.action == "detached":
        with connect(settings.database_url) as conn:
            for entry in detached_partitions(conn):
                when = entry.drop_after.isoformat() if entry.drop_after else "never (detached by hand)"
                print(f"raw_detached.{entry.partition.name}\t{entry.partition.day}\tdropped after {when}")
    elif args.action == "reattach":
        with connect(settings.database_url) as conn:
            try:
                partition = reattach(conn, args.name)
            except ReattachError as why:
                print(f"error: {why}", file=sys.stderr)
                return 2
        print(f"raw.{partition.name} is attached to raw.{partition.table} again ({partition.day})")
    else:
        with connect(settings.database_url) as conn:
            for table in [args.table] if args.table else RAW_TABLES:
                days = args.days if args.days is not None else settings.retention.for_table(table)
                for partition in partitions_older_than(conn, table, days):
                    print(f"raw.{partition.name}\t{partition.day}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
