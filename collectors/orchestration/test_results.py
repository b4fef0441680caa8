"""The data tests of every dbt build, kept in ``quality.dbt_test_runs`` and ``quality.dbt_test_results``.

A build's ``run_results.json`` says how each node ended; the ``manifest.json`` of the same invocation says
what a test node is (its generic test, the models and column it tests, its severity). ``record_build_tests``
reads both after every build, failed ones included (a failing test is what a reviewer needs to see), and
stores one row per build and one per test node. dbt's statuses are kept apart: ``fail`` and ``warn`` are the
data breaking a rule, ``error`` is a test that could not run (its SQL failed), with dbt's message as cause.

No Airflow or dbt import: the files are plain JSON, so the report and the tests read them as well.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.warehouse.db import connect

log = logging.getLogger(__name__)

TEST_STATUSES = ("pass", "fail", "warn", "error", "skipped")
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})  # as collectors.orchestration.dbt_runner
MESSAGE_LIMIT = 4000  # characters kept of dbt's message about one node


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever its name

    unique_id: str
    test_name: str
    test_type: str  # generic, singular or unit
    status: str  # one of TEST_STATUSES
    test_kind: str | None = None  # the generic test: unique, value_between, ...
    models: tuple[str, ...] = ()
    column_name: str | None = None
    severity: str | None = None
    failures: int | None = None
    message: str | None = None
    execution_seconds: float | None = None
    compiled_code: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None


@dataclass(frozen=True)
class TestRun:
    """The tests of one dbt invocation and how the invocation as a whole ended."""

    __test__ = False

    invocation_id: str
    generated_at: dt.datetime
    nodes: int
    tests: list[TestResult] = field(default_factory=list)
    failed_nodes: tuple[str, ...] = ()  # any node that errored or failed, models included
    started_at: dt.datetime | None = None
    elapsed_seconds: float | None = None
    dbt_version: str | None = None

    @property
    def success(self) -> bool:
        return not self.failed_nodes

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.tests)


def _instant(value: Any) -> dt.datetime | None:
    """dbt writes naive UTC timestamps (``2026-11-03T10:00:00.123456Z`` or without the Z)."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _tested_name(unique_id: str, manifest: Mapping[str, Any]) -> str:
    """``fct_x`` for a model or seed, ``raw.message_samples`` for a source."""
    parts = unique_id.split(".")
    if parts[0] == "source":
        source = (manifest.get("sources") or {}).get(unique_id) or {}
        if source.get("source_name") and source.get("name"):
            return f"{source['source_name']}.{source['name']}"
        return ".".join(parts[-2:])
    return parts[-1]


def _name_in(unique_id: str) -> str:
    """A test's name from its unique id: ``test.<project>.<name>[.<hash>]``, ``unit_test.<project>.<model>.<name>``."""
    parts = unique_id.split(".")
    return parts[2] if parts[0] == "test" and len(parts) > 2 else parts[-1]


def _definition(unique_id: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    if unique_id.startswith("unit_test."):
        return dict((manifest.get("unit_tests") or {}).get(unique_id) or {})
    return dict((manifest.get("nodes") or {}).get(unique_id) or {})


def _test_result(item: Mapping[str, Any], manifest: Mapping[str, Any]) -> TestResult:
    unique_id = str(item["unique_id"])
    node = _definition(unique_id, manifest)
    metadata = node.get("test_metadata") or {}
    test_type = "unit" if unique_id.startswith("unit_test.") else "generic" if metadata else "singular"
    tested = [
        _tested_name(uid, manifest)
        for uid in (node.get("depends_on") or {}).get("nodes") or []
        if uid.split(".")[0] in ("model", "seed", "snapshot", "source")
    ]
    if not tested and test_type == "unit" and node.get("model"):
        tested = [str(node["model"])]
    status = str(item.get("status") or "error")
    if status not in TEST_STATUSES:  # "runtime error" and whatever a later dbt adds
        status = "error"
    timing = {str(t.get("name")): t for t in item.get("timing") or [] if isinstance(t, Mapping)}
    started = _instant((timing.get("compile") or timing.get("execute") or {}).get("started_at"))
    completed = _instant((timing.get("execute") or timing.get("compile") or {}).get("completed_at"))
    failures = item.get("failures")
    message = item.get("message")
    compiled = item.get("compiled_code") or node.get("compiled_code")
    return TestResult(
        unique_id=unique_id,
        test_name=str(node.get("name") or _name_in(unique_id)),
        test_type=test_type,
        status=status,
        test_kind=str(metadata["name"]) if metadata.get("name") else None,
        models=tuple(dict.fromkeys(tested)),
        column_name=node.get("column_name") or None,
        severity=str((node.get("config") or {}).get("severity") or "") or None,
        failures=int(failures) if isinstance(failures, int | float) else None,
        message=str(message)[:MESSAGE_LIMIT] if message else None,
        execution_seconds=float(item["execution_time"]) if item.get("execution_time") is not None else None,
        compiled_code=str(compiled) if compiled and status != "pass" else None,
        started_at=started,
        completed_at=completed,
    )


def read_test_run(run_results_path: Path, manifest_path: Path | None) -> TestRun:
    """The tests of one build from its ``run_results.json`` and its invocation's ``manifest.json``.

    A manifest that is missing or from another invocation only costs the tests' descriptions (kind, models,
    column): the statuses come from the run results alone.
    """
    results = json.loads(Path(run_results_path).read_text())
    metadata = results.get("metadata") or {}
    invocation_id = str(metadata.get("invocation_id") or "")
    if not invocation_id:
        raise ValueError(f"{run_results_path} names no invocation_id")
    manifest: dict[str, Any] = {}
    if manifest_path is not None and Path(manifest_path).is_file():
        manifest = json.loads(Path(manifest_path).read_text())
        if (manifest.get("metadata") or {}).get("invocation_id") != invocation_id:
            log.warning(
                "%s is not the manifest of dbt invocation %s: tests kept without their kind and models",
                manifest_path,
                invocation_id,
            )
            manifest = {}
    items = [item for item in results.get("results") or [] if isinstance(item, Mapping) and item.get("unique_id")]
    tests = [
        _test_result(item, manifest) for item in items if str(item["unique_id"]).split(".")[0] in ("test", "unit_test")
    ]
    failed = tuple(str(item["unique_id"]) for item in items if str(item.get("status")) in FAILED_STATUSES)
    generated = _instant(metadata.get("generated_at")) or dt.datetime.now(dt.UTC)
    elapsed = results.get("elapsed_time")
    return TestRun(
        invocation_id=invocation_id,
        generated_at=generated,
        nodes=len(items),
        tests=tests,
        failed_nodes=failed,
        started_at=_instant(metadata.get("invocation_started_at")),
        elapsed_seconds=float(elapsed) if elapsed is not None else None,
        dbt_version=metadata.get("dbt_version"),
    )


def store_test_run(
    database_url: str,
    run: TestRun,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    cadence: str | None = None,
    part: str | None = None,
    family: str | None = None,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    artefacts_path: Path | None = None,
) -> bool:
    """Insert the run and its tests; False when this invocation is stored already (nothing changes)."""
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into quality.dbt_test_runs
                (invocation_id, dag_id, run_id, cadence, part, family, window_start, window_end, success, nodes,
                 tests, passed, failed, warned, errored, skipped, failed_nodes, dbt_version, started_at,
                 generated_at, elapsed_seconds, artefacts_path)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (invocation_id) do nothing
            """,
            (
                run.invocation_id,
                dag_id,
                run_id,
                cadence,
                part,
                family,
                window_start,
                window_end,
                run.success,
                run.nodes,
                len(run.tests),
                run.count("pass"),
                run.count("fail"),
                run.count("warn"),
                run.count("error"),
                run.count("skipped"),
                list(run.failed_nodes),
                run.dbt_version,
                run.started_at,
                run.generated_at,
                run.elapsed_seconds,
                str(artefacts_path) if artefacts_path else None,
            ),
        )
        if cur.rowcount == 0:
            conn.rollback()
            return False
        cur.executemany(
            """
            insert into quality.dbt_test_results
                (invocation_id, unique_id, dag_id, run_id, test_name, test_type, test_kind, models, column_name,
                 severity, status, failures, message, execution_seconds, compiled_code, started_at, completed_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    run.invocation_id,
                    t.unique_id,
                    dag_id,
                    run_id,
                    t.test_name,
                    t.test_type,
                    t.test_kind,
                    list(t.models),
                    t.column_name,
                    t.severity,
                    t.status,
                    t.failures,
                    t.message,
                    t.execution_seconds,
                    t.compiled_code,
                    t.started_at,
                    t.completed_at,
                )
                for t in run.tests
            ],
        )
        conn.commit()
    return True


def record_build_tests(
    database_url: str,
    target: Path,
    kept: Path,
    *,
    cadence: str,
    part: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    family: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> TestRun | None:
    """Store the tests of the build whose results are in ``target`` (kept in ``kept``); never raises.

    Called whether the build passed or failed, so it must not hide the build's own outcome: a build that left
    no run results (dbt stopped before running a node) and any trouble storing are logged, not raised.
    """
    # the target's copy, not the kept one: the build removed the target's before it ran, while a kept copy may
    # be an earlier try's
    run_results = target / "run_results.json"
    if not run_results.is_file():
        log.warning("no run_results.json in %s: dbt ran no node, so no test results to keep", target)
        return None
    try:
        run = read_test_run(run_results, target / "manifest.json")
        store_test_run(
            database_url,
            run,
            dag_id=dag_id,
            run_id=run_id,
            cadence=cadence,
            part=part,
            family=family,
            window_start=window_start,
            window_end=window_end,
            artefacts_path=kept,
        )
    except Exception:  # the build's outcome matters more; the kept run_results.json still has everything
        log.exception("keeping the dbt test results of %s in quality.dbt_test_results failed", run_results)
        return None
    problems = [t for t in run.tests if t.status != "pass"]
    log.info(
        "dbt tests of invocation %s: %d passed, %d failed, %d warned, %d errored, %d skipped",
        run.invocation_id,
        run.count("pass"),
        run.count("fail"),
        run.count("warn"),
        run.count("error"),
        run.count("skipped"),
    )
    for test in problems:
        if test.status in ("fail", "error"):
            log.warning("%s %s: %s", test.status, test.unique_id, (test.message or "").strip()[:300])
    return run
