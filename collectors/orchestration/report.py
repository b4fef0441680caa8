"""The data-quality report: validation runs and dbt test results, what failed and what errored, Data Docs, reliability.

``create_app()`` is a small FastAPI app. ``plugins/telemetry_report.py`` mounts it in the Airflow
api-server at ``/telemetry-quality`` (with Airflow's login in front of it) and puts a "Data quality"
link in the UI's Browse menu; it runs on its own too (``uvicorn --factory collectors.orchestration.report:create_app``).

* ``GET /``: an HTML page (Jinja2, autoescaped: nothing read from the database reaches the page
  unescaped), in sections a later view can be added beside: a summary (the last validation's verdict, the
  last dbt build of every cadence and part); the last validation runs, newest first, one per weekly DAG run
  (the rows ``collectors.orchestration.validation.validate_week`` stored in ``quality.validation_runs``) with
  verdict, assets, the expectations that failed on the data and, apart, those that errored with their
  cause; the dbt builds whose tests did not all pass (``quality.dbt_test_runs`` and
  ``quality.dbt_test_results``, from ``collectors.orchestration.test_results``), data failures apart from
  tests that could not run; a pass/fail strip per dbt test and per GX asset and failing expectation over
  their last 30 runs (``report_history``); source freshness, volume per hour against the previous weeks,
  the ingest ledger and the refused records' reasons (``report_monitors``); the windows the reconcile rebuilt
  and its plan as of now, due and pending (``report_rebuilds``); a link to the Great Expectations
  Data Docs; an inline SVG of ``marts.fct_reliability_daily`` (the last 30 days there are). No JavaScript,
  no external assets.
* ``GET /api/runs``: the same runs, builds, history, monitors and days as JSON.
* ``GET /data-docs/<path>``: the Data Docs site, ``<gx_dir>/uncommitted/data_docs/local_site/``, offline: the
  CDN assets its pages name are served from a vendored copy at ``GET /data-docs-vendor/<path>``
  (``collectors.orchestration.data_docs_offline``).
* ``GET /models``: the dbt models of the newest build's manifest, a section per model (a failing test links there).
* ``GET /?failed=true``: only what did not pass.

The warehouse is read with a read-only session. When it cannot be reached, or its tables are not
there yet, both pages answer 503 with what to do instead of a stack trace. No Airflow, dbt or GX
import here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.staticfiles import StaticFiles

from collectors.orchestration import data_docs_offline, pages
from collectors.orchestration import report_monitors as monitors_module
from collectors.orchestration.pages import PageUnavailable, first_line, redirect_to_login, template_environment
from collectors.orchestration.report_history import TestHistory, read_dbt_history, validation_history
from collectors.orchestration.report_models import ModelDocs, model_anchor, read_model_docs
from collectors.orchestration.report_monitors import Monitors, read_monitors
from collectors.orchestration.report_rebuilds import Rebuilds, read_rebuilds

log = logging.getLogger(__name__)

DATA_DOCS_SITE = "local_site"  # collectors.orchestration.validation.SITE (not imported: that module is the GX side)
RUN_LIMIT = 30  # validation runs on the page
BUILD_LIMIT = 30  # dbt builds with tests that did not all pass, on the page
CHART_DAYS = 30  # days of marts.fct_reliability_daily in the chart
TEXT_LIMIT = 300  # longest observed value / error shown per failing expectation
# the report's own pages: no script, no external anything; framed only by the Airflow UI (same origin)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}

# the Data Docs: GX's own pages, scripts allowed (theirs, served from here), nothing from elsewhere
DATA_DOCS_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": data_docs_offline.DATA_DOCS_CSP,
    "X-Content-Type-Options": "nosniff",
}

_environment = template_environment()


# --------------------------------------------------------------------------- what the page shows


@dataclass(frozen=True)
class FailingExpectation:
    suite: str
    asset: str
    expectation: str
    column: str | None = None  # "a" or "a, b" for multi-column expectations
    description: str | None = None
    observed: str | None = None
    error: str | None = None
    errored: bool = False  # raised instead of evaluating the data: ``error`` is the cause, not a data failure


@dataclass(frozen=True)
class ErrorGroup:
    """Expectations of one asset that errored with one cause (a missing table errors every one of them)."""

    suite: str
    asset: str
    cause: str
    expectations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AssetResult:
    suite: str
    asset: str
    success: bool
    evaluated: int
    failed: int
    data_docs_page: str | None = None  # relative to the Data Docs site, when that page exists


@dataclass(frozen=True)
class ValidationRun:
    """One ``validate_week`` call: the rows of ``quality.validation_runs`` sharing dag_id, run_id, started_at."""

    dag_id: str | None
    run_id: str | None
    window_start: dt.datetime
    window_end: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime
    assets: list[AssetResult] = field(default_factory=list)
    failures: list[FailingExpectation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(asset.success for asset in self.assets)

    @property
    def data_failures(self) -> list[FailingExpectation]:
        return [f for f in self.failures if not f.errored]

    @property
    def errors(self) -> list[ErrorGroup]:
        groups: dict[tuple[str, str, str], ErrorGroup] = {}
        for f in self.failures:
            if f.errored:
                key = (f.suite, f.asset, f.error or "unknown error")
                groups.setdefault(key, ErrorGroup(*key)).expectations.append(f.expectation)
        return list(groups.values())

    @property
    def verdict(self) -> str:
        """PASSED; FAILED when the data broke an expectation; ERRORED when expectations only could not run."""
        if self.passed:
            return "PASSED"
        return "ERRORED" if self.failures and not self.data_failures else "FAILED"

    @property
    def asset_count(self) -> int:
        return len({asset.asset for asset in self.assets})

    def docs_page(self, suite: str, asset: str) -> str | None:
        """The Data Docs result page of one suite on one asset in this run, when there is one."""
        return next((a.data_docs_page for a in self.assets if (a.suite, a.asset) == (suite, asset)), None)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            verdict=self.verdict,
            asset_count=self.asset_count,
            errored=sum(f.errored for f in self.failures),
            errors=[asdict(group) for group in self.errors],
        )
        for key in ("window_start", "window_end", "started_at", "finished_at"):
            data[key] = data[key].isoformat()
        return data


@dataclass(frozen=True)
class DbtTestProblem:
    """A dbt test of one build that did not pass: failed or warned on the data, or errored (could not run)."""

    unique_id: str
    test_name: str
    status: str  # fail, warn or error
    test_type: str | None = None
    test_kind: str | None = None
    models: list[str] = field(default_factory=list)
    column: str | None = None
    failures: int | None = None
    message: str | None = None
    cause: str | None = None  # for an error: what went wrong, from dbt's message


@dataclass(frozen=True)
class DbtBuild:
    """One dbt build's tests: a row of ``quality.dbt_test_runs`` and its tests that did not pass."""

    invocation_id: str
    dag_id: str | None
    run_id: str | None
    cadence: str | None
    part: str | None
    family: str | None
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    success: bool
    tests: int
    passed: int
    failed: int
    warned: int
    errored: int
    skipped: int
    failed_nodes: list[str]
    generated_at: dt.datetime
    elapsed_seconds: float | None = None
    problems: list[DbtTestProblem] = field(default_factory=list)

    @property
    def data_failures(self) -> list[DbtTestProblem]:
        return [p for p in self.problems if p.status in ("fail", "warn")]

    @property
    def errors(self) -> list[DbtTestProblem]:
        return [p for p in self.problems if p.status == "error"]

    @property
    def model_errors(self) -> list[str]:
        """Nodes other than tests that errored (a model that did not build: its tests are skipped)."""
        return [n for n in self.failed_nodes if n.split(".")[0] not in ("test", "unit_test")]

    @property
    def verdict(self) -> str:
        if self.failed:
            return "FAILED"
        if self.errored or self.model_errors or not self.success:
            return "ERRORED"
        return "WARNED" if self.warned else "PASSED"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(verdict=self.verdict, model_errors=self.model_errors)
        for key in ("window_start", "window_end", "generated_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class DayReliability:
    day: dt.date
    reliability: float | None  # null when no channel was measurable that day


@dataclass(frozen=True)
class DbtTests:
    """The dbt side of the page: the last build of every (cadence, part), and the builds with problems."""

    latest: list[DbtBuild] = field(default_factory=list)
    problem_builds: list[DbtBuild] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "latest": [b.as_json() for b in self.latest],
            "builds_with_problems": [b.as_json() for b in self.problem_builds],
        }


@dataclass(frozen=True)
class Report:
    runs: list[ValidationRun]
    days: list[DayReliability] | None  # None: marts.fct_reliability_daily cannot be read
    days_note: str | None = None  # why not, or that it is empty
    data_docs: bool = False  # the Data Docs index exists
    dbt: DbtTests | None = None  # None: the dbt test tables cannot be read
    dbt_note: str | None = None  # why not, or that they are empty
    dbt_history: list[TestHistory] | None = None  # every dbt test's last runs; None: not readable
    monitors: Monitors | None = None  # freshness, volume, ledger, rejects
    models_docs: bool = False  # the models page (from a build's manifest) has something to show
    rebuilds: Rebuilds | None = None  # what the reconcile rebuilt, and its plan as of now

    @property
    def validation_history(self) -> list[TestHistory]:
        return validation_history(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "dbt_test_history": None if self.dbt_history is None else [h.as_json() for h in self.dbt_history],
            "validation_history": [h.as_json() for h in self.validation_history],
            "monitors": None if self.monitors is None else self.monitors.as_json(),
            "rebuilds": None if self.rebuilds is None else self.rebuilds.as_json(),
            "runs": [run.as_json() for run in self.runs],
            "dbt_tests": None if self.dbt is None else self.dbt.as_json(),
            "dbt_tests_note": self.dbt_note,
            "reliability_daily": None
            if self.days is None
            else [{"day": d.day.isoformat(), "reliability": d.reliability} for d in self.days],
            "reliability_note": self.days_note,
            "data_docs": "data-docs/index.html" if self.data_docs else None,
        }


# --------------------------------------------------------------------------- reading the warehouse

RUNS_QUERY = """
with runs as (
    select dag_id, run_id, started_at, max(finished_at) as finished_at
    from quality.validation_runs
    group by dag_id, run_id, started_at
    order by max(finished_at) desc, started_at desc
    limit %(limit)s
)
select v.dag_id, v.run_id, v.started_at, runs.finished_at, v.window_start, v.window_end,
       v.suite, v.asset, v.success, v.evaluated, v.failed, v.failures, v.data_docs_path
from quality.validation_runs v
join runs
  on v.started_at = runs.started_at
 and v.dag_id is not distinct from runs.dag_id
 and v.run_id is not distinct from runs.run_id
order by runs.finished_at desc, v.started_at desc, v.dag_id, v.run_id, v.success, v.suite, v.asset
"""

# the last build of every cadence and part: what holds now (the columns are DbtBuild's)
LATEST_BUILDS_QUERY = """
select b.invocation_id, b.dag_id, b.run_id, b.cadence, b.part, b.family, b.window_start, b.window_end, b.success,
       b.tests, b.passed, b.failed, b.warned, b.errored, b.skipped, b.failed_nodes, b.generated_at, b.elapsed_seconds,
       null as unique_id
from (
    select distinct on (cadence, part) * from quality.dbt_test_runs
    order by cadence, part, generated_at desc
) as b
order by b.cadence, b.part
"""

# the builds with a test that failed, warned or errored (or a node that did not build), with those tests
PROBLEM_BUILDS_QUERY = """
with builds as (
    select * from quality.dbt_test_runs
    where not success or failed > 0 or warned > 0 or errored > 0
    order by generated_at desc
    limit %(limit)s
)
select b.invocation_id, b.dag_id, b.run_id, b.cadence, b.part, b.family, b.window_start, b.window_end, b.success,
       b.tests, b.passed, b.failed, b.warned, b.errored, b.skipped, b.failed_nodes, b.generated_at, b.elapsed_seconds,
       r.unique_id, r.test_name, r.status, r.test_type, r.test_kind, r.models, r.column_name, r.failures, r.message
from builds as b
left join quality.dbt_test_results as r
  on r.invocation_id = b.invocation_id and r.status in ('fail', 'warn', 'error')
order by b.generated_at desc, b.invocation_id,
         case r.status when 'fail' then 0 when 'warn' then 1 else 2 end, r.test_name
"""

DAYS_QUERY = """
select day, reliability::double precision
from (select day, reliability from marts.fct_reliability_daily order by day desc limit %(days)s) as last_days
order by day
"""


def _where(database_url: str) -> str:
    """host:port/database of a URL, never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "(an invalid database URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    return f"{user}{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _first_line(error: BaseException) -> str:
    return first_line(error, TEXT_LIMIT)


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _failing(suite: str, asset: str, failure: Any) -> FailingExpectation:
    if not isinstance(failure, dict):
        return FailingExpectation(suite, asset, expectation=_short(failure) or "?")
    columns = failure.get("columns")
    column = failure.get("column")
    if not column and isinstance(columns, list):
        column = ", ".join(str(c) for c in columns)
    # the offending sample values stay in Data Docs: they may be personal data
    errored = bool(failure.get("errored"))
    return FailingExpectation(
        suite=suite,
        asset=asset,
        expectation=str(failure.get("expectation") or "?"),
        column=str(column) if column else None,
        description=_short(failure.get("description")),
        observed=_short(failure.get("observed")),
        error=_short(failure.get("cause") or failure.get("exception")),
        errored=errored,
    )


_DBT_ERROR_HEADING = ("database error in", "runtime error in", "compilation error in")


def _dbt_cause(message: str | None) -> str | None:
    """What dbt's message says went wrong: its first line past the "Database Error in test ..." heading."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    for line in lines:
        if not line.lower().startswith(_DBT_ERROR_HEADING):
            return _short(line)
    return _short(lines[0]) if lines else None


BUILD_FIELDS = [f.name for f in fields(DbtBuild) if f.name != "problems"]  # the build columns of the queries


def _builds(rows: Sequence[dict[str, Any]]) -> list[DbtBuild]:
    builds: dict[str, DbtBuild] = {}
    for row in rows:
        build = builds.get(row["invocation_id"])
        if build is None:
            values = {name: row[name] for name in BUILD_FIELDS}
            values["failed_nodes"] = list(values["failed_nodes"] or [])
            build = builds[row["invocation_id"]] = DbtBuild(**values)
        if row["unique_id"] is None:
            continue
        build.problems.append(
            DbtTestProblem(
                unique_id=row["unique_id"],
                test_name=row["test_name"],
                status=row["status"],
                test_type=row["test_type"],
                test_kind=row["test_kind"],
                models=list(row["models"] or []),
                column=row["column_name"],
                failures=row["failures"],
                message=_short(row["message"]),
                cause=_dbt_cause(row["message"]) if row["status"] == "error" else None,
            )
        )
    return list(builds.values())


def _read_dbt_tests(conn: psycopg.Connection, limit: int) -> tuple[DbtTests | None, str | None]:
    """The dbt side, or why it cannot be shown: the page still shows the validations then."""
    try:
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            latest = _builds(cur.execute(LATEST_BUILDS_QUERY).fetchall())
            problems = _builds(cur.execute(PROBLEM_BUILDS_QUERY, {"limit": limit}).fetchall())
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return None, "quality.dbt_test_runs is not there yet: run the migrations (telemetry-db migrate)."
    except psycopg.errors.InsufficientPrivilege:
        return None, "The database role may not read quality.dbt_test_runs (grant telemetry_reviewer)."
    except psycopg.Error as error:
        log.warning("reading quality.dbt_test_runs: %s", error)
        return None, f"quality.dbt_test_runs could not be read: {_first_line(error)}"
    note = None if latest else "No dbt build has stored its test results yet: every DAG's dbt task does."
    return DbtTests(latest, problems), note


def _docs_page(stored_path: str | None, docs_root: Path) -> str | None:
    """The page under the Data Docs site a stored ``data_docs_path`` names, when it is there.

    The path was written by the worker that ran the validation, maybe with another mount point:
    what follows its ``local_site`` directory is what counts.
    """
    if not stored_path:
        return None
    parts = PurePosixPath(stored_path).parts
    if DATA_DOCS_SITE not in parts:
        return None
    relative = parts[len(parts) - 1 - parts[::-1].index(DATA_DOCS_SITE) + 1 :]
    if not relative or any(part in ("..", ".") for part in relative):
        return None
    return "/".join(relative) if docs_root.joinpath(*relative).is_file() else None


def _runs(rows: Sequence[tuple[Any, ...]], docs_root: Path) -> list[ValidationRun]:
    runs: dict[tuple[Any, ...], ValidationRun] = {}
    for (
        dag_id,
        run_id,
        started_at,
        finished_at,
        window_start,
        window_end,
        suite,
        asset,
        success,
        evaluated,
        failed,
        failures,
        docs_path,
    ) in rows:
        key = (dag_id, run_id, started_at)
        run = runs.get(key)
        if run is None:
            run = runs[key] = ValidationRun(dag_id, run_id, window_start, window_end, started_at, finished_at)
        run.assets.append(
            AssetResult(suite, asset, bool(success), int(evaluated), int(failed), _docs_page(docs_path, docs_root))
        )
        if isinstance(failures, str):
            failures = json.loads(failures)
        run.failures.extend(_failing(suite, asset, f) for f in failures or [])
    return list(runs.values())


def read_report(
    database_url: str,
    docs_root: Path,
    *,
    limit: int = RUN_LIMIT,
    days: int = CHART_DAYS,
    build_limit: int = BUILD_LIMIT,
    now: dt.datetime | None = None,
    models_docs: bool = False,
) -> Report:
    """Read the runs and the days from the warehouse; raise ``PageUnavailable`` saying what to do."""
    where = _where(database_url)
    conn = pages.connect(
        database_url,
        application_name="telemetry-quality-report",
        title=f"The warehouse database {where} cannot be reached",
        detail=_first_line,
    )
    with conn:
        try:
            rows = conn.execute(RUNS_QUERY, {"limit": limit}).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as error:
            raise PageUnavailable(
                f"The warehouse {where} has no quality.validation_runs table yet",
                "Run the migrations (telemetry-db migrate, or make demo), then reload this page.",
                _first_line(error),
            ) from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise PageUnavailable(
                f"The database role may not read quality.validation_runs in {where}",
                "Grant it the telemetry_reviewer role (select on the quality ledgers), then reload this page.",
                _first_line(error),
            ) from error
        except psycopg.Error as error:
            raise PageUnavailable(
                f"Reading quality.validation_runs from {where} failed",
                "See the api-server log; reload this page when the warehouse is healthy.",
                _first_line(error),
            ) from error
        dbt_tests, dbt_note = _read_dbt_tests(conn, build_limit)
        dbt_history: list[TestHistory] | None = None
        if dbt_tests is not None:
            try:
                dbt_history = read_dbt_history(conn, now=now)
            except psycopg.Error as error:
                log.warning("reading the dbt test history: %s", error)
        monitors = read_monitors(conn, now)
        rebuilds = read_rebuilds(conn, now)
        reliability: list[DayReliability] | None = None
        note: str | None = None
        try:
            reliability = [
                DayReliability(day, None if value is None else float(value))
                for day, value in conn.execute(DAYS_QUERY, {"days": days}).fetchall()
            ]
            if not reliability:
                note = "marts.fct_reliability_daily has no days yet: the telemetry_daily DAG builds it."
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            note = "marts.fct_reliability_daily is not built yet: the telemetry_daily DAG (dbt) builds it."
        except psycopg.errors.InsufficientPrivilege:
            note = "The database role may not read marts.fct_reliability_daily (grant telemetry_analyst)."
        except psycopg.Error as error:
            log.warning("reading marts.fct_reliability_daily: %s", error)
            note = f"marts.fct_reliability_daily could not be read: {_first_line(error)}"
    return Report(
        _runs(rows, docs_root),
        reliability,
        note,
        (docs_root / "index.html").is_file(),
        dbt_tests,
        dbt_note,
        dbt_history,
        monitors,
        models_docs,
        rebuilds,
    )


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    day: dt.date
    reliability: float


@dataclass(frozen=True)
class Chart:
    """Coordinates of the reliability chart; the template draws them (numbers and dates only)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: list[ChartPoint]
    gaps: list[tuple[float, dt.date]]  # (x, day) of the days without a value
    segments: list[str]  # polyline points, one segment per run of consecutive days with a value
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_labels: list[tuple[float, str]]  # (x, label)
    days: int
    first_day: dt.date
    last_day: dt.date


def chart(days: Sequence[DayReliability], *, width: int = 720, height: int = 220) -> Chart | None:
    """An x axis of calendar days (a gap is a gap), a y axis from a round floor below the minimum to 100 %."""
    if not days:
        return None
    left, right, top, bottom = 56, 16, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    first, last = days[0].day, days[-1].day
    span = max((last - first).days, 1)
    values = [d.reliability for d in days if d.reliability is not None]
    # the y axis starts at a 5-point step below the lowest day, so that a drop of a point shows
    low = min(0.95, max(0.0, math.floor((min(values, default=0.0) - 0.005) * 20) / 20))
    high = max(1.0, *values) if values else 1.0
    step = next(s for s in (0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if (high - low) / s <= 5.001)

    def x_of(day: dt.date) -> float:
        offset = (day - first).days if len(days) > 1 else span / 2
        return round(left + plot_w * offset / span, 1)

    def y_of(value: float) -> float:
        return round(top + plot_h * (high - value) / (high - low), 1)

    measured = [d for d in days if d.reliability is not None]
    segments: list[str] = []
    current: list[str] = []
    previous: dt.date | None = None
    for d in days:
        consecutive = previous is not None and (d.day - previous).days == 1
        if d.reliability is None or not consecutive:
            if len(current) > 1:
                segments.append(" ".join(current))
            current = []
        if d.reliability is not None:
            current.append(f"{x_of(d.day)},{y_of(d.reliability)}")
        previous = d.day
    if len(current) > 1:
        segments.append(" ".join(current))
    ticks = [low + step * i for i in range(round((high - low) / step) + 1)]
    label_every = max(1, round(len(days) / 6))
    x_labels = [(x_of(d.day), d.day.strftime("%m-%d")) for d in days[::label_every]]
    if x_labels[-1][1] != last.strftime("%m-%d"):
        x_labels.append((x_of(last), last.strftime("%m-%d")))
    return Chart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        points=[ChartPoint(x_of(d.day), y_of(d.reliability), d.day, d.reliability) for d in measured],
        gaps=[(x_of(d.day), d.day) for d in days if d.reliability is None],
        segments=segments,
        y_ticks=[(y_of(t), f"{t * 100:.4g} %") for t in ticks],
        x_labels=x_labels,
        days=len(days),
        first_day=first,
        last_day=last,
    )


# --------------------------------------------------------------------------- rendering


def render_page(report: Report, *, generated_at: dt.datetime | None = None, failed_only: bool = False) -> str:
    """The page; ``failed_only`` keeps what did not pass: runs, tests, sources, hours."""
    return _environment.get_template("report.html").render(
        report=report,
        failed_only=failed_only,
        monitors=report.monitors,
        rebuilds=report.rebuilds,
        chart=chart(report.days or []),
        generated_at=generated_at or dt.datetime.now(dt.UTC),
        run_limit=RUN_LIMIT,
        build_limit=BUILD_LIMIT,
        chart_days=CHART_DAYS,
        band=monitors_module.band(),
        volume_hours=monitors_module.VOLUME_HOURS,
        ledger_days=monitors_module.LEDGER_DAYS,
        reject_days=monitors_module.REJECT_DAYS,
        duration=monitors_module.duration,
    )


def render_models(docs: ModelDocs | None, history: list[TestHistory] | None) -> str:
    last = {h.key: h.last for h in history or []}
    return _environment.get_template("models.html").render(docs=docs, last=last)


def render_unavailable(problem: PageUnavailable) -> str:
    return _environment.get_template("unavailable.html").render(problem=problem)


# --------------------------------------------------------------------------- the app


def _default_database_url() -> str:
    from collectors.config import get_settings

    return get_settings().database_url


def _default_docs_root() -> Path:
    from collectors.config import get_settings

    return Path(get_settings().gx_dir) / "uncommitted" / "data_docs" / DATA_DOCS_SITE


def _default_artefacts_dir() -> Path:
    from collectors.config import get_settings

    return Path(get_settings().artefacts_dir)


def create_app(
    *,
    database_url: Callable[[], str] = _default_database_url,
    docs_root: Callable[[], Path] = _default_docs_root,
    artefacts_dir: Callable[[], Path] = _default_artefacts_dir,
    dependencies: Sequence[Any] = (),
    login_url: Callable[[str], str] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> FastAPI:
    """The report app.

    ``database_url`` and ``docs_root`` are read at every request (from ``collectors.config`` by
    default). ``dependencies`` guard every route (the plugin passes Airflow's authentication); when
    one refuses an HTML page with 401/403 and ``login_url`` is given, the browser is sent to
    ``login_url(<this page>)`` instead. ``clock`` is what "now" is for the history, freshness and volume
    (the wall clock by default; tests pin it).
    """
    app = FastAPI(
        title="Telemetry data quality",
        description="Validation runs, dbt test results, Data Docs and reliability per day.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
    )

    def settings_problem(error: ValidationError) -> PageUnavailable:
        return pages.settings_problem(_first_line(error))

    def models() -> ModelDocs | None:
        try:
            return read_model_docs(artefacts_dir())
        except (OSError, ValueError) as error:  # a manifest being written, or unreadable: the page says none
            log.warning("reading the dbt manifest: %s", error)
            return None

    def load() -> Report:
        try:
            url, root = database_url(), docs_root()
        except ValidationError as error:
            raise settings_problem(error) from error
        return read_report(url, root, models_docs=models() is not None, now=clock() if clock else None)

    @app.exception_handler(PageUnavailable)
    async def unavailable(request: Request, problem: PageUnavailable) -> Response:
        log.warning("data-quality report unavailable: %s (%s)", problem, problem.detail)
        if request.url.path.rstrip("/").endswith("/api/runs"):
            return JSONResponse({"detail": str(problem), "error": problem.detail}, status_code=503)
        return HTMLResponse(render_unavailable(problem), status_code=503, headers=PAGE_HEADERS)

    if login_url is not None:
        redirect_to_login(app, login_url)

    @app.get("/", response_class=HTMLResponse, summary="The data-quality report page")
    def page(failed: bool = False) -> HTMLResponse:
        return HTMLResponse(render_page(load(), failed_only=failed), headers=PAGE_HEADERS)

    @app.get("/models", response_class=HTMLResponse, summary="The dbt models, from the newest build's manifest")
    def models_page() -> HTMLResponse:
        report = load()
        return HTMLResponse(render_models(models(), report.dbt_history), headers=PAGE_HEADERS)

    @app.get("/api/runs", summary="The validation runs, the dbt test results and the reliability per day, as JSON")
    def runs() -> JSONResponse:
        return JSONResponse(load().as_json(), headers={"Cache-Control": "no-store"})

    @app.get("/data-docs/{path:path}", summary="The Great Expectations Data Docs site")
    async def data_docs(path: str, request: Request) -> Response:
        try:
            root = docs_root()
        except ValidationError as error:
            raise settings_problem(error) from error
        if not root.is_dir():
            return HTMLResponse(
                render_unavailable(
                    PageUnavailable(
                        "No Data Docs yet",
                        "The weekly DAG's validate task writes them on its first run.",
                        f"{root} does not exist",
                    )
                ),
                status_code=404,
                headers=PAGE_HEADERS,
            )
        # StaticFiles' own lookup: no path outside the site, no symlinks out of it, index.html for directories
        static = StaticFiles(directory=root, html=True, check_dir=False)
        relative = os.path.normpath(os.path.join(*path.split("/"))) if path else "."
        response = await static.get_response(relative, request.scope)
        served = getattr(response, "path", None)
        if response.status_code != 200 or not served or not str(served).endswith((".html", ".css")):
            return response
        # GX's pages and styles name CDN and S3 assets: the same files, served from here
        text = data_docs_offline.rewrite(Path(served).read_text(encoding="utf-8", errors="replace"), path)
        media_type = "text/html" if str(served).endswith(".html") else "text/css"
        return Response(text, media_type=media_type, headers=DATA_DOCS_HEADERS)

    vendor = StaticFiles(directory=data_docs_offline.VENDOR_DIR, check_dir=False)

    @app.get(f"/{data_docs_offline.VENDOR_ROUTE}/{{path:path}}", summary="The Data Docs' scripts, styles and fonts")
    async def data_docs_vendor(path: str, request: Request) -> Response:
        relative = os.path.normpath(os.path.join(*path.split("/"))) if path else "."
        response = await vendor.get_response(relative, request.scope)
        response.headers["Cache-Control"] = "max-age=86400"  # versioned paths: they never change
        return response

    return app


def data_docs_href(page: str) -> str:
    """The link to a page of the Data Docs site, relative to the report page."""
    return "data-docs/" + quote(page)


def model_href(name: str) -> str:
    """The link to a model's (or source's) section of the models page, relative to the report page."""
    return "models#" + quote(model_anchor(name))


_environment.filters["docs_href"] = data_docs_href
_environment.filters["model_href"] = model_href
_environment.filters["model_anchor"] = model_anchor
