"""Privacy: excluded payload fields and hashed receiver public keys never land, in rows or in rejects, through the
receiver and the JSONL loader alike; hashing is deterministic, so deduplication and the reliability marts hold."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from collectors.config import Settings
from collectors.ingest import rules
from collectors.ingest.privacy import HASHED_KEY_PREFIX, Privacy
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.loader.cli import main as load_events
from collectors.senders.loader.database import DatabaseSink
from collectors.senders.loader.loader import load_file, worker_pool
from tests.support import records
from tests.support.receivers import TOKEN

SALT = "a-salt-of-at-least-16-characters"
PRIVATE = {
    "TELEMETRY_PAYLOAD_EXCLUDE_FIELDS": "email, device.ip",
    "TELEMETRY_HASH_RECEIVER_KEYS": "true",
    "TELEMETRY_RECEIVER_KEY_SALT": SALT,
}
KEY = "0x04" + "ab" * 64  # a public key as chat clients send it


@pytest.fixture
def private_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRIVATE.items():
        monkeypatch.setenv(name, value)


def test_settings_and_rules(private_env: None) -> None:
    settings = Settings()
    assert settings.payload_exclude_fields == ["email", "device.ip"]
    privacy = Privacy.from_settings(settings)
    assert privacy.payload_exclude == (("email",), ("device", "ip"))
    hashed = privacy.receiver_key(KEY)
    assert hashed == privacy.receiver_key(KEY) and hashed.startswith(HASHED_KEY_PREFIX) and KEY not in hashed
    assert len(hashed) == len(HASHED_KEY_PREFIX) + 64
    assert Privacy.of(receiver_key_salt="another-salt-16chars").receiver_key(KEY) != hashed
    assert SALT not in repr(privacy) and SALT not in repr(settings)
    assert Privacy.from_settings(Settings(hash_receiver_keys=False)).receiver_key(KEY) == KEY
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(hash_receiver_keys=True, receiver_key_salt="short")
    with pytest.raises(ValidationError, match="is not a key path"):
        Settings(payload_exclude_fields="email,,device..ip")
    assert Settings(payload_exclude_fields=" a , b.c ").payload_exclude_fields == ["a", "b.c"]


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        ('{"email": "a@b.c", "plan": "pro"}', {"plan": "pro"}),
        ('{"device": {"ip": "10.0.0.1", "os": "linux"}, "n": 1}', {"device": {"os": "linux"}, "n": 1}),
        ('{"device": "phone", "ip": "kept: not under device"}', {"device": "phone", "ip": "kept: not under device"}),
        ('{"list": [{"email": "not looked into"}]}', {"list": [{"email": "not looked into"}]}),
        ('{"email": null, "x": 1.10, "big": 1e400, "int": 123456789012345678901234567890}', None),
    ],
)  # fmt: skip
def test_payload_fields_are_excluded(payload: str, stored: dict | None) -> None:
    privacy = Privacy.of(["email", "device.ip"])
    text = rules.payload_json(payload, 16 * 1024, privacy)
    if stored is None:  # numbers are kept exactly as written, not through a float
        assert text == '{"x":1.10,"big":1E+400,"int":123456789012345678901234567890}'
    else:
        assert json.loads(text) == stored
    if stored == json.loads(payload):
        assert text == payload  # nothing to remove: stored as sent
    with pytest.raises(rules.RecordRefused, match="lone surrogate"):
        rules.payload_json('{"email": 1, "s": "\\ud800"}', 1024, privacy)


def private_receiver(url: str) -> Receiver:
    settings = Settings(database_url=url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    return Receiver(settings).start()


def test_receiver_hashes_keys_and_drops_fields_in_rows_and_rejects(private_env: None, warehouse_url: str) -> None:
    running = private_receiver(warehouse_url)
    try:
        samples = [records.sample("m1", receiver=KEY), records.sample("m2", receiver=KEY)]
        too_old = records.sample("m3", receiver=KEY, minutes_ago=60 * 24 * 30)
        events = [records.event("e1", email="a@b.c", plan="pro")]
        old_event = records.event("e2", minutes_ago=60 * 24 * 200, email="x@y.z")
        bad_payload = records.event("e3")
        bad_payload.payload_json = '{"email": "p@q.r", oops'
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN) as client:
            first = client.push_message_samples([*samples, too_old])
            again = client.push_message_samples(samples)
            sent = client.push_product_events([*events, old_event, bad_payload])
    finally:
        running.stop(grace=1)
    assert (first.accepted, first.rejected, again.duplicates) == (2, 1, 2)  # deterministic: replays deduplicate
    assert (sent.accepted, sent.rejected) == (1, 2)
    hashed = Privacy.of(receiver_key_salt=SALT).receiver_key(KEY)
    with psycopg.connect(warehouse_url) as db:
        assert db.execute("select distinct receiver_public_key from raw.message_samples").fetchall() == [(hashed,)]
        assert db.execute("select payload from raw.product_events").fetchall() == [({"plan": "pro"},)]
        kept = dict(db.execute("select record_index, record from raw.rejects where source = 'product_events'"))
        sample_reject = db.execute("select record from raw.rejects where source = 'message_samples'").fetchone()[0]
        everything = db.execute("select string_agg(t::text, ' ') from (select * from raw.rejects) t").fetchone()[
            0
        ] + " ".join(str(r) for r in db.execute("select * from raw.product_events"))
    assert pb.MessageSample.FromString(sample_reject).receiver_public_key == hashed
    assert json.loads(pb.ProductEvent.FromString(kept[1]).payload_json) == {}  # too old: kept, without the email
    assert pb.ProductEvent.FromString(kept[2]).payload_json == ""  # unparseable yet names "email": left out
    assert pb.ProductEvent.FromString(kept[2]).event_id == "e3"
    for secret in ("a@b.c", "x@y.z", "p@q.r", KEY, KEY.encode().hex()):
        assert secret not in everything


def test_loader_applies_the_same_rules(private_env: None, warehouse_url: str, tmp_path: Path) -> None:
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    line = {"schema_version": "telemetry_event_v1", "channel": "app", "event": "open", "user_id": "u1"}
    lines = [
        json.dumps({**line, "event_id": "l1", "timestamp": moment, "payload": {"email": "a@b.c", "device": {"ip": 1}}}),
        json.dumps({**line, "event_id": "l2", "timestamp": "2001-01-01T00:00:00Z", "payload": {"email": "x@y.z"}}),
        '{"event_id": "l3", "payload": {"email": "p@q.r"',  # not JSON, names an excluded field
        '{"event_id": "l4", "not json at all"',  # names none, yet could (escaped): withheld too
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    # and the worker-process path (the rules are pickled into each worker)
    settings = Settings(database_url=warehouse_url)
    sink = DatabaseSink(warehouse_url, settings)
    try:
        with worker_pool(1) as pool:
            report = load_file(path, sink, pool=pool, parallel_min_bytes=0)
    finally:
        sink.close()
    assert (report.accepted, report.duplicates, report.rejected) == (0, 1, 3)
    with psycopg.connect(warehouse_url) as db:
        assert db.execute("select event_id, payload from raw.product_events").fetchall() == [("l1", {"device": {}})]
        kept = db.execute(
            "select distinct on (line_number) line_number, record from raw.rejects order by line_number, reject_id"
        ).fetchall()
        # loading the file twice stores its rejects once
        assert db.execute("select count(*) from raw.rejects").fetchone() == (3,)
    assert json.loads(kept[0][1])["payload"] == {} and json.loads(kept[0][1])["event_id"] == "l2"
    assert kept[1] == (3, b"")
    assert kept[2] == (4, b"")


def test_reliability_marts_are_the_same_with_hashed_receiver_keys(warehouse_url: str, tmp_path: Path) -> None:
    """Reliability keys on receiver identity: with every key replaced by its (deterministic) hash, the marts
    hold the same numbers."""
    telemetry_dbt = pytest.importorskip("collectors.orchestration.dbt_runner")
    from tests.dbt import scenario

    with psycopg.connect(warehouse_url, autocommit=True) as db:
        scenario.load(db)
    start = dt.datetime.combine(scenario.DAY, dt.time(), tzinfo=dt.UTC)
    models = ("fct_channel_reliability_hourly", "fct_channel_reliability_daily", "fct_reliability_hourly")

    def build_and_read(name: str) -> dict[str, list]:
        telemetry_dbt.build(
            " ".join(f"+{m}" for m in models),
            start,
            start + dt.timedelta(days=1),
            database_url=warehouse_url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp_path / name,
        )
        with psycopg.connect(warehouse_url) as db:
            return {
                model: sorted(
                    json.dumps({k: v for k, v in row.items() if not k.endswith(("_at", "built"))}, sort_keys=True)
                    for (row,) in db.execute(f"select to_jsonb(t) from marts.{model} t")  # model names: constants
                )
                for model in models
            }

    plain = build_and_read("plain")
    privacy = Privacy.of(receiver_key_salt=SALT)
    with psycopg.connect(warehouse_url, autocommit=True) as db:
        keys = [k for (k,) in db.execute("select distinct receiver_public_key from raw.message_samples")]
        with db.cursor() as cur:
            cur.executemany(
                "update raw.message_samples set receiver_public_key = %s where receiver_public_key = %s",
                [(privacy.receiver_key(k), k) for k in keys],
            )
        assert len(keys) == 4
    hashed = build_and_read("hashed")
    assert all(plain[m] for m in models)
    assert hashed == plain
