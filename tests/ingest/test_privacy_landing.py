"""Data minimisation and IP anonymisation end to end: events sent to a real receiver over loopback (gRPC and HTTP)
and loaded by the JSONL loader's direct path land cut to their allow-list with their IP addresses anonymised,
and what raw.rejects keeps of refused ones holds neither a removed key nor an address as sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import httpx
import psycopg
import pytest

from collectors.config import Settings
from collectors.ingest.privacy import HASHED_KEY_PREFIX
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.loader.cli import main as load_events
from tests.support import records
from tests.support.receivers import TOKEN

ALLOW = {"app/purchase": ["amount", "item.sku", "ip"], "app": ["screen", "client"], "*": ["ip", "screen"]}
IP_SALT = "an-ip-salt-of-16-characters-or-more"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MONTHS_AGO = 60 * 24 * 200  # minutes: past the product events' retention


def start(url: str, allow: dict = ALLOW, **privacy: object) -> Receiver:
    settings = Settings(
        database_url=url,
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        metrics_port=0,
        ingest_tokens=TOKEN,
        payload_allow_fields=allow,
        **privacy,
    )
    return Receiver(settings).start()


def landed(url: str) -> tuple[dict[str, dict], dict[str, tuple[str, bytes]], str]:
    """Payloads by event id, rejects by event id (reason, record) and the text of every raw row."""
    with psycopg.connect(url) as db:
        payloads = dict(db.execute("select event_id, payload from raw.product_events"))
        rejects = db.execute("select reason, record from raw.rejects where source = 'product_events'").fetchall()
        everything = " ".join(
            str(row)
            for table in ("product_events", "accounts_created", "rejects")
            for row in db.execute(f"select t::text from raw.{table} t")  # table names: constants
        )
        everything += " ".join(bytes(record).decode("utf-8", "replace") for _, record in rejects)
    by_id = {}
    for reason, record in rejects:
        record = bytes(record)
        try:
            event_id = json.loads(record)["event_id"]
        except ValueError:
            event_id = pb.ProductEvent.FromString(record).event_id
        by_id[event_id] = (reason, record)
    return payloads, by_id, everything


def event(event_id: str, name: str = "purchase", channel: str = "app", minutes_ago: int = 1, **payload: object):
    return records.event(event_id, name=name, channel=channel, minutes_ago=minutes_ago, **payload)


def test_grpc_events_land_truncated_and_minimised_and_so_do_their_rejects(warehouse_url: str) -> None:
    running = start(warehouse_url, ip_anonymization="truncate", ip_fields=["ip", "client.ip"])
    events = [
        event("e1", amount=9.99, item={"sku": "s1", "name": "Blue"}, ip="203.0.113.77", email="a@b.c", card="4111"),
        event("e2", "open", client={"ip": "2001:db8:abcd:12::1%eth0", "os": "linux"}, screen="home", card="4111"),
        event("e3", "view", "web", ip="::ffff:198.51.100.9", referrer="https://mail.example/inbox"),
        event("e4", ip={"v4": "203.0.113.77"}, amount=1),  # hostile: an object
        event("e5", ip="9" * 10_000, amount=1),  # hostile: a 10 kB string
        event("e6", minutes_ago=MONTHS_AGO, ip="203.0.113.77", amount=2, card="4111"),  # refused: too old
        event("e7", ip=None, amount=3),  # no address: kept as null
    ]
    try:
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN) as client:
            sent = client.push_product_events(events)
    finally:
        running.stop(grace=1)
    assert (sent.accepted, sent.rejected) == (4, 3), sent.rejects
    reasons = dict(sent.rejects)
    assert reasons[3] == "payload ip holds an object, not an IP address"
    assert reasons[4] == "payload ip holds a string of 10000 characters, not an IP address"
    payloads, rejects, everything = landed(warehouse_url)
    assert payloads == {
        "e1": {"amount": 9.99, "item": {"sku": "s1"}, "ip": "203.0.113.0"},
        "e2": {"client": {"ip": "2001:db8:abcd::", "os": "linux"}, "screen": "home"},
        "e3": {"ip": "198.51.100.0"},
        "e7": {"amount": 3, "ip": None},
    }
    kept = {key: json.loads(pb.ProductEvent.FromString(record).payload_json) for key, (_, record) in rejects.items()}
    assert kept == {"e4": {"amount": 1}, "e5": {"amount": 1}, "e6": {"amount": 2, "ip": "203.0.113.0"}}
    assert "retention" in rejects["e6"][0]
    for secret in ("203.0.113.77", "198.51.100.9", "2001:db8:abcd:12", "eth0", "4111", "a@b.c", "Blue", "mail.example"):
        assert secret not in everything, secret
    assert "9" * 100 not in everything


def test_http_events_land_with_stable_hmacs_and_an_allow_list_required(warehouse_url: str) -> None:
    allow = {key: paths for key, paths in ALLOW.items() if key != "*"}
    running = start(warehouse_url, allow, ip_anonymization="hmac", ip_salt=IP_SALT, payload_allow_required=True)
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()

    def line(event_id: str, name: str = "purchase", channel: str = "app", **fields: object) -> dict:
        base = {"schema_version": "telemetry_event_v1", "event_id": event_id, "channel": channel, "event": name}
        return base | {"timestamp": moment, "user_id": "u1"} | fields

    first = [
        line("h1", payload={"ip": "198.51.100.9", "amount": 5, "card": "4111"}),
        line("h2", "signup", "user", payload={"ip": "198.51.100.9", "email": "a@b.c"}),  # no entry: nothing kept
        line("h3", timestamp="yesterday", client_ip="198.51.100.9", payload={"ip": "198.51.100.9", "card": "4111"}),
    ]
    second = [
        line("h4", payload={"ip": "::ffff:198.51.100.9"}),  # the same address, another spelling, another batch
        line("h5", payload={"ip": "198.51.100.10"}),
        line("h6", payload={"ip": "fe80::1%eth0", "amount": 1}),
        line("h7", payload={"ip": "198.51.100.9:443"}),  # hostile: an address with a port
        # no event ids: derived from what is stored, so one address in two spellings is one event
        *(
            {k: v for k, v in line("", payload={"ip": a}).items() if k != "event_id"}
            for a in ("198.51.100.9", "::ffff:198.51.100.9")
        ),
    ]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", timeout=30) as http:
            answers = [http.post("/api/v1/events", json=batch, headers=AUTH).json() for batch in (first, second)]
    finally:
        running.stop(grace=1)
    assert [(a["accepted"], a["duplicates"], a["rejected"]) for a in answers] == [(2, 0, 1), (4, 1, 1)], answers
    assert answers[1]["rejects"][0]["reason"] == "payload ip holds a string of 16 characters that is not an IP address"
    payloads, rejects, everything = landed(warehouse_url)
    expected = HASHED_KEY_PREFIX + hmac.new(IP_SALT.encode(), b"198.51.100.9", hashlib.sha256).hexdigest()
    assert payloads["h1"] == {"ip": expected, "amount": 5}
    assert payloads["h4"] == {"ip": expected}  # stable: the same address, the same value
    assert payloads["h5"]["ip"].startswith(HASHED_KEY_PREFIX) and payloads["h5"]["ip"] != expected
    assert payloads["h6"]["ip"] == HASHED_KEY_PREFIX + hmac.new(IP_SALT.encode(), b"fe80::1", "sha256").hexdigest()
    assert payloads["h2"] == {}
    derived = [key for key in payloads if key.startswith("jsonl-")]
    assert len(derived) == 1 and payloads[derived[0]] == {"ip": expected}
    reason, record = rejects["h3"]
    assert "not ISO 8601" in reason
    assert json.loads(record) == line("h3", timestamp="yesterday", payload={"ip": expected})
    assert json.loads(rejects["h7"][1])["payload"] == {}
    for secret in ("198.51.100.9", "198.51.100.10", "client_ip", "4111", "a@b.c", "eth0"):
        assert secret not in everything, secret


def test_the_loader_lands_lines_minimised_and_truncated(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_PAYLOAD_ALLOW_FIELDS", json.dumps(ALLOW))
    monkeypatch.setenv("TELEMETRY_IP_ANONYMIZATION", "truncate")
    monkeypatch.setenv("TELEMETRY_IP_FIELDS", "ip,client.ip")
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    base = {"schema_version": "telemetry_event_v1", "channel": "app", "event": "purchase", "user_id": "u1"}
    lines = [
        base | {"event_id": "l1", "timestamp": moment, "payload": {"ip": "203.0.113.77", "amount": 1, "card": "4111"}},
        base | {"event_id": "l2", "timestamp": moment, "payload": {"ip": ["203.0.113.77"], "amount": 2}},
        base | {"event_id": "l3", "timestamp": "2001-01-01T00:00:00Z", "payload": {"ip": "203.0.113.77", "card": "1"}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    payloads, rejects, everything = landed(warehouse_url)
    assert payloads == {"l1": {"ip": "203.0.113.0", "amount": 1}}
    assert rejects["l2"][0] == "payload ip holds an array, not an IP address"
    assert json.loads(rejects["l2"][1])["payload"] == {"amount": 2}
    assert json.loads(rejects["l3"][1])["payload"] == {"ip": "203.0.113.0"}
    for secret in ("203.0.113.77", "4111", '"card"'):
        assert secret not in everything, secret
