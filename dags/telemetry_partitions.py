"""Airflow DAG ``telemetry_partitions``: migrate the warehouse and create raw partitions ahead, daily.

The receiver refuses (to ``raw.rejects``) records whose day has no partition, so this runs every
day at 00:30 UTC and creates ``TELEMETRY_PARTITIONS_AHEAD_DAYS`` days ahead. No catchup: only the
latest run matters.
"""

import datetime as dt

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import DEFAULT_ARGS, ensure_partitions

with DAG(
    dag_id="telemetry_partitions",
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),  # no catchup: only the latest interval runs
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["telemetry", "maintenance"],
) as dag:
    ensure_partitions()
