"""``telemetry-receiver``: run the gRPC ingest receiver."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from collectors.config import Settings, database_url_override, describe

PROG = "telemetry-receiver"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Receive telemetry batches over gRPC (service telemetry.v1.TelemetryIngest) and HTTP/JSON (the "
            "shapes the original senders post; OpenAPI at /openapi.json) and land them in PostgreSQL raw.*, "
            "acknowledging each batch after its transaction commits. Every option also reads an environment "
            "variable (shown in brackets); flags win."
        ),
    )
    parser.add_argument("--listen", help="host:port to serve gRPC on [TELEMETRY_LISTEN, default 127.0.0.1:50051]")
    parser.add_argument(
        "--http-listen",
        help="host:port to serve HTTP/JSON on, '' for none [TELEMETRY_HTTP_LISTEN, default 127.0.0.1:8080]",
    )
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--database-url",
        help="warehouse URL [TELEMETRY_INGEST_DATABASE_URL or TELEMETRY_DATABASE_URL]; a password here is "
        "visible in `ps`: prefer the variables or --database-url-file",
    )
    database.add_argument(
        "--database-url-file",
        type=Path,
        help="read the warehouse URL from this file [TELEMETRY_INGEST_DATABASE_URL_FILE]",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port, 0 = off [TELEMETRY_METRICS_PORT, 9464]"
    )
    parser.add_argument(
        "--metrics-addr", help="address of /metrics, 0.0.0.0 for every interface [TELEMETRY_METRICS_ADDR, 127.0.0.1]"
    )
    parser.add_argument(
        "--workers", type=int, help="concurrent batches (threads and connections) [TELEMETRY_WORKERS, 8]"
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="PEM certificate; enables TLS with --tls-key [TELEMETRY_TLS_CERT_FILE]"
    )
    parser.add_argument("--tls-key", type=Path, help="PEM private key [TELEMETRY_TLS_KEY_FILE]")
    parser.add_argument(
        "--prepare-database",
        action="store_true",
        help="migrate the schema and create partitions before serving (needs an owner role, not the ingest role)",
    )
    parser.epilog = (
        "Tokens are read only from TELEMETRY_INGEST_TOKENS (comma-separated) or the file "
        "TELEMETRY_INGEST_TOKENS_FILE names, never from flags."
    )
    return parser.parse_args(argv)


def say(message: str, *, error: bool = False) -> None:
    """Print a line for the operator; a full or broken log disk must never stop the service (a stream that
    cannot be written is replaced by /dev/null, or flushing it again at exit would fail the process)."""
    name = "stderr" if error else "stdout"
    try:
        print(message, file=getattr(sys, name), flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        overrides = {
            "listen": args.listen,
            "http_listen": args.http_listen,
            "ingest_database_url": database_url_override(args, PROG),
            "metrics_port": args.metrics_port,
            "metrics_addr": args.metrics_addr,
            "workers": args.workers,
            "tls_cert_file": args.tls_cert,
            "tls_key_file": args.tls_key,
        }
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        say(f"{PROG}: invalid configuration:\n{describe(error)}", error=True)
        return 2
    except ValueError as error:
        say(f"{PROG}: {error}", error=True)
        return 2
    if not settings.token_list():
        say(f"{PROG}: set TELEMETRY_INGEST_TOKENS to at least one bearer token", error=True)
        return 2
    if args.prepare_database:
        from collectors.warehouse.maintenance import prepare_database

        prepare_database(settings)

    from collectors.receiver.server import Receiver, ReceiverConfigError

    try:
        receiver = Receiver(settings).start()
    except ReceiverConfigError as error:
        say(f"{PROG}: {error}", error=True)
        return 2
    say(f"{PROG}: serving on port {receiver.port}")

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("signal %s: finishing in-flight batches", signal.Signals(signum).name)
        threading.Thread(target=receiver.stop, name="shutdown").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    receiver.wait()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
