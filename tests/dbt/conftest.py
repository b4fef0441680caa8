"""One warehouse database per test session for the dbt tests: hand-made raw rows, one full build.

dbt runs in-process through ``collectors.orchestration.dbt_runner`` (one dbtRunner per process); every test that
rebuilds a window puts back exactly what the full build made, which the tests themselves check.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.orchestration import dbt_runner as dbt
from tests.dbt import scenario


@dataclass
class DbtWarehouse:
    url: str
    target_root: Path
    first_build: dbt.DbtBuildResult

    def build(
        self,
        select: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        name: str,
        **kwargs: object,
    ) -> dbt.DbtBuildResult:
        return dbt.build(select, start, end, database_url=self.url, target_path=self.target_root / name, **kwargs)

    def rows(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture(scope="session")
def warehouse(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DbtWarehouse]:
    name = f"telemetry_dbt_{os.getpid()}"
    url = local_postgres.create_database(
        pg_server.url, name, template=local_postgres.database_name(template_url), drop=True
    )
    with psycopg.connect(url, autocommit=True) as conn:
        scenario.load(conn)
    target_root = tmp_path_factory.mktemp("dbt_targets")
    start = dt.datetime.combine(scenario.DAY, dt.time(), tzinfo=dt.UTC)
    first = dbt.build(
        "*",
        start,
        start + dt.timedelta(days=1),
        database_url=url,
        full_refresh=True,
        unit_tests=True,
        target_path=target_root / "full",
    )
    yield DbtWarehouse(url=url, target_root=target_root, first_build=first)
    local_postgres.drop_database(pg_server.url, name)
