"""The dbt runner: the window reaches the models without a reparse, failures name their nodes, run results are
kept."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from collectors.orchestration import dbt_runner as dbt
from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY

DAY_START = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)


def test_run_results_are_kept_where_the_caller_says(warehouse: DbtWarehouse) -> None:
    result = warehouse.build(
        "fct_event_counts_daily", DAY_START, DAY_START + dt.timedelta(days=1), name="kept", data_tests=False
    )
    results = json.loads(result.run_results_path.read_text())
    assert result.run_results_path.parent == warehouse.target_root / "kept"
    assert [r["unique_id"] for r in results["results"]] == ["model.telemetry.fct_event_counts_daily"]
    assert result.statuses() == {"model.telemetry.fct_event_counts_daily": "success"}
    compiled = next((warehouse.target_root / "kept" / "compiled").rglob("fct_event_counts_daily.sql")).read_text()
    assert "'2026-11-03T00:00:00+00:00'::timestamptz" in compiled and "'2026-11-04T00:00:00+00:00'" in compiled


def test_another_window_does_not_make_dbt_parse_the_project_again(warehouse: DbtWarehouse) -> None:
    """The window is in the environment, read when a model runs; as a var it would change the parse key."""
    build = {"name": "reparse", "data_tests": False}
    warehouse.build("fct_event_counts_daily", DAY_START, DAY_START + dt.timedelta(days=1), **build)
    parsed = warehouse.target_root / "reparse" / "partial_parse.msgpack"
    first = parsed.stat().st_mtime_ns
    later = DAY_START + dt.timedelta(days=1)
    result = warehouse.build("fct_event_counts_daily", later, later + dt.timedelta(days=1), **build)
    assert parsed.stat().st_mtime_ns == first  # not parsed (nor written) again
    compiled = next((result.target_path / "compiled").rglob("fct_event_counts_daily.sql")).read_text()
    assert f"'{later.isoformat()}'::timestamptz" in compiled


def test_a_new_target_directory_starts_from_the_last_saved_parse(warehouse: DbtWarehouse) -> None:
    """A fresh target directory (another cadence's, another test's) gets the saved parse of the same database and
    vars, which dbt then uses as it is: it would write a new one had it parsed the project again."""
    window = (DAY_START, DAY_START + dt.timedelta(days=1))
    warehouse.build("fct_event_counts_daily", *window, name="parse-first", data_tests=False)
    saved = (warehouse.target_root / "parse-first" / "partial_parse.msgpack").stat()
    result = warehouse.build("fct_event_counts_daily", *window, name="parse-second", data_tests=False)
    reused = (result.target_path / "partial_parse.msgpack").stat()
    assert (reused.st_mtime_ns, reused.st_size) == (saved.st_mtime_ns, saved.st_size)


def test_a_segment_length_that_does_not_divide_the_day_fails_loudly(warehouse: DbtWarehouse) -> None:
    before = warehouse.rows("select day_log::text from marts.fct_telemetry_day order by day")
    with pytest.raises(dbt.DbtBuildError) as failure:
        warehouse.build(
            "fct_telemetry_day",
            DAY_START,
            DAY_START + dt.timedelta(days=1),
            name="bad-segments",
            vars={"segment_minutes": 7},
        )
    assert failure.value.failed_nodes == ["model.telemetry.fct_telemetry_day"]
    assert "segment_minutes=7 must be a positive integer that divides 1440" in str(failure.value)
    assert warehouse.rows("select day_log::text from marts.fct_telemetry_day order by day") == before


def test_a_failing_data_test_is_named(warehouse: DbtWarehouse) -> None:
    warehouse.rows("insert into marts.fct_reliability_daily (day, reliability) values ('1999-01-01', 2) returning 1")
    try:
        with pytest.raises(dbt.DbtBuildError) as failure:
            warehouse.build(
                "fct_reliability_daily",
                DAY_START,
                DAY_START + dt.timedelta(days=1),
                name="failing-test",
            )
        assert any("value_between_fct_reliability_daily_reliability" in node for node in failure.value.failed_nodes)
        assert all(node.startswith("test.") for node in failure.value.failed_nodes)
    finally:
        warehouse.rows("delete from marts.fct_reliability_daily where day = '1999-01-01' returning 1")


def test_windows_must_be_aware_and_non_empty() -> None:
    naive = dt.datetime(2026, 11, 3)
    with pytest.raises(ValueError, match="timezone-aware"):
        dbt.build("x", naive, naive + dt.timedelta(hours=1), database_url="postgresql://unused/db")
    with pytest.raises(ValueError, match="empty window"):
        dbt.build("x", DAY_START, DAY_START, database_url="postgresql://unused/db")


def test_a_reliability_horizon_that_is_not_a_whole_number_fails_loudly(warehouse: DbtWarehouse) -> None:
    with pytest.raises(dbt.DbtBuildError) as failure:
        warehouse.build(
            "fct_channel_reliability_hourly",
            DAY_START + dt.timedelta(hours=10),
            DAY_START + dt.timedelta(hours=11),
            name="bad-lookahead",
            vars={"reliability_lookahead_windows": 0.5},
        )
    # the check runs when dbt parses the project, so it names the first reliability model parsed
    assert failure.value.failed_nodes
    assert all(node.startswith("model.telemetry.fct_channel_reliability_") for node in failure.value.failed_nodes)
    assert "reliability_lookahead_windows=0.5 must be a whole number, 0 or more" in str(failure.value)
