"""telemetry-export on raw product events and the inventory (a migrated warehouse, no dbt): Parquet, JSON lines and
CSV read back equal to the table, the inventory's counts, rejects in the period, and the CLI's refusals."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.export import cli
from collectors.export.run import INVENTORY, ExportError, Period, export
from collectors.export.tables import mart_tables, period_column_of, raw_events_table

TODAY = dt.datetime.now(dt.UTC).date()
DAY = TODAY - dt.timedelta(days=2)  # inside the template's partitions
PERIOD = Period(DAY, DAY + dt.timedelta(days=1))
ORDER = 'order by "timestamp", event_id'


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


def land_events(conn: psycopg.Connection) -> None:
    rows = []
    for day, hours in ((DAY - dt.timedelta(days=1), (23,)), (DAY, (0, 7, 13, 23)), (DAY + dt.timedelta(days=1), (0,))):
        for hour in hours:
            for n in range(3):
                payload = {"n": n, "price": 0.1 * n, "tags": ["a", "b"][:n], "nested": {"ok": n % 2 == 0}}
                rows.append(
                    (f"e-{day}-{hour}-{n}", "telemetry_event_v1", "app", "click", at(day, hour, n), f"u{n}",
                     None if n == 2 else f"s{n}", json.dumps(payload), 1 / (n + 1), uuid.uuid4())
                )  # fmt: skip
    with conn.cursor() as cursor:
        cursor.executemany(
            "insert into raw.product_events (event_id, schema_version, channel, event, timestamp, user_id,"
            " session_id, payload, sample_rate, batch_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def land_rejects(conn: psycopg.Connection) -> None:
    for when, reason in (
        (at(DAY, 1), "unknown channel"),
        (at(DAY, 2), "unknown channel"),
        (at(DAY, 3), "payload too large"),
        (at(DAY - dt.timedelta(days=1), 23), "unknown channel"),  # before the period
        (at(DAY + dt.timedelta(days=1), 0), "unknown channel"),  # the end is exclusive
    ):
        conn.execute(
            "insert into raw.rejects (source, reason, record, rejected_at) values ('product_events', %s, 'x', %s)",
            (reason, when),
        )
    # what the cleanup kept of a pruned day in the period (the day's raw rows are gone)
    conn.execute(
        "insert into quality.rejects_daily (day, source, reason, rejects, first_rejected, last_rejected)"
        " values (%s, 'product_events', 'unknown channel', 4, %s, %s)",
        (DAY, at(DAY, 0), at(DAY, 0)),
    )


@pytest.fixture
def landed(db: psycopg.Connection, warehouse_url: str) -> str:
    land_events(db)
    land_rejects(db)
    return warehouse_url


def expected_rows(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return db.execute(
        f'select * from raw.product_events where "timestamp" >= %s and "timestamp" < %s {ORDER}', PERIOD.bounds
    ).fetchall()


def test_parquet_reads_back_equal_to_the_table(landed: str, db: psycopg.Connection, tmp_path: Path) -> None:
    result = export(landed, [raw_events_table()], PERIOD, tmp_path, "parquet", batch_size=5, progress=True)
    expected = expected_rows(db)
    assert len(expected) == 12
    table = pq.read_table(tmp_path / "raw.product_events.parquet")
    assert pq.ParquetFile(tmp_path / "raw.product_events.parquet").num_row_groups == 3  # streamed in batches of 5
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("sample_rate").type == pa.float64()
    assert schema.field("payload").type == pa.string() and schema.field("batch_id").type == pa.string()
    names = [d.name for d in db.execute("select * from raw.product_events limit 0").description]
    assert table.column_names == names
    got = table.to_pylist()
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        want = dict(zip(names, want, strict=True))
        assert json.loads(row.pop("payload")) == want.pop("payload")
        assert row.pop("batch_id") == str(want.pop("batch_id"))
        assert row == want  # tz-aware timestamps, floats, texts and NULLs as they are in the table
    assert result.tables[0].file.rows == 12


def test_json_lines_round_trip(landed: str, db: psycopg.Connection, tmp_path: Path) -> None:
    export(landed, [raw_events_table()], PERIOD, tmp_path, "jsonl")
    lines = (tmp_path / "raw.product_events.jsonl").read_text(encoding="utf-8").splitlines()
    # PostgreSQL parses every line back into a row of the table's own type
    back = db.execute(
        "select (jsonb_populate_record(null::raw.product_events, line)).* from unnest(%s::jsonb[])"
        " with ordinality as l (line, n) order by n",
        (lines,),
    ).fetchall()
    assert back == expected_rows(db)


def test_csv_round_trip(landed: str, tmp_path: Path) -> None:
    export(landed, [raw_events_table()], PERIOD, tmp_path, "csv")
    with psycopg.connect(landed) as conn:
        conn.execute("create temp table back (like raw.product_events)")
        with conn.cursor().copy("copy back from stdin with (format csv, header)") as copy:
            copy.write((tmp_path / "raw.product_events.csv").read_bytes())
        assert conn.execute(f"select * from back {ORDER}").fetchall() == expected_rows(conn)


def test_the_inventory_counts_rows_files_and_rejects(landed: str, db: psycopg.Connection, tmp_path: Path) -> None:
    (tmp_path / INVENTORY).write_text("stale")
    export(landed, [raw_events_table()], PERIOD, tmp_path, "parquet")
    inventory = json.loads((tmp_path / INVENTORY).read_text())
    assert inventory["period"] == {"from": DAY.isoformat(), "to": (DAY + dt.timedelta(days=1)).isoformat(),
                                   "to_exclusive": True}  # fmt: skip
    entry = inventory["tables"]["raw.product_events"]
    counted = db.execute(
        'select count(*) from raw.product_events where "timestamp" >= %s and "timestamp" < %s', PERIOD.bounds
    ).fetchone()[0]
    assert entry["rows"] == counted and entry["rows_by_day"] == {DAY.isoformat(): counted}
    assert entry["period_column"] == "timestamp" and entry["file"] == "raw.product_events.parquet"
    [file] = inventory["files"]
    path = tmp_path / file["path"]
    assert file["rows"] == pq.read_metadata(path).num_rows == counted and file["bytes"] == path.stat().st_size
    # raw rows in the period, and the daily count the cleanup kept
    assert inventory["rejects"] == {
        "total": 3 + 4,
        "by_day": {DAY.isoformat(): {"product_events": {"payload too large": 1, "unknown channel": 2 + 4}}},
    }
    assert not list(tmp_path.glob(".*"))  # no partial file is left behind


def test_a_period_of_several_days_is_counted_per_day(landed: str, tmp_path: Path) -> None:
    period = Period(DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=2))
    result = export(landed, [raw_events_table()], period, tmp_path, "jsonl")
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    assert result.tables[0].rows_by_day == {d.isoformat(): n for d, n in zip(days, (3, 12, 3), strict=True)}


def test_a_mart_not_built_is_a_clear_error(warehouse_url: str, tmp_path: Path) -> None:
    mart = mart_tables(cli_project())["fct_event_counts_daily"]
    with pytest.raises(ExportError, match=r"marts.fct_event_counts_daily is not in the database"):
        export(warehouse_url, [mart], PERIOD, tmp_path, "parquet")
    code = cli.main(["--mart", "fct_event_counts_daily", "--from", "2026-01-01", "--to", "2026-01-08",
                     "--out", str(tmp_path), "--database-url", warehouse_url])  # fmt: skip
    assert code == 1


def cli_project() -> Path:
    from collectors.config import default_dbt_project

    return default_dbt_project()


def test_period_columns_come_from_the_models_config() -> None:
    marts = mart_tables(cli_project())
    for name, table in marts.items():
        sql = (cli_project() / "models" / "marts" / f"{name}.sql").read_text()
        assert table.period_column == period_column_of(sql)
        # a window-incremental mart deletes by its period column; the grain's name says which one
        for suffix, column in (("_hourly", "hour_start"), ("_daily", "day"), ("_minutely", "minute_start")):
            if name.endswith(suffix):
                assert table.period_column == column, name
    assert marts["fct_sessions"].period_column == "session_start"
    assert marts["fct_retention_weekly_average"].period_column is None
    assert period_column_of("{{ config(materialized='table') }} select 1") is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mart", "fct_nope", "--from", "2026-01-01", "--to", "2026-01-08", "--out", "x"],
         "unknown mart 'fct_nope'; the marts are: fct_channel_reliability_daily, "),
        (["--from", "2026-01-01", "--to", "2026-01-08", "--out", "x"], "nothing to export"),
        (["--all-marts", "--from", "2026-01-08", "--to", "2026-01-01", "--out", "x"], "the period is empty"),
        (["--all-marts", "--from", "2026-01-01", "--out", "x"], "the period is missing"),
        (["--all-marts", "--last-days", "7", "--from", "2026-01-01", "--out", "x"], "either --last-days"),
        (["--all-marts", "--last-days", "0", "--out", "x"], "not a positive whole number"),
        (["--all-marts", "--from", "01/01/2026", "--to", "2026-01-08", "--out", "x"], "not a date like"),
        (["--all-marts", "--last-days", "3"], "--out DIR is required"),
        (["--all-marts", "--last-days", "3", "--out", "x", "--format", "xlsx"], "invalid choice: 'xlsx'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_help_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    assert "--to is exclusive" in capsys.readouterr().out
    assert cli.main(["--list"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert listed == {n: t.period_column or "(whole table)" for n, t in mart_tables(cli_project()).items()}


def test_the_cli_writes_files_and_the_inventory(landed: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--raw-events", "--from", DAY.isoformat(), "--to", (DAY + dt.timedelta(days=1)).isoformat(),
            "--format", "jsonl", "--out", str(tmp_path), "--database-url", landed, "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "raw.product_events.jsonl\t12 rows" in capsys.readouterr().out
    inventory = json.loads((tmp_path / INVENTORY).read_text())
    assert inventory["format"] == "jsonl" and inventory["rejects"]["total"] == 7
    assert Decimal(json.loads((tmp_path / "raw.product_events.jsonl").read_text().splitlines()[0])["sample_rate"]) > 0


def test_arrow_types_of_postgres_columns(db: psycopg.Connection) -> None:
    from collectors.export.columns import arrow_batch, arrow_schema, column_types

    db.execute(
        "create temp table typed (ids int8[], shares numeric[], money numeric(10, 2), share numeric, tags text[],"
        " flag boolean, day date, took interval, id uuid, doc jsonb)"
    )
    db.execute(
        "insert into typed values (array[1, null, 3], array[1.5, 1 / 3::numeric], 12.34, 1 / 3::numeric, array['a'],"
        " true, '2026-01-05', '90 seconds', '00000000-0000-0000-0000-000000000001', '{\"a\": [1]}'),"
        " (null, null, null, null, null, null, null, null, null, null)"
    )
    cursor = db.execute("select * from typed")
    types = column_types(db, cursor.description)
    schema = arrow_schema(types)
    assert [f.type for f in schema] == [
        pa.list_(pa.int64()), pa.list_(pa.float64()), pa.decimal128(10, 2), pa.float64(), pa.list_(pa.string()),
        pa.bool_(), pa.date32(), pa.duration("us"), pa.string(), pa.string(),
    ]  # fmt: skip
    assert json.loads(schema.metadata[b"postgres_types"])["ids"] == "int8[]"
    first, nulls = arrow_batch(types, cursor.fetchall(), schema).to_pylist()
    assert first == {
        "ids": [1, None, 3], "shares": [1.5, 1 / 3], "money": Decimal("12.34"), "share": 1 / 3, "tags": ["a"],
        "flag": True, "day": dt.date(2026, 1, 5), "took": dt.timedelta(seconds=90),
        "id": "00000000-0000-0000-0000-000000000001", "doc": '{"a":[1]}',
    }  # fmt: skip
    assert set(nulls.values()) == {None}
