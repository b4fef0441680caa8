"""``make demo`` drops only the Airflow metadata database it created itself, whatever server it is given."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from collectors.dev import local_postgres
from collectors.dev.demo import AIRFLOW_DATABASE_MARK, airflow_metadata_database


@pytest.fixture
def name(pg_server: local_postgres.PostgresServer) -> Iterator[str]:
    """A database name of this test alone (what ``telemetry_demo_airflow`` is on a shared server)."""
    dbname = f"telemetry_demo_airflow_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield dbname
    local_postgres.drop_database(pg_server.url, dbname)


def comment_and_rows(server_url: str, dbname: str) -> tuple[str | None, list[tuple]]:
    with psycopg.connect(server_url) as conn:
        (comment,) = conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (dbname,)
        ).fetchone()
    with psycopg.connect(local_postgres.with_database(server_url, dbname)) as conn:
        tables = conn.execute("select to_regclass('public.kept')").fetchone()[0]
        rows = conn.execute("select * from kept").fetchall() if tables else []
    return comment, rows


def fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table kept (what text)")
        conn.execute("insert into kept values ('someone else''s work')")


def test_a_database_of_that_name_the_demo_did_not_create_is_left_alone(
    pg_server: local_postgres.PostgresServer, name: str
) -> None:
    fill(local_postgres.create_database(pg_server.url, name))
    with pytest.raises(SystemExit) as refused:
        airflow_metadata_database(pg_server.url, name)
    message = str(refused.value)
    assert f"database {name} already exists" in message and "make demo did not create it" in message
    assert f"drop database {name}" in message and "TELEMETRY_DATABASE_URL" in message
    assert comment_and_rows(pg_server.url, name) == (None, [("someone else's work",)])

    with psycopg.connect(pg_server.url, autocommit=True) as conn:  # any other comment is not the demo's either
        conn.execute(sql.SQL("comment on database {} is 'production metadata'").format(sql.Identifier(name)))
    with pytest.raises(SystemExit):
        airflow_metadata_database(pg_server.url, name)
    assert comment_and_rows(pg_server.url, name) == ("production metadata", [("someone else's work",)])


def test_the_demo_creates_its_database_marked_and_recreates_it_on_the_next_run(
    pg_server: local_postgres.PostgresServer, name: str
) -> None:
    url = airflow_metadata_database(pg_server.url, name)
    assert url == local_postgres.with_database(pg_server.url, name)
    assert comment_and_rows(pg_server.url, name) == (AIRFLOW_DATABASE_MARK, [])
    fill(url)  # what a demo run leaves behind
    assert airflow_metadata_database(pg_server.url, name) == url
    assert comment_and_rows(pg_server.url, name) == (AIRFLOW_DATABASE_MARK, [])
