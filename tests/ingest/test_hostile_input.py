"""Hostile input that used to get in: orphan rows, leaked fields, rules that differed between the loader and the
receiver, records that contradict themselves, nesting and sizes that crashed or swelled the loader, conflicting
duplicates. Each case goes through the real receiver and the real loader into a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.config import RetentionDays, Settings
from collectors.ingest import registry, rules
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.loader.cli import main as load_events
from tests.support import records
from tests.support.receivers import REPO_ROOT, TOKEN

pytestmark = pytest.mark.fuzz

HOUR_AGO = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
EXAMPLE = itertools.count()


def receiver_for(url: str, **overrides: object) -> Receiver:
    return Receiver(
        Settings(database_url=url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN, **overrides)
    ).start()


def jsonl_line(event_id: str, payload_text: str, **fields: object) -> str:
    """A telemetry_event_v1 line with ``payload_text`` placed in it as written (it may not be JSON)."""
    line = {
        "schema_version": "telemetry_event_v1",
        "channel": "app",
        "event": "open",
        "timestamp": HOUR_AGO.isoformat(),
        "user_id": "u1",
        "event_id": event_id,
        **fields,
    }
    return json.dumps(line)[:-1] + f', "payload": {payload_text}' + "}"


def proto_event(event_id: str, payload_text: str, **fields: object) -> pb.ProductEvent:
    event = records.event(event_id, **{})
    event.timestamp.FromDatetime(HOUR_AGO)
    event.user_id, event.session_id, event.event = "u1", "", "open"
    event.payload_json = payload_text
    for name, value in fields.items():
        setattr(event, name, value)
    return event


# --------------------------------------------------------------------------- both rows or neither


def test_an_account_created_event_lands_in_both_tables_or_in_neither(warehouse_url: str, tmp_path: Path) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as db:
        old = (HOUR_AGO - dt.timedelta(days=5)).date()
        (partition,) = db.execute(
            "select partition_name from raw.partitions('accounts_created') where day = %s", (old,)
        ).fetchone()
        db.execute(f'drop table raw."{partition}"')  # an accounts day without its partition (names: our own)
    running = receiver_for(warehouse_url, retention=RetentionDays(accounts_created=30))
    try:
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN) as client:
            bad_payload = proto_event("acc-bad", '{"a": "\\ud800"}', channel="user", event="account_created")
            no_partition = proto_event("acc-old", "{}", channel="user", event="account_created")
            no_partition.timestamp.FromDatetime(HOUR_AGO - dt.timedelta(days=5))
            past_retention = proto_event("acc-older", "{}", channel="user", event="account_created")
            past_retention.timestamp.FromDatetime(HOUR_AGO - dt.timedelta(days=40))
            good = proto_event("acc-good", "{}", channel="user", event="account_created")
            result = client.push_product_events([bad_payload, no_partition, past_retention, good])
    finally:
        running.stop(grace=1)
    assert (result.accepted, result.rejected) == (1, 3)
    reasons = dict(result.rejects)
    assert reasons[0].startswith("refused by the database")
    assert reasons[1].startswith("no partition of raw.accounts_created")
    assert reasons[2] == "account_created is older than the raw.accounts_created retention of 30 days"
    # the loader keeps the same rule
    path = tmp_path / "accounts.jsonl"
    path.write_text(jsonl_line("acc-file", '{"a": "\\ud800"}', channel="user", event="account_created") + "\n")
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    with psycopg.connect(warehouse_url) as db:
        events = sorted(e for (e,) in db.execute("select event_id from raw.product_events"))
        accounts = sorted(e for (e,) in db.execute("select event_id from raw.accounts_created"))
        ledger = db.execute(
            "select source, sum(accepted), sum(rejected) from quality.ingest_batches group by source order by source"
        ).fetchall()
    assert events == accounts == ["acc-good"]
    # no record is counted as both accepted and rejected
    assert ledger == [("accounts_created", 1, 0), ("product_events", 1, 4)]


# --------------------------------------------------------------------------- excluded fields in rejects


LEAKY_PAYLOADS = [
    '{"t\\u00e9l\\u00e9phone": "+33 1 23", oops',  # json.dumps spelling of a non-ASCII key, unparseable
    '{"\\u0074\\u00e9l\\u00e9phone": "+33 1 23"',  # every character escaped, truncated
    '{"téléphone": "+33 1 23", "x": NaN}',  # parses only with a non-JSON constant
    '{"device": {"t\\u00e9l\\u00e9phone": "+33 1 23"}, }',  # nested, trailing comma
    '{"email": "a@b.c" "plan": 1}',  # missing comma
    '{"e\\u006dail": "a@b.c", "s": "\\ud800"',  # lone surrogate, truncated
    '{"em\\u0061il": "a@b.c"} trailing',  # extra data
    "[" * 200 + '{"email": "a@b.c"}' + "]" * 200,  # too deep
]


def test_a_reject_never_stores_an_excluded_field_in_any_spelling(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_PAYLOAD_EXCLUDE_FIELDS", "téléphone,email,device.téléphone")
    running = Receiver(
        Settings(database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    ).start()
    try:
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN) as client:
            sent = client.push_product_events([proto_event(f"p{i}", text) for i, text in enumerate(LEAKY_PAYLOADS)])
    finally:
        running.stop(grace=1)
    assert sent.rejected == len(LEAKY_PAYLOADS)
    path = tmp_path / "leaky.jsonl"
    path.write_text("\n".join(jsonl_line(f"l{i}", text) for i, text in enumerate(LEAKY_PAYLOADS)) + "\n")
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    with psycopg.connect(warehouse_url) as db:
        kept = db.execute("select source, reason, record, record_sha256 from raw.rejects").fetchall()
    assert len(kept) == 2 * len(LEAKY_PAYLOADS)
    for _, reason, record, digest in kept:
        stored = bytes(record).decode("utf-8", "replace")
        for secret in ("+33 1 23", "a@b.c", "phone", "\\u00e9l", "mail", "\\u006d", "\\u0061"):
            assert secret not in stored, (reason, stored)
        assert "payload withheld" in reason and len(digest) == 64
    originals = {hashlib.sha256(line.encode()).hexdigest() for line in path.read_text().splitlines()}
    assert {digest for source, _, _, digest in kept if source == "product_events"} & originals  # the loader's lines


# --------------------------------------------------------------------------- one set of rules


def _through_the_receiver(client: IngestClient, event_id: str, payload: str) -> tuple[str, str | None]:
    result = client.push_product_events([proto_event(event_id, payload)])
    if result.rejected:
        return "refused", result.rejects[0][1]
    return "landed", None


def _through_the_loader(url: str, path: Path, event_id: str, payload: str, bom: bool) -> tuple[str, str | None]:
    text = jsonl_line(event_id, payload)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode() + b"\n")
    with psycopg.connect(url, autocommit=True) as db:
        before = db.execute("select count(*) from raw.rejects").fetchone()[0]
        assert load_events([str(path), "--database-url", url, "--no-progress", "-q"]) == 0
        rejected = db.execute(
            "select reason from raw.rejects order by reject_id desc limit %s",
            (db.execute("select count(*) from raw.rejects").fetchone()[0] - before,),
        ).fetchall()
    return ("refused", rejected[0][0]) if rejected else ("landed", None)


PAYLOAD_VALUES = st.one_of(
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1e-400",
            "1.0000000000000000001",
            "1" + "0" * 5000,
            '"\\\\u0000"',  # a backslash, then u0000: text, not a NUL
            '"\\u0000"',  # a NUL, which jsonb refuses
            '"\\ud800"',  # a lone surrogate, which jsonb refuses
            "NaN",
            "Infinity",
            "[" * 60 + "]" * 60,
            "[" * 120 + "]" * 120,
            '"\\u00e9"',
            "true",
            "null",
        ]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(json.dumps),
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(values=st.lists(PAYLOAD_VALUES, min_size=1, max_size=3), bom=st.booleans(), wrap=st.booleans())
def test_the_loader_and_the_receiver_give_the_same_answer_for_every_payload(
    loader_and_receiver: tuple[str, IngestClient, Path], values: list[str], bom: bool, wrap: bool
) -> None:
    url, client, path = loader_and_receiver
    payload = "{" + ", ".join(f'"k{i}": {v}' for i, v in enumerate(values)) + "}"
    if not wrap:
        payload = values[0] if values[0].startswith("[") else payload
    key = next(EXAMPLE)
    by_receiver = _through_the_receiver(client, f"r-{key}", payload)
    by_loader = _through_the_loader(url, path, f"l-{key}", payload, bom)
    assert by_receiver[0] == by_loader[0], (payload, by_receiver, by_loader)
    loader_parsed_the_line = not (by_loader[1] or "").startswith("line is not valid JSON")
    if loader_parsed_the_line:  # the same rule said it, so in the same words
        assert by_receiver[1] == by_loader[1], payload
    if by_receiver[0] == "landed":
        with psycopg.connect(url) as db:
            stored = dict(
                db.execute(
                    "select event_id, payload::text from raw.product_events where event_id in (%s, %s)",
                    (f"r-{key}", f"l-{key}"),
                ).fetchall()
            )
        assert stored[f"r-{key}"] == stored[f"l-{key}"]  # the same value, digit for digit


@pytest.fixture(scope="module")
def loader_and_receiver(pg_server, template_url: str, tmp_path_factory: pytest.TempPathFactory):
    from collectors.dev import local_postgres

    name = f"telemetry_parity_{time.monotonic_ns()}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    running = receiver_for(url)
    client = IngestClient(f"127.0.0.1:{running.port}", TOKEN)
    try:
        yield url, client, tmp_path_factory.mktemp("parity") / "line.jsonl"
    finally:
        client.close()
        running.stop(grace=1)
        local_postgres.drop_database(pg_server.url, name)


def test_numbers_and_escapes_that_used_to_differ_now_agree(loader_and_receiver) -> None:
    url, client, path = loader_and_receiver
    payloads = [
        '{"x": 1e400}',
        '{"x": 1e-400}',
        '{"x": 1.0000000000000000001}',
        '{"x": "\\\\u0000"}',
        '{"x": 1' + "0" * 5000 + "}",
    ]
    for number, payload in enumerate(payloads):
        assert _through_the_receiver(client, f"fixed-r{number}", payload) == ("landed", None), payload
        assert _through_the_loader(url, path, f"fixed-l{number}", payload, bom=True) == ("landed", None), payload
    with psycopg.connect(url) as db:
        stored = dict(
            db.execute("select event_id, payload->>'x' from raw.product_events where event_id like 'fixed-%'")
        )
    for number in range(len(payloads)):
        assert stored[f"fixed-l{number}"] == stored[f"fixed-r{number}"]
    assert stored["fixed-r0"] == "1" + "0" * 400 and stored["fixed-r4"] == "1" + "0" * 5000
    assert stored["fixed-r1"] == "0." + "0" * 399 + "1"  # not 0.0
    assert stored["fixed-r2"] == "1.0000000000000000001"  # not 1.0
    assert stored["fixed-r3"] == "\\u0000"  # a backslash and u0000, not refused as a NUL


# --------------------------------------------------------------------------- records that contradict themselves


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cpu_percent": 50.0, "cpu_percent_max": 12.0}, "cpu_percent_max=12.0 is less than cpu_percent=50.0"),
        ({"memory_percent": 30.0, "memory_percent_max": 20.0}, "memory_percent_max=20.0 is less than memory_percent"),
        ({"memory_used_bytes": 9 << 30}, "memory_total_bytes=8589934592 is less than memory_used_bytes=9663676416"),
        ({"memory_free_bytes": 9 << 30}, "memory_total_bytes=8589934592 is less than memory_free_bytes=9663676416"),
    ],
)
def test_a_host_minute_that_contradicts_itself_is_refused(change: dict, reason: str) -> None:
    record = records.host_minute()
    for name, value in change.items():
        setattr(record, name, value)
    limits = rules.Limits(now=dt.datetime.now(dt.UTC), retention_days=30)
    with pytest.raises(rules.RecordRefused, match=reason.replace("(", r"\(")):
        rules.row_builder(registry.HOST_MINUTES)(record, limits, None)  # type: ignore[arg-type]


def test_a_snapshot_listing_more_battles_than_it_counts_is_refused(receiver: Receiver, db: psycopg.Connection) -> None:
    contradictory = records.snapshot("srv-a")
    contradictory.battles.total = contradictory.battles.lobby = contradictory.battles.in_progress = 0
    repeated = records.snapshot("srv-b")
    repeated.battle_ids[:] = ["b1", "b1", "b2"]
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN) as client:
        result = client.push_minute_snapshots([contradictory, repeated, records.snapshot("srv-c")])
    assert result.accepted == 1
    assert dict(result.rejects) == {
        0: "battle_ids lists 3 battles but battles.total is 0",
        1: "battle_ids lists a battle more than once",
    }


# --------------------------------------------------------------------------- nesting and sizes in the loader


def _load(path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    loader = [sys.executable, "-m", "collectors.senders.loader.cli"]
    return subprocess.run(
        [*loader, str(path), "--database-url", url, "--no-progress", *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_a_deeply_nested_line_is_rejected_and_the_rest_loads(warehouse_url: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = jsonl_line("deep", '{"a":' * 1000 + "1" + "}" * 1000)
    path.write_text("\n".join([jsonl_line("before", "{}"), deep, jsonl_line("after", "{}")]) + "\n")
    assert len(deep) < 8192
    for extra in (("--dry-run",), ()):
        done = _load(path, warehouse_url, *extra)
        assert done.returncode == 0, done.stderr
        assert "line 2: payload nests deeper than 100 levels" in done.stderr
    with psycopg.connect(warehouse_url) as db:
        assert sorted(e for (e,) in db.execute("select event_id from raw.product_events")) == ["after", "before"]


def test_a_huge_line_is_refused_without_holding_it_and_blank_lines_write_nothing(
    warehouse_url: str, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.jsonl.gz"
    with gzip.open(huge, "wb", compresslevel=9) as out:
        out.write((jsonl_line("first", "{}") + "\n").encode())
        chunk = b"x" * (1 << 20)
        out.write(b'{"payload": "')
        for _ in range(256):  # a 256 MiB line from a file of a few hundred kB
            out.write(chunk)
        out.write(b'"}\n')
        out.write((jsonl_line("last", "{}") + "\n").encode())
    assert huge.stat().st_size < 2 << 20
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            # VmHWM, not ru_maxrss: after a vfork and exec, ru_maxrss starts at the parent's (pytest's) peak
            "import re, sys; from collectors.senders.loader.cli import main; code = main(sys.argv[1:]); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr); "
            "sys.exit(code)",
            str(huge),
            "--database-url",
            warehouse_url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 400, f"the loader held the line: peak RSS {peak_mb:.0f} MB"
    assert "line 2: line is longer than 1048576 bytes (268435471 bytes)" in done.stderr
    with psycopg.connect(warehouse_url) as db:
        assert sorted(e for (e,) in db.execute("select event_id from raw.product_events")) == ["first", "last"]
        record, size = db.execute("select record, record_bytes from raw.rejects where line_number = 2").fetchone()
    assert size == 268435471 and len(record) <= Settings().max_reject_bytes  # a prefix, never the whole line
    # 4 Mi blank lines in a few kB of gzip: quick, and no empty ledger rows
    blank = tmp_path / "blank.jsonl.gz"
    blank.write_bytes(gzip.compress(b"\n" * (4 << 20), compresslevel=9))
    assert blank.stat().st_size < 16 << 10
    blank_started = time.monotonic()
    assert _load(blank, warehouse_url).returncode == 0
    blank_seconds = time.monotonic() - blank_started
    with psycopg.connect(warehouse_url) as db:
        ledger_rows = db.execute("select count(*) from quality.ingest_batches").fetchone()[0]
    assert ledger_rows == 1  # the huge file's one batch; the blank file wrote none
    assert blank_seconds < 15, blank_seconds
    print(f"huge line: {time.monotonic() - started:.1f} s, peak RSS {peak_mb:.0f} MB; blank: {blank_seconds:.1f} s")


def test_python_m_loader_cli_loads_the_file(warehouse_url: str, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(jsonl_line("via-m", "{}") + "\n")
    done = _load(path, warehouse_url)
    assert done.returncode == 0 and "landed 1" in done.stderr, done.stderr
    with psycopg.connect(warehouse_url) as db:
        assert db.execute("select event_id from raw.product_events").fetchall() == [("via-m",)]


# --------------------------------------------------------------------------- conflicting duplicates


def test_a_conflicting_duplicate_is_a_reject_and_counted_as_a_conflict(
    receiver: Receiver, warehouse_url: str, tmp_path: Path
) -> None:
    first, same, other = records.snapshot("srv-1"), records.snapshot("srv-1"), records.snapshot("srv-1")
    other.battles.total = 4  # same server and minute, other contents
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN) as client:
        result = client.push_minute_snapshots([first, same, other])
    assert (result.accepted, result.duplicates, result.rejected) == (1, 1, 1)
    assert result.rejects == [
        (
            2,
            "conflicting duplicate: record 0 of this batch has the same natural key (server_id, minute) with other "
            "contents; the first one was kept",
        )
    ]
    path = tmp_path / "conflict.jsonl"
    path.write_text(
        "\n".join([jsonl_line("dup", '{"v": 1}'), jsonl_line("dup", '{"v": 1}'), jsonl_line("dup", '{"v": 2}')]) + "\n"
    )
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    with psycopg.connect(warehouse_url) as db:
        ledger = db.execute(
            "select source, sum(conflicts), sum(rejected) from quality.ingest_batches where source in"
            " ('minute_snapshots', 'product_events') group by source order by source"
        ).fetchall()
        stored = db.execute(
            "select source, record_index, line_number from raw.rejects where reason like 'conflicting duplicate:%'"
            " order by source"
        ).fetchall()
    assert ledger == [("minute_snapshots", 1, 1), ("product_events", 1, 1)]
    assert stored == [("minute_snapshots", 2, None), ("product_events", 3, 3)]
