"""The data-quality report: the validation runs, their failing expectations, Data Docs, reliability per day.

``create_app()`` is a small FastAPI app. ``plugins/telemetry_report.py`` mounts it in the Airflow
api-server at ``/telemetry-quality`` (with Airflow's login in front of it) and puts a "Data quality"
link in the UI's Browse menu; it runs on its own too (``uvicorn --factory collectors.orchestration.report:create_app``).

* ``GET /``: an HTML page (Jinja2, autoescaped: nothing read from the database reaches the page
  unescaped): the last validation runs, newest first, one per weekly DAG run (the rows
  ``collectors.orchestration.validation.validate_week`` stored in ``quality.validation_runs``) with verdict,
  assets and failing expectations; a link to the Great Expectations Data Docs; an inline SVG of
  ``marts.fct_reliability_daily`` (the last 30 days there are). No JavaScript, no external assets.
* ``GET /api/runs``: the same runs and days as JSON.
* ``GET /data-docs/<path>``: the Data Docs site, ``<gx_dir>/uncommitted/data_docs/local_site/``.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError
from starlette.staticfiles import StaticFiles

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
DATA_DOCS_SITE = "local_site"  # collectors.orchestration.validation.SITE (not imported: that module is the GX side)
RUN_LIMIT = 30  # validation runs on the page
CHART_DAYS = 30  # days of marts.fct_reliability_daily in the chart
TEXT_LIMIT = 300  # longest observed value / error shown per failing expectation
CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 15_000
# the report's own pages: no script, no external anything; framed only by the Airflow UI (same origin)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


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
    def verdict(self) -> str:
        return "PASSED" if self.passed else "FAILED"

    @property
    def asset_count(self) -> int:
        return len({asset.asset for asset in self.assets})

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(verdict=self.verdict, asset_count=self.asset_count)
        for key in ("window_start", "window_end", "started_at", "finished_at"):
            data[key] = data[key].isoformat()
        return data


@dataclass(frozen=True)
class DayReliability:
    day: dt.date
    reliability: float | None  # null when no channel was measurable that day


@dataclass(frozen=True)
class Report:
    runs: list[ValidationRun]
    days: list[DayReliability] | None  # None: marts.fct_reliability_daily cannot be read
    days_note: str | None = None  # why not, or that it is empty
    data_docs: bool = False  # the Data Docs index exists

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": [run.as_json() for run in self.runs],
            "reliability_daily": None
            if self.days is None
            else [{"day": d.day.isoformat(), "reliability": d.reliability} for d in self.days],
            "reliability_note": self.days_note,
            "data_docs": "data-docs/index.html" if self.data_docs else None,
        }


class ReportUnavailable(Exception):
    """The report cannot be made; ``str()`` says what to do. Served as 503."""

    def __init__(self, title: str, advice: str, detail: str = "") -> None:
        super().__init__(f"{title}: {advice}")
        self.title = title
        self.advice = advice
        self.detail = detail


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
    text = str(error).strip().splitlines()
    return text[0][:TEXT_LIMIT] if text else type(error).__name__


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
    return FailingExpectation(
        suite=suite,
        asset=asset,
        expectation=str(failure.get("expectation") or "?"),
        column=str(column) if column else None,
        description=_short(failure.get("description")),
        observed=_short(failure.get("observed")),
        error=_short(failure.get("exception")),
    )


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


def read_report(database_url: str, docs_root: Path, *, limit: int = RUN_LIMIT, days: int = CHART_DAYS) -> Report:
    """Read the runs and the days from the warehouse; raise ``ReportUnavailable`` saying what to do."""
    where = _where(database_url)
    try:
        conn = psycopg.connect(
            database_url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options=f"-c timezone=UTC -c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="telemetry-quality-report",
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise ReportUnavailable(
            f"The warehouse database {where} cannot be reached",
            "Check that PostgreSQL is up and that TELEMETRY_DATABASE_URL (or the Airflow connection "
            "telemetry_warehouse) of the Airflow api-server names the warehouse, then reload this page.",
            _first_line(error),
        ) from error
    with conn:
        try:
            rows = conn.execute(RUNS_QUERY, {"limit": limit}).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as error:
            raise ReportUnavailable(
                f"The warehouse {where} has no quality.validation_runs table yet",
                "Run the migrations (telemetry-db migrate, or make demo), then reload this page.",
                _first_line(error),
            ) from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise ReportUnavailable(
                f"The database role may not read quality.validation_runs in {where}",
                "Grant it the telemetry_reviewer role (select on the quality ledgers), then reload this page.",
                _first_line(error),
            ) from error
        except psycopg.Error as error:
            raise ReportUnavailable(
                f"Reading quality.validation_runs from {where} failed",
                "See the api-server log; reload this page when the warehouse is healthy.",
                _first_line(error),
            ) from error
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
    return Report(_runs(rows, docs_root), reliability, note, (docs_root / "index.html").is_file())


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


def render_page(report: Report, *, generated_at: dt.datetime | None = None) -> str:
    return _environment.get_template("report.html").render(
        report=report,
        chart=chart(report.days or []),
        generated_at=generated_at or dt.datetime.now(dt.UTC),
        run_limit=RUN_LIMIT,
        chart_days=CHART_DAYS,
    )


def render_unavailable(problem: ReportUnavailable) -> str:
    return _environment.get_template("unavailable.html").render(problem=problem)


# --------------------------------------------------------------------------- the app


def _default_database_url() -> str:
    from collectors.config import get_settings

    return get_settings().database_url


def _default_docs_root() -> Path:
    from collectors.config import get_settings

    return Path(get_settings().gx_dir) / "uncommitted" / "data_docs" / DATA_DOCS_SITE


def create_app(
    *,
    database_url: Callable[[], str] = _default_database_url,
    docs_root: Callable[[], Path] = _default_docs_root,
    dependencies: Sequence[Any] = (),
    login_url: Callable[[str], str] | None = None,
) -> FastAPI:
    """The report app.

    ``database_url`` and ``docs_root`` are read at every request (from ``collectors.config`` by
    default). ``dependencies`` guard every route (the plugin passes Airflow's authentication); when
    one refuses an HTML page with 401/403 and ``login_url`` is given, the browser is sent to
    ``login_url(<this page>)`` instead.
    """
    app = FastAPI(
        title="Telemetry data quality",
        description="Validation runs, failing expectations, Data Docs and reliability per day.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
    )

    def settings_problem(error: ValidationError) -> ReportUnavailable:
        return ReportUnavailable(
            "The TELEMETRY_* settings of the api-server are invalid",
            "Fix them (see collectors/config.py) and restart the api-server.",
            _first_line(error),
        )

    def load() -> Report:
        try:
            url, root = database_url(), docs_root()
        except ValidationError as error:
            raise settings_problem(error) from error
        return read_report(url, root)

    @app.exception_handler(ReportUnavailable)
    async def unavailable(request: Request, problem: ReportUnavailable) -> Response:
        log.warning("data-quality report unavailable: %s (%s)", problem, problem.detail)
        if request.url.path.rstrip("/").endswith("/api/runs"):
            return JSONResponse({"detail": str(problem), "error": problem.detail}, status_code=503)
        return HTMLResponse(render_unavailable(problem), status_code=503, headers=PAGE_HEADERS)

    if login_url is not None:

        @app.exception_handler(HTTPException)
        async def to_login(request: Request, error: HTTPException) -> Response:
            wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
            if error.status_code in (401, 403) and wants_html:
                return RedirectResponse(login_url(str(request.url)), status_code=307)
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.get("/", response_class=HTMLResponse, summary="The data-quality report page")
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(load()), headers=PAGE_HEADERS)

    @app.get("/api/runs", summary="The validation runs and the reliability per day, as JSON")
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
                    ReportUnavailable(
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
        return await static.get_response(relative, request.scope)

    return app


def data_docs_href(page: str) -> str:
    """The link to a page of the Data Docs site, relative to the report page."""
    return "data-docs/" + quote(page)


_environment.filters["docs_href"] = data_docs_href
