"""dbt docs land in the database (persist_docs): the yml descriptions are comments on the relations and columns."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY

DAY_START = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
MODEL = "fct_telemetry_day"
COLUMN = "minutes_total"


def _comments(warehouse: DbtWarehouse) -> tuple[str | None, str | None]:
    [(relation, column)] = warehouse.rows(
        "select obj_description(c.oid, 'pg_class'), col_description(c.oid, a.attnum)"
        " from pg_class as c join pg_namespace as n on n.oid = c.relnamespace"
        " join pg_attribute as a on a.attrelid = c.oid"
        " where n.nspname = 'marts' and c.relname = %s and a.attname = %s",
        (MODEL, COLUMN),
    )
    return relation, column


def test_every_mart_and_column_carries_its_description(warehouse: DbtWarehouse) -> None:
    """What the session's build wrote: each mart's comment and each column's are the yml descriptions."""
    manifest = json.loads((warehouse.first_build.target_path / "manifest.json").read_text())
    marts = {
        n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["schema"] == "marts"
    }
    rows = warehouse.rows(
        "select c.relname, obj_description(c.oid, 'pg_class'), a.attname, col_description(c.oid, a.attnum)"
        " from pg_class as c join pg_namespace as n on n.oid = c.relnamespace"
        " join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
        " where n.nspname = 'marts' and c.relkind in ('r', 'p', 'v')"
    )
    assert {name for name, *_ in rows} == set(marts)
    for name, relation, column, comment in rows:
        assert (relation or "").strip() == marts[name]["description"].strip(), name
        assert (comment or "").strip() == marts[name]["columns"][column]["description"].strip(), (name, column)
        assert (comment or "").strip(), (name, column)


@pytest.mark.slow  # a one-model build parses the whole project: about 80 s on two loaded cores
def test_a_build_writes_the_yml_descriptions_as_comments(warehouse: DbtWarehouse) -> None:
    # wipe what the session's full build wrote, so only this one-model build can put the comments back
    with psycopg.connect(warehouse.url, autocommit=True) as conn:
        conn.execute(f"comment on table marts.{MODEL} is null")
        conn.execute(f"comment on column marts.{MODEL}.{COLUMN} is null")
    assert _comments(warehouse) == (None, None)

    result = warehouse.build(MODEL, DAY_START, DAY_START + dt.timedelta(days=1), name="persist-docs", data_tests=False)

    manifest = json.loads((result.target_path / "manifest.json").read_text())
    [node] = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == MODEL]
    relation, column = _comments(warehouse)
    assert relation is not None and column is not None
    assert relation.strip() == node["description"].strip()
    assert column.strip() == node["columns"][COLUMN]["description"].strip()
    assert column.strip()  # the column is documented, so the comment says something
