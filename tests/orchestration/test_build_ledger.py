"""The build ledger records when a build started, by the database's clock (dbt itself replaced: only the ledger
is under test here)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from collectors.orchestration import builds
from collectors.orchestration.cadences import DAILY, Window, parse_instant
from collectors.orchestration.dbt_runner import DbtBuildResult


def test_a_build_is_recorded_with_the_moment_it_started(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(select: str, start: object, end: object, **kwargs: object) -> DbtBuildResult:
        db.execute("select pg_sleep(0.05)")  # dbt's time: the start is before it, the record after
        return DbtBuildResult(args=[], target_path=tmp_path, elapsed_seconds=0.05)

    monkeypatch.setattr(builds.dbt, "build", build)
    before = db.execute("select clock_timestamp()").fetchone()[0]
    window = Window(parse_instant("2026-12-01T00:00:00Z"), parse_instant("2026-12-02T00:00:00Z"))
    record = builds.build_part(DAILY, "marts", window, database_url=warehouse_url, artefacts_dir=tmp_path)
    started, finished = db.execute("select started_at, finished_at from quality.dbt_builds").fetchone()
    assert started == record.started_at
    assert before <= started and (finished - started).total_seconds() >= 0.05
    # a build of one family is recorded with it
    builds.build_part(DAILY, "marts", window, database_url=warehouse_url, artefacts_dir=tmp_path, family="day_log")
    assert db.execute("select family from quality.dbt_builds order by build_id").fetchall() == [(None,), ("day_log",)]
