"""``telemetry-host-collector``: sample this host with psutil, send one record a minute to the receiver."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from google.protobuf.json_format import MessageToJson

from collectors.config import DEFAULT_TARGET, sender_token
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import IngestClient, IngestError
from collectors.senders.host.collector import HostCollector
from collectors.senders.host.exposition import CurrentValues
from collectors.senders.host.rollup import MinuteRollup


def positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="telemetry-host-collector",
        description=(
            "Sample CPU, load, memory, disk and network of this host with psutil every --interval seconds, "
            "roll the samples into one record per minute (averages, maxima, rates from counters) and send "
            "each record to the receiver. Records that cannot be delivered wait in --spool-dir and are "
            "replayed when the receiver is back."
        ),
        epilog="The bearer token is read from TELEMETRY_TOKEN, else the first of TELEMETRY_INGEST_TOKENS.",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("TELEMETRY_TARGET", DEFAULT_TARGET),
        help="receiver host:port [TELEMETRY_TARGET, default %(default)s]",
    )
    parser.add_argument("--host-id", default=socket.gethostname(), help="host id to report [default: hostname]")
    parser.add_argument("--interval", type=positive, default=1.0, help="seconds between samples [%(default)s]")
    parser.add_argument(
        "--period-seconds",
        type=positive,
        default=60.0,
        help="length of one record's period [60]; shorter is for tests only: records of one minute "
        "then collapse on (host_id, minute) in the warehouse",
    )
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path(os.environ.get("TELEMETRY_SPOOL_DIR", ".state/spool/host")),
        help="where undelivered records wait [TELEMETRY_SPOOL_DIR, default %(default)s]",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="serve current values on /metrics; 0 = off")
    parser.add_argument(
        "--metrics-addr",
        default=os.environ.get("TELEMETRY_METRICS_ADDR", "127.0.0.1"),
        help="address of /metrics, 0.0.0.0 for every interface [TELEMETRY_METRICS_ADDR, %(default)s]",
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--minutes", type=int, help="stop after sending this many records")
    stop.add_argument("--duration", type=positive, help="stop after this many seconds (sends the partial period)")
    parser.add_argument("--print", action="store_true", help="print each record as JSON instead of sending it")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every record sent")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    client: IngestClient | None = None
    if args.print:

        def send(records: list[pb.HostMinute]) -> None:
            for record in records:
                print(MessageToJson(record, indent=None), flush=True)

    else:
        token = sender_token()
        if not token:
            print("telemetry-host-collector: set TELEMETRY_TOKEN (or TELEMETRY_INGEST_TOKENS)", file=sys.stderr)
            return 2
        try:
            client = IngestClient(args.target, token, spool_dir=args.spool_dir)
        except ValueError as error:
            print(f"telemetry-host-collector: {error}", file=sys.stderr)
            return 2

        def send(records: list[pb.HostMinute]):
            result = client.push_host_minutes(records)
            logging.getLogger("collectors.senders.host").info(
                "sent %d record(s): accepted %d, duplicates %d, spooled batches %d",
                len(records),
                result.accepted,
                result.duplicates,
                result.spooled_batches,
            )
            return result

    current = None
    if args.metrics_port:
        current = CurrentValues(spool=client.spool if client is not None else None)
        port = current.serve(args.metrics_port, args.metrics_addr)
        print(f"telemetry-host-collector: /metrics on {args.metrics_addr}:{port}", file=sys.stderr)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    collector = HostCollector(
        MinuteRollup(args.host_id, args.period_seconds), send, interval=args.interval, current=current
    )
    try:
        stats = collector.run(stop, max_records=args.minutes, duration=args.duration)
    except IngestError as error:
        print(f"telemetry-host-collector: the receiver refused the records: {error}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
        if current is not None:
            current.close()
    push = stats.push
    print(
        f"telemetry-host-collector: {stats.samples} samples, {stats.records} records; "
        f"accepted {push.accepted}, "
        f"duplicates {push.duplicates}, rejected {push.rejected}, spooled batches {push.spooled_batches}"
        + (
            f"; NOT SAVED (the spool could not be written): {stats.held} held, {stats.dropped} given up"
            if stats.held or stats.dropped
            else ""
        ),
        file=sys.stderr,
    )
    return 1 if push.rejected or stats.held or stats.dropped else 0


if __name__ == "__main__":
    sys.exit(main())
