"""The Airflow side: the DAG factory, the tasks' bodies, the lag sensor and the failure callback.

Each task body is a few lines that read the run's window and settings and call a function of
``telemetry_ops`` that is tested without Airflow. Heavy imports (dbt, Great Expectations, psycopg)
happen inside the task bodies, so parsing the DAG files stays fast (``dags.parse_seconds``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseSensorOperator, Connection, CronDataIntervalTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from collectors.orchestration.builds import MODEL_FAMILIES
from collectors.orchestration.cadences import CADENCES, Cadence, Window, refuse_unfinished, run_window

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "telemetry_warehouse"


def warehouse_url() -> str:
    """The warehouse URL: Airflow connection ``telemetry_warehouse`` if defined, else TELEMETRY_DATABASE_URL."""
    from collectors.config import Settings

    try:
        uri = Connection.get(WAREHOUSE_CONN_ID).get_uri()
    except (AirflowNotFoundException, RuntimeError) as missing:  # not defined: fall back to the environment
        log.debug("no %s connection (%s); using TELEMETRY_DATABASE_URL", WAREHOUSE_CONN_ID, missing)
        return Settings().database_url
    return "postgresql://" + uri.split("://", 1)[1]


def record_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: keep the failure in quality.task_failures (then Airflow's own alerting)."""
    from collectors.warehouse.db import connect

    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    try:
        with connect(warehouse_url()) as conn:
            conn.execute(
                "insert into quality.task_failures (dag_id, task_id, run_id, try_number, error)"
                " values (%s, %s, %s, %s, %s)",
                (
                    getattr(ti, "dag_id", "?"),
                    getattr(ti, "task_id", "?"),
                    getattr(ti, "run_id", "?"),
                    getattr(ti, "try_number", None),
                    f"{type(error).__name__}: {error}" if error else "failed",
                ),
            )
    except Exception:  # a callback must never hide the task's own failure
        log.exception("could not record the failure in quality.task_failures")


class WindowLagSensor(BaseSensorOperator):
    """Wait, deferred (no worker slot, no polling), until the run's window end plus a lag has passed.

    The lag is ``TELEMETRY_RELIABILITY_LAG_WINDOWS`` window lengths (default one, as the original
    aggregator waits). A window in the past passes at once, so backfills do not wait.
    """

    def __init__(self, *, cadence: Cadence, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cadence = cadence

    def target_time(self, context: Any) -> dt.datetime:
        from collectors.config import Settings

        window = run_window(context, self.cadence)
        return window.end + self.cadence.length * Settings().reliability_lag_windows

    def poke(self, context: Any) -> bool:
        return dt.datetime.now(dt.UTC) >= self.target_time(context)

    def execute(self, context: Any) -> None:
        moment = self.target_time(context)
        if dt.datetime.now(dt.UTC) >= moment:
            return
        log.info("deferring until %s", moment.isoformat())
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        return None


def _build(cadence: Cadence, part: str, context: dict[str, Any]) -> dict[str, Any]:
    from collectors.config import Settings
    from collectors.orchestration.builds import build_part

    params = context.get("params") or {}
    family = params.get("full_refresh_family") or None
    record = build_part(
        cadence,
        part,
        run_window(context, cadence),
        database_url=warehouse_url(),
        artefacts_dir=Settings().artefacts_dir,
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        family=family,
        full_refresh=family is not None,
    )
    return {
        "nodes": record.nodes,
        "seconds": round(record.elapsed_seconds, 2),
        "run_results": str(record.artefacts_path),
    }


def _check_window(cadence: Cadence, context: dict[str, Any]) -> dict[str, str]:
    """The run's window, or a failure without retries: a misaligned or unfinished window never gets better."""
    try:
        window = run_window(context, cadence)
        refuse_unfinished(window)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


def _finished_window(cadence: Cadence, context: dict[str, Any]) -> Window:
    window = run_window(context, cadence)
    try:
        refuse_unfinished(window)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    return window


def _validate(cadence: Cadence, context: dict[str, Any]) -> list[dict[str, Any]]:
    from collectors.config import Settings
    from collectors.orchestration.cleanup import count_rows, plan_cleanup
    from collectors.orchestration.validation import validate_week
    from collectors.warehouse.db import connect

    settings, url, window = Settings(), warehouse_url(), _finished_window(cadence, context)
    with connect(url) as conn:
        plan = plan_cleanup(conn, settings.retention)
        rows = count_rows(conn, plan.drop)  # before validating: rows landing from now on were not validated
    for kept in plan.keep:
        log.info("keeping raw.%s: %s", kept.partition.name, kept.reason)
    outcome = validate_week(
        url,
        window.start,
        window.end,
        plan.drop,
        gx_dir=settings.gx_dir,
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
    )
    if not outcome.success:
        failing = "\n  ".join(outcome.failing_expectations())
        raise AirflowFailException(
            f"data validation failed; nothing will be dropped. Failing expectations:\n  {failing}\n"
            f"Data Docs: {outcome.data_docs_index}"
        )
    log.info("validation passed for %d partitions about to be dropped", len(plan.drop))
    return [{"table": p.table, "name": p.name, "day": p.day.isoformat(), "rows": rows[p.name]} for p in plan.drop]


def _cleanup(cadence: Cadence, validated: list[dict[str, Any]], context: dict[str, Any]) -> list[str]:
    from collectors.config import Settings
    from collectors.orchestration.cleanup import drop_partitions, plan_cleanup
    from collectors.warehouse.db import connect

    _finished_window(cadence, context)
    with connect(warehouse_url()) as conn:
        plan = plan_cleanup(conn, Settings().retention)
        rows = {v["name"]: int(v["rows"]) for v in validated}
        dropped = drop_partitions(conn, plan, rows, dag_id=context["dag"].dag_id, run_id=context["run_id"])
    return [p.name for p in dropped]


def cadence_params(cadence: Cadence) -> dict[str, Param]:
    return {
        "window_start": Param(
            None,
            type=["null", "string"],
            description=f"Manual range run: start of the range to rebuild (ISO 8601, on a {cadence.name} "
            "boundary); leave empty to build the run's data interval.",
        ),
        "window_end": Param(None, type=["null", "string"], description="Manual range run: end of the range."),
        "full_refresh_family": Param(
            None,
            type=["null", "string"],
            enum=[None, *sorted(MODEL_FAMILIES)],
            description="Rebuild one model family of this cadence from all raw data (dbt --full-refresh).",
        ),
    }


def cadence_dag(name: str, *, doc_md: str) -> DAG:
    """``telemetry_<name>``: build the cadence's marts, wait the lag, build its reliability marts.

    The weekly DAG then validates what the cleanup would drop (Great Expectations) and drops it.
    """
    from collectors.config import Settings

    cadence = CADENCES[name]
    default_args = {
        "owner": "data-engineering",
        "retries": 3,
        "retry_delay": dt.timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=30),
        "on_failure_callback": record_failure,
    }
    with DAG(
        dag_id=cadence.dag_id,
        description=doc_md.strip().splitlines()[0],
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable(cadence.cron, timezone="UTC"),
        start_date=Settings().schedule_start,
        catchup=True,
        # Runs write disjoint windows and dbt builds take a warehouse-wide lock, so two runs may overlap
        # (one waiting out its reliability lag); the weekly run drops partitions, so it runs alone.
        max_active_runs=1 if name == "weekly" else 2,
        default_args=default_args,
        params=cadence_params(cadence),
        tags=["telemetry", name],
    ) as dag:

        @task(task_id="check_window", retries=0)
        def check_window(**context: Any) -> dict[str, str]:
            return _check_window(cadence, context)

        @task(task_id="build_marts")
        def build_marts(**context: Any) -> dict[str, Any]:
            return _build(cadence, "marts", context)

        @task(task_id="build_reliability")
        def build_reliability(**context: Any) -> dict[str, Any]:
            return _build(cadence, "reliability", context)

        wait = WindowLagSensor(task_id="wait_reliability_lag", cadence=cadence, timeout=3 * 7 * 24 * 3600)
        marts, reliability = build_marts(), build_reliability()
        check_window() >> marts >> wait >> reliability

        if name == "weekly":

            @task(task_id="validate", retries=0)
            def validate(**context: Any) -> list[dict[str, Any]]:
                return _validate(cadence, context)

            @task(task_id="cleanup")
            def cleanup(validated: list[dict[str, Any]], **context: Any) -> list[str]:
                return _cleanup(cadence, validated, context)

            checked = validate()
            reliability >> checked
            cleanup(checked)
    return dag


def partitions_dag(doc_md: str) -> DAG:
    """``telemetry_partitions``: migrate and create raw partitions ahead, daily (no catchup: it is about now)."""
    with DAG(
        dag_id="telemetry_partitions",
        description=doc_md.strip().splitlines()[0],
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),  # no catchup: only the latest interval runs
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 3, "retry_delay": dt.timedelta(minutes=1), "on_failure_callback": record_failure},
        tags=["telemetry", "maintenance"],
    ) as dag:

        @task(task_id="ensure_partitions")
        def ensure_partitions() -> dict[str, int]:
            from collectors.config import Settings
            from collectors.warehouse.maintenance import prepare_database

            settings = Settings()
            return prepare_database(settings.model_copy(update={"database_url": warehouse_url()}))

        ensure_partitions()
    return dag
