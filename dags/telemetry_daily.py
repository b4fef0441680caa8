"""Airflow DAG ``telemetry_daily``: the day log, minutes per user, events, sessions, funnels, host metrics.

Builds every model tagged ``daily`` for the run's UTC day ``[data_interval_start, data_interval_end)``;
the daily reliability marts follow one day later (the lag). Manual runs may pass
``window_start``/``window_end`` (midnights, UTC) to rebuild several days in one dbt call, or
``full_refresh_family``.
"""

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import (
    DEFAULT_ARGS,
    build_marts,
    build_reliability,
    check_window,
    schedule_start,
    wait_reliability_lag,
    window_params,
)

CADENCE = "daily"

with DAG(
    dag_id="telemetry_daily",
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    # a data-interval timetable: each run owns exactly the UTC day before its tick
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=schedule_start(),
    catchup=True,
    # runs write disjoint days and every dbt build takes a warehouse-wide lock, so one run may wait out its
    # reliability lag while the next builds its marts
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    params=window_params(CADENCE),
    tags=["telemetry", CADENCE],
) as dag:
    check_window(CADENCE) >> build_marts(CADENCE) >> wait_reliability_lag(CADENCE) >> build_reliability(CADENCE)
