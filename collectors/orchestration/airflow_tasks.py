"""What the DAG files in ``dags/`` are made of: their tasks, the lag sensor, the failure callback, shared settings.

Each DAG file declares its own graph from these pieces; a task takes its cadence (``"hourly"``, ``"daily"``,
``"weekly"``, ``"monthly"``) as its argument, so one task function serves every DAG and none of them branches on a DAG's
name. A task body reads the run's window and settings and calls a function of ``collectors.orchestration``
that is tested without Airflow. Heavy imports (dbt, Great Expectations, psycopg) happen inside the task bodies,
so parsing the DAG files stays fast (``dags.parse_seconds``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseSensorOperator, Connection, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from collectors.orchestration import warehouse_connection
from collectors.orchestration.cadences import (
    CADENCES,
    DATE_PATTERN,
    MODEL_FAMILIES,
    Window,
    refuse_unfinished,
    run_window,
)
from collectors.orchestration.reconcile import DEFAULT_LOOKBACK

log = logging.getLogger(__name__)

LAG_SENSOR_TIMEOUT = dt.timedelta(weeks=3)


def warehouse_url() -> str:
    """The warehouse URL, as :mod:`collectors.orchestration.warehouse_connection` says, read through the Task SDK."""

    def connection_uri(conn_id: str) -> str | None:
        try:
            return Connection.get(conn_id).get_uri()
        except (AirflowNotFoundException, RuntimeError) as missing:
            log.debug("no %s connection (%s); using TELEMETRY_DATABASE_URL", conn_id, missing)
            return None

    return warehouse_connection.warehouse_url(connection_uri)


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


# Every task of every DAG: a transient failure (database restart, lock timeout) gets three more tries, further
# and further apart; whatever fails is also kept in quality.task_failures.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=30),
    "on_failure_callback": record_failure,
}


def schedule_start() -> dt.datetime:
    """Where catchup starts (``TELEMETRY_SCHEDULE_START``): the first unpause queues every period since."""
    from collectors.config import Settings

    return Settings().schedule_start


def window_params(cadence: str) -> dict[str, Param]:
    """A manual run's params. Airflow validates them against their schema when the run is triggered (CLI, REST
    API, UI), so a window bound off the cadence's boundaries is refused before the run exists."""
    pattern = CADENCES[cadence].bound_pattern()
    example = CADENCES[cadence].floor(dt.datetime(2026, 11, 18, 5, tzinfo=dt.UTC)).isoformat().replace("+00:00", "Z")
    return {
        "window_start": Param(
            None,
            type=["null", "string"],
            pattern=pattern,
            description=f"Manual range run: start of the range to rebuild, an ISO 8601 UTC instant on a {cadence} "
            f"boundary (e.g. {example}); leave empty to build the run's data interval.",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            pattern=pattern,
            description=f"Manual range run: end of the range (exclusive), on a {cadence} boundary too.",
        ),
        "full_refresh_family": Param(
            None,
            type=["null", "string"],
            enum=[None, *sorted(MODEL_FAMILIES)],
            description="Rebuild one model family of this cadence from all raw data (dbt --full-refresh).",
        ),
    }


class WindowLagSensor(BaseSensorOperator):
    """Wait, deferred (no worker slot, no polling), until the run's window end plus a lag has passed.

    The lag is ``TELEMETRY_RELIABILITY_LAG_WINDOWS`` window lengths (default one, as the original
    aggregator waits). A window in the past passes at once, so backfills do not wait.
    """

    def __init__(self, *, cadence: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cadence = cadence

    def target_time(self, context: Any) -> dt.datetime:
        from collectors.config import Settings

        cadence = CADENCES[self.cadence]
        window = run_window(context, cadence)
        return cadence.shift(window.end, Settings().reliability_lag_windows)

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


def wait_reliability_lag(cadence: str) -> WindowLagSensor:
    """The sensor between a cadence's marts and its reliability marts (a receiver counts once seen after the window)."""
    return WindowLagSensor(task_id="wait_reliability_lag", cadence=cadence, timeout=LAG_SENSOR_TIMEOUT.total_seconds())


def _finished_window(cadence: str, context: dict[str, Any]) -> Window:
    """The run's window, or a failure without retries: a misaligned or unfinished window never gets better."""
    try:
        window = run_window(context, CADENCES[cadence])
        refuse_unfinished(window)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    return window


@task(retries=0)
def check_window(cadence: str, **context: Any) -> dict[str, str]:
    """First task of a cadence DAG: the run's window, failed at once (no retries) if misaligned or unfinished.

    The params' schema already refused bounds off the hour or midnight at trigger time; this also refuses what a
    pattern cannot see (a weekly bound that is not a Monday, an impossible date, one bound without the other).
    """
    window = _finished_window(cadence, context)
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


@task(retries=0)
def check_source_freshness(cadence: str, **context: Any) -> dict[str, str]:
    """Every raw table's freshness against the dbt sources' rules, kept in quality.source_freshness (checked now,
    whatever the run's window: a backfill's run checks the present too, which is cheap and harmless).

    A stale source is a finding for the report, not a failure of the run; nor does trouble checking hold up the
    marts (it is logged, and the report shows when the last check was).
    """
    from collectors.orchestration.freshness import record_freshness

    try:
        checks = record_freshness(warehouse_url(), dag_id=context["dag"].dag_id, run_id=context["run_id"])
    except Exception:
        log.exception("checking source freshness (%s run) failed", cadence)
        return {}
    return {c.rule.table_name: c.status for c in checks}


def _build(cadence: str, part: str, context: dict[str, Any]) -> dict[str, Any]:
    from collectors.config import Settings
    from collectors.orchestration.rebuild import Step, build_step

    params = context.get("params") or {}
    family = params.get("full_refresh_family") or None
    record = build_step(
        Step(CADENCES[cadence], part, run_window(context, CADENCES[cadence])),
        database_url=warehouse_url(),
        settings=Settings(),
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


@task
def build_marts(cadence: str, **context: Any) -> dict[str, Any]:
    """One dbt build of the cadence's marts (all but reliability) over the run's window; returns its run results."""
    return _build(cadence, "marts", context)


@task
def build_reliability(cadence: str, **context: Any) -> dict[str, Any]:
    """One dbt build of the cadence's reliability marts over the run's window, once the lag has passed."""
    return _build(cadence, "reliability", context)


@task(retries=0)
def validate(cadence: str, **context: Any) -> list[dict[str, Any]]:
    """Great Expectations on the raw partitions the cleanup would drop and the marts built from them.

    Returns those partitions with their row counts (taken before validating: rows landing from then on were not
    validated). No retries: the same data fails the same way; fix it, then clear this task.
    """
    from collectors.config import Settings
    from collectors.orchestration.cleanup import count_rows, plan_cleanup
    from collectors.orchestration.validation import validate_week
    from collectors.warehouse.db import connect

    settings, url, window = Settings(), warehouse_url(), _finished_window(cadence, context)
    with connect(url) as conn:
        plan = plan_cleanup(conn, settings.retention)
        rows = count_rows(conn, plan.drop)
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


@task
def cleanup(cadence: str, validated: list[dict[str, Any]], **context: Any) -> dict[str, list[str]]:
    """Drop the detached partitions whose grace period is over, then detach the raw partitions ``validate`` passed
    that still hold exactly the rows it counted, to be dropped after ``TELEMETRY_DETACHED_GRACE_DAYS``; log every
    decision. Then delete the rejects older than their retention, counted per day, source and reason first, and the
    mart rows past their grain's retention whose coarser rows are built (``TELEMETRY_MART_RETENTION_<GRAIN>``)."""
    from collectors.config import Settings
    from collectors.orchestration.builds import project_manifest
    from collectors.orchestration.cadences import CADENCES
    from collectors.orchestration.cleanup import detach_partitions, drop_expired_detached, plan_cleanup, prune_rejects
    from collectors.orchestration.mart_retention import mart_tables, prune_marts
    from collectors.warehouse.db import connect

    _finished_window(cadence, context)
    settings = Settings()
    url = warehouse_url()
    run = {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
    manifest = project_manifest(
        CADENCES[cadence], database_url=url, artefacts_dir=settings.artefacts_dir, settings=settings
    )
    with connect(url) as conn:
        dropped = drop_expired_detached(conn, **run)
        plan = plan_cleanup(conn, settings.retention)
        rows = {v["name"]: int(v["rows"]) for v in validated}
        grace = dt.timedelta(days=settings.detached_grace_days)
        detached = detach_partitions(conn, plan, rows, grace=grace, **run)
        prune_rejects(conn, settings.retention.rejects)
        pruned = prune_marts(conn, mart_tables(manifest), settings.mart_retention, **run)
    return {
        "detached": [p.name for p in detached],
        "dropped": [p.name for p in dropped],
        "marts_pruned": [f"{p.table.name}: {p.rows} rows" for p in pruned],
    }


@task
def ensure_partitions() -> dict[str, int]:
    """Migrate the warehouse and create raw partitions ``TELEMETRY_PARTITIONS_AHEAD_DAYS`` ahead."""
    from collectors.config import Settings
    from collectors.warehouse.maintenance import prepare_database

    settings = Settings()
    return prepare_database(settings.model_copy(update={"database_url": warehouse_url()}))


def reconcile_params() -> dict[str, Param]:
    """The reconcile DAG's params: a dry run, the look-back, or a range of days to rebuild on demand."""
    return {
        "dry_run": Param(False, type="boolean", description="Plan and log the builds, build nothing."),
        "lookback_days": Param(
            DEFAULT_LOOKBACK.days,
            type="number",
            exclusiveMinimum=0,
            description="Look at the windows that overlap the last this many days.",
        ),
        "rebuild_from": Param(
            None,
            type=["null", "string"],
            pattern=f"^({DATE_PATTERN})?$",
            description="Rebuild on demand: the first UTC day (e.g. 2026-01-01), with every hour, week and month "
            "of the days; instead of the plan from the ledgers.",
        ),
        "rebuild_to": Param(
            None, type=["null", "string"], pattern=f"^({DATE_PATTERN})?$", description="The day after the last."
        ),
        "family": Param(
            None,
            type=["null", "string"],
            enum=[None, *sorted(MODEL_FAMILIES)],
            description="Rebuild on demand: only this model family (recorded with it; it covers no window).",
        ),
    }


def _requested_days(params: dict[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    start, end = params.get("rebuild_from"), params.get("rebuild_to")
    if not (start or end):
        return None
    if not (start and end):
        raise AirflowFailException("give both rebuild_from and rebuild_to, or neither")
    try:
        days = tuple(dt.datetime.combine(dt.date.fromisoformat(d), dt.time(), tzinfo=dt.UTC) for d in (start, end))
    except ValueError as error:
        raise AirflowFailException(f"rebuild_from and rebuild_to must be days like 2026-01-01: {error}") from None
    if days[0] >= days[1]:
        raise AirflowFailException(f"rebuild_to ({end}) must be after rebuild_from ({start}): days [from, to)")
    return days


@task
def plan_rebuilds(**context: Any) -> list[dict[str, str]]:
    """The windows to build again and why, logged one by one, as the builds that rebuild them (in order): from
    the ledgers, or every grain of the days a manual run asks for. Builds nothing."""
    from collectors.config import Settings
    from collectors.orchestration.rebuild import steps
    from collectors.orchestration.reconcile import requested
    from collectors.orchestration.reconcile_ledgers import current_plan

    params, settings, now = context.get("params") or {}, Settings(), dt.datetime.now(dt.UTC)
    days = _requested_days(params)
    if days is not None:
        planned = requested(*days, now=now, lag_windows=settings.reliability_lag_windows)
    else:
        lookback = dt.timedelta(days=float(params.get("lookback_days") or DEFAULT_LOOKBACK.days))
        planned = current_plan(warehouse_url(), settings, now=now, lookback=lookback)
    for item in planned.due:
        log.info("due: %s %s: %s", item.cadence.name, item.window, item.reason)
    for item in planned.pending:
        log.info("pending until %s: %s %s: %s", item.due_at.isoformat(), item.cadence.name, item.window, item.reason)
    log.info("%d windows due, %d pending", len(planned.due), len(planned.pending))
    return [step.as_dict() for step in steps(planned.due)]


@task
def rebuild(planned: list[dict[str, str]], **context: Any) -> list[str]:
    """Run ``plan_rebuilds``' builds in order with the cadence DAGs' dbt build; in a dry run, only log them."""
    import functools

    from collectors.config import Settings
    from collectors.orchestration.rebuild import Step, build_step, run

    params = context.get("params") or {}
    todo = [Step.from_dict(values) for values in planned]
    if params.get("dry_run"):
        for step in todo:
            log.info("dry run, not building: %s", step)
        return []
    build = functools.partial(
        build_step,
        database_url=warehouse_url(),
        settings=Settings(),
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        family=params.get("family"),
    )
    return [str(step) for step in run(todo, build, on_step=lambda step: log.info("building %s", step))]
