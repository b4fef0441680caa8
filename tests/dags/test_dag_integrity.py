"""Every DAG file imports, has the expected tasks and a data-interval schedule with non-empty intervals."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {
    "telemetry_hourly": (
        ["check_window", "build_marts", "wait_reliability_lag", "build_reliability"],
        dt.timedelta(hours=1),
    ),
    "telemetry_daily": (
        ["check_window", "build_marts", "wait_reliability_lag", "build_reliability"],
        dt.timedelta(days=1),
    ),
    "telemetry_weekly": (
        ["check_window", "build_marts", "wait_reliability_lag", "build_reliability", "validate", "cleanup"],
        dt.timedelta(weeks=1),
    ),
    "telemetry_partitions": (["ensure_partitions"], dt.timedelta(days=1)),
}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS))
    print(f"\nparsed {len(bag.dags)} DAGs in {time.perf_counter() - started:.2f} s (dags.parse_seconds)")
    return bag


def test_every_dag_imports_without_error(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_tasks_order_and_schedule(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    tasks, length = EXPECTED[dag_id]
    assert [t.task_id for t in dag.topological_sort()] == tasks  # a chain, hence no cycle
    timetable = coerce_to_core_timetable(dag.timetable)
    assert isinstance(timetable, CronDataIntervalTimetable)
    # the first scheduled interval is a whole period, never start == end (Airflow 3's cron-string default)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 11, 2), latest=None, catchup=True),
    )
    assert first.data_interval.end - first.data_interval.start == length
    later = timetable.next_dagrun_info(
        last_automated_data_interval=first.data_interval,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 11, 2), latest=None, catchup=True),
    )
    assert later.data_interval.start == first.data_interval.end  # consecutive runs tile time
    manual = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 4, 5, 30))
    assert isinstance(manual, DataInterval) and manual.end - manual.start == length
    assert dag.catchup is (dag_id != "telemetry_partitions")


def test_parse_time_is_small() -> None:
    started = time.perf_counter()
    DagBag(dag_folder=str(DAGS))
    seconds = time.perf_counter() - started
    print(f"\nDAG folder parse: {seconds:.2f} s")
    assert seconds < 10  # target 2 s (bench: dags.parse_seconds); generous here, the suite runs on busy cores


def test_schedule_start_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_SCHEDULE_START", "2026-11-16T00:00:00")
    bag = DagBag(dag_folder=str(DAGS))
    for dag_id in ("telemetry_hourly", "telemetry_daily", "telemetry_weekly"):
        assert bag.dags[dag_id].start_date == dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
