"""The analysts' dashboards (``collectors.orchestration.dashboards``, mounted by ``plugins/telemetry_report.py``).

One demo-sized warehouse for the module: yesterday simulated (``collectors.dev.simulator``, landed through a
real receiver: game servers, hosts, chat), five weeks of product events of signup cohorts (so retention has
matured cells and cells not yet known, adoption has trends, funnels have weeks) and two game servers'
reports every ten minutes of yesterday, then every model built by dbt in-process. Each test reads that
warehouse or a copy of it.

Below the browser, FastAPI's TestClient: for every chart, a number of its table equals a query of the mart
written here, and its CSV equals the mart's rows; hostile text is escaped; the warehouse away is a 503.
Then Debian's headless chromium (``make browser``) opens every dashboard from a loopback server, waits for
plotly to draw every chart, finds a mart's value in the rendered table, and its network log shows no
request that leaves 127.0.0.1. Screenshots land in ``.state/test-artefacts/dashboards/`` (git-ignored).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow
from collectors.dev.ports import free_port
from collectors.dev.simulator.config import SimulationConfig
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.dashboard_figures import NOT_YET_KNOWN, thresholds
from collectors.orchestration.dashboards import DASHBOARDS, create_app
from tests.support.pages import (
    TestClient,
    airflow_metadata,
    chromium_binary,
    read_net_log,
    refusing_client,
    run_chromium,
)
from tests.support.server_reports import variant
from tests.support.simulated import land_simulation

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = REPO_ROOT / ".state" / "test-artefacts" / "dashboards"

TODAY = dt.datetime.now(dt.UTC).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
THIS_MONDAY = TODAY - dt.timedelta(days=TODAY.weekday())
FIRST_MONDAY = THIS_MONDAY - dt.timedelta(weeks=4)
SERVERS = ("gs-eu-1", "gs-us-1")
# the marts the dashboards read; their parents come with them ("+model")
MARTS = (
    "fct_telemetry_day",
    "fct_minutes_per_user_daily",
    "fct_channel_reliability_daily",
    "fct_reliability_daily",
    "fct_host_metrics_hourly",
    "fct_server_metrics_hourly",
    "fct_funnel_daily",
    "fct_funnel_weekly",
    "fct_retention_weekly",
    "fct_retention_weekly_average",
    "fct_feature_adoption_weekly",
    "fct_event_counts_daily",
)
PERIOD = {"start": (FIRST_MONDAY - dt.timedelta(days=1)).isoformat(), "end": TODAY.isoformat()}


@dataclass(frozen=True)
class Warehouse:
    template: str  # database name
    url: str


def cohort_events() -> list[tuple[str, str, str, str, dt.datetime]]:
    """Five weekly signup cohorts; user i of cohort c comes back in week k when (i + k) % (k + 2) != 0, uses the
    feature more in later weeks, and walks the onboarding funnel on its first day, fewer at each step."""
    events = []
    steps = (("user", "signup_started"), ("user", "signup_completed"), ("app", "tutorial_completed"))
    for cohort in range(5):
        monday = FIRST_MONDAY + dt.timedelta(weeks=cohort)
        for i in range(6 + 2 * cohort):
            user = f"dash-c{cohort}-u{i}"
            first = dt.datetime.combine(monday + dt.timedelta(days=i % 5), dt.time(9 + i % 8), dt.UTC)
            if first.date() >= TODAY:
                continue
            for s, (channel, event) in enumerate(steps[: 1 + (i % 4 if i % 4 < 3 else 2)]):
                events.append((f"{user}-f{s}", user, channel, event, first + dt.timedelta(minutes=3 * s)))
            for k in range(1, 5 - cohort):
                when = first + dt.timedelta(weeks=k, hours=1)
                if (i + k) % (k + 2) != 0 and when.date() < TODAY:
                    events.append((f"{user}-w{k}", user, "user", "login", when))
                    if i % (5 - min(k, 3)) == 0:
                        events.append((f"{user}-x{k}", user, "app", "replay_viewed", when + dt.timedelta(minutes=5)))
    return events


def server_reports() -> list[tuple[str, dt.datetime, dict[str, Any]]]:
    """Every ten minutes of yesterday, per server; gs-us-1 runs hot in the evening (above the warning lines)."""
    reports = []
    for minute in range(0, 24 * 60, 10):
        at = dt.datetime.combine(YESTERDAY, dt.time(), dt.UTC) + dt.timedelta(minutes=minute)
        for n, server in enumerate(SERVERS):
            hot = n == 1 and minute >= 18 * 60
            changes = {
                "hardware.cpu_usage_percent": 90.0 if hot else 40.0 + (minute % 60) / 6,
                "hardware.memory_usage_percent": 60.0 + n * 5,
                "performance.tick_rate_fps": 56.5 if hot else 59.8,
                "performance.tick_duration_percentiles.p95": 19.5 if hot else 17.2,
                "network.player_ping_percentiles.p95": 130.0 if hot else 58.0 + n * 10,
            }
            reports.append((server, at, variant(server, at, changes)))
    return reports


def build_warehouse(url: str, tmp: Path) -> None:
    """Land and build the module's warehouse in the migrated database ``url``."""
    started = time.monotonic()
    # two whole days and an hour either side: a receiver counts for a day when heard before and after it
    config = SimulationConfig(
        start=dt.datetime.combine(YESTERDAY - dt.timedelta(days=1), dt.time(), dt.UTC) - dt.timedelta(hours=1),
        end=dt.datetime.combine(TODAY, dt.time(1), dt.UTC),
        seed=7,
        servers=1,
        users=30,
        new_accounts_per_day=4,
        channels=4,
        messages_per_channel_per_hour=3.0,
    )
    _, accepted = land_simulation(url, config, tmp / "spool")
    assert all(accepted.get(kind) for kind in ("minute_snapshots", "message_samples", "host_minutes"))
    landed = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select raw.ensure_partitions('product_events', %s, %s)", (FIRST_MONDAY, TODAY))
        conn.execute("select raw.ensure_partitions('server_reports', %s, %s)", (YESTERDAY, TODAY))
        with conn.cursor() as cur:
            cur.executemany(
                'insert into raw.product_events (event_id, schema_version, channel, event, "timestamp", user_id)'
                " values (%s, 'telemetry_event_v1', %s, %s, %s, %s)",
                [(e, channel, event, ts, user) for e, user, channel, event, ts in cohort_events()],
            )
            cur.executemany(
                "insert into raw.server_reports (server_id, reported_at, document, batch_id) values (%s, %s, %s, %s)",
                [(server, at, json.dumps(doc), uuid.uuid4()) for server, at, doc in server_reports()],
            )
    dbt.build(
        " ".join(f"+{mart}" for mart in MARTS),
        dt.datetime.combine(FIRST_MONDAY, dt.time(), dt.UTC),
        dt.datetime.combine(TODAY, dt.time(), dt.UTC),
        database_url=url,
        full_refresh=True,
        data_tests=False,
        target_path=tmp / "dbt",
    )
    print(f"\nwarehouse: landed in {landed - started:.1f} s, built in {time.monotonic() - landed:.1f} s")


@pytest.fixture(scope="module")
def warehouse(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    name = f"telemetry_dash_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    try:
        build_warehouse(url, tmp_path_factory.mktemp("dashboards"))
        yield Warehouse(name, url)
    finally:
        local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def copy_url(pg_server: local_postgres.PostgresServer, warehouse: Warehouse) -> Iterator[str]:
    """A private copy of the module's warehouse, free to change."""
    name = f"telemetry_dash_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=warehouse.template)
    yield url
    local_postgres.drop_database(pg_server.url, name)


def client(url: str, **kwargs: Any) -> TestClient:
    return TestClient(create_app(database_url=lambda: url, **kwargs))


def rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, params).fetchall()  # type: ignore[arg-type]


def table_of(html: str, chart: str) -> list[dict[str, str]]:
    """The rows of a chart's table view, as the page shows them (column: text)."""
    match = re.search(rf'<table class="rows" data-chart="{re.escape(chart)}">(.*?)</table>', html, re.S)
    assert match, f"no table for {chart}"
    body = match.group(1)
    columns = [unescape(c) for c in re.findall(r"<th>(.*?)</th>", body)]
    return [
        dict(zip(columns, [unescape(v) for v in re.findall(r'<td data-column="[^"]*">(.*?)</td>', row)], strict=True))
        for row in re.findall(r"<tr>(<td.*?)</tr>", body, re.S)
    ]


def number(text: str) -> float:
    return float(text)


def close(shown: str, value: Any) -> bool:
    """A table cell (6 significant digits) against the mart's exact value."""
    return abs(number(shown) - float(value)) <= 1e-5 * max(1.0, abs(float(value)))


# What the page must show, per chart: the mart's value of one row, found in the chart's table. Each entry is
# (dashboard, chart, extra query parameters, SQL of one mart value and the columns that name its row).
ONE_NUMBER = [
    (
        "day-log",
        "segments",
        {"day": YESTERDAY.isoformat()},
        "select s.i as segment, (day_log #> '{average_user_counts,total}' ->> (s.i - 1))::numeric as value"
        " from marts.fct_telemetry_day cross join lateral generate_series(1, segment_count) s(i)"
        " where day = %s and (day_log #> '{average_user_counts,total}' ->> (s.i - 1))::numeric > 0"
        " order by (day_log #> '{average_user_counts,total}' ->> (s.i - 1))::numeric desc limit 1",
        (YESTERDAY,),
        "total",
    ),
    (
        "day-log",
        "days",
        {},
        "select day, unique_users as value from marts.fct_telemetry_day where day = %s",
        (YESTERDAY,),
        "unique_users",
    ),
    (
        "user-minutes",
        "user-minutes",
        {},
        "select day, state, sum(minutes) as value from marts.fct_minutes_per_user_daily where day = %s and"
        " state = 'total' group by day, state",
        (YESTERDAY,),
        "user_minutes",
    ),
    (
        "reliability",
        "worst-channels",
        {},
        "select channel_id, min(reliability) as value from marts.fct_channel_reliability_daily where day >= %s"
        " group by channel_id having count(reliability) > 0 order by min(reliability), avg(reliability) limit 1",
        (FIRST_MONDAY - dt.timedelta(days=1),),
        "worst_day_reliability",
    ),
    (
        "reliability",
        "channel-days",
        {},
        "select day, channel_id, reliability as value from marts.fct_channel_reliability_daily where day = %s"
        " and reliability is not null order by channel_id limit 1",
        (YESTERDAY,),
        "reliability",
    ),
    (
        "reliability",
        "overall",
        {},
        "select day, status_compat_reliability as value from marts.fct_reliability_daily where day = %s",
        (YESTERDAY,),
        "status_compat_reliability",
    ),
    (
        "hosts",
        "hosts",
        {},
        "select hour_start, host_id, cpu_percent_avg as value from marts.fct_host_metrics_hourly"
        " order by hour_start desc, host_id limit 1",
        (),
        "cpu_percent_avg",
    ),
    (
        "hosts",
        "servers",
        {},
        "select hour_start, server_id, ping_p95_max as value from marts.fct_server_metrics_hourly"
        " where server_id = %s order by hour_start desc limit 1",
        (SERVERS[1],),
        "ping_p95_max",
    ),
    (
        "funnels",
        "steps",
        {"funnel": "onboarding"},
        "select day as entry_period, step, conversion_from_start as value from marts.fct_funnel_daily"
        " where funnel = 'onboarding' and step = 2 and day >= %s order by day limit 1",
        (FIRST_MONDAY,),
        "conversion_from_start",
    ),
    (
        "funnels",
        "conversion",
        {"funnel": "onboarding", "grain": "week"},
        "select week_start as entry_period, step, drop_off as value from marts.fct_funnel_weekly"
        " where funnel = 'onboarding' and step = 2 order by week_start limit 1",
        (),
        "drop_off",
    ),
    (
        "retention",
        "cohorts",
        {},
        "select cohort_week, week_offset, retention_exact as value from marts.fct_retention_weekly"
        " where is_mature and week_offset = 1 order by cohort_week limit 1",
        (),
        "retention_exact",
    ),
    (
        "retention",
        "average",
        {},
        "select week_offset, retention_exact as value from marts.fct_retention_weekly_average where week_offset = 1",
        (),
        "retention_exact",
    ),
    (
        "product",
        "adoption",
        {},
        "select week_start, channel, event, adoption_share as value from marts.fct_feature_adoption_weekly"
        " where event = 'replay_viewed' and adoption_share > 0 order by week_start desc limit 1",
        (),
        "adoption_share",
    ),
    (
        "product",
        "events",
        {},
        "select day, channel, event, events as value from marts.fct_event_counts_daily where day = %s"
        " order by events desc, channel, event limit 1",
        (YESTERDAY,),
        "events",
    ),
]


def matches(shown: dict[str, str], expected: dict[str, Any], column: str) -> bool:
    """The table row names the same row (its other columns, as text) and shows the mart's value."""
    for key, value in expected.items():
        if key == "value":
            continue
        text = shown.get(key)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
        elif isinstance(value, dt.date):
            value = value.isoformat()
        if text != str(value):
            return False
    return close(shown[column], expected["value"])


@pytest.mark.slow  # the module's warehouse: about 60-100 s to land and build, once
def test_every_chart_shows_its_marts_number(warehouse: Warehouse) -> None:
    covered = set()
    with client(warehouse.url) as http:
        for slug, chart, extra, sql, params, column in ONE_NUMBER:
            expected = rows(warehouse.url, sql, params)
            assert expected and expected[0]["value"] is not None, (slug, chart, "the demo warehouse lacks the row")
            page = http.get(f"/{slug}", params={**PERIOD, **extra})
            assert page.status_code == 200, page.text[-500:]
            shown = table_of(page.text, chart)
            assert any(matches(row, expected[0], column) for row in shown), (slug, chart, expected[0], shown[:5])
            covered.add((slug, chart))
    assert covered == {(d.slug, c.slug) for d in DASHBOARDS for c in d.charts}


@pytest.mark.slow  # the module's warehouse: about 60-100 s to land and build, once
def test_retention_shows_cells_not_yet_known(warehouse: Warehouse) -> None:
    unknown = rows(warehouse.url, "select count(*) as n from marts.fct_retention_weekly where not is_mature")
    assert unknown[0]["n"] > 0
    with client(warehouse.url) as http:
        html = http.get("/retention", params=PERIOD).text
    shown = table_of(html, "cohorts")
    assert sum(row["retention_exact"] == NOT_YET_KNOWN for row in shown) == unknown[0]["n"]
    assert NOT_YET_KNOWN in html[html.index('id="chart-cohorts"') :]  # the heatmap's cell text too


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    header, *body = list(csv.reader(io.StringIO(text)))
    return header, body


def as_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


# per chart whose rows are a mart's rows: the mart, its period column and the columns the CSV orders by
PLAIN = {
    ("day-log", "days"): ("fct_telemetry_day", "day", ["day"]),
    ("reliability", "channel-days"): ("fct_channel_reliability_daily", "day", ["channel_id", "day"]),
    ("reliability", "overall"): ("fct_reliability_daily", "day", ["day"]),
    ("hosts", "hosts"): ("fct_host_metrics_hourly", "hour_start", ["host_id", "hour_start"]),
    ("hosts", "servers"): ("fct_server_metrics_hourly", "hour_start", ["server_id", "hour_start"]),
    ("funnels", "steps"): ("fct_funnel_daily", "day", ["day", "step"]),
    ("retention", "cohorts"): ("fct_retention_weekly", "cohort_week", ["cohort_week", "week_offset"]),
    ("retention", "average"): ("fct_retention_weekly_average", None, ["week_offset"]),
    ("product", "adoption"): ("fct_feature_adoption_weekly", "week_start", ["channel", "event", "week_start"]),
    ("product", "events"): ("fct_event_counts_daily", "day", ["day", "channel", "event"]),
}
RENAMED = {"entry_period": "day"}


@pytest.mark.slow  # the module's warehouse: about 60-100 s to land and build, once
def test_csv_downloads_are_the_marts_rows(warehouse: Warehouse) -> None:
    start, end = dt.date.fromisoformat(PERIOD["start"]), dt.date.fromisoformat(PERIOD["end"])
    with client(warehouse.url) as http:
        for (slug, chart), (mart, period, order) in PLAIN.items():
            reply = http.get(f"/{slug}/{chart}.csv", params={**PERIOD, "funnel": "onboarding"})
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
            assert "attachment" in reply.headers["content-disposition"]
            header, body = parse_csv(reply.text)
            where = "" if period is None else f" where {period} >= %s and {period} < %s"
            if mart == "fct_funnel_daily":
                where += " and funnel = 'onboarding'"
            params = () if period is None else (start, end + dt.timedelta(days=1))
            if period == "hour_start":
                params = tuple(dt.datetime.combine(d, dt.time(), dt.UTC) for d in params)
            expected = rows(warehouse.url, f"select * from marts.{mart}{where} order by {', '.join(order)}", params)
            assert expected, (slug, chart)
            assert [[as_csv(r[RENAMED.get(c, c)]) for c in header] for r in expected] == body, (slug, chart)
        # the aggregated ones: user-minutes summed per day and state, the worst channels by their worst week
        header, body = parse_csv(http.get("/user-minutes/user-minutes.csv", params=PERIOD).text)
        sums: dict[tuple[str, str], list[int]] = {}
        for r in rows(
            warehouse.url, "select * from marts.fct_minutes_per_user_daily where day between %s and %s", (start, end)
        ):
            cell = sums.setdefault((r["day"].isoformat(), r["state"]), [0, 0])
            cell[0] += r["minutes"]
            cell[1] += 1
        assert header == ["day", "state", "user_minutes", "users"]
        assert body == [[day, state, str(m), str(n)] for (day, state), (m, n) in sorted(sums.items())]
        header, body = parse_csv(http.get("/reliability/worst-channels.csv", params=PERIOD).text)
        weekly = rows(warehouse.url, "select * from marts.fct_channel_reliability_daily where day >= %s", (start,))
        worst: dict[str, Decimal] = {}
        for r in weekly:
            if r["reliability"] is not None:
                worst[r["channel_id"]] = min(worst.get(r["channel_id"], Decimal(2)), r["reliability"])
        assert {row[0]: Decimal(row[header.index("worst_day_reliability")]) for row in body} == worst
        # the day log's segments: one row per segment of the day's lists
        header, body = parse_csv(http.get("/day-log/segments.csv", params={**PERIOD, "day": YESTERDAY}).text)
        day = rows(
            warehouse.url,
            "select segment_count, day_log::text as day_log from marts.fct_telemetry_day where day = %s",
            (YESTERDAY,),
        )
        assert len(body) == day[0]["segment_count"]
        log = json.loads(day[0]["day_log"], parse_float=Decimal)  # the numbers as the mart has them, not floats
        assert [Decimal(r[header.index("player")]) for r in body] == log["average_user_counts"]["player"]


@pytest.mark.slow  # the module's warehouse: about 60-100 s to land and build, once
def test_filters_narrow_the_rows(warehouse: Warehouse) -> None:
    with client(warehouse.url) as http:
        page = http.get("/hosts", params={**PERIOD, "host": SERVERS[0]}).text
        assert {r["server_id"] for r in table_of(page, "servers")} == {SERVERS[0]}
        assert f'<option value="{SERVERS[1]}">' in page  # the others stay choosable
        page = http.get("/funnels", params={**PERIOD, "funnel": "onboarding", "grain": "week"}).text
        periods = {r["entry_period"] for r in table_of(page, "steps")}
        assert periods and all(dt.date.fromisoformat(p).weekday() == 0 for p in periods)
        # a period without data: a note, no chart, no table
        page = http.get("/reliability", params={"start": "2001-01-01", "end": "2001-01-31"}).text
        assert "has no rows in this period" in page and "Plotly.newPlot" not in page
        assert http.get("/reliability", params={"start": "2026-02-01", "end": "2026-01-01"}).status_code == 422
        assert http.get("/reliability", params={"start": "2001-01-01", "end": "2026-01-01"}).status_code == 422
        assert http.get("/nothing-here").status_code == 404


def test_threshold_lines_are_the_dbt_projects() -> None:
    lines = thresholds()
    # alerts.yml fires on the same numbers (as ratios for CPU and memory, seconds for ping)
    alerts = (REPO_ROOT / "collectors" / "monitoring" / "alerts.yml").read_text()
    assert f"server_cpu_usage_ratio) > {lines['cpu_percent'].warning / 100:.2f}" in alerts
    assert f"server_memory_usage_ratio) > {lines['memory_percent'].critical / 100:.2f}" in alerts
    assert f"server_tick_rate_fps) < {lines['tick_rate'].warning:g}" in alerts
    assert f"server_player_ping_p95_seconds) > {lines['ping_p95_ms'].critical / 1000:.3f}" in alerts


@pytest.mark.slow  # the module's warehouse: about 60-100 s to land and build, once
def test_hostile_text_from_the_marts_is_escaped(copy_url: str) -> None:
    hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(
            "insert into marts.fct_event_counts_daily (day, channel, event, events, users, estimated_events,"
            " estimated_users, min_sample_rate, estimate_reliable) values (%s, %s, %s, 3, 1, 3, 1, 1, true)",
            (YESTERDAY, hostile, hostile),
        )
    with client(copy_url) as http:
        page = http.get("/product", params=PERIOD)
    assert page.status_code == 200
    html = page.text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html  # the table and the select, escaped
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, re.S)
    assert all("alert(" not in s or "\\u003c" in s for s in scripts)
    assert re.findall(r"<script(?![^>]*nonce=)(?![^>]*src=\"static/plotly.min.js\")", html) == []


def test_marts_not_built_yet_are_named_on_every_dashboard(warehouse_url: str) -> None:
    with client(warehouse_url) as http:
        for board in DASHBOARDS:
            page = http.get(f"/{board.slug}")
            assert page.status_code == 200, (board.slug, page.text[-300:])
            for chart in board.charts:
                note = re.search(rf'<p class="note" data-note="{chart.slug}">(.*?)</p>', page.text)
                assert note and "is not built yet" in note.group(1), (board.slug, chart.slug)
            assert "Plotly.newPlot" not in page.text
            csv_reply = http.get(f"/{board.slug}/{board.charts[0].slug}.csv")
            assert csv_reply.status_code == 503 and "not built yet" in csv_reply.text


def test_a_database_that_is_down_gives_503_and_what_to_do() -> None:
    url = f"postgresql://analyst:hunter2-secret@127.0.0.1:{free_port()}/telemetry"
    with client(url) as http:
        page = http.get("/reliability")
        index = http.get("/")
    assert page.status_code == 503 and "cannot be reached" in page.text and "hunter2" not in page.text
    assert index.status_code == 200  # the list of dashboards needs no database


def test_a_browser_without_a_login_is_sent_to_it() -> None:
    with refusing_client(create_app) as http:
        page = http.get("/hosts", headers={"accept": "text/html"})
        data = http.get("/hosts/hosts.csv", headers={"accept": "text/csv"})
        script = http.get("/static/plotly.min.js", headers={"accept": "*/*"})
    assert page.status_code == 307 and page.headers["location"] == "/auth/login?next=http://testserver/hosts"
    assert data.status_code == 401 and script.status_code == 401


@pytest.mark.slow  # importing Airflow and building both apps: 23 s on two loaded cores
def test_the_plugin_mounts_the_dashboards_with_a_menu_entry() -> None:
    from plugins.telemetry_report import DASHBOARDS_PREFIX, TelemetryQualityPlugin

    plugin = TelemetryQualityPlugin()
    views = {v["name"]: v for v in plugin.external_views}
    assert views["Dashboards"]["href"] == DASHBOARDS_PREFIX.lstrip("/") + "/"
    assert views["Dashboards"]["category"] == views["Data quality"]["category"] == "browse"
    apps = {a["url_prefix"]: a for a in plugin.fastapi_apps}
    assert set(apps) == {"/telemetry-quality", DASHBOARDS_PREFIX}
    # the same authentication in front of both (Airflow's, a new closure per app)
    guards = {
        prefix: [getattr(d.dependency, "__qualname__", None) for d in app["app"].router.dependencies]
        for prefix, app in apps.items()
    }
    assert guards[DASHBOARDS_PREFIX] == guards["/telemetry-quality"] and guards[DASHBOARDS_PREFIX] != []


# --------------------------------------------------------------------------- in a browser


class LoopbackServer:
    """The app under uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(database_url=lambda: url), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_chromium(
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing resolves but loopback
        *args,
        profile=ARTEFACTS.parent / f".chromium-profile-dash-{os.getpid()}",
        timeout=timeout,
    )


def page_requests(net_log: Path, page: str) -> set[str]:
    """The URLs the page asked for, from chromium's network log: the navigation to ``page`` and every request
    whose initiator is a web origin (a document's). Chromium's own background requests (updates, time, sign-in)
    have no origin; ``--host-resolver-rules`` keeps them from leaving the machine anyway."""
    urls = {page}
    for event in read_net_log(net_log)["events"]:
        params = event.get("params") or {}
        if "url" in params and str(params.get("initiator", "")).startswith(("http:", "https:", "null")):
            urls.add(params["url"])
    return urls


@pytest.mark.slow
def test_a_browser_draws_every_dashboard_from_loopback_only(warehouse: Warehouse, tmp_path: Path) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    expected = {(slug, chart): (extra, sql, params, column) for slug, chart, extra, sql, params, column in ONE_NUMBER}
    started = time.monotonic()
    with LoopbackServer(warehouse.url) as server:
        base = f"http://127.0.0.1:{server.port}/"
        for board in DASHBOARDS:
            extra = {k: v for c in board.charts for k, v in expected[(board.slug, c.slug)][0].items() if k != "grain"}
            query = "&".join(f"{k}={v}" for k, v in {**PERIOD, **extra}.items())
            url = f"{base}{board.slug}?{query}"
            net_log = tmp_path / f"{board.slug}.netlog.json"
            screenshot = ARTEFACTS / f"dashboard-{board.slug}.png"
            screenshot.unlink(missing_ok=True)
            # one run: the DOM once plotly has drawn, a screenshot of the top of the page, the network log
            dom = chromium(
                "--virtual-time-budget=10000",
                f"--log-net-log={net_log}",
                "--window-size=1280,1100",
                "--hide-scrollbars",
                f"--screenshot={screenshot}",
                "--dump-dom",
                url,
            ).stdout
            for chart in board.charts:
                section = dom[dom.index(f'data-chart="{chart.slug}"') :]
                plot = section[: section.index("</section>")]
                # plotly drew it: its root SVG is in the chart's div
                assert 'class="main-svg"' in plot, (board.slug, chart.slug)
                chart_extra, sql, params, column = expected[(board.slug, chart.slug)]
                if chart_extra.get("grain") == "week":
                    continue  # checked below the browser (the page here is by entry day)
                mart = rows(warehouse.url, sql, params)[0]
                assert any(matches(row, mart, column) for row in table_of(plot, chart.slug)), (board.slug, chart.slug)
            urls = page_requests(net_log, url)
            assert f"{base}static/plotly.min.js" in urls, urls
            leaving = {u for u in urls if not u.startswith((base, "data:", "blob:", "about:"))}
            assert not leaving, leaving
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    print(f"\nchromium: {len(DASHBOARDS)} dashboards in {time.monotonic() - started:.1f} s; screenshots in {ARTEFACTS}")


# --------------------------------------------------------------------------- in Airflow


@pytest.fixture(scope="module")
def airflow_meta(pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from airflow_metadata(pg_server, tmp_path_factory, "airflow_dash")


@pytest.mark.e2e
def test_the_dashboards_menu_entry_and_pages_in_airflow(
    airflow_meta: str, warehouse: Warehouse, tmp_path: Path
) -> None:
    """The plugin in a real api-server: the bare prefix redirects, a page and a CSV answer behind Airflow's auth
    (LocalAirflow's simple auth manager lets everyone in), the UI's Dashboards entry frames the app, and chromium
    draws a dashboard through the api-server."""
    chromium_binary()  # fail early, before starting Airflow
    airflow = LocalAirflow(tmp_path / "home", airflow_meta, warehouse.url)
    with airflow.services(["api-server"]):
        page = f"{airflow.api_url}/telemetry-dashboards/"
        with urllib.request.urlopen(f"{airflow.api_url}/telemetry-dashboards", timeout=30) as reply:
            assert reply.url == page and 'id="dashboards"' in reply.read().decode()
        query = urllib.parse.urlencode(PERIOD)
        with urllib.request.urlopen(f"{page}reliability?{query}", timeout=60) as reply:
            html = reply.read().decode()
        _, _, _, sql, params, column = next(n for n in ONE_NUMBER if n[:2] == ("reliability", "overall"))
        assert any(matches(row, rows(warehouse.url, sql, params)[0], column) for row in table_of(html, "overall"))
        with urllib.request.urlopen(f"{page}reliability/overall.csv?{query}", timeout=60) as reply:
            header, body = parse_csv(reply.read().decode())
        assert header[:2] == ["day", "reliability"] and len(body) == len(table_of(html, "overall"))
        ui = chromium("--virtual-time-budget=10000", "--dump-dom", f"{airflow.api_url}/plugin/dashboards").stdout
        assert re.search(r'<iframe[^>]*src="[^"]*telemetry-dashboards/"[^>]*title="Dashboards"', ui), ui[-2000:]
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", f"{page}hosts?{query}").stdout
        assert dom.count('class="main-svg"') >= 2  # both charts drawn, plotly.js from the api-server
