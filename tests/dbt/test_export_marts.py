"""telemetry-export on every mart the session's build made: Parquet, JSON lines and CSV read back equal to the mart,
row for row, and the inventory counts what the mart holds per period."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from collectors.config import default_dbt_project
from collectors.export.run import INVENTORY, Period, export
from collectors.export.tables import ExportTable, mart_tables
from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import WEEK_START

MARTS = mart_tables(default_dbt_project())
PERIOD = Period(WEEK_START, WEEK_START + dt.timedelta(days=7))


def mart_rows(conn: psycopg.Connection, mart: ExportTable) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The mart's rows in the period, ordered by the period column, then every column in turn."""
    where: sql.Composable = sql.SQL("true")
    if mart.period_column:
        column = sql.Identifier(mart.period_column)
        where = sql.SQL("{c} >= %s and {c} < %s").format(c=column)
    count = conn.execute(sql.SQL("select * from {} limit 0").format(sql.Identifier("marts", mart.name))).description
    order = [*([sql.Identifier(mart.period_column)] if mart.period_column else []),
             *(sql.Literal(n) for n in range(1, len(count) + 1))]  # fmt: skip
    query = sql.SQL("select * from {t} where {w} order by {o}").format(
        t=sql.Identifier("marts", mart.name), w=where, o=sql.SQL(", ").join(order)
    )
    cursor = conn.execute(query, PERIOD.bounds if mart.period_column else ())
    return [c.name for c in cursor.description], cursor.fetchall()


def as_exported(value: Any, arrow: pa.DataType) -> Any:
    """What Parquet holds of a PostgreSQL value: unconstrained numerics as doubles, jsonb as its JSON text."""
    if value is None:
        return None
    if isinstance(value, Decimal) and pa.types.is_floating(arrow):
        return float(value)
    if pa.types.is_list(arrow):
        return [as_exported(v, arrow.value_type) for v in value]
    return value


@pytest.fixture(scope="module")
def exported(warehouse: DbtWarehouse, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for fmt in ("parquet", "jsonl", "csv"):
        out[fmt] = tmp_path_factory.mktemp(f"export-{fmt}")
        export(warehouse.url, list(MARTS.values()), PERIOD, out[fmt], fmt, batch_size=2)  # type: ignore[arg-type]
    return out


def test_parquet_reads_back_equal_to_every_mart(warehouse: DbtWarehouse, exported: dict[str, Path]) -> None:
    nonempty = 0
    with psycopg.connect(warehouse.url, options="-c timezone=UTC") as conn:
        for name, mart in MARTS.items():
            names, rows = mart_rows(conn, mart)
            table = pq.read_table(exported["parquet"] / f"{name}.parquet")
            assert table.column_names == names, name
            types = {f.name: f.type for f in table.schema}
            got = table.to_pylist()
            assert len(got) == len(rows), name
            for row, want in zip(got, rows, strict=True):
                for column, value in zip(names, want, strict=True):
                    if isinstance(value, dict | list) and pa.types.is_string(types[column]):
                        assert json.loads(row[column]) == value, (name, column)  # jsonb
                    else:
                        assert row[column] == as_exported(value, types[column]), (name, column)
            for column, arrow in types.items():
                if pa.types.is_timestamp(arrow):
                    assert arrow.tz == "UTC", (name, column)
            nonempty += bool(rows)
    assert nonempty >= len(MARTS) // 2  # the scenario fills most marts, so the comparison compares something


def test_json_lines_and_csv_round_trip_every_mart(warehouse: DbtWarehouse, exported: dict[str, Path]) -> None:
    with psycopg.connect(warehouse.url, options="-c timezone=UTC") as conn:
        for name, mart in MARTS.items():
            _, rows = mart_rows(conn, mart)
            lines = (exported["jsonl"] / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            back = conn.execute(
                sql.SQL(
                    "select (jsonb_populate_record(null::{}, line)).* from unnest(%s::jsonb[])"
                    " with ordinality as l (line, n) order by n"
                ).format(sql.Identifier("marts", name)),
                (lines,),
            ).fetchall()
            assert back == rows, name
            back_table = sql.Identifier(f"back_{name}")  # one name per shape: psycopg prepares repeated queries
            conn.execute(sql.SQL("create temp table {} (like {})").format(back_table, sql.Identifier("marts", name)))
            with conn.cursor().copy(sql.SQL("copy {} from stdin with (format csv, header)").format(back_table)) as copy:
                copy.write((exported["csv"] / f"{name}.csv").read_bytes())
            # the CSV keeps the export's order: compare with the mart's rows as they came
            assert conn.execute(sql.SQL("select * from {}").format(back_table)).fetchall() == rows, name


def test_the_inventory_counts_each_marts_periods(warehouse: DbtWarehouse, exported: dict[str, Path]) -> None:
    inventory = json.loads((exported["parquet"] / INVENTORY).read_text())
    assert set(inventory["tables"]) == set(MARTS)
    files = {f["path"]: f for f in inventory["files"]}
    with psycopg.connect(warehouse.url, options="-c timezone=UTC") as conn:
        for name, mart in MARTS.items():
            entry = inventory["tables"][name]
            names, rows = mart_rows(conn, mart)
            if mart.period_column is None:
                assert entry["whole_table"] and entry["rows_by_day"] == ({"all": len(rows)} if rows else {})
            else:
                index = names.index(mart.period_column)
                days: dict[str, int] = {}
                for row in rows:
                    value = row[index]
                    day = value.astimezone(dt.UTC).date() if isinstance(value, dt.datetime) else value
                    days[day.isoformat()] = days.get(day.isoformat(), 0) + 1
                assert entry["rows_by_day"] == dict(sorted(days.items())), name
            assert entry["rows"] == files[entry["file"]]["rows"] == len(rows), name
