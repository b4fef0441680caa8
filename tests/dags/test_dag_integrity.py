"""Every DAG file imports, declares the expected graph and settings, and parses fast.

The graphs are what the files in ``dags/`` declare: a chain of tasks per cadence DAG, each on a data-interval
schedule whose intervals are whole periods, retried with backoff but for the tasks whose failure no retry can
mend.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import record_failure
from collectors.orchestration.cadences import CADENCES, MONTHLY
from tests.bench.bench_dags import Parse, parses, trivial_folder

DAGS = Path(__file__).resolve().parents[2] / "dags"
CHAIN = ["check_window", "build_marts", "wait_reliability_lag", "build_reliability"]
# the tasks in order and the length of an interval; a calendar month has none, so it is checked as a month
EXPECTED: dict[str, tuple[list[str], dt.timedelta | None]] = {
    "telemetry_hourly": ([CHAIN[0], "check_source_freshness", *CHAIN[1:]], dt.timedelta(hours=1)),
    "telemetry_daily": (CHAIN, dt.timedelta(days=1)),
    "telemetry_weekly": ([*CHAIN, "validate", "cleanup"], dt.timedelta(weeks=1)),
    # no reliability: it would need raw samples of the whole month and the next, long dropped by then
    "telemetry_monthly": (CHAIN[:2], None),
    "telemetry_partitions": (["ensure_partitions"], dt.timedelta(days=1)),
    "telemetry_reconcile": (["plan_rebuilds", "rebuild"], dt.timedelta(hours=1)),
}
# a misaligned window or failing data fails the same way again; a freshness check is due again the next hour
NO_RETRIES = {"check_window", "validate", "check_source_freshness"}
MAX_ACTIVE_RUNS = {
    "telemetry_hourly": 2,
    "telemetry_daily": 2,
    "telemetry_weekly": 1,
    "telemetry_monthly": 1,
    "telemetry_partitions": 1,
    "telemetry_reconcile": 1,
}
# a run of these acts on the present (partitions ahead, the ledgers as they are): a missed run is not replayed
NO_CATCHUP = {"telemetry_partitions", "telemetry_reconcile"}
# what parsing the DAG files must never import: the task bodies do
HEAVY_PACKAGES = {"dbt", "great_expectations", "psycopg", "psycopg2", "pandas", "grpc"}
# the DAG files' own parse cost above one trivial DAG file's: about 0.2 s on two quiet cores, dbt's import alone
# takes 2.4 s, Great Expectations' longer
PARSE_MARGIN_SECONDS = 1.0


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS))
    print(f"\nparsed {len(bag.dags)} DAGs in {time.perf_counter() - started:.2f} s")
    return bag


def test_every_dag_imports_without_error(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


def whole_period(dag_id: str, interval: DataInterval) -> bool:
    """Whether ``interval`` is one whole period of the DAG: its fixed length, or one calendar month from a first."""
    length = EXPECTED[dag_id][1]
    if length is not None:
        return interval.end - interval.start == length
    start = dt.datetime(*interval.start.timetuple()[:6], tzinfo=dt.UTC)
    end = dt.datetime(*interval.end.timetuple()[:6], tzinfo=dt.UTC)
    return MONTHLY.floor(start) == start and MONTHLY.shift(start) == end


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_tasks_order_and_schedule(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    tasks = EXPECTED[dag_id][0]
    order = [t.task_id for t in dag.topological_sort()]
    assert order == tasks
    for upstream, downstream in itertools.pairwise(order):  # a chain, hence no cycle and no shortcut
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    timetable = coerce_to_core_timetable(dag.timetable)
    assert isinstance(timetable, CronDataIntervalTimetable)
    # the first scheduled interval is a whole period, never start == end (Airflow 3's cron-string default)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 11, 2), latest=None, catchup=True),
    )
    assert whole_period(dag_id, first.data_interval)
    later = timetable.next_dagrun_info(
        last_automated_data_interval=first.data_interval,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 11, 2), latest=None, catchup=True),
    )
    assert later.data_interval.start == first.data_interval.end  # consecutive runs tile time
    manual = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 4, 5, 30))
    assert isinstance(manual, DataInterval) and whole_period(dag_id, manual)
    assert dag.catchup is (dag_id not in NO_CATCHUP)
    assert dag.max_active_runs == MAX_ACTIVE_RUNS[dag_id]


@pytest.mark.parametrize("name", sorted(CADENCES))
def test_a_cadence_dag_runs_on_its_cadence_and_passes_it_to_every_task(dagbag: DagBag, name: str) -> None:
    cadence = CADENCES[name]
    dag = dagbag.dags[cadence.dag_id]
    assert coerce_to_core_timetable(dag.timetable)._expression == cadence.cron  # the windows' arithmetic agrees
    assert set(dag.params) == {"window_start", "window_end", "full_refresh_family"}
    assert set(dag.tags) == {"telemetry", name}
    assert dag.doc_md and dag.description == dag.doc_md.strip().splitlines()[0]
    for task in dag.tasks:
        given = task.cadence if task.task_id == "wait_reliability_lag" else task.op_args[0]
        assert given == name, task.task_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_retries_back_off_and_failures_are_recorded(dagbag: DagBag, dag_id: str) -> None:
    for task in dagbag.dags[dag_id].tasks:
        assert task.retries == (0 if task.task_id in NO_RETRIES else 3), task.task_id
        assert task.retry_exponential_backoff and task.retry_delay == dt.timedelta(minutes=1), task.task_id
        assert task.max_retry_delay == dt.timedelta(minutes=30), task.task_id
        assert record_failure in task.on_failure_callback, task.task_id


def test_the_cleanup_drops_only_what_validate_returned(dagbag: DagBag) -> None:
    cleanup = dagbag.dags["telemetry_weekly"].get_task("cleanup")
    (validated,) = cleanup.op_args[1:]
    assert validated.operator.task_id == "validate"


def parse_problems(found: list[Parse], folder: Path, trivial: Path) -> list[str]:
    """Why parsing ``folder`` is too slow: heavy packages it imports, or a cost well above one trivial DAG file's.

    The fastest of a few parses of each counts: other work on the cores only ever adds time.
    """
    ours = [p for p in found if p.folder == folder]
    problems = [f"imports {sorted(HEAVY_PACKAGES & ours[0].imported)}"] if HEAVY_PACKAGES & ours[0].imported else []
    seconds, baseline = min(p.seconds for p in ours), min(p.seconds for p in found if p.folder == trivial)
    if seconds >= baseline + PARSE_MARGIN_SECONDS:
        problems.append(f"takes {seconds:.2f} s, one trivial DAG file {baseline:.2f} s")
    return problems


def test_parse_time_is_small(tmp_path: Path) -> None:
    """``dags/`` parses fast; and the same check fails for a copy with one DAG file that imports dbt or sleeps."""
    slow = {"imports_dbt": "import dbt.cli.main", "sleeps": "import time; time.sleep(1.5)"}
    partitions = (DAGS / "telemetry_partitions.py").read_text()
    for name, statement in slow.items():
        (tmp_path / name).mkdir()
        for source in DAGS.glob("*.py"):
            (tmp_path / name / source.name).write_text(source.read_text())
        extra = partitions.replace('"telemetry_partitions"', f'"telemetry_{name}"')
        (tmp_path / name / f"telemetry_{name}.py").write_text(f"{extra}\n{statement}\n")
    trivial = trivial_folder(tmp_path)
    found = parses([DAGS, trivial] * 3 + [tmp_path / name for name in slow], tmp_path / "home", rounds=1)
    print(f"\nDAG folder parse: {min(p.seconds for p in found if p.folder == DAGS):.2f} s (bench: dags.parse_seconds)")
    assert parse_problems(found, DAGS, trivial) == []
    assert parse_problems(found, tmp_path / "imports_dbt", trivial)[0] == "imports ['dbt']"
    assert parse_problems(found, tmp_path / "sleeps", trivial)[0].startswith("takes ")


def test_schedule_start_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_SCHEDULE_START", "2026-11-16T00:00:00")
    bag = DagBag(dag_folder=str(DAGS))
    for dag_id in ("telemetry_hourly", "telemetry_daily", "telemetry_weekly", "telemetry_monthly"):
        assert bag.dags[dag_id].start_date == dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def test_the_monthly_dag_tiles_calendar_months_across_a_year_end(dagbag: DagBag) -> None:
    timetable = coerce_to_core_timetable(dagbag.dags["telemetry_monthly"].timetable)
    restriction = TimeRestriction(earliest=pendulum.datetime(2025, 11, 1), latest=None, catchup=True)
    interval, seen = None, []
    for _ in range(4):
        found = timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=restriction)
        interval = found.data_interval
        seen.append((interval.start.date(), interval.end.date()))
    assert seen == [
        (dt.date(2025, 11, 1), dt.date(2025, 12, 1)),
        (dt.date(2025, 12, 1), dt.date(2026, 1, 1)),
        (dt.date(2026, 1, 1), dt.date(2026, 2, 1)),
        (dt.date(2026, 2, 1), dt.date(2026, 3, 1)),
    ]
    # a manual trigger mid-month builds the month before, whole, as the scheduled run would
    manual = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 3, 18, 5, 30))
    assert (manual.start.date(), manual.end.date()) == (dt.date(2026, 2, 1), dt.date(2026, 3, 1))


def test_the_reconcile_dag_rebuilds_what_it_planned(dagbag: DagBag) -> None:
    dag = dagbag.dags["telemetry_reconcile"]
    (planned,) = dag.get_task("rebuild").op_args
    assert planned.operator.task_id == "plan_rebuilds"
    assert set(dag.params) == {"dry_run", "lookback_days", "rebuild_from", "rebuild_to", "family"}
    assert dag.params["dry_run"] is False and dag.params["lookback_days"] == 7
    assert set(dag.tags) == {"telemetry", "reconcile"}
    assert dag.is_paused_upon_creation is True
    assert dag.doc_md and dag.description == dag.doc_md.strip().splitlines()[0]
