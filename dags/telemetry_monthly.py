"""Airflow DAG ``telemetry_monthly``: month, quarter and year rollups of the daily marts.

Builds every model tagged ``monthly`` for the run's UTC calendar month ``[data_interval_start,
data_interval_end)``, reading only the daily tables (never raw, whose partitions are gone by then): the day log,
minutes per user, event counts, host and game-server metrics and funnels per month, and the quarter and year
that hold the month, rebuilt from their month rows. There is no reliability part (docs/DESIGN.md item 8). Manual
runs may pass ``window_start``/``window_end`` (the first of a month, 00:00 UTC) to rebuild several months in one
dbt call, or ``full_refresh_family``. The month's daily runs must have finished first: the rollups are only as
complete as the days they read.
"""

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import (
    DEFAULT_ARGS,
    build_marts,
    check_window,
    schedule_start,
    window_params,
)

CADENCE = "monthly"

with DAG(
    dag_id="telemetry_monthly",
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    # a data-interval timetable: each run owns exactly the calendar month before its tick
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=schedule_start(),
    catchup=True,
    # a run rewrites its quarter and year too, which the next month's run rewrites again: one run at a time, in
    # order, so a year is never rebuilt from a month that is still being replaced
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=window_params(CADENCE),
    tags=["telemetry", CADENCE],
) as dag:
    check_window(CADENCE) >> build_marts(CADENCE)
