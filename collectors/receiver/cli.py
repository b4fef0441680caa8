"""``telemetry-receiver``: run the gRPC ingest receiver."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from collectors.config import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="telemetry-receiver",
        description=(
            "Receive telemetry batches over gRPC (service telemetry.v1.TelemetryIngest) and land them in "
            "PostgreSQL raw.*, acknowledging each batch after its transaction commits. Every option also "
            "reads an environment variable (shown in brackets); flags win."
        ),
    )
    parser.add_argument("--listen", help="host:port to serve gRPC on [TELEMETRY_LISTEN, default 127.0.0.1:50051]")
    parser.add_argument(
        "--database-url", help="warehouse URL [TELEMETRY_INGEST_DATABASE_URL or TELEMETRY_DATABASE_URL]"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port, 0 = off [TELEMETRY_METRICS_PORT, 9464]"
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
    parser.epilog = "Tokens are read only from TELEMETRY_INGEST_TOKENS (comma-separated), never from flags."
    return parser.parse_args(argv)


def describe(error: ValidationError) -> str:
    """A settings error without the values given: they may be secrets (a token, a salt, a password in a URL)."""
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors(include_input=False)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        "listen": args.listen,
        "ingest_database_url": args.database_url,
        "metrics_port": args.metrics_port,
        "workers": args.workers,
        "tls_cert_file": args.tls_cert,
        "tls_key_file": args.tls_key,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        print(f"telemetry-receiver: invalid configuration:\n{describe(error)}", file=sys.stderr)
        return 2
    if not settings.token_list():
        print("telemetry-receiver: set TELEMETRY_INGEST_TOKENS to at least one bearer token", file=sys.stderr)
        return 2
    if args.prepare_database:
        from collectors.warehouse.maintenance import prepare_database

        prepare_database(settings)

    from collectors.receiver.server import Receiver

    receiver = Receiver(settings).start()
    print(f"telemetry-receiver: serving on port {receiver.port}", flush=True)

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
