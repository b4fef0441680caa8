"""Receiver throughput end to end (client -> gRPC or HTTP -> validation -> COPY -> commit -> ack) against plain COPY.

All move the same message samples into the same day-partitioned table with
its unique key, in 2,000-row batches with one transaction per batch, in the
same run. The receiver runs as its own process (as in production); the gRPC
client keeps a few batches in flight, and over HTTP three senders each post
status-im telemetry's JSON arrays of 2,000 received messages. Two receivers
against one: the same client, 6 batches in flight, spreading over both
(round_robin); all processes share the machine's cores.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import msgspec
import psycopg
from psycopg import sql

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.ingest import registry, rules
from collectors.ingest.writer import copy_rows
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import IngestClient
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions
from tests.support.receivers import free_port, wait_serving

ROWS = 200_000
BATCH = 2_000
TOKEN = "bench-token-0123456789"


def make_samples(now: dt.datetime) -> list[pb.MessageSample]:
    samples = []
    for i in range(ROWS):
        sent = now - dt.timedelta(seconds=i % 3600 + 60)
        sample = pb.MessageSample(
            message_id=f"msg-{i:08d}",
            channel_id=f"channel-{i % 50}",
            receiver_public_key=f"0x04{i % 500:060x}",
            topics=b"\x00\x01\x02\x03",
            envelope_id=f"env-{i:08d}",
        )
        sample.sent_at.FromDatetime(sent)
        sample.received_at.FromDatetime(sent + dt.timedelta(seconds=1))
        samples.append(sample)
    return samples


def copy_baseline(url: str, samples: list[pb.MessageSample], *, binary: bool) -> float:
    """psycopg COPY of the same rows, 2,000 per transaction, text ("plain") or binary; returns rows/s."""
    limits = rules.Limits(now=dt.datetime.now(dt.UTC), retention_days=7)
    rows = [rules.row_builder(registry.MESSAGE_SAMPLES)(s, limits, uuid.uuid4()) for s in samples]
    table = sql.Identifier("raw", "message_samples")
    spec = registry.MESSAGE_SAMPLES
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            copy_rows(cur, table, spec.column_names, rows[start : start + BATCH], spec.types if binary else None)
            conn.commit()
        elapsed = time.perf_counter() - started
        cur.execute("truncate raw.message_samples")
        conn.commit()
    return len(rows) / elapsed


def receiver_throughput(url: str, samples: list[pb.MessageSample], receivers: int = 1, in_flight: int = 3) -> float:
    """Records/s through ``receivers`` receiver processes (the client spreads its batches over them)."""
    ports = [free_port() for _ in range(receivers)]
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": url,
        "TELEMETRY_INGEST_TOKENS": TOKEN,
        "TELEMETRY_METRICS_PORT": "0",
        "TELEMETRY_HTTP_LISTEN": "",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "collectors.receiver.cli", "--listen", f"127.0.0.1:{port}", "--workers", "4"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    targets = [f"127.0.0.1:{port}" for port in ports]
    try:
        for target in targets:
            wait_serving(target)
        with IngestClient(targets, TOKEN, max_batch_records=BATCH, max_in_flight=in_flight) as client:
            started = time.perf_counter()
            result = client.push_message_samples(samples)
            elapsed = time.perf_counter() - started
        if result.accepted != len(samples):
            raise RuntimeError(f"receiver accepted {result.accepted} of {len(samples)}: {result.rejects[:3]}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    with psycopg.connect(url) as conn:
        stored = conn.execute("select count(*) from raw.message_samples").fetchone()[0]
    if stored != len(samples):
        raise RuntimeError(f"{stored} rows stored, {len(samples)} acknowledged")
    return len(samples) / elapsed


def status_im_bodies(samples: list[pb.MessageSample]) -> list[bytes]:
    """The samples as status-im telemetry's received messages, 2,000 to a body."""
    messages = [
        {
            "chatId": s.channel_id,
            "messageHash": s.envelope_id,
            "messageId": s.message_id,
            "receiverKeyUID": s.receiver_public_key,
            "nodeName": "bench-node",
            "sentAt": s.sent_at.seconds,
            "topic": s.topics.decode(),
        }
        for s in samples
    ]
    return [msgspec.json.encode(messages[i : i + BATCH]) for i in range(0, len(messages), BATCH)]


def http_throughput(url: str, bodies: list[bytes], records: int, senders: int = 3) -> float:
    port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": url,
        "TELEMETRY_INGEST_TOKENS": TOKEN,
        "TELEMETRY_METRICS_PORT": "0",
        "TELEMETRY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
    }
    command = [sys.executable, "-m", "collectors.receiver.cli", "--listen", f"127.0.0.1:{port}", "--workers", "4"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        wait_serving(f"127.0.0.1:{port}")
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers=headers, timeout=60) as client:

            def post(body: bytes) -> int:
                response = client.post("/received-messages", content=body)
                if response.status_code != 201:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
                return int(response.headers["X-Telemetry-Accepted"])

            started = time.perf_counter()
            with ThreadPoolExecutor(senders) as pool:
                accepted = sum(pool.map(post, bodies))
            elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(30)
    if accepted != records:
        raise RuntimeError(f"the HTTP receiver accepted {accepted} of {records}")
    with psycopg.connect(url) as conn:
        stored = conn.execute("select count(*) from raw.message_samples").fetchone()[0]
    if stored != records:
        raise RuntimeError(f"{stored} rows stored, {records} acknowledged over HTTP")
    return records / elapsed


def truncate_samples(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("truncate raw.message_samples")


def run(server_url: str) -> dict[str, float]:
    name = f"bench_ingest_{os.getpid()}"
    url = local_postgres.create_database(server_url, name, drop=True)
    try:
        upgrade(url)
        with psycopg.connect(url) as conn:
            ensure_partitions(conn, RetentionDays(), ahead_days=1, back_days=2)
        samples = make_samples(dt.datetime.now(dt.UTC))
        copy_rate = copy_baseline(url, samples, binary=False)
        binary_rate = copy_baseline(url, samples, binary=True)
        receiver_rate = receiver_throughput(url, samples)
        truncate_samples(url)
        # the same client (6 batches in flight) against one receiver and against two
        one_rate = receiver_throughput(url, samples, receivers=1, in_flight=6)
        truncate_samples(url)
        two_rate = receiver_throughput(url, samples, receivers=2, in_flight=6)
        truncate_samples(url)
        http_rate = http_throughput(url, status_im_bodies(samples), len(samples))
    finally:
        local_postgres.drop_database(server_url, name)
    return {
        "ingest.copy_records_per_s": round(copy_rate),
        "ingest.receiver_records_per_s": round(receiver_rate),
        "ingest.receiver_vs_copy": round(receiver_rate / copy_rate, 3),
        "ingest.copy_binary_records_per_s": round(binary_rate),
        "ingest.receiver_vs_binary_copy": round(receiver_rate / binary_rate, 3),
        "ingest.two_receivers_vs_one": round(two_rate / one_rate, 3),
        "ingest.two_receivers_records_per_s": round(two_rate),
        "ingest.http_records_per_s": round(http_rate),
        "ingest.http_vs_copy": round(http_rate / copy_rate, 3),
    }
