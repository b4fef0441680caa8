"""The raw-table registry is the truth of every raw table: checked against the migrated database, dbt's sources,
and everything derived from it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import yaml

from collectors.config import RetentionDays
from collectors.ingest import registry
from collectors.ingest.service import ENDPOINTS
from collectors.orchestration.builds import PARTS
from collectors.orchestration.cadences import CADENCES
from collectors.orchestration.cleanup import FEEDS
from collectors.senders.client.exporter import KINDS

SOURCES = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "staging" / "__sources.yml"
# COPY's type names as PostgreSQL's format_type() spells them
TYPE_NAMES = {
    "text": "text",
    "text[]": "text[]",
    "timestamptz": "timestamp with time zone",
    "int4": "integer",
    "int8": "bigint",
    "int8[]": "bigint[]",
    "float8": "double precision",
    "float8[]": "double precision[]",
    "bytea": "bytea",
    "uuid": "uuid",
    "jsonb": "jsonb",
}


def test_the_registry_matches_the_migrated_database(db: psycopg.Connection) -> None:
    for table in registry.RAW_TABLES:
        columns = db.execute(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a"
            " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
            (f"raw.{table.name}",),
        ).fetchall()
        declared = {c.name: TYPE_NAMES[c.type] for c in table.columns}
        assert {n: t for n, t in columns if n not in table.stamped} == declared, table.name
        assert {n for n, _ in columns} - set(declared) == set(table.stamped), table.name
        partition_key = db.execute("select pg_get_partkeydef(%s::regclass)", (f"raw.{table.name}",)).fetchone()[0]
        assert (
            partition_key == f"RANGE ({table.partition_column})"
            or partition_key == f'RANGE ("{table.partition_column}")'
        )
        (unique,) = db.execute(
            "select array_agg(a.attname order by k.ordinality) from pg_constraint c"
            " cross join lateral unnest(c.conkey) with ordinality as k(attnum, ordinality)"
            " join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum"
            " where c.conrelid = %s::regclass and c.contype = 'u' group by c.oid",
            (f"raw.{table.name}",),
        ).fetchone()
        assert tuple(unique) == table.key, table.name
    listed = dict(db.execute("select table_name, partition_column from quality.raw_tables").fetchall())
    assert listed == {t.name: t.partition_column for t in registry.RAW_TABLES}


def test_the_registry_matches_the_dbt_sources() -> None:
    sources = yaml.safe_load(SOURCES.read_text())["sources"]
    tables = {
        (source["name"], table["name"]): [column["name"] for column in table.get("columns", [])]
        for source in sources
        for table in source["tables"]
    }
    assert set(tables) == {(t.source, t.name) for t in registry.RAW_TABLES}
    for table in registry.RAW_TABLES:
        documented = set(tables[(table.source, table.name)])
        assert documented == {*table.column_names, *table.stamped} - {"batch_id"}, table.name


def test_everything_that_lists_raw_tables_comes_from_the_registry() -> None:
    sent = [t.name for t in registry.SENT]
    assert [e.table.name for e in ENDPOINTS] == sent and list(KINDS) == sent
    # every raw table's retention, and raw.rejects' (not a registry table: it holds what the registry refused)
    assert RetentionDays().model_dump(exclude={"rejects"}) == {t.name: t.retention_days for t in registry.RAW_TABLES}
    assert {t.name: t.feeds for t in registry.RAW_TABLES} == FEEDS
    for table in registry.SENT:
        request = table.rpc.request()
        assert table.rpc.field in request.DESCRIPTOR.fields_by_name, table.name
    # every feed names a cadence and a part the builds know, so the cleanup can find its builds
    for table in registry.RAW_TABLES:
        assert table.feeds, table.name
        for feed in table.feeds:
            assert feed.cadence in CADENCES and feed.part in PARTS, (table.name, feed)
