"""``telemetry-simulate``: play a deterministic population over a past time range through the receiver."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from collectors.config import DEFAULT_TARGET, sender_token
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.run import KINDS, BufferedSender, play
from collectors.senders.client import IngestClient, IngestError

PROG = "telemetry-simulate"


def utc_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def probability(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Play a population deterministically from --seed over a past time range: game servers sending a "
            "minute snapshot per minute (users in menu, lobby, player, spectator; battles), host minute records "
            "with server performance histograms, chat channels whose messages each member receives unless lost "
            "(--loss-rate), and product events walking declared funnels (--drop-off) in sessions, with new "
            "accounts. Everything goes through the receiver; --truth-dir writes what was sent as ground truth."
        ),
        epilog="The bearer token is read from TELEMETRY_TOKEN, else the first of TELEMETRY_INGEST_TOKENS. "
        "The receiver refuses records older than each table's retention (7 days for message samples).",
    )
    when = parser.add_argument_group("time range (default: the last day, ending at the current minute)")
    when.add_argument("--end", type=utc_time, help="end of the range (exclusive), ISO 8601, UTC by default")
    when.add_argument("--start", type=utc_time, help="start of the range; overrides --days/--hours")
    when.add_argument("--days", type=float, default=1.0, help="length of the range in days [%(default)s]")
    when.add_argument("--hours", type=float, help="length of the range in hours (instead of --days)")
    scale = parser.add_argument_group("scale and behaviour")
    scale.add_argument("--seed", type=int, default=1, help="random seed; same seed, same records [%(default)s]")
    scale.add_argument("--servers", type=int, default=3, help="game servers (and hosts) [%(default)s]")
    scale.add_argument("--users", type=int, default=200, help="accounts existing at the start [%(default)s]")
    scale.add_argument("--new-accounts-per-day", type=int, default=10, help="[%(default)s]")
    scale.add_argument("--channels", type=int, default=5, help="chat channels [%(default)s]")
    scale.add_argument("--messages-per-hour", type=float, default=30.0, help="per channel [%(default)s]")
    scale.add_argument("--loss-rate", type=probability, default=0.02, help="per delivery [%(default)s]")
    scale.add_argument("--drop-off", type=probability, default=0.3, help="per funnel step [%(default)s]")
    scale.add_argument("--no-host-minutes", action="store_true", help="do not simulate host records")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--target",
        default=os.environ.get("TELEMETRY_TARGET", DEFAULT_TARGET),
        help="receiver host:port [TELEMETRY_TARGET, default %(default)s]",
    )
    out.add_argument("--truth-dir", type=Path, help="write the ground truth files here")
    out.add_argument("--no-send", action="store_true", help="send nothing (e.g. only write the ground truth)")
    out.add_argument("--speed", type=float, default=0.0, help="simulated seconds per real second; 0 = max")
    out.add_argument("--spool-dir", type=Path, help="spool undelivered batches here (default: fail instead)")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> SimulationConfig:
    end = args.end or dt.datetime.now(dt.UTC)
    end = end.replace(second=0, microsecond=0)
    if args.start is not None:
        start = args.start
    else:
        start = end - (dt.timedelta(hours=args.hours) if args.hours else dt.timedelta(days=args.days))
    return SimulationConfig(
        start=start.replace(second=0, microsecond=0),
        end=end,
        seed=args.seed,
        servers=args.servers,
        users=args.users,
        new_accounts_per_day=args.new_accounts_per_day,
        channels=args.channels,
        messages_per_channel_per_hour=args.messages_per_hour,
        loss_rate=args.loss_rate,
        drop_off=args.drop_off,
        host_minutes=not args.no_host_minutes,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    if config.end > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
        print(f"{PROG}: --end is in the future; the receiver would refuse those records", file=sys.stderr)
        return 2
    sender = None
    if not args.no_send:
        token = sender_token()
        if not token:
            print(f"{PROG}: set TELEMETRY_TOKEN (or TELEMETRY_INGEST_TOKENS), or pass --no-send", file=sys.stderr)
            return 2
        sender = BufferedSender(IngestClient(args.target, token, spool_dir=args.spool_dir, max_in_flight=2))
    started = time.perf_counter()
    print(
        f"{PROG}: seed {config.seed}, {config.start:%Y-%m-%d %H:%M} to {config.end:%Y-%m-%d %H:%M} UTC", file=sys.stderr
    )
    try:
        truth = play(config, sender.add if sender else None, speed=args.speed)
        if sender is not None:
            sender.flush()
    except IngestError as error:
        print(f"{PROG}: the receiver refused a batch: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # grpc.RpcError after retries: say what to check
        if sender is None or not hasattr(error, "code"):
            raise
        print(f"{PROG}: the receiver at {args.target} is unavailable: {error.code()}", file=sys.stderr)
        return 1
    finally:
        if sender is not None:
            sender.client.close()
    if args.truth_dir:
        truth.write(args.truth_dir)
    elapsed = time.perf_counter() - started
    rejected = 0
    for kind in KINDS:
        line = f"  {kind:<17} {truth.sent[kind]:>9} sent"
        if sender is not None:
            result = sender.results[kind]
            rejected += result.rejected
            line += f", {result.accepted} accepted, {result.duplicates} duplicates, {result.rejected} rejected"
            if result.spooled_batches:
                line += f", {result.spooled_batches} batches spooled"
            for index, reason in result.rejects[:3]:
                line += f"\n    record {index}: {reason}"
        print(line, file=sys.stderr)
    print(
        f"{PROG}: done in {elapsed:.1f} s" + (f"; ground truth in {args.truth_dir}" if args.truth_dir else ""),
        file=sys.stderr,
    )
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
