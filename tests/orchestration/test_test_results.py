"""dbt test results kept per build (``collectors.orchestration.test_results``).

What a build's run_results.json and manifest.json say about each test node, read from files shaped as dbt
writes them; a real dbt invocation whose tests cannot run stored as errors with dbt's message, apart from
data failures (a real build with a failing test is in ``test_validation.py``); storing is idempotent, never
raises into the build, and the reviewer and analyst roles may read what is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.test_results import read_test_run, record_build_tests, store_test_run

INVOCATION = "5d0c1d4e-1b2f-4c3a-9e8d-7f6a5b4c3d2e"
WINDOW = (dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 3, 11, tzinfo=dt.UTC))


def node_result(unique_id: str, status: str, **extra: object) -> dict:
    timing = [
        {"name": "compile", "started_at": "2026-11-03T11:05:00.100000Z", "completed_at": "2026-11-03T11:05:00.200000Z"},
        {"name": "execute", "started_at": "2026-11-03T11:05:00.200000Z", "completed_at": "2026-11-03T11:05:00.350000Z"},
    ]
    return {
        "unique_id": unique_id,
        "status": status,
        "timing": timing,
        "thread_id": "Thread-1",
        "execution_time": 0.25,
        "adapter_response": {},
        "message": None,
        "failures": None,
        "compiled": True,
        "compiled_code": f"select 1 -- {unique_id}",
        "relation_name": None,
        **extra,
    }


def write_artefacts(tmp_path: Path, *, manifest_invocation: str = INVOCATION) -> tuple[Path, Path]:
    results = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.16",
            "generated_at": "2026-11-03T11:05:02.000000Z",
            "invocation_id": INVOCATION,
            "invocation_started_at": "2026-11-03T11:04:50.000000Z",
            "env": {},
        },
        "elapsed_time": 12.5,
        "args": {},
        "results": [
            node_result("model.telemetry.fct_a", "success", message="SELECT 3"),
            node_result("model.telemetry.fct_b", "error", message="Database Error in model fct_b\n  boom"),
            node_result("test.telemetry.unique_fct_a_day.1a", "pass", failures=0, message=None),
            node_result("test.telemetry.value_between_fct_a_n__0.2b", "fail", failures=2, message="Got 2 results"),
            node_result("test.telemetry.not_null_fct_a_day.3c", "warn", failures=1, message="Got 1 result"),
            node_result(
                "test.telemetry.expression_is_true_fct_a_x.4d",
                "error",
                message='Database Error in test x (models/a.yml)\n  column "x" does not exist',
            ),
            node_result("test.telemetry.not_null_fct_b_day.5e", "skipped", compiled=False, compiled_code=None),
            node_result("test.telemetry.assert_a_matches_raw", "runtime error", message="boom"),
            node_result("unit_test.telemetry.fct_a.a_unit_test", "pass", failures=0),
            node_result("test.telemetry.not_null_raw_samples_id.6f", "pass", failures=0),
        ],
    }
    generic = {"namespace": None, "kwargs": {}}
    manifest = {
        "metadata": {"invocation_id": manifest_invocation},
        "nodes": {
            "test.telemetry.unique_fct_a_day.1a": {
                "name": "unique_fct_a_day",
                "test_metadata": {"name": "unique", **generic},
                "column_name": "day",
                "config": {"severity": "ERROR"},
                "depends_on": {"nodes": ["macro.dbt.test_unique", "model.telemetry.fct_a"]},
            },
            "test.telemetry.value_between_fct_a_n__0.2b": {
                "name": "value_between_fct_a_n__0",
                "test_metadata": {"name": "value_between", **generic},
                "column_name": "n",
                "config": {"severity": "ERROR"},
                "depends_on": {"nodes": ["model.telemetry.fct_a"]},
            },
            "test.telemetry.not_null_fct_a_day.3c": {
                "name": "not_null_fct_a_day",
                "test_metadata": {"name": "not_null", **generic},
                "column_name": "day",
                "config": {"severity": "WARN"},
                "depends_on": {"nodes": ["model.telemetry.fct_a"]},
            },
            "test.telemetry.expression_is_true_fct_a_x.4d": {
                "name": "fct_a_x_consistent",
                "test_metadata": {"name": "expression_is_true", **generic},
                "config": {"severity": "ERROR"},
                "depends_on": {"nodes": ["model.telemetry.fct_a"]},
            },
            "test.telemetry.not_null_fct_b_day.5e": {
                "name": "not_null_fct_b_day",
                "test_metadata": {"name": "not_null", **generic},
                "column_name": "day",
                "depends_on": {"nodes": ["model.telemetry.fct_b"]},
            },
            "test.telemetry.assert_a_matches_raw": {
                "name": "assert_a_matches_raw",
                "depends_on": {"nodes": ["model.telemetry.fct_a", "source.telemetry.raw.samples"]},
            },
            "test.telemetry.not_null_raw_samples_id.6f": {
                "name": "not_null_raw_samples_id",
                "test_metadata": {"name": "not_null", **generic},
                "column_name": "id",
                "depends_on": {"nodes": ["source.telemetry.raw.samples"]},
            },
        },
        "sources": {"source.telemetry.raw.samples": {"source_name": "raw", "name": "samples"}},
        "unit_tests": {
            "unit_test.telemetry.fct_a.a_unit_test": {
                "name": "a_unit_test",
                "model": "fct_a",
                "depends_on": {"nodes": ["model.telemetry.fct_a"]},
            }
        },
    }
    (tmp_path / "run_results.json").write_text(json.dumps(results))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "run_results.json", tmp_path / "manifest.json"


def test_every_test_node_is_read_with_what_it_tests_and_how_it_ended(tmp_path: Path) -> None:
    run = read_test_run(*write_artefacts(tmp_path))

    assert run.invocation_id == INVOCATION and run.nodes == 10 and run.dbt_version == "1.11.16"
    assert run.generated_at == dt.datetime(2026, 11, 3, 11, 5, 2, tzinfo=dt.UTC)
    assert run.started_at == dt.datetime(2026, 11, 3, 11, 4, 50, tzinfo=dt.UTC) and run.elapsed_seconds == 12.5
    assert not run.success
    assert run.failed_nodes == (
        "model.telemetry.fct_b",
        "test.telemetry.value_between_fct_a_n__0.2b",
        "test.telemetry.expression_is_true_fct_a_x.4d",
        "test.telemetry.assert_a_matches_raw",
    )
    tests = {t.test_name: t for t in run.tests}
    assert [(name, t.test_type, t.test_kind, t.status, t.models) for name, t in tests.items()] == [
        ("unique_fct_a_day", "generic", "unique", "pass", ("fct_a",)),
        ("value_between_fct_a_n__0", "generic", "value_between", "fail", ("fct_a",)),
        ("not_null_fct_a_day", "generic", "not_null", "warn", ("fct_a",)),
        ("fct_a_x_consistent", "generic", "expression_is_true", "error", ("fct_a",)),
        ("not_null_fct_b_day", "generic", "not_null", "skipped", ("fct_b",)),
        ("assert_a_matches_raw", "singular", None, "error", ("fct_a", "raw.samples")),  # a "runtime error"
        ("a_unit_test", "unit", None, "pass", ("fct_a",)),
        ("not_null_raw_samples_id", "generic", "not_null", "pass", ("raw.samples",)),
    ]
    assert (run.count("pass"), run.count("fail"), run.count("warn"), run.count("error"), run.count("skipped")) == (
        3,
        1,
        1,
        2,
        1,
    )
    failing = tests["value_between_fct_a_n__0"]
    assert (failing.failures, failing.message, failing.column_name, failing.severity) == (
        2,
        "Got 2 results",
        "n",
        "ERROR",
    )
    assert failing.compiled_code == "select 1 -- test.telemetry.value_between_fct_a_n__0.2b"
    assert failing.started_at == dt.datetime(2026, 11, 3, 11, 5, 0, 100000, tzinfo=dt.UTC)
    assert failing.completed_at == dt.datetime(2026, 11, 3, 11, 5, 0, 350000, tzinfo=dt.UTC)
    assert failing.execution_seconds == 0.25
    assert 'column "x" does not exist' in tests["fct_a_x_consistent"].message
    assert tests["unique_fct_a_day"].compiled_code is None  # a passing test's SQL is the project's
    assert tests["not_null_fct_a_day"].severity == "WARN"


def test_a_manifest_of_another_invocation_only_costs_the_descriptions(tmp_path: Path) -> None:
    run = read_test_run(*write_artefacts(tmp_path, manifest_invocation="some-other-build"))
    assert len(run.tests) == 8 and run.count("fail") == 1
    failing = next(t for t in run.tests if t.status == "fail")
    assert failing.test_name == "value_between_fct_a_n__0" and failing.test_kind is None and failing.models == ()
    assert read_test_run(tmp_path / "run_results.json", tmp_path / "absent.json").count("error") == 2


def test_a_stored_build_is_stored_once_and_both_roles_may_read_it(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    run = read_test_run(*write_artefacts(tmp_path))
    common = {"dag_id": "telemetry_hourly", "run_id": "scheduled__x", "cadence": "hourly", "part": "marts"}
    window = {"window_start": WINDOW[0], "window_end": WINDOW[1]}
    assert store_test_run(warehouse_url, run, **common, **window, artefacts_path=tmp_path)
    assert not store_test_run(warehouse_url, run, **common, **window)  # a second call changes nothing
    stored = db.execute(
        "select success, nodes, tests, passed, failed, warned, errored, skipped, failed_nodes, artefacts_path"
        " from quality.dbt_test_runs"
    ).fetchall()
    assert stored == [(False, 10, 8, 3, 1, 1, 2, 1, list(run.failed_nodes), str(tmp_path))]
    rows = db.execute(
        "select test_name, status, dag_id, run_id, models, compiled_code is not null"
        " from quality.dbt_test_results order by test_name"
    ).fetchall()
    assert len(rows) == 8 and all(row[2:4] == ("telemetry_hourly", "scheduled__x") for row in rows)
    assert {(row[0], row[5]) for row in rows if row[1] != "pass"} == {
        ("value_between_fct_a_n__0", True),
        ("not_null_fct_a_day", True),
        ("fct_a_x_consistent", True),
        ("assert_a_matches_raw", True),
        ("not_null_fct_b_day", False),  # skipped: never compiled
    }
    for role in ("telemetry_reviewer", "telemetry_analyst"):
        for table in ("quality.dbt_test_runs", "quality.dbt_test_results", "quality.validation_runs"):
            assert db.execute("select has_table_privilege(%s, %s, 'SELECT')", (role, table)).fetchone()[0]
            assert not db.execute("select has_table_privilege(%s, %s, 'INSERT')", (role, table)).fetchone()[0]


def test_recording_never_raises_into_the_build(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kept = tmp_path / "kept"
    arguments = {"cadence": "hourly", "part": "marts", "window_start": WINDOW[0], "window_end": WINDOW[1]}
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    assert record_build_tests(unreachable, tmp_path / "empty", kept, **arguments) is None  # dbt ran no node
    write_artefacts(tmp_path)
    assert record_build_tests(unreachable, tmp_path, kept, **arguments) is None  # the warehouse is down
    assert "keeping the dbt test results" in caplog.text


def test_tests_that_cannot_run_are_stored_as_errors_with_dbt_s_message(warehouse_url: str, tmp_path: Path) -> None:
    target = tmp_path / "target"
    dbt.build("+fct_reliability_hourly", *WINDOW, database_url=warehouse_url, data_tests=False, target_path=target)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("drop table marts.fct_reliability_hourly")
    with pytest.raises(dbt.DbtBuildError):
        dbt.invoke(
            ["test", "--select", "fct_reliability_hourly", "--exclude-resource-type", "unit_test"],
            database_url=warehouse_url,
            target_path=target,
        )

    run = record_build_tests(
        warehouse_url,
        target,
        tmp_path / "kept",
        cadence="hourly",
        part="reliability",
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        run_id="manual__dropped",
    )

    assert run is not None and run.tests and {t.status for t in run.tests} == {"error"}
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select r.test_name, r.status, r.failures, r.message, r.models, r.compiled_code, b.errored, b.failed"
            " from quality.dbt_test_results as r join quality.dbt_test_runs as b using (invocation_id)"
            " where r.run_id = 'manual__dropped'"
        ).fetchall()
    assert len(rows) == len(run.tests) >= 4
    for name, status, failures, message, models, compiled, errored, failed in rows:
        assert status == "error" and failures is None and (errored, failed) == (len(rows), 0), name
        assert 'relation "marts.fct_reliability_hourly" does not exist' in message, message
        assert models == ["fct_reliability_hourly"] and "fct_reliability_hourly" in compiled
