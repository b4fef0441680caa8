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
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import plotly
import plotly.graph_objects as go
import psycopg
import yaml
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from plotly.subplots import make_subplots
from pydantic import ValidationError

from collectors.orchestration import dashboard_queries as q

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
DEFAULT_DAYS = 28  # the period when the page names none: the last four weeks, today included
MAX_DAYS = 400  # the longest period a page may ask for (every query is bounded by it)
TABLE_ROWS = 500  # rows shown in a chart's table; the CSV has them all
WORST_CHANNELS = 10
CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 15_000
NOT_YET_KNOWN = "not yet known"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class DashboardUnavailable(Exception):
    """The warehouse cannot be read; ``str()`` says what to do. Served as 503."""

    def __init__(self, title: str, advice: str, detail: str = "") -> None:
        super().__init__(f"{title}: {advice}")
        self.title = title
        self.advice = advice
        self.detail = detail


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


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Threshold:
    metric: str  # cpu_percent, memory_percent, tick_rate, ping_p95_ms
    warning: float
    critical: float


@cache
def thresholds(project_dir: Path | None = None) -> dict[str, Threshold]:
    """Warning and critical lines: the dbt project's vars (``<metric>_warning`` / ``_critical``), the numbers
    the marts count warning and critical minutes with; ``alerts.yml`` fires on the same ones."""
    if project_dir is None:
        from collectors.config import default_dbt_project

        project_dir = default_dbt_project()
    variables = yaml.safe_load((project_dir / "dbt_project.yml").read_text())["vars"]
    return {
        metric: Threshold(metric, float(variables[f"{metric}_warning"]), float(variables[f"{metric}_critical"]))
        for metric in ("cpu_percent", "memory_percent", "tick_rate", "ping_p95_ms")
    }


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


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


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _layout(fig: go.Figure, *, y_title: str = "", height: int = 380, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.18},
        yaxis_title=y_title,
        **kwargs,
    )
    return fig


def _lines_by(rows: Rows, key: str, x: str, y: str, *, mode: str = "lines+markers") -> list[go.Scatter]:
    series: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in rows.dicts():
        xs, ys = series.setdefault(str(row[key]), ([], []))
        xs.append(row[x])
        ys.append(_num(row[y]))
    return [go.Scatter(x=xs, y=ys, name=name, mode=mode) for name, (xs, ys) in series.items()]


STATES = ("player", "spectator", "lobby", "menu")


def day_log_figure(rows: Rows, filters: Filters) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = rows.column("segment_start")
    for state in STATES:
        fig.add_trace(
            go.Scatter(x=x, y=[_num(v) for v in rows.column(state)], name=state, stackgroup="users", mode="lines"),
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(x=x, y=[_num(v) for v in rows.column("total")], name="total (distinct)", line={"color": "#222"}),
        secondary_y=False,
    )
    for kind, dash in (("battles_in_progress", "solid"), ("battles_lobby", "dot")):
        fig.add_trace(
            go.Scatter(x=x, y=[_num(v) for v in rows.column(kind)], name=kind.replace("_", " "), line={"dash": dash}),
            secondary_y=True,
        )
    fig.update_yaxes(title_text="average users online", secondary_y=False)
    fig.update_yaxes(title_text="average battles", secondary_y=True, rangemode="tozero")
    return _layout(fig)


def day_summary_figure(rows: Rows, filters: Filters) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = rows.column("day")
    fig.add_trace(go.Bar(x=x, y=rows.column("unique_users"), name="unique users", opacity=0.6), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=rows.column("peak_total"), name="peak online"), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=rows.column("battles"), name="battles", line={"dash": "dot"}), secondary_y=True)
    fig.update_yaxes(title_text="users", secondary_y=False)
    fig.update_yaxes(title_text="battles", secondary_y=True, rangemode="tozero")
    return _layout(fig)


def user_minutes_figure(rows: Rows, filters: Filters) -> go.Figure:
    fig = go.Figure(_lines_by(rows, "state", "day", "user_minutes"))
    return _layout(fig, y_title="user-minutes per day")


def worst_channels_figure(rows: Rows, filters: Filters) -> go.Figure:
    channels = [str(c) for c in rows.column("channel_id")][::-1]  # the worst on top
    fig = go.Figure(
        [
            go.Bar(
                y=channels,
                x=[_num(v) for v in rows.column("worst_day_reliability")][::-1],
                name="worst day",
                orientation="h",
            ),
            go.Bar(
                y=channels,
                x=[_num(v) for v in rows.column("mean_daily_reliability")][::-1],
                name="mean of the days",
                orientation="h",
            ),
        ]
    )
    low = min([v for v in fig.data[0].x if v is not None], default=0.9)
    fig.update_xaxes(range=[max(0.0, low - 0.02), 1.0])
    return _layout(fig, barmode="group", xaxis_title="Rch", height=max(260, 60 + 40 * len(channels)))


def _grid(rows: Rows, row_key: str, column_key: str, value: str) -> tuple[list[Any], list[Any], list[list[Any]]]:
    ys = sorted({r[row_key] for r in rows.dicts()}, key=str)
    xs = sorted({r[column_key] for r in rows.dicts()})
    cells = {(r[row_key], r[column_key]): r[value] for r in rows.dicts()}
    return ys, xs, [[cells.get((y, x), "missing") for x in xs] for y in ys]


def channel_heatmap_figure(rows: Rows, filters: Filters) -> go.Figure:
    channels, days, grid = _grid(rows, "channel_id", "day", "reliability")
    z = [[None if v in (None, "missing") else float(v) for v in line] for line in grid]
    text = [["-" if v in (None, "missing") else f"{float(v):.3f}" for v in line] for line in grid]
    fig = go.Figure(
        go.Heatmap(
            x=[str(d) for d in days],  # a day per column, not a time axis
            y=[str(c) for c in channels],
            z=z,
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmin=min([v for line in z for v in line if v is not None], default=0.9),
            zmax=1,
            hovertemplate="%{y} %{x}: Rch %{text}<extra></extra>",
            colorbar={"title": {"text": "Rch"}},
        )
    )
    fig.update_xaxes(type="category")
    return _layout(fig, height=max(260, 80 + 32 * len(channels)), plot_bgcolor="#eeeeee")


def overall_reliability_figure(rows: Rows, filters: Filters) -> go.Figure:
    x = rows.column("day")
    fig = go.Figure(
        [
            go.Scatter(x=x, y=[_num(v) for v in rows.column("reliability")], name="R (mean Rch of measured channels)"),
            go.Scatter(
                x=x,
                y=[_num(v) for v in rows.column("status_compat_reliability")],
                name="status-compat R",
                line={"dash": "dot"},
            ),
        ]
    )
    return _layout(fig, y_title="reliability")


def _metrics_figure(rows: Rows, key: str, panels: Sequence[tuple[str, str, str | None]]) -> go.Figure:
    """One panel per metric (column, title, threshold metric), a line per host, the threshold lines across."""
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=[t for _, t, _ in panels])
    lines = thresholds()
    colors = plotly.colors.qualitative.Plotly
    hosts = sorted({str(r[key]) for r in rows.dicts()})
    for index, (column, _, metric) in enumerate(panels, start=1):
        for h, host in enumerate(hosts):
            mine = [r for r in rows.dicts() if str(r[key]) == host]
            fig.add_trace(
                go.Scatter(
                    x=[r["hour_start"] for r in mine],
                    y=[_num(r[column]) for r in mine],
                    name=host,
                    legendgroup=host,
                    showlegend=index == 1,
                    mode="lines",
                    line={"color": colors[h % len(colors)]},
                ),
                row=index,
                col=1,
            )
        if metric is not None:
            for level, color in (("warning", "#d4a72c"), ("critical", "#cf222e")):
                value = getattr(lines[metric], level)
                fig.add_hline(
                    y=value,
                    line={"color": color, "dash": "dash", "width": 1},
                    annotation_text=f"{level} {value:g}",
                    annotation_font_color=color,
                    row=index,
                    col=1,
                )
    fig.update_layout(height=170 * len(panels) + 80)
    return _layout(fig, height=170 * len(panels) + 80)


def host_metrics_figure(rows: Rows, filters: Filters) -> go.Figure:
    return _metrics_figure(
        rows,
        "host_id",
        (
            ("cpu_percent_avg", "CPU % (hourly mean)", "cpu_percent"),
            ("memory_percent_avg", "memory % (hourly mean)", "memory_percent"),
            ("tick_rate_avg", "tick rate, FPS (hourly mean)", "tick_rate"),
            ("tick_duration_ms_p95", "tick duration p95, ms", None),
            ("player_ping_ms_p95", "player ping p95, ms", "ping_p95_ms"),
        ),
    )


def server_metrics_figure(rows: Rows, filters: Filters) -> go.Figure:
    return _metrics_figure(
        rows,
        "server_id",
        (
            ("cpu_usage_percent_avg", "CPU % (hourly mean)", "cpu_percent"),
            ("memory_usage_percent_avg", "memory % (hourly mean)", "memory_percent"),
            ("tick_rate_fps_min", "tick rate, FPS (hourly minimum)", "tick_rate"),
            ("tick_duration_p95_max", "tick duration p95, ms (hourly maximum)", None),
            ("ping_p95_max", "player ping p95, ms (hourly maximum)", "ping_p95_ms"),
        ),
    )


def _step_label(row: dict[str, Any]) -> str:
    return f"{row['step']} · {row['event']}"


def funnel_steps_figure(rows: Rows, filters: Filters) -> go.Figure:
    """The last entry period of the page: per step, who reached it, who dropped off, who may still convert."""
    periods = sorted({r["entry_period"] for r in rows.dicts()})
    last = [r for r in rows.dicts() if periods and r["entry_period"] == periods[-1]]
    steps = [_step_label(r) for r in last]
    conversion = [
        f"{float(r['conversion_from_start']):.1%}" if r["conversion_from_start"] is not None else "" for r in last
    ]
    fig = go.Figure(
        [
            go.Bar(x=steps, y=[r["users"] for r in last], name="reached", text=conversion, textposition="outside"),
            go.Bar(x=steps, y=[r["drop_off"] or 0 for r in last], name="dropped off after the previous step"),
            go.Bar(x=steps, y=[r["immature"] or 0 for r in last], name="immature (may still convert)"),
        ]
    )
    title = f"entry {filters.grain} {periods[-1]}" if periods else "no entries in the period"
    return _layout(fig, barmode="group", y_title="users", title={"text": title, "font": {"size": 13}})


def funnel_conversion_figure(rows: Rows, filters: Filters) -> go.Figure:
    data = [r for r in rows.dicts() if r["step"] != 1]
    series: dict[str, tuple[list[Any], list[Any]]] = {}
    for r in data:
        xs, ys = series.setdefault(_step_label(r), ([], []))
        xs.append(r["entry_period"])
        ys.append(_num(r["conversion_from_start"]))
    fig = go.Figure([go.Scatter(x=xs, y=ys, name=name, mode="lines+markers") for name, (xs, ys) in series.items()])
    return _layout(fig, y_title="conversion from the first step", yaxis_tickformat=".0%")


def retention_heatmap_figure(rows: Rows, filters: Filters) -> go.Figure:
    cohorts, offsets, grid = _grid(rows, "cohort_week", "week_offset", "retention_exact")
    z = [[None if v in (None, "missing") else float(v) for v in line] for line in grid]
    text = [
        [NOT_YET_KNOWN if v is None else ("" if v == "missing" else f"{float(v):.1%}") for v in line] for line in grid
    ]
    fig = go.Figure(
        go.Heatmap(
            x=[f"week {o}" for o in offsets],
            y=[str(c) for c in cohorts],
            z=z,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate="cohort %{y}, %{x}: %{text}<extra></extra>",
            colorbar={"title": {"text": "retained"}},
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, height=max(280, 90 + 36 * len(cohorts)), plot_bgcolor="#e8e8e8")


def retention_average_figure(rows: Rows, filters: Filters) -> go.Figure:
    x = rows.column("week_offset")
    fig = go.Figure(
        [
            go.Scatter(x=x, y=[_num(v) for v in rows.column("retention_exact")], name="active in that week"),
            go.Scatter(
                x=x,
                y=[_num(v) for v in rows.column("retention_on_or_after")],
                name="active that week or later",
                line={"dash": "dot"},
            ),
        ]
    )
    return _layout(fig, y_title="retention (matured cohorts)", xaxis_title="week offset", yaxis_tickformat=".0%")


def adoption_figure(rows: Rows, filters: Filters) -> go.Figure:
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows.dicts():
        series.setdefault(f"{r['channel']}/{r['event']}", []).append(r)
    symbols = {"up": "triangle-up", "down": "triangle-down"}
    traces = [
        go.Scatter(
            x=[r["week_start"] for r in points],
            y=[_num(r["adoption_share"]) for r in points],
            # only a change is labelled (a "stable" on every point would hide the lines); the hover says it all
            text=[r["trend"] if r["trend"] in symbols else "" for r in points],
            customdata=[r["trend"] or "" for r in points],
            hovertemplate="%{fullData.name} %{x}: %{y:.1%} (%{customdata})<extra></extra>",
            marker={"symbol": [symbols.get(r["trend"], "circle") for r in points], "size": 9},
            textposition="top center",
            mode="lines+markers+text",
            name=name,
        )
        for name, points in series.items()
    ]
    return _layout(go.Figure(traces), y_title="adoption share (trend)", yaxis_tickformat=".0%")


def event_counts_figure(rows: Rows, filters: Filters) -> go.Figure:
    # the chart sums a channel's events of a day (the table keeps them per event, as the mart has them)
    totals: dict[str, dict[Any, int]] = {}
    for r in rows.dicts():
        per_day = totals.setdefault(str(r["channel"]), {})
        per_day[r["day"]] = per_day.get(r["day"], 0) + int(r["events"])
    fig = go.Figure([go.Bar(x=list(days), y=list(days.values()), name=ch) for ch, days in sorted(totals.items())])
    return _layout(fig, barmode="stack", y_title="events per day")


def _fixed(query: q.Query) -> Callable[[Filters], q.Query]:
    return lambda _filters: query


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
                day_log_figure,
                "Averages over the observed minutes of each segment; the states stack, total counts a user once.",
            ),
            Chart("days", "Days of the period", _fixed(q.DAY_LOG_DAYS), day_summary_figure),
        ),
        ("day",),
    ),
    Dashboard(
        "user-minutes",
        "User-minutes",
        "User-minutes per day and state: distinct minutes each user spent in a state, summed over users.",
        (Chart("user-minutes", "User-minutes per day", _fixed(q.USER_MINUTES), user_minutes_figure),),
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
                worst_channels_figure,
            ),
            Chart(
                "channel-days",
                "Channel by day",
                _fixed(q.CHANNEL_DAYS),
                channel_heatmap_figure,
                "An empty cell: nothing measurable that day (Rch is null).",
            ),
            Chart(
                "overall",
                "Overall R and status-compat R per day",
                _fixed(q.OVERALL_RELIABILITY),
                overall_reliability_figure,
            ),
        ),
        ("channel",),
    ),
    Dashboard(
        "hosts",
        "Hosts and game servers",
        "CPU, memory, tick rate, p95 tick duration and p95 ping per hour, with the warning and critical thresholds.",
        (
            Chart("hosts", "Hosts (host collector)", _fixed(q.HOST_METRICS), host_metrics_figure),
            Chart("servers", "Game servers (server reports)", _fixed(q.SERVER_METRICS), server_metrics_figure),
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
                lambda f: q.FUNNEL_WEEKLY if f.grain == "week" else q.FUNNEL_DAILY,
                funnel_steps_figure,
                "Immature: the attempt stopped while its window was still open; not drop-off yet.",
            ),
            Chart(
                "conversion",
                "Conversion from the first step per entry period",
                lambda f: q.FUNNEL_WEEKLY if f.grain == "week" else q.FUNNEL_DAILY,
                funnel_conversion_figure,
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
                retention_heatmap_figure,
                f"“{NOT_YET_KNOWN}”: the week has not ended in the data yet (NULL in the mart, never 0).",
                NOT_YET_KNOWN,
            ),
            Chart(
                "average",
                "Average retention curve (all cohorts)",
                _fixed(q.RETENTION_AVERAGE),
                retention_average_figure,
            ),
        ),
    ),
    Dashboard(
        "product",
        "Feature adoption and events",
        "Weekly adoption of each event with its trend, and event counts per channel and day.",
        (
            Chart("adoption", "Feature adoption per week", _fixed(q.FEATURE_ADOPTION), adoption_figure),
            Chart("events", "Events per channel and day", _fixed(q.EVENT_COUNTS), event_counts_figure),
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


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def connect(database_url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            database_url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options=f"-c timezone=UTC -c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="telemetry-dashboards",
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise DashboardUnavailable(
            "The warehouse database cannot be reached",
            "Check that PostgreSQL is up and that TELEMETRY_DATABASE_URL (or the Airflow connection "
            "telemetry_warehouse) of the Airflow api-server names the warehouse, then reload this page.",
            _first_line(error),
        ) from error


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
        return None, f"marts.{query.mart} could not be read: {_first_line(error)}"
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
        log.info("dashboard %s: the filters' choices could not be read: %s", dashboard.slug, _first_line(error))
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
            raise DashboardUnavailable(
                "The TELEMETRY_* settings of the api-server are invalid",
                "Fix them (see collectors/config.py) and restart the api-server.",
                _first_line(error),
            ) from error

    @app.exception_handler(DashboardUnavailable)
    async def unavailable(request: Request, problem: DashboardUnavailable) -> Response:
        log.warning("dashboards unavailable: %s (%s)", problem, problem.detail)
        html = _environment.get_template("dashboard_unavailable.html").render(problem=problem)
        return HTMLResponse(html, status_code=503, headers=page_headers(None))

    if login_url is not None:

        @app.exception_handler(HTTPException)
        async def to_login(request: Request, error: HTTPException) -> Response:
            wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
            if error.status_code in (401, 403) and wants_html:
                return RedirectResponse(login_url(str(request.url)), status_code=307)
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

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
