"""The cadence DAGs' dbt tasks and the reconcile DAG's rebuild reach the same build, ``builds.build_part``, with the
run's window, DAG and run (the build itself replaced by a recorder: no dbt, no scheduler)."""

from __future__ import annotations

import types
from typing import Any

import pendulum
import pytest

from collectors.orchestration import builds
from collectors.orchestration.airflow_tasks import build_marts, build_reliability, rebuild
from collectors.orchestration.cadences import Window, parse_instant


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def record(cadence: Any, part: str, window: Window, **kwargs: Any) -> builds.BuildRecord:
        calls.append({"cadence": cadence.name, "part": part, "window": str(window), **kwargs})
        return builds.BuildRecord(cadence.name, part, window, 0, 0.0, kwargs["artefacts_dir"], window.end)

    monkeypatch.setattr(builds, "build_part", record)
    return calls


def context(dag_id: str, **params: Any) -> dict[str, Any]:
    return {
        "dag": types.SimpleNamespace(dag_id=dag_id),
        "run_id": "manual__1",
        "params": params,
        "data_interval_start": pendulum.datetime(2026, 11, 17),
        "data_interval_end": pendulum.datetime(2026, 11, 18),
    }


def test_a_cadence_run_and_a_rebuild_build_through_the_same_function(built: list[dict[str, Any]]) -> None:
    build_marts.function("daily", **context("telemetry_daily"))
    build_reliability.function("daily", **context("telemetry_daily", full_refresh_family="day_log"))
    step = {
        "cadence": "daily",
        "part": "marts",
        "window_start": "2026-11-17T00:00:00+00:00",
        "window_end": "2026-11-18T00:00:00+00:00",
    }
    rebuild.function([step], **context("telemetry_reconcile", family="day_log"))
    day = str(Window(parse_instant("2026-11-17T00:00:00Z"), parse_instant("2026-11-18T00:00:00Z")))
    shape = [
        (c["cadence"], c["part"], c["window"], c["dag_id"], c["run_id"], c["family"], c["full_refresh"]) for c in built
    ]
    assert shape == [
        ("daily", "marts", day, "telemetry_daily", "manual__1", None, False),
        ("daily", "reliability", day, "telemetry_daily", "manual__1", "day_log", True),  # a family refresh
        ("daily", "marts", day, "telemetry_reconcile", "manual__1", "day_log", False),  # a family rebuild, windowed
    ]
    assert len({c["database_url"] for c in built}) == 1  # warehouse_url(), for both DAGs
