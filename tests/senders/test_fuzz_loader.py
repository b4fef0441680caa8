"""Hypothesis-generated JSON Lines through the loader into a real PostgreSQL: valid lines, lines with wrong types,
missing fields, extreme timestamps, huge strings, non-UTF-8 bytes, binary noise.

The loader never crashes; every line is accounted for (landed, duplicate, blank or rejected with a reason);
lines built valid land, lines built invalid are refused, and each refused line is kept in raw.rejects with its
file, line number and original bytes; ``--strict`` lands nothing of a file with a bad line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.ingest import rules
from collectors.senders.loader.database import DatabaseSink
from collectors.senders.loader.loader import load_file
from collectors.senders.loader.source import GZIP_MAGIC, UnreadableFile
from tests.support.fuzzing import FUZZ
from tests.support.receivers import report_figures

pytestmark = pytest.mark.fuzz


NOW = dt.datetime.now(dt.UTC)


class Loaded:
    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.sink = DatabaseSink(url, Settings(database_url=url))
        self.files = self.lines = self.landed = self.duplicates = self.rejected = self.blank = 0
        self.strict_stops = self.unreadable = 0
        self.kept_rejects = 0  # rejects that must be in raw.rejects (not rolled back by --strict)


@pytest.fixture(scope="module")
def loaded(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    name = f"telemetry_fuzzl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    state = Loaded(url, tmp_path_factory.mktemp("fuzz_lines"))
    try:
        yield state
    finally:
        state.sink.close()
        local_postgres.drop_database(pg_server.url, name)


# --------------------------------------------------------------------------- lines

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=30)
ID = TEXT | st.integers(-(2**70), 2**70)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
VALID_TIME = st.builds(
    lambda seconds, tz: (NOW - dt.timedelta(seconds=seconds)).astimezone(tz).isoformat(),
    st.integers(60, 80 * 86400),
    OFFSETS,
) | st.builds(lambda s: (NOW - dt.timedelta(seconds=s)).replace(tzinfo=None).isoformat(), st.integers(60, 999))
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
VALID_LINE = st.fixed_dictionaries(
    {
        "schema_version": st.just(rules.SCHEMA_VERSION),
        "channel": TEXT,
        "event": TEXT,
        "timestamp": VALID_TIME,
        "user_id": ID,
        "payload": st.dictionaries(TEXT, JSON_VALUE, max_size=4),
    },
    optional={"event_id": ID, "session_id": ID, "extra_field_of_a_later_revision": JSON_VALUE},
)
HOSTILE_VALUES = st.one_of(
    JSON_VALUE,
    st.sampled_from(
        [
            "",
            "\x00",
            "x" * 129,
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59+14:00",
            "2026-02-30T00:00:00Z",
            "yesterday",
            (NOW + dt.timedelta(days=1)).isoformat(),
            (NOW - dt.timedelta(days=91)).isoformat(),
            {"x": "y" * 20_000},
            [1, 2],
            1e308,
        ]
    ),
)
FIELDS = ["schema_version", "channel", "event", "timestamp", "user_id", "payload", "event_id", "session_id"]


@st.composite
def lines(draw) -> tuple[bytes, str]:
    """(line without its newline, expectation: "valid", "refused" or "any")."""
    kind = draw(st.sampled_from(["valid", "valid", "field", "missing", "not-an-object", "bytes", "non-utf8"]))
    line = draw(VALID_LINE)
    if kind == "valid":
        return json.dumps(line, ensure_ascii=draw(st.booleans())).encode(), "valid"
    if kind == "field":  # one field of any type or an extreme value: may or may not pass
        line[draw(st.sampled_from(FIELDS))] = draw(HOSTILE_VALUES)
        return json.dumps(line).encode(), "any"
    if kind == "missing":
        del line[draw(st.sampled_from(["schema_version", "channel", "event", "timestamp"]))]
        return json.dumps(line).encode(), "refused"
    if kind == "not-an-object":
        value = draw(st.lists(JSON_VALUE, max_size=3) | st.integers() | st.text(max_size=10))
        return json.dumps(value).encode(), "refused"
    if kind == "non-utf8":
        raw = json.dumps(line).encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + raw[
            at:
        ], "refused"
    noise = draw(st.binary(max_size=200)).replace(b"\n", b" ")
    return noise, "any"


def original(line: bytes) -> bytes:
    return line.removesuffix(b"\r")


@FUZZ
@given(
    file_lines=st.lists(lines(), min_size=1, max_size=12),
    strict=st.integers(0, 4).map(lambda n: n == 4),
    batch_lines=st.sampled_from([1, 3, 2000]),
)
def test_every_line_lands_once_or_is_rejected_with_its_reason(
    loaded: Loaded, file_lines: list[tuple[bytes, str]], strict: bool, batch_lines: int
) -> None:
    path = loaded.directory / f"{uuid.uuid4().hex}.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in file_lines) + b"\n")
    with psycopg.connect(loaded.url) as db:
        before = db.execute("select (select count(*) from raw.product_events), (select count(*) from raw.rejects)")
        events_before, rejects_before = before.fetchone()
    if path.read_bytes().startswith(GZIP_MAGIC):  # not gzip, yet it says so: a clear error, nothing lands
        with pytest.raises(UnreadableFile, match="not a readable gzip stream"):
            load_file(path, loaded.sink, strict=strict, batch_lines=batch_lines)
        with psycopg.connect(loaded.url) as db:
            assert db.execute("select count(*) from raw.product_events").fetchone() == (events_before,)
        loaded.unreadable += 1
        return
    report = load_file(path, loaded.sink, strict=strict, batch_lines=batch_lines)

    rejected = dict(report.rejects)
    assert all(rejected.values()) and len(rejected) == report.rejected
    if report.stopped:  # read up to the batch holding the first bad line, which must be a line that can fail
        assert strict and report.accepted == report.duplicates == 0
        assert file_lines[report.stopped.line_number - 1][1] != "valid"
        assert report.lines <= len(file_lines)
    else:
        assert report.lines == len(file_lines)
        assert report.blank + report.accepted + report.duplicates + report.rejected == report.lines
        for number, (line, expected) in enumerate(file_lines, start=1):
            if not original(line).strip():
                continue
            if expected == "valid":
                assert number not in rejected, (line, rejected.get(number))
            elif expected == "refused":
                assert number in rejected, line
    with psycopg.connect(loaded.url) as db:
        events_after, rejects_after = db.execute(
            "select (select count(*) from raw.product_events), (select count(*) from raw.rejects)"
        ).fetchone()
        kept = dict(
            db.execute(
                "select line_number, record from raw.rejects where file_name = %s order by line_number", (str(path),)
            ).fetchall()
        )
    if report.stopped:  # --strict: nothing of the file, not even its rejects
        assert (events_after, rejects_after) == (events_before, rejects_before)
        loaded.strict_stops += 1
    else:
        assert events_after - events_before == report.accepted
        assert rejects_after - rejects_before == report.rejected
        assert kept == {n: original(file_lines[n - 1][0]) for n in rejected}  # the original bytes, by line
        loaded.kept_rejects += report.rejected
    loaded.files += 1
    loaded.lines += report.lines
    loaded.landed += report.accepted
    loaded.duplicates += report.duplicates
    loaded.rejected += report.rejected
    loaded.blank += report.blank


def test_zz_the_warehouse_holds_only_valid_events(loaded: Loaded) -> None:
    if not loaded.files:
        pytest.skip("checks what the fuzz test of this module loaded: run it with it")
    with psycopg.connect(loaded.url) as db:
        invalid = db.execute(
            """
            select count(*) from raw.product_events
            where jsonb_typeof(payload) <> 'object' or event_id = '' or user_id = '' or channel = ''
               or event = '' or length(event_id) > 128 or length(user_id) > 128 or schema_version <> %s
               or "timestamp" > now() + interval '5 minutes' or "timestamp" < now() - interval '91 days'
            """,
            (rules.SCHEMA_VERSION,),
        ).fetchone()[0]
        counts = db.execute(
            "select (select count(*) from raw.product_events), (select count(*) from raw.rejects),"
            " (select count(*) from raw.rejects where reason = '' or file_name is null or line_number is null)"
        ).fetchone()
        accounts = db.execute(
            "select count(*) from raw.accounts_created a where not exists (select 1 from raw.product_events e"
            " where e.event_id = a.event_id and e.timestamp = a.created_at and e.channel = 'user'"
            " and e.event = 'account_created')"
        ).fetchone()[0]
    assert invalid == 0 and accounts == 0
    assert counts == (loaded.landed, loaded.kept_rejects, 0)
    report_figures(
        "fuzz.loader",
        examples=loaded.files,
        lines=loaded.lines,
        landed=loaded.landed,
        duplicates=loaded.duplicates,
        rejected=loaded.rejected,
        blank=loaded.blank,
        strict_files_stopped=loaded.strict_stops,
        unreadable_files=loaded.unreadable,
    )


def test_a_truncated_gzip_file_stops_with_a_clear_error_and_lands_nothing(
    warehouse_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from collectors.senders.loader.cli import main

    line = {"schema_version": rules.SCHEMA_VERSION, "channel": "app", "event": "open", "user_id": "u"}
    text = "".join(
        json.dumps({**line, "event_id": f"e{i}", "timestamp": NOW.isoformat(), "payload": {"i": i}}) + "\n"
        for i in range(5000)
    )
    whole = gzip.compress(text.encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    assert main([str(path), "--database-url", warehouse_url, "--no-progress", "--batch-lines", "100"]) == 1
    assert "not a readable gzip stream after line" in capsys.readouterr().err
    with psycopg.connect(warehouse_url) as db:
        assert db.execute("select count(*) from raw.product_events").fetchone() == (0,)
