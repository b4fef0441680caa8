"""Run the dbt project in-process for one window: one ``dbt build`` per call, one runner per process.

Airflow calls ``build("tag:hourly", data_interval_start, data_interval_end, database_url=...)``
once per run. The window goes to dbt in the environment (``TELEMETRY_DBT_WINDOW_START``/``_END``,
ISO 8601 UTC); the connection comes from the one ``TELEMETRY_DATABASE_URL`` through
``collectors.warehouse.db.dbt_env``; ``run_results.json`` stays in the target path the caller
chooses. No Airflow import here: the DAGs stay thin and this module is tested on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.config import STATE_DIR, get_settings
from collectors.orchestration.process_env import temporary_environment
from collectors.warehouse.db import dbt_env

PROJECT_DIR = get_settings().dbt_project_dir
PROFILES_DIR = PROJECT_DIR

_runner: Any = None
_lock = threading.Lock()
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# the last parse saved for each (database URL, --vars): what a target directory with none of its own starts from
_saved_parses: dict[tuple[str, str | None], Path] = {}


class DbtBuildError(RuntimeError):
    """A dbt invocation failed; ``failed_nodes`` names every node that errored or failed."""

    def __init__(self, message: str, failed_nodes: Sequence[str], result: DbtBuildResult | None) -> None:
        super().__init__(message)
        self.failed_nodes = list(failed_nodes)
        self.result = result


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    execution_time: float
    message: str | None


@dataclass(frozen=True)
class DbtBuildResult:
    """Outcome of one successful invocation."""

    args: list[str]
    target_path: Path
    nodes: list[NodeResult] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    @property
    def run_results_path(self) -> Path:
        return self.target_path / "run_results.json"

    def statuses(self) -> dict[str, str]:
        return {node.unique_id: node.status for node in self.nodes}


def _utc_iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"window bound {value!r} must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat()


def _get_runner() -> Any:
    """One dbtRunner per process (import and plugin setup cost seconds; later invokes do not)."""
    global _runner
    if _runner is None:
        from dbt.cli.main import dbtRunner

        _runner = dbtRunner()
    return _runner


def _node_results(result: Any) -> list[NodeResult]:
    nodes: list[NodeResult] = []
    for item in getattr(result, "results", None) or []:
        node = getattr(item, "node", None)
        nodes.append(
            NodeResult(
                unique_id=str(getattr(node, "unique_id", "?")),
                status=str(getattr(item.status, "value", item.status)),
                execution_time=float(getattr(item, "execution_time", 0.0) or 0.0),
                message=getattr(item, "message", None),
            )
        )
    return nodes


FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
PROJECT_NAME = "telemetry"
_NODE_IN_MESSAGE = re.compile(r"\b(?:in|by) (model|test|unit_test|seed|snapshot) ([A-Za-z0-9_]+)")


def _nodes_named_in(text: str) -> list[str]:
    """Nodes an error raised before any node ran (parsing, compiling) names, as unique ids."""
    found: list[str] = []
    for kind, name in _NODE_IN_MESSAGE.findall(text):
        unique_id = f"{kind}.{PROJECT_NAME}.{name}"
        if unique_id not in found:
            found.append(unique_id)
    return found


def _vars_argument(args: Sequence[str]) -> str | None:
    return next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--vars"), None)


def _start_from_a_saved_parse(target: Path, key: tuple[str, str | None]) -> None:
    """Give a target directory with no saved parse of its own the last one made for the same database and vars.

    A new target directory (another cadence's, another test's) would make dbt parse the whole project, 5 to 30 s
    on two cores. dbt checks a saved parse against the project files, the vars, the profile and the environment
    and parses again whatever differs, so starting from one of the same key costs nothing when it is stale.
    """
    saved = _saved_parses.get(key)
    destination = target / PARTIAL_PARSE_FILE
    if saved is None or saved == destination or destination.exists() or not saved.exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(saved, destination)


def invoke(
    args: Sequence[str],
    *,
    database_url: str,
    target_path: Path | None = None,
    environment: dict[str, str] | None = None,
) -> DbtBuildResult:
    """Run one dbt command (``["build", "--select", ...]``) against ``database_url``, with ``environment`` set
    while it runs; raise on failure."""
    target = Path(target_path) if target_path is not None else STATE_DIR / "dbt" / "target"
    full_args = [
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROFILES_DIR),
        "--target-path",
        str(target),
        "--log-path",  # never inside the project, which may be read-only (an installed wheel's copy)
        str(target / "logs"),
    ]
    env = {**dbt_env(database_url), **(environment or {})}
    env["PGTZ"] = "UTC"  # belt and braces: every model is written with explicit UTC anyway
    parse_key = (database_url, _vars_argument(args))
    started = dt.datetime.now(dt.UTC)
    with _lock, temporary_environment(env):
        _start_from_a_saved_parse(target, parse_key)
        outcome = _get_runner().invoke(full_args)
        if (target / PARTIAL_PARSE_FILE).exists():
            _saved_parses[parse_key] = target / PARTIAL_PARSE_FILE
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    nodes = _node_results(outcome.result)
    result = DbtBuildResult(args=full_args, target_path=target, nodes=nodes, elapsed_seconds=elapsed)
    failed = [node.unique_id for node in nodes if node.status in FAILED_STATUSES]
    if not outcome.success or failed:
        detail = "; ".join(
            f"{node.unique_id}: {node.status}: {(node.message or '').strip()[:300]}"
            for node in nodes
            if node.status in FAILED_STATUSES
        )
        if not failed and outcome.exception is not None:
            detail = f"{type(outcome.exception).__name__}: {outcome.exception}"
            failed = _nodes_named_in(str(outcome.exception))
        raise DbtBuildError(
            f"dbt {' '.join(args)} failed ({len(failed)} failed nodes): {detail}",
            failed,
            result,
        )
    return result


def build(
    select: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    database_url: str,
    full_refresh: bool = False,
    vars: dict[str, Any] | None = None,
    target_path: Path | None = None,
    exclude: str | None = None,
    unit_tests: bool = False,
    data_tests: bool = True,
) -> DbtBuildResult:
    """``dbt build --select <select>`` for the window ``[window_start, window_end)``.

    Unit tests (dbt ``unit_tests:``) check the SQL logic, not the data, so production runs skip
    them; the test suite passes ``unit_tests=True``. ``data_tests=False`` skips the data tests too.
    Raises ``DbtBuildError`` naming the failed nodes.
    """
    if window_start >= window_end:
        raise ValueError(f"empty window [{window_start}, {window_end})")
    # the window travels in the environment, not in --vars: vars that change from run to run make dbt parse the
    # whole project again each time, and the window changes with every run
    window = {"TELEMETRY_DBT_WINDOW_START": _utc_iso(window_start), "TELEMETRY_DBT_WINDOW_END": _utc_iso(window_end)}
    args = ["build", "--select", select]
    if vars:
        args += ["--vars", json.dumps(vars, sort_keys=True)]
    excluded_types = [t for t, keep in (("unit_test", unit_tests), ("test", data_tests)) if not keep]
    for resource_type in excluded_types:
        args += ["--exclude-resource-type", resource_type]
    if exclude:
        args += ["--exclude", exclude]
    if full_refresh:
        args.append("--full-refresh")
    return invoke(args, database_url=database_url, target_path=target_path, environment=window)


def parse_manifest(*, database_url: str, vars: dict[str, Any] | None = None, target_path: Path | None = None) -> dict:
    """The project's manifest (``dbt parse``, from the saved parse when nothing changed), as JSON."""
    args = ["parse"] + (["--vars", json.dumps(vars, sort_keys=True)] if vars else [])
    result = invoke(args, database_url=database_url, target_path=target_path)
    return json.loads((result.target_path / "manifest.json").read_text())
