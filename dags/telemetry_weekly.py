"""Airflow DAG ``telemetry_weekly``: weekly marts, data-quality gate, then the cleanup of raw partitions.

Builds every model tagged ``weekly`` for the run's UTC week (Monday to Monday) from the daily marts, the
weekly reliability after a week's lag, then validates with Great Expectations the raw partitions older
than the retention and the marts built from them (results in ``quality.validation_runs`` and the
Data Docs), and only if that passed drops those partitions (logged in ``quality.cleanup_log``).
A failed validation drops nothing and fails the run, naming the failing expectations.
"""

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import (
    DEFAULT_ARGS,
    build_marts,
    build_reliability,
    check_window,
    cleanup,
    schedule_start,
    validate,
    wait_reliability_lag,
    window_params,
)

CADENCE = "weekly"

with DAG(
    dag_id="telemetry_weekly",
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    # a data-interval timetable: each run owns exactly the ISO week before its Monday tick
    schedule=CronDataIntervalTimetable("0 0 * * 1", timezone="UTC"),
    start_date=schedule_start(),
    catchup=True,
    # it drops raw partitions: one run at a time
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=window_params(CADENCE),
    tags=["telemetry", CADENCE],
) as dag:
    validated = validate(CADENCE)  # the partitions checked and their row counts: all the cleanup may drop
    (
        check_window(CADENCE)
        >> build_marts(CADENCE)
        >> wait_reliability_lag(CADENCE)
        >> build_reliability(CADENCE)
        >> validated
        >> cleanup(CADENCE, validated)
    )
