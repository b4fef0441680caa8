"""Build one landed ISO week through Airflow, the way a data engineer catches up on late data.

* ``telemetry_hourly``: one manual range run (params ``window_start``/``window_end``). Every hourly
  model is window-incremental on its hour, so this equals 168 hourly runs (the dbt equivalence test)
  at the cost of one; 168 task pairs would take about an hour on two cores.
* ``telemetry_daily``: a backfill of the week's seven days (Airflow's backfills, through the REST API),
  each run owning exactly its day, as the scheduled runs would (or of its last days only, the days before them
  in one range run).
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
    """Final state of every run: range runs by run id, backfilled daily and weekly runs by data interval start."""

    ranges: dict[str, str]
    daily: dict[dt.datetime, str]
    weekly: dict[dt.datetime, str]

    @property
    def succeeded(self) -> bool:
        states = [*self.ranges.values(), *self.daily.values(), *self.weekly.values()]
        return bool(states) and all(state == "success" for state in states)


def _counts(states: dict[dt.datetime, str]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(Counter(states.values()).items())) or "queued"


def _range_run(
    airflow: LocalAirflow,
    dag_id: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    progress: Callable[[str], None],
    timeout: float,
) -> tuple[str, str]:
    """One manual run of ``dag_id`` over ``[start, end)`` (params ``window_start``/``window_end``); its id and state."""
    run_id = f"manual__range_{start:%Y%m%d%H}_{end:%Y%m%d%H}_{dt.datetime.now(dt.UTC):%H%M%S}"
    progress(f"{dag_id}: one range run over {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} ({run_id})")
    airflow.unpause(dag_id)
    airflow.trigger(dag_id, run_id, {"window_start": start.isoformat(), "window_end": end.isoformat()})
    state = airflow.wait_run(dag_id, run_id, timeout=timeout, progress=lambda s: progress(f"    {dag_id}: {s}"))
    return run_id, state


def run_week(
    airflow: LocalAirflow,
    week_start: dt.datetime,
    *,
    backfilled_days: int = 7,
    progress: Callable[[str], None] = print,
    timeout: float = 900,
) -> WeekRuns:
    """Run the three DAGs over ``[week_start, week_start + 7 days)`` (a Monday, 00:00 UTC); wait for each.

    The daily DAG backfills the week's last ``backfilled_days`` days; the days before them, if any, are one
    range run (equal to a run per day, as for the hourly DAG).
    """
    if week_start.weekday() or week_start.time() != dt.time() or week_start.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{week_start.isoformat()} is not a Monday 00:00 UTC")
    if not 1 <= backfilled_days <= 7:
        raise ValueError(f"backfilled_days must be 1 to 7, not {backfilled_days}")
    week_end = week_start + dt.timedelta(days=7)
    airflow.wait_dag_registered(DAGS)

    def report(dag_id: str) -> Callable[[dict[dt.datetime, str]], None]:
        last: list[str] = []

        def show(states: dict[dt.datetime, str]) -> None:
            text = _counts(states)
            if [text] != last:
                progress(f"    {dag_id}: {text}")
                last[:] = [text]

        return show

    ranges = dict([_range_run(airflow, "telemetry_hourly", week_start, week_end, progress=progress, timeout=timeout)])
    first_backfilled = week_end - dt.timedelta(days=backfilled_days)
    if first_backfilled > week_start:
        ranges.update(
            [_range_run(airflow, "telemetry_daily", week_start, first_backfilled, progress=progress, timeout=timeout)]
        )
    progress(f"telemetry_daily: backfill of {backfilled_days} days")
    # backfill bounds select runs by data interval start (the run ids carry the interval's end)
    daily = airflow.backfill(
        "telemetry_daily",
        first_backfilled,
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
    return WeekRuns(ranges, daily, weekly)
