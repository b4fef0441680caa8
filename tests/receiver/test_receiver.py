"""The receiver over real gRPC on loopback, writing to a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import urllib.request

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.proto.telemetry.v1 import ingest_pb2_grpc
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient, IngestError
from tests.support import records
from tests.support.receivers import TOKEN, free_port


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"select count(*) from {table}").fetchone()[0]


def stub(receiver: Receiver) -> ingest_pb2_grpc.TelemetryIngestStub:
    return ingest_pb2_grpc.TelemetryIngestStub(grpc.insecure_channel(f"127.0.0.1:{receiver.port}"))


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def test_every_accepted_record_is_stored_with_its_values(client: IngestClient, db: psycopg.Connection) -> None:
    snaps = [records.snapshot(f"srv-{i}") for i in range(3)]
    samples = [records.sample(f"m{i}") for i in range(50)]
    result = client.push_minute_snapshots(snaps)
    assert (result.accepted, result.duplicates, result.rejected) == (3, 0, 0)
    assert client.push_message_samples(samples).accepted == 50
    assert client.push_host_minutes([records.host_minute()]).accepted == 1
    assert client.push_product_events([records.event("e1", plan="pro")]).accepted == 1

    row = db.execute(
        "select player, menu, total, battles_total, battles_lobby, battles_in_progress, battle_ids"
        " from raw.minute_snapshots where server_id = 'srv-0'"
    ).fetchone()
    assert row == ([1, 2], [100, 101], [1, 2, 100, 101], 3, 1, 2, ["b1", "b2", "b3"])
    assert count(db, "raw.message_samples") == 50
    sample = db.execute(
        "select topics, envelope_id, received_at - sent_at, created_at <= now() from raw.message_samples"
        " where message_id = 'm7'"
    ).fetchone()
    assert sample == (b"\x01\x02", "env-m7", dt.timedelta(seconds=2), True)
    host = db.execute("select cpu_percent_per_core, tick_duration_ms, tick_rate from raw.host_minutes").fetchone()
    assert host[0] == [10.0, 15.0]
    assert host[1] == {"i": [10, 12], "c": [3, 1], "z": 0, "sum": 4.5, "min": 1.0, "max": 1.3}
    assert host[2] == 60.0
    assert db.execute("select payload from raw.product_events").fetchone() == ({"plan": "pro"},)
    ledger = db.execute(
        "select source, sum(accepted), sum(duplicates), sum(rejected) from quality.ingest_batches group by 1 order by 1"
    ).fetchall()
    assert ledger == [
        ("host_minutes", 1, 0, 0),
        ("message_samples", 50, 0, 0),
        ("minute_snapshots", 3, 0, 0),
        ("product_events", 1, 0, 0),
    ]


def test_resending_a_batch_adds_nothing_and_reports_duplicates(receiver: Receiver, db: psycopg.Connection) -> None:
    request = pb.PushMessageSamplesRequest(samples=[records.sample(f"m{i}") for i in range(10)])
    first = stub(receiver).PushMessageSamples(request, metadata=AUTH).ack
    again = stub(receiver).PushMessageSamples(request, metadata=AUTH).ack
    assert (first.accepted, first.duplicates) == (10, 0)
    assert (again.accepted, again.duplicates) == (0, 10)
    # a batch mixing new records with old ones and with a duplicate inside itself
    mixed = pb.PushMessageSamplesRequest(samples=[records.sample("m1"), records.sample("new"), records.sample("new")])
    ack = stub(receiver).PushMessageSamples(mixed, metadata=AUTH).ack
    assert (ack.accepted, ack.duplicates, ack.rejected) == (1, 2, 0)
    assert count(db, "raw.message_samples") == 11
    assert db.execute(
        "select sum(accepted), sum(duplicates) from quality.ingest_batches where source = 'message_samples'"
    ).fetchone() == (11, 12)


def test_bad_records_go_to_rejects_with_reasons_and_the_rest_lands(receiver: Receiver, db: psycopg.Connection) -> None:
    good = records.snapshot("good")
    no_server = records.snapshot("")
    future = records.snapshot("future", minutes_ago=-10)
    inconsistent = records.snapshot("bad-battles")
    inconsistent.battles.lobby = 5
    stray = records.snapshot("stray")
    stray.clients.player.append(999)  # not in total
    nul = records.snapshot("nul\x00byte")
    request = pb.PushMinuteSnapshotsRequest(snapshots=[good, no_server, future, inconsistent, stray, nul])
    ack = stub(receiver).PushMinuteSnapshots(request, metadata=AUTH).ack
    assert (ack.accepted, ack.duplicates, ack.rejected) == (1, 0, 5)
    reasons = {r.index: r.reason for r in ack.rejects}
    assert reasons == {
        1: "server_id is required",
        2: "minute is more than 300 s in the future",
        3: "battles.lobby + battles.in_progress exceeds battles.total",
        4: "clients.player lists users missing from clients.total",
        5: "server_id contains a NUL character",
    }
    stored = db.execute(
        "select record_index, source, reason, record from raw.rejects where batch_id = %s order by record_index",
        (ack.batch_id,),
    ).fetchall()
    assert [(i, s, r) for i, s, r, _ in stored] == [(i, "minute_snapshots", reasons[i]) for i in range(1, 6)]
    assert pb.MinuteSnapshot.FromString(stored[2][3]) == inconsistent  # the original bytes are kept
    assert db.execute("select server_id from raw.minute_snapshots").fetchall() == [("good",)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: setattr(e, "payload_json", "[1, 2]"), "payload must be a JSON object"),
        (lambda e: setattr(e, "payload_json", '{"x": NaN}'), "payload contains NaN, which is not JSON"),
        (
            lambda e: setattr(e, "payload_json", '{"x": "' + "a" * 20000 + '"}'),
            "payload is larger than 16384 bytes",
        ),
        (lambda e: setattr(e, "payload_json", '{"x": "\\u0000"}'), "payload contains a NUL character"),
        (lambda e: setattr(e, "schema_version", "v2"), "schema_version must be 'telemetry_event_v1'"),
        (lambda e: setattr(e, "user_id", "u" * 129), "user_id is longer than 128 characters"),
        (lambda e: e.ClearField("timestamp"), "timestamp is required"),
        (
            lambda e: e.timestamp.FromDatetime(dt.datetime(1999, 1, 1)),
            "timestamp is older than the retention of 90 days",
        ),
    ],
)
def test_event_validation(client: IngestClient, db: psycopg.Connection, change, reason: str) -> None:
    bad = records.event("bad")
    change(bad)
    result = client.push_product_events([records.event("ok"), bad])
    assert (result.accepted, result.rejected, result.rejects) == (1, 1, [(1, reason)])
    assert db.execute("select reason from raw.rejects").fetchall() == [(reason,)]


def test_host_metrics_must_be_finite_and_in_range(client: IngestClient) -> None:
    nan = records.host_minute("nan")
    nan.cpu_percent = float("nan")
    over = records.host_minute("over")
    over.memory_percent = 101
    hist = records.host_minute("hist")
    del hist.server.tick_duration_ms.bucket_count[:]
    result = client.push_host_minutes([nan, over, hist, records.host_minute("ok")])
    assert result.accepted == 1
    assert result.rejects == [
        (0, "cpu_percent is not a finite number"),
        (1, "memory_percent=101.0 is outside [0.0, 100.0]"),
        (2, "tick_duration_ms: bucket_index and bucket_count differ in length"),
    ]


def test_account_created_events_also_land_in_accounts(client: IngestClient, db: psycopg.Connection) -> None:
    events = [
        records.event("a1", name="account_created", channel="user"),
        records.event("x", name="app_open"),
    ]
    assert client.push_product_events(events).accepted == 2
    assert client.push_product_events(events).duplicates == 2
    assert db.execute("select event_id, user_id from raw.accounts_created").fetchall() == [("a1", "user-1")]
    assert count(db, "raw.product_events") == 2


def test_wrong_or_missing_token_is_unauthenticated_and_writes_nothing(
    receiver: Receiver, db: psycopg.Connection
) -> None:
    request = pb.PushMessageSamplesRequest(samples=[records.sample("m1")])
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)]:
        with pytest.raises(grpc.RpcError) as error:
            stub(receiver).PushMessageSamples(request, metadata=metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert count(db, "raw.message_samples") == 0
    assert count(db, "quality.ingest_batches") == 0
    with (
        IngestClient(f"127.0.0.1:{receiver.port}", "wrong") as bad_client,
        pytest.raises(IngestError) as refused,
    ):
        bad_client.push_message_samples([records.sample("m1")])
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_empty_malformed_and_oversized_batches_get_status_codes(receiver: Receiver, db: psycopg.Connection) -> None:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{receiver.port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    raw_call = channel.unary_unary("/telemetry.v1.TelemetryIngest/PushMessageSamples")
    cases = [
        (pb.PushMessageSamplesRequest().SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
        (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.PushMessageSamplesRequest(
                samples=[records.sample(f"m{i}" * 100) for i in range(20000)]
            ).SerializeToString(),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ]
    for payload, code in cases:
        with pytest.raises(grpc.RpcError) as error:
            raw_call(payload, metadata=AUTH)
        assert error.value.code() == code, error.value.details()
    assert count(db, "raw.message_samples") == 0


def test_too_many_records_is_resource_exhausted(warehouse_url: str, db: psycopg.Connection) -> None:
    settings = Settings(
        database_url=warehouse_url,
        listen="127.0.0.1:0",
        metrics_port=0,
        ingest_tokens=TOKEN,
        max_batch_records=5,
    )
    small = Receiver(settings).start()
    try:
        request = pb.PushMessageSamplesRequest(samples=[records.sample(f"m{i}") for i in range(6)])
        with pytest.raises(grpc.RpcError) as error:
            stub(small).PushMessageSamples(request, metadata=AUTH)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the client library cuts batches under the limit
        with IngestClient(f"127.0.0.1:{small.port}", TOKEN, max_batch_records=5) as c:
            assert c.push_message_samples(list(request.samples)).accepted == 6
    finally:
        small.stop(grace=1)
    assert count(db, "raw.message_samples") == 6


def test_rows_without_partition_are_rejected_not_failing_the_batch(
    client: IngestClient, db: psycopg.Connection
) -> None:
    old = records.snapshot("old", minutes_ago=5 * 24 * 60)
    db.execute(
        "drop table raw.minute_snapshots_p" + (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).strftime("%Y%m%d")
    )
    result = client.push_minute_snapshots([old, records.snapshot("new")])
    assert result.accepted == 1
    assert result.rejects[0][0] == 0 and "no partition of raw.minute_snapshots" in result.rejects[0][1]


def test_health_and_metrics(warehouse_url: str) -> None:
    port = free_port()
    settings = Settings(database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=port, ingest_tokens=TOKEN)
    running = Receiver(settings).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "telemetry.v1.TelemetryIngest"):
                status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
                assert status == health_pb2.HealthCheckResponse.SERVING
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN) as c:
            c.push_message_samples([records.sample("m1"), records.sample("")])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'telemetry_receiver_records_total{outcome="rejected",source="message_samples"}' in body
        assert "telemetry_receiver_batch_seconds_bucket" in body
    finally:
        running.stop(grace=1)


def test_client_cuts_batches_under_the_byte_limit(receiver: Receiver, db: psycopg.Connection) -> None:
    samples = [records.sample(f"m{i}") for i in range(50)]
    size = pb.PushMessageSamplesRequest(samples=samples).ByteSize()
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, max_batch_bytes=size // 5) as c:
        result = c.push_message_samples(samples)
    assert result.accepted == 50
    assert result.delivered_batches >= 6  # halved until each request fits
    assert count(db, "raw.message_samples") == 50


def reflected_services(port: int) -> list[str]:
    """What gRPC server reflection lists, asked without a token (as grpcurl list does)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    return sorted(service.name for service in answer.list_services_response.service)


def test_server_reflection_lists_the_services_without_a_token_and_can_be_switched_off(
    receiver: Receiver, warehouse_url: str
) -> None:
    assert reflected_services(receiver.port) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "telemetry.v1.TelemetryIngest",
    ]
    settings = Settings(
        database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN, grpc_reflection=False
    )
    quiet = Receiver(settings).start()
    try:
        with pytest.raises(grpc.RpcError) as off:
            reflected_services(quiet.port)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        quiet.stop(grace=5)


def test_the_health_probe_says_serving_or_why_not(receiver: Receiver) -> None:
    probe = [sys.executable, "-m", "collectors.receiver.probe", "--timeout", "2", "--target"]
    up = subprocess.run([*probe, f"127.0.0.1:{receiver.port}"], capture_output=True, text=True, timeout=30)
    assert up.returncode == 0 and up.stdout.strip().endswith("SERVING"), up.stderr
    down = subprocess.run([*probe, f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert (down.returncode == 1 and "UNAVAILABLE" in down.stderr) or "DEADLINE_EXCEEDED" in down.stderr
