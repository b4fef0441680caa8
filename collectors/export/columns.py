"""PostgreSQL column types to Arrow types (Parquet keeps them), and Python values to what Arrow takes.

Choices: timestamptz is timestamp[us, tz=UTC]; numeric with a declared precision (numeric(p, s), p <= 38) is
decimal128(p, s), exact; numeric without one, which is what the marts' exact divisions and estimates are, is
float64 (double): a Parquet decimal needs one scale for the whole column, and 1 / 3 has none. jsonb and json are
their JSON text (string); uuid is its text; arrays are lists of their element type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
import pyarrow as pa

from collectors.export.jsonl import JSON_ENCODER

_SCALARS: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "time": pa.time64("us"),
    "interval": pa.duration("us"),
    "bytea": pa.binary(),
    "uuid": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
}
_JSON = JSON_ENCODER


@dataclass(frozen=True)
class ColumnType:
    name: str
    pg_type: str  # e.g. "numeric", "int8[]"
    arrow: pa.DataType
    convert: Callable[[Any], Any] | None  # Python value -> what pa.array takes for ``arrow``; None: as it is


def _identity(value: Any) -> Any:
    return value


def _scalar(typname: str, precision: int | None, scale: int | None) -> tuple[pa.DataType, Callable[[Any], Any]]:
    if typname == "numeric":
        if precision is not None and 0 < precision <= 38:
            return pa.decimal128(precision, scale or 0), _identity
        return pa.float64(), float
    if typname in ("json", "jsonb"):
        return pa.string(), _json_text
    if typname == "uuid":
        return pa.string(), str
    if typname == "bytea":
        return pa.binary(), bytes
    if typname in _SCALARS:
        return _SCALARS[typname], _identity
    return pa.string(), str  # anything else travels as PostgreSQL's text of it


def _json_text(value: Any) -> str:
    # JSON as the server sent it (the export's loader, JsonText), else as psycopg parsed it
    if isinstance(value, msgspec.Raw | bytes | memoryview):
        return bytes(value).decode()
    return _JSON.encode(value).decode()


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def column_types(conn: psycopg.Connection, description: Sequence[psycopg.Column]) -> list[ColumnType]:
    """The Arrow type of every column of a query's result (``cursor.description``)."""
    oids = [c.type_code for c in description]
    info = {
        oid: (typname, category, elem)
        for oid, typname, category, elem in conn.execute(
            "select t.oid, t.typname, t.typcategory, e.typname"
            " from pg_type as t left join pg_type as e on e.oid = t.typelem and t.typcategory = 'A'"
            " where t.oid = any(%s)",
            (oids,),
        ).fetchall()
    }
    types: list[ColumnType] = []
    for column in description:
        typname, category, elem = info[column.type_code]
        if category == "A" and elem is not None:
            arrow, convert = _scalar(elem, None, None)
            item = _nullable(convert)
            types.append(
                ColumnType(column.name, f"{elem}[]", pa.list_(arrow), lambda v, item=item: [item(x) for x in v])
            )
        else:
            arrow, convert = _scalar(typname, column.precision, column.scale)
            types.append(ColumnType(column.name, typname, arrow, None if convert is _identity else convert))
    return types


def arrow_batch(types: Sequence[ColumnType], rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for index, column in enumerate(types):
        values = [row[index] for row in rows]
        if column.convert is not None:
            convert = column.convert
            values = [None if v is None else convert(v) for v in values]
        arrays.append(pa.array(values, type=column.arrow))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def arrow_schema(types: Sequence[ColumnType]) -> pa.Schema:
    return pa.schema(
        [pa.field(t.name, t.arrow) for t in types],
        metadata={b"postgres_types": _JSON.encode({t.name: t.pg_type for t in types})},
    )
