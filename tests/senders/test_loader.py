"""The JSON Lines loader against a real PostgreSQL, straight (COPY) and through a real receiver."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from collectors.config import Settings
from collectors.ingest.event_lines import LineRefused, parse_line
from collectors.receiver.server import Receiver
from collectors.senders.loader.cli import main
from collectors.senders.loader.database import DatabaseSink
from collectors.senders.loader.loader import load_file, worker_pool
from tests.support.receivers import TOKEN

HOUR_AGO = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def event(**fields: object) -> dict:
    line = {
        "schema_version": "telemetry_event_v1",
        "channel": "app",
        "event": "click",
        "timestamp": HOUR_AGO.isoformat(),
        "user_id": "u1",
        "payload": {"button": "ok"},
    }
    line.update(fields)
    return {k: v for k, v in line.items() if v is not None}


def iso(moment: dt.datetime, offset_hours: int = 0) -> str:
    return moment.astimezone(dt.timezone(dt.timedelta(hours=offset_hours))).isoformat()


GOOD_NO_ID = event(event="open", user_id="u2", session_id="s9", payload={"a": 1, "b": [1, 2]})
LINES: list[str] = [
    json.dumps(event(event_id="e1", timestamp=iso(HOUR_AGO, 2))),  # 1 good, +02:00 offset
    json.dumps(GOOD_NO_ID),  # 2 good, id derived
    "{not json",  # 3 bad
    json.dumps(event(event_id="e3", timestamp=iso(HOUR_AGO - dt.timedelta(minutes=30)))),  # 4 good, earlier
    json.dumps(event(event_id="e1", timestamp=iso(HOUR_AGO, 2))),  # 5 duplicate of 1
    json.dumps(event(event_id="e6", timestamp=None)),  # 6 bad: no timestamp
    json.dumps(event(event_id="e7", payload=[1, 2])),  # 7 bad: payload not an object
    json.dumps(dict(reversed(list(GOOD_NO_ID.items()))), indent=None, separators=(", ", ": ")),  # 8 dup of 2
    json.dumps(event(event_id="e9", timestamp=iso(HOUR_AGO - dt.timedelta(days=200)))),  # 9 bad: too old
    "",  # 10 blank
    json.dumps(event(event_id="e11", schema_version="telemetry_event_v2")),  # 11 bad: version
    json.dumps(event(event_id="acc-1", channel="user", event="account_created", user_id="u42")),  # 12 good
    json.dumps(event(event_id="e13", timestamp=iso(HOUR_AGO + dt.timedelta(days=2)))),  # 13 bad: future
]
BAD_LINES = {
    3: "line is not valid JSON",
    6: "timestamp is required",
    7: "payload must be a JSON object",
    9: "timestamp is older than the retention of 90 days",
    11: "schema_version must be 'telemetry_event_v1', got 'telemetry_event_v2'",
    13: "timestamp is more than 300 s in the future",
}


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def landed(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        'select event_id, channel, event, "timestamp", user_id, session_id, payload from raw.product_events'
        ' order by "timestamp", event_id'
    ).fetchall()


def rejects(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "select file_name, line_number, reason, record from raw.rejects order by line_number, reject_id"
    ).fetchall()


def check_good_lines_landed_once(db: psycopg.Connection) -> None:
    rows = landed(db)
    ids = [r[0] for r in rows]
    assert len(ids) == 4 and {"e1", "e3", "acc-1"} < set(ids)
    derived = next(r for r in rows if r[0] not in {"e1", "e3", "acc-1"})
    assert derived[1:] == ("app", "open", HOUR_AGO, "u2", "s9", {"a": 1, "b": [1, 2]})
    e1 = next(r for r in rows if r[0] == "e1")
    assert e1[3] == HOUR_AGO  # the +02:00 timestamp normalised to the same instant, stored in UTC
    assert rows[0][0] == "e3"  # the earlier, out-of-order line
    assert db.execute("select user_id from raw.accounts_created").fetchall() == [("u42",)]


def test_loader_lands_the_good_lines_once_and_rejects_the_bad_with_line_numbers(
    warehouse_url: str, db: psycopg.Connection, events_file: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([str(events_file), "--database-url", warehouse_url, "--no-progress"]) == 0
    check_good_lines_landed_once(db)
    stored = rejects(db)
    assert [(f, n) for f, n, _, _ in stored] == [(str(events_file), n) for n in sorted(BAD_LINES)]
    for _, number, reason, record in stored:
        assert reason.startswith(BAD_LINES[number])
        assert record == LINES[number - 1].encode()  # the original bytes of the line
    summary = capsys.readouterr().err
    assert "13 lines, 4 landed, 2 duplicates, 6 rejected, 1 blank" in summary
    assert "line 3: line is not valid JSON" in summary

    # loading the same file again adds nothing
    assert main([str(events_file), "--database-url", warehouse_url, "--no-progress"]) == 0
    assert "13 lines, 0 landed, 6 duplicates, 6 rejected" in capsys.readouterr().err
    check_good_lines_landed_once(db)
    ledger = db.execute(
        "select sum(accepted), sum(duplicates) from quality.ingest_batches where source = 'product_events'"
    ).fetchone()
    assert ledger == (4, 8)


def test_strict_stops_at_the_first_invalid_line_and_lands_nothing(
    warehouse_url: str, db: psycopg.Connection, events_file: Path
) -> None:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "collectors.senders.loader",
            str(events_file),
            "--database-url",
            warehouse_url,
            "--strict",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert "STOPPED (--strict)" in finished.stderr
    assert "first invalid line line 3: line is not valid JSON" in finished.stderr
    assert landed(db) == [] and rejects(db) == []
    assert db.execute("select count(*) from quality.ingest_batches").fetchone()[0] == 0


def test_strict_also_catches_rule_violations_found_in_a_later_batch(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "late.jsonl"
    good = [json.dumps(event(event_id=f"g{i}")) for i in range(5)]
    path.write_text("\n".join([*good, LINES[8]]) + "\n")  # line 6 is too old for the retention
    assert main([str(path), "--database-url", warehouse_url, "--strict", "--batch-lines", "2"]) == 1
    assert landed(db) == []
    assert main([str(path), "--database-url", warehouse_url, "--batch-lines", "2"]) == 0
    assert len(landed(db)) == 5


def test_gzip_input_is_read_like_plain_text(warehouse_url: str, db: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\r\n".join(LINES) + "\r\n")  # and Windows line breaks
    assert main([str(path), "--database-url", warehouse_url]) == 0
    check_good_lines_landed_once(db)
    assert sorted(n for _, n, _, _ in rejects(db)) == sorted(BAD_LINES)


def test_through_the_receiver_good_lines_land_once_and_strict_sends_nothing(
    receiver: Receiver, warehouse_url: str, db: psycopg.Connection, events_file: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TELEMETRY_TOKEN", TOKEN)
    target = f"127.0.0.1:{receiver.port}"
    assert main([str(events_file), "--target", target, "--strict"]) == 1
    assert landed(db) == [] and rejects(db) == []
    assert main([str(events_file), "--target", target, "--database-url", warehouse_url]) == 0
    assert main([str(events_file), "--target", target, "--database-url", warehouse_url]) == 0
    check_good_lines_landed_once(db)
    # the receiver's rules are applied before sending, so every refused line carries its file and line; loading
    # the file again stores its rejects once (same batch ids, same lines), as it lands its events once
    stored = rejects(db)
    assert sorted(n for f, n, _, _ in stored if f == str(events_file)) == sorted(BAD_LINES)
    for _, number, reason, record in stored:
        assert reason.startswith(BAD_LINES[number])
        assert record == LINES[number - 1].encode()


def test_line_parsing_normalises_time_and_derives_stable_ids() -> None:
    a = parse_line(json.dumps(event(timestamp="2026-03-01T14:00:00+02:00")).encode())
    b = parse_line(json.dumps(dict(reversed(list(event(timestamp="2026-03-01T12:00:00Z").items())))).encode())
    naive = parse_line(json.dumps(event(timestamp="2026-03-01T12:00:00")).encode())
    assert a.to_proto().timestamp.ToDatetime(dt.UTC) == dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert a.event_id == b.event_id == naive.event_id  # same event, same id
    other = parse_line(json.dumps(event(timestamp="2026-03-01T12:00:00Z", payload={"button": "no"})).encode())
    assert other.event_id != a.event_id
    assert parse_line(json.dumps(event(user_id=7)).encode()).user_id == "7"
    assert parse_line(json.dumps(event(user_id=None)).encode(), default_user_id="anon").user_id == "anon"
    for bad, reason in [
        (b"\xff\xfe", "line is not UTF-8"),
        (b"[1]", "line must be a JSON object"),
        (json.dumps(event(user_id=None)).encode(), "user_id is required"),
        (json.dumps(event(timestamp="yesterday")).encode(), "timestamp 'yesterday' is not ISO 8601"),
        (json.dumps(event(timestamp=1700000000)).encode(), "timestamp must be a string, not int"),
        (json.dumps(event(channel=None)).encode(), "channel is required"),
        (json.dumps(event(session_id={"x": 1})).encode(), "session_id must be a string or a number, not object"),
    ]:
        with pytest.raises(LineRefused, match=reason):
            parse_line(bad)


def test_help_and_missing_file_are_friendly(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "collectors.senders.loader", "--help"], capture_output=True, text=True, timeout=30
    )
    assert helped.returncode == 0 and "--strict" in helped.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "collectors.senders.loader", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_worker_processes_give_the_same_result_in_file_order(
    warehouse_url: str, db: psycopg.Connection, events_file: Path
) -> None:
    settings = Settings(database_url=warehouse_url)
    with worker_pool(2) as pool:
        sink = DatabaseSink(warehouse_url, settings)
        try:
            strict = load_file(events_file, sink, strict=True, batch_lines=2, pool=pool, parallel_min_bytes=0)
            assert strict.stopped is not None and strict.stopped.line_number == 3
            assert landed(db) == []
            report = load_file(events_file, sink, batch_lines=2, pool=pool, window=3, parallel_min_bytes=0)
        finally:
            sink.close()
    assert (report.lines, report.accepted, report.duplicates, report.blank) == (13, 4, 2, 1)
    assert [n for n, _ in report.rejects] == sorted(BAD_LINES)
    check_good_lines_landed_once(db)


def test_a_day_without_partition_is_rejected_with_the_original_line(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()
    db.execute(f"drop table raw.product_events_p{day:%Y%m%d}")
    moment = dt.datetime.combine(day, dt.time(12), dt.UTC)
    lines = [json.dumps(event(event_id="kept")), json.dumps(event(event_id="orphan", timestamp=moment.isoformat()))]
    path = tmp_path / "orphan.jsonl"
    path.write_text("\n".join(lines))  # and no line break at the end
    assert main([str(path), "--database-url", warehouse_url]) == 0
    assert [r[0] for r in landed(db)] == ["kept"]
    (stored,) = rejects(db)
    assert stored[:2] == (str(path), 2)
    assert stored[2].startswith(f"no partition of raw.product_events for {day}")
    assert stored[3] == lines[1].encode()
