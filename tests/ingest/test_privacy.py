"""Privacy: excluded payload fields and hashed receiver public keys never land, in rows or in rejects, through the
receiver and the JSONL loader alike; hashing is deterministic, so deduplication and the reliability marts hold."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from collectors.config import SECRET_FILE_SETTINGS, Settings, describe
from collectors.ingest import registry, rules
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


# --------------------------------------------------------------------------- data minimisation and IP anonymisation

IP_SALT = "an-ip-salt-of-16-characters-or-more"
ALLOW = {"app/purchase": ["amount", "item.sku", "ip"], "app": ["screen", "client"], "*": ["ip"]}


def minimising(**overrides: object) -> Privacy:
    options: dict = {"allow": ALLOW, "ip_mode": "truncate", "ip_fields": ["ip", "client.ip"]} | overrides
    return Privacy.of(**options)


def test_minimisation_and_ip_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TELEMETRY_PAYLOAD_ALLOW_FIELDS", json.dumps(ALLOW))
    monkeypatch.setenv("TELEMETRY_PAYLOAD_ALLOW_REQUIRED", "true")
    monkeypatch.setenv("TELEMETRY_IP_ANONYMIZATION", "hmac")
    monkeypatch.setenv("TELEMETRY_IP_FIELDS", "ip, client.ip")
    salt_file = tmp_path / "ip-salt"
    salt_file.write_text(IP_SALT + "\n")
    monkeypatch.setenv("TELEMETRY_IP_SALT_FILE", str(salt_file))
    settings = Settings()
    assert settings.payload_allow_fields == ALLOW and settings.payload_allow_required
    assert settings.ip_fields == ["ip", "client.ip"] and settings.ip_salt.get_secret_value() == IP_SALT
    privacy = Privacy.from_settings(settings)
    assert privacy.touches_payload and privacy.ip_mode == "hmac" and privacy.ip_paths == (("ip",), ("client", "ip"))
    assert privacy.anonymized_ip("1.2.3.4") == Privacy.of(ip_mode="hmac", ip_salt=IP_SALT).anonymized_ip("1.2.3.4")
    assert IP_SALT not in repr(settings) and IP_SALT not in repr(privacy)
    # every salt can come from a file, the receiver keys' too
    key_file = tmp_path / "key-salt"
    key_file.write_text(SALT + "\n")
    monkeypatch.setenv("TELEMETRY_RECEIVER_KEY_SALT_FILE", str(key_file))
    assert Settings().receiver_key_salt.get_secret_value() == SALT
    secrets = {name for name, info in Settings.model_fields.items() if info.annotation is SecretStr}
    assert secrets <= set(SECRET_FILE_SETTINGS), secrets - set(SECRET_FILE_SETTINGS)
    # the code's defaults change nothing
    for name in list(os.environ):
        if name.startswith("TELEMETRY_"):
            monkeypatch.delenv(name)
    default = Privacy.from_settings(Settings())
    assert (default.ip_mode, default.payload_allow, default.allow_required, default.touches_payload) == (
        "off",
        (),
        False,
        False,
    )
    # what compose passes for an unset variable: empty, which is none (JSON otherwise)
    monkeypatch.setenv("TELEMETRY_PAYLOAD_ALLOW_FIELDS", "")
    monkeypatch.setenv("TELEMETRY_SAMPLING_RATES", " ")
    assert (Settings().payload_allow_fields, Settings().sampling_rates) == ({}, {})
    monkeypatch.setenv("TELEMETRY_PAYLOAD_ALLOW_FIELDS", '{"app": ["screen"]')
    with pytest.raises(ValidationError, match="not JSON"):
        Settings()
    monkeypatch.delenv("TELEMETRY_PAYLOAD_ALLOW_FIELDS")
    with pytest.raises(ValidationError, match="TELEMETRY_IP_SALT of at least 16") as short:
        Settings(ip_anonymization="hmac", ip_salt="short-ip-salt")
    assert "short-ip-salt" not in describe(short.value)  # what the CLIs print
    with pytest.raises(ValidationError, match="ip_anonymization"):
        Settings(ip_anonymization="mask")
    with pytest.raises(ValidationError, match="needs TELEMETRY_IP_FIELDS"):
        Settings(ip_anonymization="truncate", ip_fields="")
    with pytest.raises(ValidationError, match="is not a key path"):
        Settings(ip_fields="ip,client..ip")
    with pytest.raises(ValidationError, match="is not 'channel/event'"):
        Settings(payload_allow_fields={"app/a/b": ["x"]})
    with pytest.raises(ValidationError, match="is not a key path"):
        Settings(payload_allow_fields={"app": ["ok", ".x"]})
    with pytest.raises(ValueError, match="needs a salt"):
        Privacy.of(ip_mode="hmac")


@pytest.mark.parametrize(
    ("channel", "event", "payload", "stored"),
    [
        # the most specific entry wins: channel/event, then channel, then *
        ("app", "purchase", {"amount": 1, "item": {"sku": "a", "name": "b"}, "email": "x"},
         {"amount": 1, "item": {"sku": "a"}}),
        ("app", "open", {"screen": "home", "amount": 1, "client": {"os": "linux", "v": [1, {"k": 2}]}},
         {"screen": "home", "client": {"os": "linux", "v": [1, {"k": 2}]}}),
        ("web", "open", {"screen": "home", "ip": None}, {"ip": None}),
        # a nested path keeps its key only while it holds an object; arrays are kept whole or not at all
        ("app", "purchase", {"item": "sku-as-text", "amount": [1, 2]}, {"amount": [1, 2]}),
        ("app", "purchase", {"item": [{"sku": "a", "secret": 1}]}, {}),
    ],
)  # fmt: skip
def test_payloads_keep_only_their_allow_list(channel: str, event: str, payload: dict, stored: dict) -> None:
    text = rules.payload_json(json.dumps(payload), 16 * 1024, minimising(), channel, event)
    assert json.loads(text) == stored


def test_without_an_entry_payloads_land_as_sent_unless_an_entry_is_required() -> None:
    privacy = Privacy.of(allow={"app/purchase": ["amount"]})
    sent = '{"b": 1.10, "a": 1e400, "n": 123456789012345678901234567890}'
    assert rules.payload_json(sent, 1024, privacy, "web", "open") == sent  # untouched: the very text
    assert rules.payload_json(sent, 1024, privacy, "app", "purchase") == "{}"
    required = Privacy.of(allow={"app/purchase": ["amount", "b"]}, allow_required=True)
    assert rules.payload_json(sent, 1024, required, "web", "open") == "{}"
    assert rules.payload_json(sent, 1024, required, "app", "purchase") == '{"b":1.10}'  # numbers as written
    assert rules.payload_json("", 1024, required, "web", "open") == "{}"
    # the allow-list first, then the exclusions: an excluded path goes even when allowed
    both = Privacy.of(["amount"], allow={"app/purchase": ["amount", "sku"]})
    assert json.loads(rules.payload_json('{"amount": 1, "sku": "x", "y": 2}', 1024, both, "app", "purchase")) == {
        "sku": "x"
    }


@pytest.mark.parametrize(
    ("sent", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.0.0.255", "10.0.0.0"),
        ("2001:db8:abcd:12:3456::1", "2001:db8:abcd::"),
        ("2001:DB8:ABCD:0012::0001", "2001:db8:abcd::"),
        ("::ffff:203.0.113.77", "203.0.113.0"),  # IPv4-mapped: the IPv4 address it maps
        ("::FFFF:cb00:714d", "203.0.113.0"),
        ("fe80::1234:5678%eth0", "fe80::"),  # the zone (an interface of the sender) is dropped
        ("2001:db8:1:2::3%25", "2001:db8:1::"),
        ("::1", "::"),
    ],
)
def test_truncation_keeps_the_24_or_48(sent: str, truncated: str) -> None:
    privacy = Privacy.of(ip_mode="truncate", ip_fields=["ip", "client.ip"])
    text = rules.payload_json(json.dumps({"ip": sent, "client": {"ip": sent}, "n": 1}), 1024, privacy)
    assert json.loads(text) == {"ip": truncated, "client": {"ip": truncated}, "n": 1}


def test_hmac_is_stable_per_address_and_keyed() -> None:
    privacy = Privacy.of(ip_mode="hmac", ip_salt=IP_SALT)

    def stored(address: str) -> str:
        return json.loads(rules.payload_json(json.dumps({"ip": address}), 1024, privacy))["ip"]

    first = stored("203.0.113.77")
    assert first.startswith(HASHED_KEY_PREFIX) and len(first) == len(HASHED_KEY_PREFIX) + 64
    assert stored("203.0.113.77") == first == stored("::ffff:203.0.113.77") == stored("::ffff:cb00:714d")
    assert stored("203.0.113.78") != first
    assert stored("2001:db8::1") == stored("2001:DB8:0:0::1") == stored("2001:db8::1%eth0")
    assert Privacy.of(ip_mode="hmac", ip_salt="another-salt-of-16-chars").anonymized_ip("203.0.113.77") != first
    assert "203.0.113" not in first


HOSTILE_ADDRESSES = [
    ({"nested": "1.2.3.4"}, "an object"),
    (["1.2.3.4"], "an array"),
    (True, "a boolean"),
    (16909060, "a number"),  # 1.2.3.4 as an integer: not taken as an address
    ("1" * 10_000, "a string of 10000 characters"),
    ("1.2.3.4:8080", "a string of 12 characters that is"),
    ("[2001:db8::1]:443", "a string of 17 characters that is"),
    (" 1.2.3.4", "a string of 8 characters that is"),
    ("01.2.3.4", "a string of 8 characters that is"),
    ("1.2.3.4/24", "a string of 10 characters that is"),
    ("fe80::1%", "a string of 8 characters that is"),
    ("", "a string of 0 characters that is"),
]


@pytest.mark.parametrize(("value", "kind"), HOSTILE_ADDRESSES)
def test_an_ip_key_without_an_address_refuses_the_event_and_is_dropped_from_its_reject(
    value: object, kind: str
) -> None:
    privacy = Privacy.of(ip_mode="truncate", ip_fields=["client.ip"])
    payload = json.dumps({"client": {"ip": value, "os": "linux"}})
    with pytest.raises(rules.RecordRefused) as refused:
        rules.payload_json(payload, 16 * 1024, privacy)
    assert str(refused.value).startswith(f"payload client.ip holds {kind}")
    assert "1.2.3.4" not in str(refused.value) and len(str(refused.value)) < 100  # the value is never echoed
    # what a reject keeps of it: the key dropped, the rest as it was
    event = records.event("e1")
    event.payload_json = payload
    kept = pb.ProductEvent.FromString(rules.kept_record(event, privacy).record)
    assert json.loads(kept.payload_json) == {"client": {"os": "linux"}}
    line = json.dumps({"event_id": "l1", "channel": "app", "event": "x", "payload": json.loads(payload)}).encode()
    assert json.loads(rules.kept_json(line, registry.PRODUCT_EVENTS, privacy).record)["payload"] == {
        "client": {"os": "linux"}
    }


def test_an_ip_key_the_allow_list_removes_refuses_nothing_and_null_stays_null() -> None:
    privacy = minimising()
    assert rules.payload_json('{"client": {"ip": {"x": 1}}}', 1024, privacy, "app", "purchase") == "{}"
    assert json.loads(rules.payload_json('{"ip": null}', 1024, privacy, "web", "x")) == {"ip": None}


def test_duplicate_keys_cannot_bring_back_what_was_removed() -> None:
    """Parsers (Python's, jsonb) keep a duplicate key's last value: a payload or line written anew has one."""
    privacy = minimising()
    text = rules.payload_json('{"ip": "203.0.113.77", "ip": null}', 1024, privacy, "web", "x")
    assert "203.0.113.77" not in text and json.loads(text) == {"ip": None}
    line = (
        b'{"channel": "web", "event": "x", "payload": {"ip": "203.0.113.77", "email": "a@b.c"}, '
        b'"payload": {"ip": null}}'
    )
    kept = rules.kept_json(line, registry.PRODUCT_EVENTS, privacy).record
    assert b"203.0.113" not in kept and b"a@b.c" not in kept and json.loads(kept)["payload"] == {"ip": None}


def test_rejects_keep_no_unknown_keys_nor_fields_beside_the_payload() -> None:
    """A JSON event's reject keeps the keys of telemetry_event_v1 only; a protobuf one, no unknown fields."""
    from collectors.ingest.event_lines import EventLine

    assert set(EventLine.__struct_fields__) == rules.EVENT_LINE_KEYS
    privacy = minimising()
    line = json.dumps(
        {"channel": "app", "event": "purchase", "timestamp": "bad", "client_ip": "203.0.113.77",
         "payload": {"amount": 3, "ip": "203.0.113.77", "email": "a@b.c"}}
    ).encode()  # fmt: skip
    kept = json.loads(rules.kept_json(line, registry.PRODUCT_EVENTS, privacy).record)
    assert kept == {
        "channel": "app",
        "event": "purchase",
        "timestamp": "bad",
        "payload": {"amount": 3, "ip": "203.0.113.0"},
    }
    event = records.event("e1", name="purchase", amount=3, email="a@b.c", ip="203.0.113.77")
    # field 99 (unknown to the schema), length 12: what a newer or hostile sender may add
    with_unknown = pb.ProductEvent.FromString(event.SerializeToString() + b"\x9a\x06\x0c203.0.113.77")
    assert b"203.0.113.77" in with_unknown.SerializeToString()
    record = rules.kept_record(with_unknown, privacy).record
    assert b"203.0.113.77" not in record and b"a@b.c" not in record
    assert json.loads(pb.ProductEvent.FromString(record).payload_json) == {"amount": 3, "ip": "203.0.113.0"}
    # unparseable while payload privacy applies: withheld, as with exclusions
    event.payload_json = '{"ip": "203.0.113.77", oops'
    withheld = rules.kept_record(event, privacy)
    assert pb.ProductEvent.FromString(withheld.record).payload_json == "" and withheld.note


def test_derived_event_ids_are_of_the_payload_as_stored() -> None:
    """A line without an event id gets one derived from what is stored of it: an unkeyed hash over the address
    as sent would give a truncated address back in 256 guesses."""
    from collectors.ingest.event_lines import parse_line

    def line(address: str, **payload: object) -> bytes:
        fields = {"schema_version": "telemetry_event_v1", "channel": "app", "event": "purchase", "user_id": "u1"}
        payload = {"ip": address, "amount": 1} | payload
        return json.dumps(fields | {"timestamp": "2026-03-01T12:00:00Z", "payload": payload}).encode()

    privacy = minimising()
    first, second = (parse_line(line(a), privacy=privacy) for a in ("203.0.113.5", "203.0.113.6"))
    assert first.event_id == second.event_id and first.payload_json == json.dumps({"ip": "203.0.113.5", "amount": 1})
    stored = parse_line(line("203.0.113.0"), privacy=privacy)
    assert stored.event_id == first.event_id
    assert parse_line(line("203.0.113.5", card="4111"), privacy=privacy).event_id == first.event_id
    assert parse_line(line("203.0.113.7"), privacy=privacy).event_id == first.event_id
    assert parse_line(line("203.0.114.5"), privacy=privacy).event_id != first.event_id
    # without privacy the id is of the line as sent, as before
    plain = [parse_line(line(a)) for a in ("203.0.113.5", "203.0.113.6")]
    assert plain[0].event_id != plain[1].event_id and plain[0].event_id != first.event_id
