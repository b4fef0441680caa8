"""The receiver as a real process: SIGTERM, SIGKILL mid-load, spooling through outages, TLS, CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import psycopg
import pytest

from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from tests.support import records
from tests.support.receivers import TOKEN, free_port


def stored_keys(db: psycopg.Connection) -> set[str]:
    return {m for (m,) in db.execute("select message_id from raw.message_samples")}


def test_sigkill_mid_load_loses_no_acknowledged_record(receiver_process, db: psycopg.Connection) -> None:
    process, target = receiver_process()
    acknowledged: set[str] = set()
    sent_batches = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal sent_batches
        with IngestClient(target, TOKEN, attempts=1, timeout=5) as client:
            batch = 0
            while not stop.is_set():
                ids = [f"b{batch}-m{i}" for i in range(500)]
                try:
                    result = client.push_message_samples([records.sample(m) for m in ids])
                except grpc.RpcError:
                    return  # the receiver is gone: everything unacknowledged may or may not be stored
                assert result.accepted == 500
                acknowledged.update(ids)
                batch += 1
                sent_batches = batch

    loader = threading.Thread(target=load)
    loader.start()
    deadline = time.monotonic() + 20
    while sent_batches < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stop.set()
    loader.join(30)
    assert sent_batches >= 5, process.stdout.read() if process.stdout else ""
    stored = stored_keys(db)
    assert acknowledged <= stored
    # whatever was stored arrived in whole batches: the transaction is per batch
    assert len(stored) % 500 == 0
    ledger = db.execute("select coalesce(sum(accepted), 0) from quality.ingest_batches").fetchone()[0]
    assert ledger == len(stored)


def test_sigterm_finishes_in_flight_batches_then_exits(receiver_process, db: psycopg.Connection) -> None:
    process, target = receiver_process()
    results: list[object] = []

    def push_big() -> None:
        with IngestClient(target, TOKEN, attempts=1, max_batch_records=20000) as client:
            try:
                results.append(client.push_message_samples([records.sample(f"m{i}") for i in range(20000)]))
            except grpc.RpcError as error:
                results.append(error)

    pusher = threading.Thread(target=push_big)
    pusher.start()
    time.sleep(0.3)  # the batch is in flight (serialising + sending + COPY take longer than this)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    pusher.join(30)
    assert len(results) == 1
    outcome = results[0]
    count = len(stored_keys(db))
    if isinstance(outcome, grpc.RpcError):
        # the batch reached the receiver after the stop began: refused whole, nothing written
        assert outcome.code() == grpc.StatusCode.UNAVAILABLE
        assert count == 0
    else:
        assert outcome.accepted == 20000
        assert count == 20000
    # new calls are refused once it is stopped
    with IngestClient(target, TOKEN, attempts=1, timeout=2) as client, pytest.raises(grpc.RpcError):
        client.push_message_samples([records.sample("late")])


def test_client_spools_while_receiver_is_down_and_delivers_later_without_duplicates(
    receiver_process, db: psycopg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    spool_dir = tmp_path / "spool"
    with IngestClient(
        f"127.0.0.1:{port}", TOKEN, spool_dir=spool_dir, attempts=2, backoff=0.05, max_backoff=0.5, timeout=2
    ) as client:
        # made once: a sample made again in the next minute would carry another sent_at, so another key
        spooled = [records.sample(f"a{i}") for i in range(30)]
        first = client.push_message_samples(spooled)
        second = client.push_message_samples([records.sample(f"b{i}") for i in range(30)])
        assert (first.spooled_batches, second.spooled_batches) == (1, 1)
        assert len(client.spool) == 2
        assert stored_keys(db) == set()

        receiver_process(port=port)
        grpc.channel_ready_future(client.channel).result(timeout=10)  # reconnects within max_backoff
        third = client.push_message_samples([records.sample(f"c{i}") for i in range(30)] + [spooled[0]])
        assert len(client.spool) == 0
        # the two spooled batches were delivered first, then the new one (whose a0 is a duplicate)
        assert (third.accepted, third.duplicates, third.delivered_batches) == (90, 1, 3)
    stored = stored_keys(db)
    assert len(stored) == 90
    assert db.execute("select count(*) from raw.message_samples").fetchone() == (90,)


def test_database_outage_is_unavailable_and_the_client_spools(warehouse_url: str, pg_server, tmp_path: Path) -> None:
    settings = Settings(
        database_url=warehouse_url,
        listen="127.0.0.1:0",
        metrics_port=0,
        ingest_tokens=TOKEN,
        db_wait_seconds=1,
    )
    running = Receiver(settings).start()
    admin = psycopg.connect(pg_server.url, autocommit=True)
    try:
        dbname = warehouse_url.rsplit("/", 1)[1]
        admin.execute(f'alter database "{dbname}" with allow_connections false')
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
            (dbname,),
        )
        with IngestClient(
            f"127.0.0.1:{running.port}", TOKEN, spool_dir=tmp_path / "spool", attempts=2, backoff=0.05
        ) as client:
            assert client.push_message_samples([records.sample("m1")]).spooled_batches == 1
            admin.execute(f'alter database "{dbname}" with allow_connections true')
            assert client.flush_spool().accepted == 1
    finally:
        admin.execute(f'alter database "{dbname}" with allow_connections true')
        admin.close()
        running.stop(grace=1)
    with psycopg.connect(warehouse_url) as db:
        assert stored_keys(db) == {"m1"}


def test_tls(warehouse_url: str, tmp_path: Path, db: psycopg.Connection) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = Settings(
        database_url=warehouse_url,
        listen="localhost:0",
        metrics_port=0,
        ingest_tokens=TOKEN,
        tls_cert_file=cert,
        tls_key_file=key,
    )
    running = Receiver(settings).start()
    try:
        with IngestClient(f"localhost:{running.port}", TOKEN, root_certificates=cert.read_bytes()) as client:
            assert client.push_message_samples([records.sample("m1")]).accepted == 1
        with (
            IngestClient(f"localhost:{running.port}", TOKEN, attempts=1, timeout=3) as plaintext,
            pytest.raises(grpc.RpcError),
        ):
            plaintext.push_message_samples([records.sample("m2")])
    finally:
        running.stop(grace=1)
    assert stored_keys(db) == {"m1"}


def test_cli_help_and_refusal_without_tokens(warehouse_url: str) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "collectors.receiver.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TELEMETRY_INGEST_TOKENS" in help_text and "--listen" in help_text
    refused = subprocess.run(
        [sys.executable, "-m", "collectors.receiver.cli"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TELEMETRY_DATABASE_URL": warehouse_url},
    )
    assert refused.returncode == 2
    assert "set TELEMETRY_INGEST_TOKENS" in refused.stderr


def test_stubs_are_fresh() -> None:
    from collectors.proto.generate import stale_stubs

    assert stale_stubs() == []


def test_proto_service_is_versioned() -> None:
    assert pb.DESCRIPTOR.package == "telemetry.v1"
    assert [m.name for m in pb.DESCRIPTOR.services_by_name["TelemetryIngest"].methods] == [
        "PushMinuteSnapshots",
        "PushMessageSamples",
        "PushHostMinutes",
        "PushProductEvents",
        "PushServerReports",
    ]
