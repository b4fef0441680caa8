"""Airflow DAG ``telemetry_hourly``: the hourly marts for each hour, then its reliability after the lag.

Builds every model tagged ``hourly`` (host metrics, reliability) for the run's data interval
``[data_interval_start, data_interval_end)``; reliability waits one hour more (the lag) so that
receivers seen after the hour count. Manual runs may pass ``window_start``/``window_end`` (whole hours,
UTC) to rebuild a range of hours in one dbt call, or ``full_refresh_family``. Every run first checks the raw
tables' freshness (the dbt sources' rules) for the data-quality report; that never holds the marts up.
"""

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import (
    DEFAULT_ARGS,
    build_marts,
    build_reliability,
    check_source_freshness,
    check_window,
    schedule_start,
    wait_reliability_lag,
    window_params,
)

CADENCE = "hourly"

with DAG(
    dag_id="telemetry_hourly",
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    # a data-interval timetable: each run owns exactly the hour before its tick
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=schedule_start(),
    catchup=True,
    # runs write disjoint hours and every dbt build takes a warehouse-wide lock, so one run may wait out its
    # reliability lag while the next builds its marts
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    params=window_params(CADENCE),
    tags=["telemetry", CADENCE],
) as dag:
    (
        check_window(CADENCE)
        >> check_source_freshness(CADENCE)
        >> build_marts(CADENCE)
        >> wait_reliability_lag(CADENCE)
        >> build_reliability(CADENCE)
    )
