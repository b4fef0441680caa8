"""A manual run's window is checked when it is triggered, and what a schema cannot check fails at once, unretried.

Airflow 3.3 validates a run's conf against the DAG's params when it creates the run
(``SerializedDAG.create_dagrun`` -> ``params.deep_merge(conf).validate()``, jsonschema): ``airflow dags trigger``,
``airflow dags test --conf``, the REST API and the UI all go through it, so a refused conf never becomes a run.
Here that check runs on the DAGs as the scheduler sees them (serialized and back); the e2e tests trigger through
a running Airflow. ``check_window`` refuses, without retries, what a pattern cannot see.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.exceptions import ParamValidationError
from airflow.sdk.exceptions import AirflowFailException
from airflow.serialization.serialized_objects import DagSerialization
from hypothesis import given
from hypothesis import strategies as st

from collectors.orchestration.airflow_tasks import check_window, plan_rebuilds, rebuild
from collectors.orchestration.cadences import CADENCES, Window, parse_instant

DAGS = Path(__file__).resolve().parents[2] / "dags"
GOOD = {
    "hourly": ["2026-11-16T05:00:00Z", "2026-11-16T05:00Z", "2026-11-16T05:00:00+00:00", "2026-11-16T23:00:00.000Z"],
    "daily": ["2026-11-17T00:00:00Z", "2026-11-17T00:00:00+00:00", "2026-11-17T00:00-00:00"],
    "weekly": ["2026-11-16T00:00:00Z", "2026-11-23T00:00:00+00:00"],
    "monthly": ["2026-11-01T00:00:00Z", "2027-01-01T00:00:00+00:00", "2026-02-01T00:00Z"],
}
BAD = {
    "hourly": ["2026-11-16T05:30:00Z", "2026-11-16T05:00:01Z", "2026-11-16T06:00:00+01:00", "2026-11-16T05:00:00"],
    "daily": ["2026-11-17T05:00:00Z", "2026-11-17", "2026-11-17T01:00:00+01:00", "2026-11-17 00:00:00Z"],
    "weekly": ["2026-11-16T12:00:00Z", "2026-13-16T00:00:00Z", "last monday"],
    "monthly": ["2026-11-16T00:00:00Z", "2026-11-02T00:00:00Z", "2026-12-01T05:00:00Z", "2026-11", "2026-13-01T00:00Z"],
}


@pytest.fixture(scope="module")
def scheduler_dags() -> dict[str, object]:
    """The cadence DAGs as the scheduler and the api-server hold them: serialized, then deserialized."""
    bag = DagBag(dag_folder=str(DAGS))
    return {
        name: DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[cadence.dag_id]))
        for name, cadence in CADENCES.items()
    }


@pytest.mark.parametrize("cadence", sorted(CADENCES))
def test_airflow_accepts_windows_on_the_cadences_boundaries(scheduler_dags: dict, cadence: str) -> None:
    params = scheduler_dags[cadence].params
    for value in GOOD[cadence]:
        conf = {"window_start": value, "window_end": value, "full_refresh_family": "day_log"}
        assert params.deep_merge(conf).validate()["window_start"] == value
    assert params.deep_merge({}).validate() == {"window_start": None, "window_end": None, "full_refresh_family": None}


@pytest.mark.parametrize("cadence", sorted(CADENCES))
def test_airflow_refuses_a_window_off_the_boundaries_or_not_a_utc_instant_when_triggered(
    scheduler_dags: dict, cadence: str
) -> None:
    params = scheduler_dags[cadence].params
    for value in BAD[cadence]:
        for key in ("window_start", "window_end"):
            refused = re.escape(f"Invalid input for param {key}: '{value}' does not match")
            with pytest.raises(ParamValidationError, match=refused):
                params.deep_merge({key: value}).validate()
    with pytest.raises(ParamValidationError, match="full_refresh_family"):
        params.deep_merge({"full_refresh_family": "everything"}).validate()


INSTANTS = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda moment: moment.replace(second=0, microsecond=0))


@given(moment=INSTANTS, spelling=st.sampled_from(["%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%S+00:00"]))
def test_the_pattern_accepts_exactly_the_instants_check_window_takes_as_bounds(
    moment: dt.datetime, spelling: str
) -> None:
    text = moment.strftime(spelling)
    for cadence in CADENCES.values():
        aligned = cadence.floor(moment) == moment
        matches = re.search(cadence.bound_pattern(), text) is not None
        if cadence.name == "weekly":  # a pattern cannot tell a Monday: it holds the bound to midnight only
            aligned = moment.time() == dt.time()
        assert matches == aligned, (cadence.name, text)
        if matches:
            assert parse_instant(text) == moment


def context(start: str | None, end: str | None) -> dict:
    interval = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    return {
        "params": {"window_start": start, "window_end": end},
        "data_interval_start": interval,
        "data_interval_end": interval + dt.timedelta(weeks=1),
    }


@pytest.mark.parametrize(
    ("cadence", "start", "end", "reason"),
    [
        ("weekly", "2026-11-17T00:00:00Z", "2026-11-24T00:00:00Z", "not on a weekly boundary"),
        ("monthly", "2026-11-01T00:00:00Z", "2999-01-01T00:00:00Z", "ends after now"),
        ("daily", "2026-02-30T00:00:00Z", "2026-03-02T00:00:00Z", "day is out of range"),
        ("daily", "2026-11-16T00:00:00Z", None, "give both window_start and window_end"),
        ("hourly", "2026-11-16T05:00:00Z", "2026-11-16T05:00:00Z", "empty window"),
        ("daily", "2026-11-16T00:00:00Z", "2999-01-01T00:00:00Z", "ends after now"),
    ],
)
def test_check_window_fails_at_once_what_the_schema_lets_through(
    cadence: str, start: str, end: str | None, reason: str
) -> None:
    with pytest.raises(AirflowFailException, match=reason):  # AirflowFailException: no retry, whatever the task's
        check_window.function(cadence, **context(start, end))


def test_check_window_returns_the_window_it_checked() -> None:
    got = check_window.function("weekly", **context("2026-11-02T00:00:00Z", "2026-11-16T00:00:00+00:00"))
    window = Window(dt.datetime(2026, 11, 2, tzinfo=dt.UTC), dt.datetime(2026, 11, 16, tzinfo=dt.UTC))
    assert got == {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}
    assert check_window.function("weekly", **context(None, None))["window_end"] == "2026-11-23T00:00:00+00:00"


def test_check_window_takes_a_range_of_calendar_months_across_a_year_end() -> None:
    got = check_window.function("monthly", **context("2025-11-01T00:00:00Z", "2026-02-01T00:00:00+00:00"))
    assert got == {"window_start": "2025-11-01T00:00:00+00:00", "window_end": "2026-02-01T00:00:00+00:00"}
    with pytest.raises(AirflowFailException, match="not on a monthly boundary"):
        check_window.function("monthly", **context("2025-11-01T00:00:00Z", "2025-12-08T00:00:00Z"))


@pytest.fixture(scope="module")
def reconcile_params() -> object:
    bag = DagBag(dag_folder=str(DAGS))
    return DagSerialization.from_dict(DagSerialization.to_dict(bag.dags["telemetry_reconcile"])).params


def test_the_reconcile_dag_takes_a_range_of_days_and_refuses_what_is_not_one(reconcile_params) -> None:
    conf = {"rebuild_from": "2026-01-01", "rebuild_to": "2026-07-01", "family": "day_log", "dry_run": True}
    assert reconcile_params.deep_merge(conf).validate() == {**conf, "lookback_days": 7}
    for bad in ({"rebuild_from": "2026-01-01T00:00:00Z"}, {"rebuild_to": "July"}, {"lookback_days": 0},
                {"family": "nope"}, {"dry_run": "yes"}):  # fmt: skip
        with pytest.raises(ParamValidationError):
            reconcile_params.deep_merge(bad).validate()


def test_a_manual_reconcile_run_plans_every_grain_of_its_days_and_a_dry_run_builds_nothing() -> None:
    params = {"rebuild_from": "2026-05-30", "rebuild_to": "2026-06-02", "dry_run": True}
    planned = plan_rebuilds.function(params=params)
    assert [(s["cadence"], s["part"], s["window_start"][:10], s["window_end"][:10]) for s in planned] == [
        ("hourly", "marts", "2026-05-30", "2026-06-02"),
        ("hourly", "reliability", "2026-05-30", "2026-06-02"),
        ("daily", "marts", "2026-05-30", "2026-06-02"),
        ("daily", "reliability", "2026-05-30", "2026-06-02"),
        ("weekly", "marts", "2026-05-25", "2026-06-08"),
        ("weekly", "reliability", "2026-05-25", "2026-06-08"),
        ("monthly", "marts", "2026-05-01", "2026-07-01"),
    ]
    assert rebuild.function(planned, params=params) == []


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"rebuild_from": "2026-05-30"}, "give both rebuild_from and rebuild_to"),
        ({"rebuild_from": "2026-06-02", "rebuild_to": "2026-05-30"}, "must be after rebuild_from"),
        ({"rebuild_from": "2026-02-30", "rebuild_to": "2026-03-02"}, "must be days like 2026-01-01"),
    ],
)
def test_a_manual_reconcile_run_fails_at_once_on_a_range_that_is_not_one(params: dict, reason: str) -> None:
    with pytest.raises(AirflowFailException, match=reason):
        plan_rebuilds.function(params=params)
