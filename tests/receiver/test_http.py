"""The HTTP/JSON receiver over real loopback HTTP against a real PostgreSQL: what each original sender posts lands
as over gRPC, every status code the contract names, and nothing is held or written for a request that is refused.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import psycopg.rows
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.dev.ports import free_port
from collectors.ingest import registry
from collectors.orchestration import dbt_runner as dbt
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client.exporter import IngestClient
from tests.support.receivers import TOKEN

DATA = Path(__file__).parent / "data"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def now(offset: float = 0) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def start(warehouse_url: str, **settings: object) -> Receiver:
    values = {"listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0", "metrics_port": 0, "ingest_tokens": TOKEN}
    return Receiver(Settings(database_url=warehouse_url, **(values | settings))).start()


@pytest.fixture
def http(receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{receiver.http_port}", timeout=10) as client:
        yield client


def counts(url: str) -> dict[str, int]:
    """Rows of every raw table, the rejects and the ingest ledger."""
    tables = [f"raw.{t}" for t in registry.TABLE_NAMES] + ["raw.rejects", "quality.ingest_batches"]
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def report(server_id: str = "server-001", at: dt.datetime | None = None) -> dict:
    """The game server's example document, its timestamp moved into the retention."""
    document = json.loads((DATA / "game_server_report.json").read_text())
    document["server_id"], document["timestamp"] = server_id, iso(at or now(-60))
    return document


# --------------------------------------------------------------------------- what each sender posts


def test_the_game_servers_example_document_lands_with_curl(
    receiver: Receiver, warehouse_url: str, tmp_path: Path
) -> None:
    doc = tmp_path / "doc.json"
    document = report()
    doc.write_text(json.dumps(document, indent=2))
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-H",
            "Content-Type: application/json",
            "--data",
            f"@{doc}",
            f"http://127.0.0.1:{receiver.http_port}/api/v1/telemetry",
            "-w",
            "\n%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200", done.stdout
    assert json.loads(body) | {"batch_id": None} == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "rejects": [],
        "retry_indexes": [],
        "batch_id": None,
    }
    with psycopg.connect(warehouse_url) as conn:
        row = conn.execute("select server_id, reported_at, document from raw.server_reports").fetchall()
    # curl --data strips the newlines: the document is kept as JSON, every field as sent, nothing added
    assert row == [("server-001", dt.datetime.fromisoformat(document["timestamp"]), document)]


def test_reports_posted_over_http_roll_up_into_the_server_metrics(
    http: httpx.Client, warehouse_url: str, tmp_path: Path
) -> None:
    """The example report twice in one minute, the second one hot and slow: the minute's averages, extremes and
    breaches, worked out by hand from the two documents."""
    minute = now(-3600).replace(minute=0, second=0) + dt.timedelta(minutes=30)
    calm = report("server-001", minute + dt.timedelta(seconds=5))
    hot = report("server-001", minute + dt.timedelta(seconds=10))
    hot["hardware"]["cpu_usage_percent"] = 96.0  # over 95: critical, and so a warning too
    hot["performance"]["tick_rate_fps"] = 57.0  # under 58: warning only
    response = http.post("/api/v1/telemetry", json=[calm, hot], headers=AUTH)
    assert response.json()["accepted"] == 2, response.text
    hour = minute.replace(minute=0)
    dbt.build("+tag:hourly", hour, hour + dt.timedelta(hours=1), database_url=warehouse_url, target_path=tmp_path)
    with psycopg.connect(warehouse_url) as conn:
        conn.row_factory = psycopg.rows.dict_row
        (row,) = conn.execute("select * from marts.fct_server_metrics_minutely").fetchall()
    assert (row["server_id"], row["minute_start"], row["reports"]) == ("server-001", minute, 2)
    assert float(row["cpu_usage_percent_avg"]) == pytest.approx((45.2 + 96.0) / 2)
    assert (float(row["cpu_usage_percent_min"]), float(row["cpu_usage_percent_max"])) == (45.2, 96.0)
    assert float(row["tick_rate_fps_min"]) == 57.0 and float(row["ping_p95_max"]) == 58.0
    assert (row["cpu_warning_reports"], row["cpu_critical_reports"], row["cpu_critical_minutes"]) == (1, 1, 1)
    assert (row["tick_rate_warning_reports"], row["tick_rate_critical_reports"]) == (1, 0)
    assert row["memory_warning_reports"] == 0 and row["ping_p95_warning_reports"] == 0


def test_a_report_with_unknown_fields_keeps_them_and_bad_ones_are_rejected_with_their_bytes(
    http: httpx.Client, warehouse_url: str
) -> None:
    extra = report("server-002") | {"build": {"version": "1.4.2", "region": "eu"}}
    too_hot = report("server-003")
    too_hot["hardware"]["cpu_usage_percent"] = 140
    other = report("server-004")
    other["hardware"]["memory_used_bytes"] = other["hardware"]["memory_total_bytes"] + 1
    elements = [json.dumps(extra), json.dumps(too_hot, separators=(",", ":")), json.dumps(other), '"not an object"']
    response = http.post(
        "/api/v1/telemetry", content="[" + ",".join(elements) + "]", headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    ack = response.json()
    assert (ack["accepted"], ack["rejected"]) == (1, 3)
    assert ack["rejects"] == [
        {"index": 1, "reason": "hardware.cpu_usage_percent=140 is outside [0, 100]"},
        {"index": 2, "reason": "hardware.memory_used_bytes=8589934593 is above hardware.memory_total_bytes=8589934592"},
        {"index": 3, "reason": "the element must be a JSON object"},
    ]
    with psycopg.connect(warehouse_url) as conn:
        kept = conn.execute("select document from raw.server_reports").fetchone()[0]
        rejects = conn.execute("select record_index, record from raw.rejects order by record_index").fetchall()
    assert kept["build"] == {"version": "1.4.2", "region": "eu"}
    # each refused element is kept as the bytes it was sent as
    assert [(i, bytes(r)) for i, r in rejects] == [(i, elements[i].encode()) for i in (1, 2, 3)]


def received_messages(n: int, sent: dt.datetime) -> list[dict]:
    """status-im telemetry's received messages: two channels, two receivers, each message seen by both."""
    return [
        {
            "chatId": f"chat-{i % 2}",
            "messageHash": f"0x{i:064x}",
            "messageId": f"msg-{i}",
            "receiverKeyUID": f"0xkey{receiver}",
            "nodeName": f"node-{receiver}",
            "sentAt": int((sent + dt.timedelta(seconds=i)).timestamp()),
            "topic": "0x12345678",
        }
        for i in range(n)
        for receiver in range(2)
    ]


def test_status_im_received_messages_land_as_samples_with_the_reliability_of_grpc(
    pg_server, warehouse_url: str, tmp_path: Path
) -> None:
    grpc_url = local_postgres.create_database(
        pg_server.url, f"{warehouse_url.rsplit('/', 1)[1]}_grpc", template=warehouse_url.rsplit("/", 1)[1]
    )
    hour = now().replace(minute=0, second=0) - dt.timedelta(hours=2)
    messages = received_messages(30, hour + dt.timedelta(minutes=5))
    over_http, over_grpc = start(warehouse_url), start(grpc_url)
    try:
        body = json.dumps(messages)
        response = httpx.post(
            f"http://127.0.0.1:{over_http.http_port}/received-messages",
            content=body,
            headers=AUTH | {"Content-Type": "application/json"},
        )
        # answered as status-im telemetry answers: 201 and the messages as received
        assert response.status_code == 201, response.text
        assert response.json() == messages
        assert response.headers["X-Telemetry-Accepted"] == str(len(messages))
        samples = [
            pb.MessageSample(
                message_id=m["messageId"],
                channel_id=m["chatId"],
                receiver_public_key=m["receiverKeyUID"],
                topics=m["topic"].encode(),
                envelope_id=m["messageHash"],
                sent_at={"seconds": m["sentAt"]},
            )
            for m in messages
        ]
        with IngestClient(f"127.0.0.1:{over_grpc.port}", TOKEN, spool_dir=tmp_path / "spool", attempts=2) as client:
            ack = client.push_message_samples(samples)
        assert ack.accepted == len(messages)
    finally:
        over_http.stop(grace=5)
        over_grpc.stop(grace=5)
    marts = ("fct_reliability_hourly", "fct_channel_reliability_hourly")
    results = {}
    for url in (warehouse_url, grpc_url):
        dbt.build("+tag:hourly", hour, hour + dt.timedelta(hours=2), database_url=url, target_path=tmp_path / "dbt")
        with psycopg.connect(url) as conn:
            results[url] = {
                mart: conn.execute(f"select * from marts.{mart} order by 1, 2").fetchall() for mart in marts
            }
            assert conn.execute("select count(*) from raw.message_samples").fetchone()[0] == len(messages)
    assert results[warehouse_url]["fct_channel_reliability_hourly"]
    assert results[warehouse_url] == results[grpc_url]
    local_postgres.drop_database(pg_server.url, grpc_url.rsplit("/", 1)[1])


def event(event_id: str, name: str = "open", user: str = "u1", at: dt.datetime | None = None) -> dict:
    return {
        "schema_version": "telemetry_event_v1",
        "event_id": event_id,
        "channel": "user",
        "event": name,
        "timestamp": iso(at or now(-30)),
        "user_id": user,
        "payload": {"screen": "home"},
    }


def test_events_as_a_gzipped_array_or_ndjson_and_account_created_pairs_as_on_grpc(
    http: httpx.Client, warehouse_url: str
) -> None:
    array = [event("e1"), event("e2", "account_created", user="new-user")]
    response = http.post(
        "/api/v1/events",
        content=gzip.compress(json.dumps(array).encode()),
        headers=AUTH | {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200 and response.json()["accepted"] == 2, response.text
    lines = "\n".join(json.dumps(e) for e in (event("e3"), event("e1"))) + "\n\n"
    response = http.post("/api/v1/events", content=lines, headers=AUTH | {"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 1)
    with psycopg.connect(warehouse_url) as conn:
        events = conn.execute("select event_id, payload from raw.product_events order by event_id").fetchall()
        accounts = conn.execute("select user_id from raw.accounts_created").fetchall()
    assert [e for e, _ in events] == ["e1", "e2", "e3"] and events[0][1] == {"screen": "home"}
    assert accounts == [("new-user",)]


def test_every_grpc_record_has_its_json_form(http: httpx.Client, warehouse_url: str) -> None:
    minute = iso(now(-120).replace(second=0))
    bodies = {
        "/api/v1/minute-snapshots": [{"server_id": "s", "minute": minute, "clients": {"player": [1], "total": [1, 2]}}],
        "/api/v1/host-minutes": [
            {"host_id": "h", "minute": minute, "samples": 60, "cpuPercent": 12.5, "cpuPercentMax": 20.0}
        ],
        "/api/v1/message-samples": [
            {"message_id": "m", "channel_id": "c", "receiver_public_key": "k", "envelope_id": "e", "sent_at": minute}
        ],
        "/api/v1/server-reports": [
            {"server_id": "s", "timestamp": minute, "document_json": json.dumps({"game": {"active_player_count": 3}})}
        ],
    }
    for path, body in bodies.items():
        response = http.post(path, json=body, headers=AUTH)
        assert response.status_code == 200 and response.json()["accepted"] == 1, (path, response.text)
    response = http.post("/api/v1/host-minutes", json=[{"host_id": "h", "no_such_field": 1}], headers=AUTH)
    assert response.json()["rejected"] == 1
    assert "no_such_field" in response.json()["rejects"][0]["reason"]
    with psycopg.connect(warehouse_url) as conn:
        host = conn.execute("select host_id, samples, cpu_percent from raw.host_minutes").fetchall()
    assert host == [("h", 60, 12.5)]


# --------------------------------------------------------------------------- status codes


def test_a_wrong_or_missing_token_is_401_and_writes_nothing(http: httpx.Client, warehouse_url: str) -> None:
    before = counts(warehouse_url)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = http.post("/api/v1/telemetry", json=report(), headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer", response.text
        assert response.json() == {"error": "missing or invalid bearer token"}
    assert counts(warehouse_url) == before


def test_malformed_empty_and_mistyped_bodies(http: httpx.Client, warehouse_url: str) -> None:
    json_type = AUTH | {"Content-Type": "application/json"}
    cases = [
        ('{"server_id": "s", ', json_type, 400, "the body is not valid JSON"),
        ("[]", json_type, 400, "empty batch"),
        ("[1, 2", json_type, 400, "the body is not valid JSON"),
        ("not json", AUTH | {"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ("{}", AUTH, 415, "not 'missing'"),
        ("{}", json_type | {"Content-Encoding": "br"}, 415, "Content-Encoding must be gzip or none"),
        ("not gzip", json_type | {"Content-Encoding": "gzip"}, 400, "the body is not valid gzip"),
    ]
    before = counts(warehouse_url)
    for body, headers, status, message in cases:
        response = http.post("/api/v1/telemetry", content=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"], (body, response.text)
    assert counts(warehouse_url) == before


def test_over_the_size_limit_is_413_declared_streamed_or_inflated(warehouse_url: str) -> None:
    limit = 64 * 1024
    running = start(warehouse_url, max_batch_bytes=limit)
    base = f"http://127.0.0.1:{running.http_port}/api/v1/events"
    headers = AUTH | {"Content-Type": "application/json"}
    try:
        big = json.dumps([event(f"e{i}") for i in range(600)]).encode()
        assert len(big) > limit
        declared = httpx.post(base, content=big, headers=headers)
        assert declared.status_code == 413 and "exceeds the limit" in declared.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the receiver counts as it reads
            for start_at in range(0, len(big), 4096):
                yield big[start_at : start_at + 4096]

        streamed = httpx.post(base, content=chunks(), headers=headers)
        assert streamed.status_code == 413
        bomb = gzip.compress(b"[" + b" " * (50 * limit) + b"]")
        assert len(bomb) < limit
        inflated = httpx.post(base, content=bomb, headers=headers | {"Content-Encoding": "gzip"})
        assert inflated.status_code == 413 and "expands past" in inflated.json()["error"]
        assert counts(warehouse_url)["raw.product_events"] == 0
    finally:
        running.stop(grace=5)


def test_a_token_over_its_rate_is_429_with_retry_after_on_both_transports(warehouse_url: str, tmp_path: Path) -> None:
    running = start(warehouse_url, rate_limit_per_second=1, rate_limit_burst=2)
    try:
        url = f"http://127.0.0.1:{running.http_port}/api/v1/events"
        statuses = [httpx.post(url, json=[event(f"r{i}")], headers=AUTH) for i in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 429, 429]
        assert statuses[2].headers["Retry-After"] == "1" and "rate limited" in statuses[2].json()["error"]
        time.sleep(1.1)  # one request back in the bucket
        assert httpx.post(url, json=[event("r9")], headers=AUTH).status_code == 200
        # gRPC: the same bucket per token; refused as busy, which the client retries after a pause
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        push = channel.unary_unary(
            "/telemetry.v1.TelemetryIngest/PushProductEvents",
            request_serializer=pb.PushProductEventsRequest.SerializeToString,
            response_deserializer=pb.PushProductEventsResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            push(pb.PushProductEventsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
            push(pb.PushProductEventsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details().startswith("rate limited: retry in")
        channel.close()
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN, spool_dir=tmp_path / "spool", attempts=6) as client:
            assert client.push_host_minutes([pb.HostMinute(host_id="h", minute=stamp_of(now(-120)), samples=1)])
    finally:
        running.stop(grace=5)


def stamp_of(moment: dt.datetime) -> dict[str, int]:
    return {"seconds": int(moment.replace(second=0).timestamp())}


def grpc_health(port: int, service: str = "telemetry.v1.TelemetryIngest") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status


def test_the_database_down_is_503_with_retry_after_and_both_healths_say_so(pg_server, warehouse_url: str) -> None:
    name = warehouse_url.rsplit("/", 1)[1]
    running = start(warehouse_url, db_wait_seconds=1, workers=2)
    base = f"http://127.0.0.1:{running.http_port}"
    try:
        assert httpx.get(f"{base}/health").text == "OK" and httpx.get(f"{base}/healthz").status_code == 200
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute(f'alter database "{name}" allow_connections false')
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
        try:
            response = httpx.post(f"{base}/api/v1/events", json=[event("down")], headers=AUTH, timeout=30)
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            deadline = time.monotonic() + 10
            while httpx.get(f"{base}/health").status_code != 503:
                assert time.monotonic() < deadline, "health still says OK"
                time.sleep(0.2)
            assert grpc_health(running.port) == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            with psycopg.connect(pg_server.url, autocommit=True) as admin:
                admin.execute(f'alter database "{name}" allow_connections true')
        deadline = time.monotonic() + 15
        while httpx.get(f"{base}/health").status_code != 200:
            assert time.monotonic() < deadline, "health did not come back"
            time.sleep(0.2)
        assert httpx.post(f"{base}/api/v1/events", json=[event("up")], headers=AUTH).json()["accepted"] == 1
        assert grpc_health(running.port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(grace=5)


def test_stalled_connections_hold_nothing_and_a_trickled_body_is_408(warehouse_url: str) -> None:
    workers = 2
    running = start(warehouse_url, workers=workers, receive_timeout_seconds=1.5)
    port = running.http_port
    stalled: list[socket.socket] = []
    try:
        for i in range(4 * workers * 4):  # headers never finished, or a body promised and never sent
            sock = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthori")
            else:
                sock.sendall(
                    f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[".encode()
                )
            stalled.append(sock)
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).text == "OK"
        ok = httpx.post(f"http://127.0.0.1:{port}/api/v1/events", json=[event("through")], headers=AUTH, timeout=1)
        assert ok.status_code == 200 and time.monotonic() - started < 1
        stalled[0].settimeout(5)
        answer = b""
        while chunk := stalled[0].recv(4096):  # until the receiver closes the connection
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1.5 s" in answer
    finally:
        for sock in stalled:
            sock.close()
        running.stop(grace=5)


def test_cors_is_off_by_default_and_answers_the_configured_origins(warehouse_url: str, http: httpx.Client) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in http.options("/api/v1/events", headers=preflight).headers
    running = start(warehouse_url, http_cors_origins="https://app.example")
    try:
        base = f"http://127.0.0.1:{running.http_port}"
        allowed = httpx.options(f"{base}/api/v1/events", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(f"{base}/api/v1/events", headers=preflight | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        running.stop(grace=5)


def test_the_openapi_document_describes_every_route(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    paths = document["paths"]
    assert set(paths) >= {"/api/v1/telemetry", "/received-messages", "/api/v1/events", "/health", "/healthz"}
    telemetry = paths["/api/v1/telemetry"]["post"]
    schema = telemetry["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    assert schema["properties"]["hardware"]["properties"]["cpu_usage_percent"] == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 100.0,
    }
    assert {"200", "400", "401", "413", "415", "429", "503"} <= set(telemetry["responses"])
    assert "application/x-ndjson" in paths["/api/v1/events"]["post"]["requestBody"]["content"]


def test_the_cli_serves_http_on_the_port_it_is_given(receiver_process, warehouse_url: str) -> None:
    port = free_port()
    process, _ = receiver_process(TELEMETRY_HTTP_LISTEN=f"127.0.0.1:{port}")
    response = httpx.post(f"http://127.0.0.1:{port}/api/v1/telemetry", json=report(), headers=AUTH, timeout=10)
    assert response.status_code == 200 and response.json()["accepted"] == 1
    assert process.poll() is None and uuid.UUID(response.json()["batch_id"])
