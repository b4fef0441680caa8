"""Dashboards for analysts: the marts as charts, each with its table and its CSV, beside the data-quality report.

``create_app()`` is a small FastAPI app; ``plugins/telemetry_report.py`` mounts it in the Airflow
api-server at ``/telemetry-dashboards`` (Airflow's login in front, as for the report) with a "Dashboards"
entry in the Browse menu. It runs on its own too (``uvicorn --factory collectors.orchestration.dashboards:create_app``).

* ``GET /``: the list of dashboards.
* ``GET /<dashboard>?start=&end=&channel=&host=&funnel=&grain=&day=``: the dashboard's charts for the period
  [start, end] (dates, UTC, both included; default the last four weeks), each a plotly figure, its rows as
  a table (``<details>``) and a link to them as CSV.
* ``GET /<dashboard>/<chart>.csv?...``: every row behind one chart, as the page's query gives them.
* ``GET /static/plotly.min.js``: plotly.js from the installed plotly wheel. The pages load nothing else from
  anywhere: the Content-Security-Policy allows scripts from this app only (and the page's own inline
  figure scripts, by a nonce per response).

The SQL is in :mod:`collectors.orchestration.dashboard_queries` (marts only, parameterised, bounded by the
period). The threshold lines of the host and game-server charts are the dbt project's threshold vars,
the ones the marts count warning and critical minutes with. No Airflow or dbt import here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import plotly
import plotly.graph_objects as go
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import ValidationError

from collectors.orchestration import dashboard_figures as figures
from collectors.orchestration import dashboard_queries as q
from collectors.orchestration import pages
from collectors.orchestration.dashboard_figures import (
    NOT_YET_KNOWN,
    Rows,
)
from collectors.orchestration.pages import (
    PageUnavailable,
    first_line,
    redirect_to_login,
    settings_problem,
    template_environment,
)

log = logging.getLogger(__name__)

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
DEFAULT_DAYS = 28  # the period when the page names none: the last four weeks, today included
MAX_DAYS = 400  # the longest period a page may ask for (every query is bounded by it)
TABLE_ROWS = 500  # rows shown in a chart's table; the CSV has them all
WORST_CHANNELS = 10

_environment = template_environment()


# --------------------------------------------------------------------------- what a page asks for


@dataclass(frozen=True)
class Filters:
    """The period [start, end] (dates, both included) and the optional filters of one page."""

    start: dt.date
    end: dt.date
    channel: str | None = None
    host: str | None = None
    funnel: str | None = None
    grain: str = "day"  # funnels: by entry day or entry week
    day: dt.date | None = None  # the day log's day

    def params(self) -> dict[str, object]:
        """The queries' parameters: dates for daily and weekly marts, UTC timestamps for hourly ones, end excluded."""
        end = self.end + dt.timedelta(days=1)
        return {
            "start": self.start,
            "end": end,
            "start_ts": dt.datetime.combine(self.start, dt.time(), dt.UTC),
            "end_ts": dt.datetime.combine(end, dt.time(), dt.UTC),
            "channel": self.channel,
            "host": self.host,
            "funnel": self.funnel,
            "day": self.day,
            "limit": WORST_CHANNELS,
        }

    def query_string(self, **changes: object) -> str:
        values: dict[str, object] = {
            "start": self.start,
            "end": self.end,
            "channel": self.channel,
            "host": self.host,
            "funnel": self.funnel,
            "grain": self.grain,
            "day": self.day,
        }
        values.update(changes)
        return urlencode({k: str(v) for k, v in values.items() if v not in (None, "")})


def parse_filters(
    start: dt.date | None,
    end: dt.date | None,
    *,
    today: dt.date | None = None,
    **rest: Any,
) -> Filters:
    today = today or dt.datetime.now(dt.UTC).date()
    end = end or today
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise HTTPException(status_code=422, detail="start must not be after end")
    if (end - start).days + 1 > MAX_DAYS:
        raise HTTPException(status_code=422, detail=f"a period is at most {MAX_DAYS} days")
    if rest.get("grain") not in ("day", "week"):
        rest["grain"] = "day"
    return Filters(start, end, **{k: (v or None) if k != "grain" else v for k, v in rest.items()})


Text = Annotated[str | None, Query(max_length=200)]


def filters_of(
    start: Annotated[dt.date | None, Query()] = None,
    end: Annotated[dt.date | None, Query()] = None,
    channel: Text = None,
    host: Text = None,
    funnel: Text = None,
    grain: Annotated[str, Query(pattern="^(day|week)$")] = "day",
    day: Annotated[dt.date | None, Query()] = None,
) -> Filters:
    """The page's query parameters (a FastAPI dependency)."""
    return parse_filters(start, end, channel=channel, host=host, funnel=funnel, grain=grain, day=day)


# --------------------------------------------------------------------------- charts

Figure = Callable[[Rows, Filters], go.Figure]


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    query: Callable[[Filters], q.Query]
    figure: Figure
    note: str = ""
    null_label: str = ""  # how a NULL shows in the table


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    description: str
    charts: tuple[Chart, ...]
    filters: tuple[str, ...] = ()  # channel, host, funnel, grain, day

    def chart(self, slug: str) -> Chart:
        for chart in self.charts:
            if chart.slug == slug:
                return chart
        raise HTTPException(status_code=404, detail=f"no chart {slug} on {self.slug}")


def _fixed(query: q.Query) -> Callable[[Filters], q.Query]:
    return lambda _filters: query


def _funnel_by_grain(filters: Filters) -> q.Query:
    return q.FUNNEL_WEEKLY if filters.grain == "week" else q.FUNNEL_DAILY


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "day-log",
        "Day log",
        "Users online per segment of a day, by state, and battles (fct_telemetry_day), and the days of the period.",
        (
            Chart(
                "segments",
                "Users online and battles per segment",
                _fixed(q.DAY_LOG_SEGMENTS),
                figures.day_log_figure,
                "Averages over the observed minutes of each segment; the states stack, total counts a user once.",
            ),
            Chart("days", "Days of the period", _fixed(q.DAY_LOG_DAYS), figures.day_summary_figure),
        ),
        ("day",),
    ),
    Dashboard(
        "user-minutes",
        "User-minutes",
        "User-minutes per day and state: distinct minutes each user spent in a state, summed over users.",
        (Chart("user-minutes", "User-minutes per day", _fixed(q.USER_MINUTES), figures.user_minutes_figure),),
    ),
    Dashboard(
        "reliability",
        "Reliability",
        "Chat delivery reliability per channel (Rch) and overall (R, the mean over measured channels), "
        "against the status-compatible value.",
        (
            Chart(
                "worst-channels",
                f"The {WORST_CHANNELS} worst channels: their worst day and the mean of their days",
                _fixed(q.WORST_CHANNELS),
                figures.worst_channels_figure,
            ),
            Chart(
                "channel-days",
                "Channel by day",
                _fixed(q.CHANNEL_DAYS),
                figures.channel_heatmap_figure,
                "An empty cell: nothing measurable that day (Rch is null).",
            ),
            Chart(
                "overall",
                "Overall R and status-compat R per day",
                _fixed(q.OVERALL_RELIABILITY),
                figures.overall_reliability_figure,
            ),
        ),
        ("channel",),
    ),
    Dashboard(
        "hosts",
        "Hosts and game servers",
        "CPU, memory, tick rate, p95 tick duration and p95 ping per hour, with the warning and critical thresholds.",
        (
            Chart("hosts", "Hosts (host collector)", _fixed(q.HOST_METRICS), figures.host_metrics_figure),
            Chart("servers", "Game servers (server reports)", _fixed(q.SERVER_METRICS), figures.server_metrics_figure),
        ),
        ("host",),
    ),
    Dashboard(
        "funnels",
        "Funnels",
        "Each funnel's steps by entry day or week: users who reached a step, conversion, drop-off and immature.",
        (
            Chart(
                "steps",
                "Steps of the last entry period",
                _funnel_by_grain,
                figures.funnel_steps_figure,
                "Immature: the attempt stopped while its window was still open; not drop-off yet.",
            ),
            Chart(
                "conversion",
                "Conversion from the first step per entry period",
                _funnel_by_grain,
                figures.funnel_conversion_figure,
            ),
        ),
        ("funnel", "grain"),
    ),
    Dashboard(
        "retention",
        "Retention",
        "Weekly retention per signup cohort (cohorts of the period) and the average over matured cohorts.",
        (
            Chart(
                "cohorts",
                "Cohort by week",
                _fixed(q.RETENTION_COHORTS),
                figures.retention_heatmap_figure,
                f"“{NOT_YET_KNOWN}”: the week has not ended in the data yet (NULL in the mart, never 0).",
                NOT_YET_KNOWN,
            ),
            Chart(
                "average",
                "Average retention curve (all cohorts)",
                _fixed(q.RETENTION_AVERAGE),
                figures.retention_average_figure,
            ),
        ),
    ),
    Dashboard(
        "product",
        "Feature adoption and events",
        "Weekly adoption of each event with its trend, and event counts per channel and day.",
        (
            Chart("adoption", "Feature adoption per week", _fixed(q.FEATURE_ADOPTION), figures.adoption_figure),
            Chart("events", "Events per channel and day", _fixed(q.EVENT_COUNTS), figures.event_counts_figure),
        ),
        ("channel",),
    ),
)
BY_SLUG = {d.slug: d for d in DASHBOARDS}


# --------------------------------------------------------------------------- reading and rendering


def cell(value: Any, null_label: str = "") -> str:
    """A value as the table shows it."""
    if value is None:
        return null_label
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (Decimal, float)):
        return f"{float(value):.6g}"
    return str(value)


def csv_value(value: Any) -> str:
    """A value as the CSV has it: exact (numeric as PostgreSQL gives it), ISO 8601 times, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def to_csv(rows: Rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows.columns)
    writer.writerows([csv_value(v) for v in row] for row in rows.rows)
    return out.getvalue()


def connect(database_url: str) -> psycopg.Connection:
    return pages.connect(
        database_url, application_name="telemetry-dashboards", title="The warehouse database cannot be reached"
    )


def read_rows(conn: psycopg.Connection, query: q.Query, filters: Filters) -> tuple[Rows | None, str | None]:
    """The chart's rows, or why there are none (a mart not built yet, a role that may not read it)."""
    try:
        columns, rows = q.fetch(conn, query, filters.params())
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None, f"marts.{query.mart} is not built yet: the telemetry DAGs (dbt) build it."
    except psycopg.errors.InsufficientPrivilege:
        return None, f"The database role may not read marts.{query.mart} (grant telemetry_analyst)."
    except psycopg.Error as error:
        log.warning("reading marts.%s: %s", query.mart, error)
        return None, f"marts.{query.mart} could not be read: {first_line(error)}"
    return Rows(columns, rows), None if rows else f"marts.{query.mart} has no rows in this period."


@dataclass
class ShownChart:
    chart: Chart
    query: q.Query
    rows: Rows | None
    note: str | None
    figure_html: str = ""
    csv_href: str = ""
    table: list[list[str]] = field(default_factory=list)


def render_figure(figure: go.Figure, div_id: str, nonce: str) -> str:
    html = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        # no plotly logo link, no "share chart" upload to plotly's cloud (the CSP would refuse it anyway)
        config={"displaylogo": False, "responsive": True, "showSendToCloud": False},
    )
    # plotly escapes the data in its script (</ as \u003c\u002f); the nonce lets the page's CSP run it
    return html.replace("<script>", f'<script nonce="{nonce}">')


def resolve(conn: psycopg.Connection, dashboard: Dashboard, filters: Filters) -> tuple[Filters, dict[str, list[str]]]:
    """The filters' choices in the period, and the defaults a page fills in: the first funnel, the last day."""
    params = filters.params()
    options: dict[str, list[str]] = {}
    try:
        for kind in ("channel", "host", "funnel"):
            if kind in dashboard.filters:
                options[kind] = q.choices(conn, kind, params)
        if "funnel" in dashboard.filters and filters.funnel is None and options["funnel"]:
            filters = replace(filters, funnel=options["funnel"][0])
        if "day" in dashboard.filters and filters.day is None:
            last = conn.execute(q.DAY_LOG_LAST_DAY, params).fetchone()  # type: ignore[arg-type]
            filters = replace(filters, day=(last[0] if last and last[0] else filters.end))
    except psycopg.Error as error:  # a mart not built yet: each chart says which, below
        log.info("dashboard %s: the filters' choices could not be read: %s", dashboard.slug, first_line(error))
    for kind in ("channel", "host", "funnel"):
        options.setdefault(kind, [])
    if "day" in dashboard.filters and filters.day is None:
        filters = replace(filters, day=filters.end)
    return filters, options


def render_dashboard(conn: psycopg.Connection, dashboard: Dashboard, filters: Filters, nonce: str) -> str:
    filters, options = resolve(conn, dashboard, filters)
    shown = []
    for chart in dashboard.charts:
        query = chart.query(filters)
        rows, note = read_rows(conn, query, filters)
        item = ShownChart(
            chart, query, rows, note, csv_href=f"{dashboard.slug}/{chart.slug}.csv?{filters.query_string()}"
        )
        if rows is not None and rows.rows:
            item.figure_html = render_figure(chart.figure(rows, filters), f"chart-{chart.slug}", nonce)
            item.table = [[cell(v, chart.null_label) for v in row] for row in rows.rows[:TABLE_ROWS]]
        shown.append(item)
    return _environment.get_template("dashboard.html").render(
        dashboards=DASHBOARDS,
        dashboard=dashboard,
        filters=filters,
        options=options,
        charts=shown,
        table_rows=TABLE_ROWS,
        nonce=nonce,
        generated_at=dt.datetime.now(dt.UTC),
    )


def page_headers(nonce: str | None) -> dict[str, str]:
    script = f"script-src 'self' 'nonce-{nonce}'; " if nonce else ""
    return {
        "Cache-Control": "no-store",
        # nothing from anywhere but this app: plotly.js is served here; plotly draws with inline styles and
        # data: images (its mode bar icons are SVG)
        "Content-Security-Policy": f"default-src 'none'; {script}style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'none'; frame-ancestors 'self'; base-uri 'none'; "
        "form-action 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


# --------------------------------------------------------------------------- the app


def _default_database_url() -> str:
    from collectors.config import get_settings

    return get_settings().database_url


def create_app(
    *,
    database_url: Callable[[], str] = _default_database_url,
    dependencies: Sequence[Any] = (),
    login_url: Callable[[str], str] | None = None,
) -> FastAPI:
    """The dashboards app; ``database_url`` is read at every request, ``dependencies`` guard every route (the
    plugin passes Airflow's authentication), ``login_url(<this page>)`` is where a refused browser goes."""
    app = FastAPI(
        title="Telemetry dashboards",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
    )

    def url() -> str:
        try:
            return database_url()
        except ValidationError as error:
            raise settings_problem(first_line(error)) from error

    @app.exception_handler(PageUnavailable)
    async def unavailable(request: Request, problem: PageUnavailable) -> Response:
        log.warning("dashboards unavailable: %s (%s)", problem, problem.detail)
        html = _environment.get_template("dashboard_unavailable.html").render(problem=problem)
        return HTMLResponse(html, status_code=503, headers=page_headers(None))

    if login_url is not None:
        redirect_to_login(app, login_url)

    @app.get("/static/plotly.min.js", summary="plotly.js, from the installed plotly wheel")
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", response_class=HTMLResponse, summary="The dashboards")
    def index() -> HTMLResponse:
        html = _environment.get_template("dashboard_index.html").render(dashboards=DASHBOARDS)
        return HTMLResponse(html, headers=page_headers(None))

    @app.get("/{slug}", response_class=HTMLResponse, summary="One dashboard")
    def dashboard(slug: str, filters: Annotated[Filters, Depends(filters_of)]) -> HTMLResponse:
        board = BY_SLUG.get(slug)
        if board is None:
            raise HTTPException(status_code=404, detail=f"no dashboard {slug}")
        nonce = secrets.token_urlsafe(16)
        with connect(url()) as conn:
            html = render_dashboard(conn, board, filters, nonce)
        return HTMLResponse(html, headers=page_headers(nonce))

    @app.get("/{slug}/{chart}.csv", summary="The rows behind one chart, as CSV")
    def chart_csv(slug: str, chart: str, filters: Annotated[Filters, Depends(filters_of)]) -> Response:
        board = BY_SLUG.get(slug)
        if board is None:
            raise HTTPException(status_code=404, detail=f"no dashboard {slug}")
        spec = board.chart(chart)
        with connect(url()) as conn:
            filters, _ = resolve(conn, board, filters)
            rows, note = read_rows(conn, spec.query(filters), filters)
        if rows is None:
            raise HTTPException(status_code=503, detail=note)
        name = f"{slug}-{chart}-{filters.start}-{filters.end}.csv"
        return Response(
            to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    return app
