"""Airflow DAG ``telemetry_reconcile``: build again the windows whose raw rows arrived late, or that were never built.

Every hour, at half past, ``plan_rebuilds`` compares the ingest ledger (rows per raw table and hour, with their
arrival) with the build ledger over the last ``lookback_days`` and logs each window to build again and why;
``rebuild`` then builds them hour, day, week, month, with the cadence DAGs' own dbt build, once the reliability
lag after each has passed (docs/DESIGN.md, "Orchestration"). ``dry_run`` only logs. A manual run may instead pass
``rebuild_from``/``rebuild_to`` (UTC days) to rebuild every grain of those days, optionally one ``family``.
"""

from airflow.sdk import DAG, CronDataIntervalTimetable

from collectors.orchestration.airflow_tasks import (
    DEFAULT_ARGS,
    plan_rebuilds,
    rebuild,
    reconcile_params,
    schedule_start,
)
from collectors.orchestration.rebuild import RECONCILE_DAG_ID

with DAG(
    dag_id=RECONCILE_DAG_ID,
    description=__doc__.strip().splitlines()[0],
    doc_md=__doc__,
    # half past: after the hourly runs at the hour have built their windows
    schedule=CronDataIntervalTimetable("30 * * * *", timezone="UTC"),
    start_date=schedule_start(),
    # each run plans from the ledgers as they are now: a missed run is made up by the next, not replayed
    catchup=False,
    # off until turned on: on a new warehouse every window is "never built" while the cadence DAGs catch up, and
    # this DAG would build them all a second time alongside
    is_paused_upon_creation=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=reconcile_params(),
    tags=["telemetry", "reconcile"],
) as dag:
    planned = plan_rebuilds()
    planned >> rebuild(planned)
