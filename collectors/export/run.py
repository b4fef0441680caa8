"""Export a period of tables to files in one consistent snapshot, with an inventory of what was written.

Everything is read in one repeatable-read, read-only transaction: the counts of the inventory, the rows of every
file and the rejects describe the same moment, even while builds and the receiver write. Rows stream from a
server-side cursor in batches (Parquet: one row group per batch), so a long period needs no more memory than a
batch; CSV comes straight from the server's COPY, in PostgreSQL's own text of each value. Each file is written
beside its final name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from tqdm import tqdm

from collectors.export.jsonl import load_json_as_text
from collectors.export.tables import ExportTable

Format = Literal["parquet", "jsonl", "csv"]
EXTENSIONS: dict[str, str] = {"parquet": "parquet", "jsonl": "jsonl", "csv": "csv"}
INVENTORY = "inventory.json"
# json and xml have no ordering operator; the other columns give the files a deterministic order
_UNORDERABLE = {"json", "xml"}


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # exclusive

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"the period is empty: --to {self.end} is not after --from {self.start}")

    @property
    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        return tuple(dt.datetime.combine(d, dt.time(), dt.UTC) for d in (self.start, self.end))  # type: ignore[return-value]


@dataclass
class WrittenFile:
    table: str
    path: str  # relative to the export directory
    rows: int
    bytes: int
    sha256: str


@dataclass
class TableExport:
    table: ExportTable
    rows_by_day: dict[str, int]
    file: WrittenFile

    @property
    def key(self) -> str:
        """The table's name in the inventory: a mart's name, raw tables qualified."""
        return self.table.name if self.table.schema == "marts" else self.table.qualified

    def inventory(self) -> dict[str, Any]:
        return {
            "relation": self.table.qualified,
            "period_column": self.table.period_column,
            "whole_table": self.table.period_column is None,
            "rows": self.file.rows,
            "rows_by_day": self.rows_by_day,
            "file": self.file.path,
        }


@dataclass
class ExportResult:
    out: Path
    period: Period
    format: Format
    tables: list[TableExport] = field(default_factory=list)
    rejects: dict[str, Any] = field(default_factory=dict)

    def inventory(self) -> dict[str, Any]:
        return {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(),
            "period": {"from": self.period.start.isoformat(), "to": self.period.end.isoformat(), "to_exclusive": True},
            "format": self.format,
            "tables": {t.key: t.inventory() for t in self.tables},
            "files": [vars(t.file) for t in self.tables],
            "rejects": self.rejects,
        }


class ExportError(RuntimeError):
    pass


def _columns(conn: psycopg.Connection, table: ExportTable) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select a.attname, t.typname from pg_attribute as a join pg_type as t on t.oid = a.atttypid"
        " where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped order by a.attnum",
        (table.qualified,),
    ).fetchall()
    if not rows:
        raise ExportError(f"{table.qualified} is not in the database (not built yet, or another database?)")
    return rows


def _select(conn: psycopg.Connection, table: ExportTable, period: Period) -> tuple[sql.Composed, sql.Composable]:
    """The export query and its filter (``true`` for a table without a period column)."""
    columns = _columns(conn, table)
    names = [name for name, _ in columns]
    if table.period_column is not None and table.period_column not in names:
        raise ExportError(f"{table.qualified} has no column {table.period_column!r} to cut the period by")
    where: sql.Composable = sql.SQL("true")
    if table.period_column is not None:
        start, end = period.bounds
        column = sql.Identifier(table.period_column)
        # timestamptz bounds at UTC midnights compare with date and timestamptz columns alike (session zone UTC)
        where = sql.SQL("{c} >= {s} and {c} < {e}").format(c=column, s=sql.Literal(start), e=sql.Literal(end))
    order = list(table.order_by) or [
        *([table.period_column] if table.period_column else []),
        *(n for n, t in columns if t not in _UNORDERABLE and n != table.period_column),
    ]
    query = sql.SQL("select * from {t} where {w} order by {o}").format(
        t=sql.Identifier(table.schema, table.name), w=where, o=sql.SQL(", ").join(map(sql.Identifier, order))
    )
    return query, where


def _rows_by_day(conn: psycopg.Connection, table: ExportTable, where: sql.Composable) -> dict[str, int]:
    if table.period_column is None:
        day: sql.Composable = sql.SQL("null::date")
    else:
        day = sql.SQL("({}::timestamptz at time zone 'UTC')::date").format(sql.Identifier(table.period_column))
    rows = conn.execute(
        sql.SQL("select {d}, count(*) from {t} where {w} group by 1 order by 1").format(
            d=day, t=sql.Identifier(table.schema, table.name), w=where
        )
    ).fetchall()
    return {("all" if d is None else d.isoformat()): n for d, n in rows}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _batches(cursor: psycopg.Cursor, size: int) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(size):
        yield rows


def _write_streamed(
    conn: psycopg.Connection, query: sql.Composed, tmp: Path, fmt: Format, batch_size: int, bar: tqdm
) -> int:
    written = 0
    with conn.cursor(name="telemetry_export") as cursor:
        cursor.itersize = batch_size
        cursor.execute(query)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            from collectors.export.columns import arrow_batch, arrow_schema, column_types

            types = column_types(conn, cursor.description)
            schema = arrow_schema(types)
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for rows in _batches(cursor, batch_size):
                    writer.write_batch(arrow_batch(types, rows, schema))
                    written += len(rows)
                    bar.update(len(rows))
                if not written:
                    writer.write_table(schema.empty_table())
        else:
            from collectors.export.jsonl import json_line

            names = [c.name for c in cursor.description]
            with tmp.open("wb") as handle:
                for rows in _batches(cursor, batch_size):
                    handle.writelines(json_line(names, row) for row in rows)
                    written += len(rows)
                    bar.update(len(rows))
    return written


def _write_csv(conn: psycopg.Connection, query: sql.Composed, tmp: Path, bar: tqdm) -> None:
    copy = sql.SQL("copy ({}) to stdout with (format csv, header)").format(query)
    with conn.cursor() as cursor, cursor.copy(copy) as data, tmp.open("wb") as handle:
        for block in data:
            handle.write(block)
            bar.update(len(block))


def export_table(
    conn: psycopg.Connection,
    table: ExportTable,
    period: Period,
    out: Path,
    fmt: Format,
    *,
    batch_size: int,
    progress: bool,
) -> TableExport:
    query, where = _select(conn, table, period)
    rows_by_day = _rows_by_day(conn, table, where)
    expected = sum(rows_by_day.values())
    name = f"{table.file_stem}.{EXTENSIONS[fmt]}"
    final, tmp = out / name, out / f".{name}.partial"
    try:
        if fmt == "csv":
            with tqdm(desc=table.name, unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
                _write_csv(conn, query, tmp, bar)
            written = expected  # the same snapshot as the count
        else:
            with tqdm(total=expected, desc=table.name, unit="rows", disable=not progress, leave=False) as bar:
                written = _write_streamed(conn, query, tmp, fmt, batch_size, bar)
        if written != expected:  # cannot happen within one snapshot; a file that disagrees must not be published
            raise ExportError(f"{table.qualified}: wrote {written} rows, counted {expected}")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    file = WrittenFile(table.qualified, name, written, final.stat().st_size, _sha256(final))
    return TableExport(table, rows_by_day, file)


_REJECTS = """
select day, source, reason, sum(rejects)::bigint from (
    select (rejected_at at time zone 'UTC')::date as day, source, reason, count(*) as rejects
    from raw.rejects where rejected_at >= %(start)s and rejected_at < %(end)s
    group by 1, 2, 3
    union all
    select day, source, reason, rejects from quality.rejects_daily
    where day >= %(start_day)s and day < %(end_day)s
) as r
group by 1, 2, 3 order by 1, 2, 3
"""


def rejects_in(conn: psycopg.Connection, period: Period) -> dict[str, Any]:
    """Records refused in the period (by when they were refused): what raw.rejects holds, and the daily counts
    quality.rejects_daily keeps of the days the cleanup has pruned."""
    start, end = period.bounds
    params = {"start": start, "end": end, "start_day": period.start, "end_day": period.end}
    try:
        with conn.transaction():  # a savepoint: a reader without access to the rejects still gets its files
            rows = conn.execute(_REJECTS, params).fetchall()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable) as error:
        # e.g. telemetry_analyst, which reads the marts only: the files are still good, the rejects unknown
        return {"total": None, "error": f"the rejects cannot be read: {str(error).splitlines()[0]}"}
    by_day: dict[str, dict[str, dict[str, int]]] = {}
    for day, source, reason, n in rows:
        by_day.setdefault(day.isoformat(), {}).setdefault(source, {})[reason] = n
    return {"total": sum(r[3] for r in rows), "by_day": by_day}


def export(
    database_url: str,
    tables: Sequence[ExportTable],
    period: Period,
    out: Path,
    fmt: Format,
    *,
    batch_size: int = 50_000,
    progress: bool = False,
    on_table: Callable[[TableExport], None] | None = None,
) -> ExportResult:
    """Write every table's rows in ``period`` to ``out`` and the inventory beside them."""
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out, period, fmt)
    with psycopg.connect(database_url, connect_timeout=10, options="-c timezone=UTC") as conn:
        load_json_as_text(conn)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for table in tables:
                done = export_table(conn, table, period, out, fmt, batch_size=batch_size, progress=progress)
                result.tables.append(done)
                if on_table is not None:
                    on_table(done)
            result.rejects = rejects_in(conn, period)
    tmp = out / f".{INVENTORY}.partial"
    tmp.write_text(json.dumps(result.inventory(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / INVENTORY)
    return result
