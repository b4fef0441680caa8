"""``telemetry-load-events``: load telemetry_event_v1 JSON Lines files into the warehouse."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import grpc
from pydantic import ValidationError

from collectors.config import Settings, database_url_override, describe, sender_token
from collectors.senders.client import IngestClient
from collectors.senders.loader import sinks
from collectors.senders.loader.loader import DEFAULT_BATCH_LINES, PARALLEL_MIN_BYTES, FileReport, load_file, worker_pool

PROG = "telemetry-load-events"
SHOWN_REJECTS = 10


def _database_errors() -> tuple[type[Exception], ...]:
    """psycopg's errors when the warehouse side is installed (a sender-only install loads through the receiver)."""
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.Error,)


DATABASE_ERRORS = _database_errors()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Load telemetry_event_v1 JSON Lines files (one object a line: schema_version, channel, event, "
            "timestamp ISO 8601, payload object, and event_id/user_id/session_id when present; .gz too). "
            "Every line is validated with the receiver's rules; timestamps are normalised to UTC; a line "
            "without event_id gets a deterministic one, so loading a file again adds nothing. Invalid lines "
            "go to raw.rejects with file name, line number and reason."
        ),
        epilog=(
            "Destination: --target sends through the receiver (token from TELEMETRY_TOKEN or "
            "TELEMETRY_INGEST_TOKENS); otherwise rows are COPYed straight into --database-url, one "
            "transaction per file. Exit status: 0 loaded (rejects are recorded, not fatal), 1 --strict "
            "stopped or the destination failed, 2 bad usage. Loading a file again is always safe: lines "
            "already stored count as duplicates. Sampling: with TELEMETRY_SAMPLING_RATES (and "
            "TELEMETRY_SAMPLING_SALT) lines of users outside the sample are skipped and counted as sampled "
            "out, the same users the senders keep; kept lines get their sample_rate unless they carry one."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, help="JSON Lines files (.jsonl or .jsonl.gz)")
    parser.add_argument("--target", help="receiver host:port; send through the receiver instead of COPY")
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--database-url",
        help="warehouse URL [TELEMETRY_DATABASE_URL]; with --target it is used only to store refused lines. "
        "A password here is visible in `ps`: prefer the variable or --database-url-file",
    )
    database.add_argument(
        "--database-url-file", type=Path, help="read the warehouse URL from this file [TELEMETRY_DATABASE_URL_FILE]"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first invalid line; land nothing of it")
    parser.add_argument("--dry-run", action="store_true", help="validate only; land nothing")
    parser.add_argument("--default-user-id", default="", help="user id for lines that carry none [refuse them]")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes parsing and validating files of 8 MiB or more; 0 = in this process [%(default)s]",
    )
    parser.add_argument("--batch-lines", type=int, default=DEFAULT_BATCH_LINES, help="lines per batch [%(default)s]")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    if args.batch_lines < 1:
        parser.error("--batch-lines must be at least 1")
    for path in args.files:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    return args


def print_report(report: FileReport, quiet: bool) -> None:
    state = "STOPPED (--strict), nothing landed" if report.stopped else "done"
    print(
        f"{report.path}: {state}; {report.lines} lines, {report.accepted} landed, "
        f"{report.duplicates} duplicates, {report.rejected} rejected, {report.blank} blank"
        + (f", {report.sampled_out} sampled out" if report.sampled_out else ""),
        file=sys.stderr,
    )
    if report.stopped:
        print(f"  first invalid line {report.stopped}", file=sys.stderr)
    if quiet or not report.rejects:
        return
    for reason, count in report.reasons().most_common():
        print(f"  {count:>8} x {reason}", file=sys.stderr)
    for number, reason in report.rejects[:SHOWN_REJECTS]:
        print(f"  line {number}: {reason}", file=sys.stderr)
    if report.rejected > SHOWN_REJECTS:
        print(f"  ... and {report.rejected - SHOWN_REJECTS} more (see raw.rejects)", file=sys.stderr)


def make_sink(args: argparse.Namespace, settings: Settings, database_url: str | None) -> sinks.Sink:
    user = {"default_user_id": args.default_user_id}
    if args.dry_run:
        return sinks.ValidationSink(settings, **user)
    if args.target:
        token = sender_token()
        if not token:
            raise SystemExit(f"{PROG}: set TELEMETRY_TOKEN (or TELEMETRY_INGEST_TOKENS) to use --target")
        has_own_url = (
            database_url or os.environ.get("TELEMETRY_DATABASE_URL") or os.environ.get("TELEMETRY_DATABASE_URL_FILE")
        )
        rejects_url = database_url or (settings.database_url if has_own_url else None)
        return sinks.ReceiverSink(IngestClient(args.target, token), rejects_url, settings, **user)
    from collectors.senders.loader.database import DatabaseSink

    return DatabaseSink(database_url or settings.database_url, settings, **user)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings()
        database_url = database_url_override(args, PROG)
    except ValidationError as error:
        print(f"{PROG}: invalid configuration:\n{describe(error)}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress

    try:
        sink = make_sink(args, settings, database_url)
    except ValueError as error:  # e.g. a token gRPC cannot send
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except DATABASE_ERRORS as error:
        print(f"{PROG}: cannot connect to the warehouse: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(
            f"{PROG}: loading straight into the warehouse needs the receiver extra "
            f"(pip install 'telemetry-warehouse[receiver]'), or use --target: {error}",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    reports: list[FileReport] = []
    large = any(path.stat().st_size >= PARALLEL_MIN_BYTES for path in args.files)
    pool = worker_pool(args.workers) if args.workers and large else None
    options = {
        "batch_lines": args.batch_lines,
        "pool": pool,
        "window": 2 * max(1, args.workers),
        "max_line_bytes": settings.max_line_bytes,
    }
    try:
        for path in args.files:
            if args.strict and args.target and not args.dry_run:
                # the receiver acknowledges batch by batch: check the whole file before sending any of it
                checker = sinks.ValidationSink(settings, default_user_id=args.default_user_id)
                check = load_file(path, checker, strict=True, **options)
                if check.stopped:
                    reports.append(check)
                    print_report(check, args.quiet)
                    break
            report = load_file(path, sink, strict=args.strict, progress=show_progress, **options)
            reports.append(report)
            print_report(report, args.quiet)
            if report.stopped:
                break
    except (*DATABASE_ERRORS, grpc.RpcError, OSError) as error:
        print(f"{PROG}: loading stopped: {error}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    elapsed = time.perf_counter() - started
    lines = sum(r.lines for r in reports)
    accepted = sum(r.accepted for r in reports)
    duplicates = sum(r.duplicates for r in reports)
    rejected = sum(r.rejected for r in reports)
    sampled_out = sum(r.sampled_out for r in reports)
    print(
        f"{PROG}: {len(reports)} file(s), {lines} lines in {elapsed:.1f} s; "
        f"landed {accepted}, duplicates {duplicates}, rejected {rejected}"
        + (f", sampled out {sampled_out}" if sampled_out else "")
        + (" (dry run)" if args.dry_run else ""),
        file=sys.stderr,
    )
    return 1 if any(r.stopped for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
