"""The dashboards' figures: plotly figures drawn from a chart's rows, and the threshold lines they draw.

Each ``*_figure(rows, filters)`` draws the rows of one query of :mod:`collectors.orchestration.dashboard_queries`
as they are (no number is computed here that the table under the chart does not show, except the event
counts' per-channel sum of a day, drawn as stacked bars). :mod:`collectors.orchestration.dashboards` puts
them on the pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly
import plotly.graph_objects as go
import yaml
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from collectors.orchestration.dashboards import Filters

NOT_YET_KNOWN = "not yet known"


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


# --------------------------------------------------------------------------- rows and figures


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


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
    data = rows.dicts()
    ys = sorted({r[row_key] for r in data}, key=str)
    xs = sorted({r[column_key] for r in data})
    cells = {(r[row_key], r[column_key]): r[value] for r in data}
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
    per_host: dict[str, list[dict[str, Any]]] = {}
    for r in rows.dicts():
        per_host.setdefault(str(r[key]), []).append(r)
    for index, (column, _, metric) in enumerate(panels, start=1):
        for h, (host, mine) in enumerate(sorted(per_host.items())):
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
