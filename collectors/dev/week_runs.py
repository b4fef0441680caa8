"""Build one landed ISO week through Airflow, the way a data engineer catches up on late data.

* ``telemetry_hourly``: one manual range run (params ``window_start``/``window_end``). Every hourly
  model is window-incremental on its hour, so this equals 168 hourly runs (the dbt equivalence test)
  at the cost of one; 168 task pairs would take about an hour on two cores.
* ``telemetry_daily``: a backfill of the week's seven days (Airflow's backfills, through the REST API),
  each run owning exactly its day, as the scheduled runs would.
* ``telemetry_weekly``: a backfill of the week: weekly marts, Great Expectations on what the cleanup
  would drop and on the marts, then the cleanup.

Used by ``make demo`` and by the backfill end-to-end test. Needs ``LocalAirflow.services()``. The
reliability parts wait ``TELEMETRY_RELIABILITY_LAG_WINDOWS`` after each window: a week landed late
is past that lag except for its last windows, so callers that must finish now set it to 0.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from collectors.dev.local_airflow import LocalAirflow

DAGS = ("telemetry_hourly", "telemetry_daily", "telemetry_weekly")


def last_complete_week(today: dt.date | None = None) -> dt.datetime:
    """Monday 00:00 UTC of the last complete ISO week before ``today`` (default: today, UTC)."""
    today = today or dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=today.weekday() + 7), dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class WeekRuns:
    """Final state of every run, by DAG (hourly: by run id; daily and weekly: by data interval start)."""

    hourly: dict[str, str]
    daily: dict[dt.datetime, str]
    weekly: dict[dt.datetime, str]

    @property
    def succeeded(self) -> bool:
        states = [*self.hourly.values(), *self.daily.values(), *self.weekly.values()]
        return bool(states) and all(state == "success" for state in states)


def _counts(states: dict[dt.datetime, str]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(Counter(states.values()).items())) or "queued"


def run_week(
    airflow: LocalAirflow,
    week_start: dt.datetime,
    *,
    progress: Callable[[str], None] = print,
    timeout: float = 900,
) -> WeekRuns:
    """Run the three DAGs over ``[week_start, week_start + 7 days)`` (a Monday, 00:00 UTC); wait for each."""
    if week_start.weekday() or week_start.time() != dt.time() or week_start.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{week_start.isoformat()} is not a Monday 00:00 UTC")
    week_end = week_start + dt.timedelta(days=7)
    airflow.wait_dag_registered(DAGS)

    run_id = f"manual__range_{week_start:%Y%m%d}_{dt.datetime.now(dt.UTC):%H%M%S}"
    progress(f"telemetry_hourly: one range run over {week_start:%Y-%m-%d} .. {week_end:%Y-%m-%d} ({run_id})")
    airflow.trigger(
        "telemetry_hourly",
        run_id,
        {"window_start": week_start.isoformat(), "window_end": week_end.isoformat()},
    )
    hourly = airflow.wait_run(
        "telemetry_hourly", run_id, timeout=timeout, progress=lambda s: progress(f"    telemetry_hourly: {s}")
    )

    def report(dag_id: str) -> Callable[[dict[dt.datetime, str]], None]:
        last: list[str] = []

        def show(states: dict[dt.datetime, str]) -> None:
            text = _counts(states)
            if [text] != last:
                progress(f"    {dag_id}: {text}")
                last[:] = [text]

        return show

    progress("telemetry_daily: backfill of 7 days")
    # backfill bounds select runs by data interval start (the run ids carry the interval's end)
    daily = airflow.backfill(
        "telemetry_daily",
        week_start,
        week_end - dt.timedelta(days=1),
        timeout=timeout,
        progress=report("telemetry_daily"),
    )
    progress("telemetry_weekly: backfill of the week (build, validate, clean up)")
    weekly = airflow.backfill(
        "telemetry_weekly",
        week_start,
        week_start,
        max_active_runs=1,
        timeout=timeout,
        progress=report("telemetry_weekly"),
    )
    return WeekRuns({run_id: hourly}, daily, weekly)
