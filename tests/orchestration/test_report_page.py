"""The data-quality report (``collectors.orchestration.report``, mounted by ``plugins/telemetry_report.py``).

Below Airflow, the FastAPI app against a real warehouse copy (FastAPI's TestClient): runs newest first,
failing expectations and, apart, the ones that errored with their cause, the dbt builds whose tests failed
(data failures apart from tests that could not run), escaping of hostile text, empty state, database down or
unmigrated (503 with advice), the Data Docs site, the login redirect. Then end to end (``e2e``): a real
api-server with the plugin, and Debian's headless chromium loading the page; its screenshot lands in
``.state/test-artefacts/report/`` (git-ignored). chromium comes from ``make browser`` (``make test``
runs it); without it the browser test fails instead of skipping.

``marts.fct_reliability_daily`` is created by its real dbt model (over an empty raw schema), then given
a few known days.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow
from collectors.dev.ports import free_port
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.report import DayReliability, chart, create_app
from tests.support.pages import (
    TestClient,
    airflow_metadata,
    chromium_binary,
    read_net_log,
    refusing_client,
    run_chromium,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = REPO_ROOT / ".state" / "test-artefacts" / "report"

TODAY = dt.datetime.now(dt.UTC).date()
# five days of overall reliability, the middle one without a measurable channel (null)
DAYS = {TODAY - dt.timedelta(days=6 - i): value for i, value in enumerate((0.991, 0.985, None, 0.972, 0.996))}
MEASURED = sorted(day for day, value in DAYS.items() if value is not None)

PASSING_RUN = "scheduled__report-test-week-1"
FAILING_RUN = "manual__report-test-week-2"
FAILING_EXPECTATION = "expect_column_values_to_be_between"
FAILING_COLUMN = "battles_lobby"
DOCS_PAGE = "validations/raw_minute_snapshots/manual__report-test-week-2/result.html"
ERRORED_CAUSE = 'relation "marts.fct_days" does not exist'

DBT_FAILING_BUILD = "3b1f0c6e-report-failing-build"
DBT_PASSING_BUILD = "9a2d44f1-report-passing-build"
DBT_FAILING_TEST = "value_between_fct_reliability_hourly_reliability__1__0"
DBT_ERRORED_TEST = "fct_reliability_hourly_counts_consistent"
DBT_ERROR_CAUSE = 'relation "marts.fct_reliability_hourly" does not exist'


@dataclass(frozen=True)
class Warehouse:
    template: str  # database name: migrated, marts built by dbt, reliability days and validation runs in


def insert_run(
    conn: psycopg.Connection,
    run_id: str,
    started_at: dt.datetime,
    assets: list[tuple[str, str, list[dict]]],
    *,
    dag_id: str = "telemetry_weekly",
    docs_path: str | None = None,
) -> None:
    """One validate_week call: a row per (suite, asset), failing when it has failures."""
    window_start = dt.datetime.combine(started_at.date() - dt.timedelta(days=7), dt.time(), dt.UTC)
    for suite, asset, failures in assets:
        conn.execute(
            "insert into quality.validation_runs (dag_id, run_id, window_start, window_end, suite, asset, success,"
            " evaluated, failed, failures, scope, data_docs_path, started_at, finished_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, 12, %s, %s::jsonb, '{}', %s, %s, %s)",
            (
                dag_id,
                run_id,
                window_start,
                window_start + dt.timedelta(days=7),
                suite,
                asset,
                not failures,
                len(failures),
                json.dumps(failures),
                docs_path if failures else None,
                started_at,
                started_at + dt.timedelta(seconds=40),
            ),
        )


def insert_build(
    conn: psycopg.Connection,
    invocation_id: str,
    generated_at: dt.datetime,
    tests: list[tuple[str, str, int | None, str | None]],
    *,
    cadence: str = "hourly",
    part: str = "reliability",
    run_id: str = "scheduled__report-test-hour",
) -> None:
    """One dbt build's tests as collectors.orchestration.test_results stores them: (name, status, failures, message)."""
    count = {status: sum(t[1] == status for t in tests) for status in ("pass", "fail", "warn", "error", "skipped")}
    failed_nodes = [f"test.telemetry.{name}.0123456789" for name, status, _, _ in tests if status in ("fail", "error")]
    window_start = generated_at.replace(minute=0, second=0) - dt.timedelta(hours=2)
    conn.execute(
        "insert into quality.dbt_test_runs (invocation_id, dag_id, run_id, cadence, part, window_start, window_end,"
        " success, nodes, tests, passed, failed, warned, errored, skipped, failed_nodes, generated_at, elapsed_seconds)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 4.2)",
        (
            invocation_id,
            f"telemetry_{cadence}",
            run_id,
            cadence,
            part,
            window_start,
            window_start + dt.timedelta(hours=1),
            not failed_nodes,
            len(tests) + 3,
            len(tests),
            count["pass"],
            count["fail"],
            count["warn"],
            count["error"],
            count["skipped"],
            failed_nodes,
            generated_at,
        ),
    )
    for name, status, failures, message in tests:
        conn.execute(
            "insert into quality.dbt_test_results (invocation_id, unique_id, dag_id, run_id, test_name, test_type,"
            " test_kind, models, column_name, status, failures, message, execution_seconds, compiled_code)"
            " values (%s, %s, %s, %s, %s, 'generic', %s, %s, %s, %s, %s, %s, 0.05, %s)",
            (
                invocation_id,
                f"test.telemetry.{name}.0123456789",
                f"telemetry_{cadence}",
                run_id,
                name,
                name.split("_fct_")[0],
                ["fct_reliability_hourly"],
                "reliability" if "reliability__" in name else None,
                status,
                failures,
                message,
                None if status == "pass" else "select 1",
            ),
        )


@pytest.fixture(scope="module")
def warehouse(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    name = f"telemetry_report_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    try:
        start = dt.datetime.combine(min(DAYS), dt.time(), dt.UTC)
        dbt.build(
            "+fct_reliability_daily",
            start,
            start + dt.timedelta(days=len(DAYS)),
            database_url=url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp_path_factory.mktemp("report_dbt"),
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.cursor().executemany(
                "insert into marts.fct_reliability_daily (day, channels, channels_measured, messages, total, missing,"
                " reliability) values (%s, 3, %s, 100, 300, %s, %s)",
                [
                    (day, 0 if value is None else 3, 0 if value is None else round(300 * (1 - value)), value)
                    for day, value in DAYS.items()
                ],
            )
            insert_run(
                conn,
                PASSING_RUN,
                now - dt.timedelta(days=7),
                [("raw", "raw_minute_snapshots", []), ("raw", "raw_message_samples", []), ("marts", "marts_days", [])],
            )
            failure = {
                "expectation": FAILING_EXPECTATION,
                "column": FAILING_COLUMN,
                "description": "battle counts are never negative",
                "kwargs": {"column": FAILING_COLUMN, "min_value": 0},
                "observed": "1 unexpected of 1440 (0.0694 %)",
                "sample": [-1],
            }
            # a table that is gone errors every expectation on it: apart from the data failures, with the cause
            errored = [
                {
                    "expectation": expectation,
                    "errored": True,
                    "exception": f"(psycopg2.errors.UndefinedTable) {ERRORED_CAUSE}\nLINE 1: select ...",
                    "cause": ERRORED_CAUSE,
                }
                for expectation in ("expect_query_to_return_no_rows", "expect_column_values_to_be_between")
            ]
            insert_run(
                conn,
                FAILING_RUN,
                now - dt.timedelta(hours=2),
                [("raw", "raw_minute_snapshots", [failure]), ("marts", "marts_days", errored)],
                docs_path=f"/opt/elsewhere/gx/uncommitted/data_docs/local_site/{DOCS_PAGE}",
            )
            insert_build(
                conn,
                DBT_PASSING_BUILD,
                now - dt.timedelta(hours=3),
                [("unique_fct_reliability_hourly_hour_start", "pass", 0, "")],
                run_id="scheduled__report-test-hour-1",
            )
            insert_build(
                conn,
                DBT_FAILING_BUILD,
                now - dt.timedelta(hours=1),
                [
                    ("unique_fct_reliability_hourly_hour_start", "pass", 0, ""),
                    (DBT_FAILING_TEST, "fail", 3, "Got 3 results, configured to fail if != 0"),
                    (
                        DBT_ERRORED_TEST,
                        "error",
                        None,
                        f"Database Error in test {DBT_ERRORED_TEST} (models/marts/fct_reliability.yml)\n"
                        f"  {DBT_ERROR_CAUSE}\n  LINE 12: from marts.fct_reliability_hourly",
                    ),
                    ("not_null_fct_reliability_hourly_hour_start", "skipped", None, None),
                ],
                run_id="scheduled__report-test-hour-2",
            )
        yield Warehouse(name)
    finally:
        local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def report_url(pg_server: local_postgres.PostgresServer, warehouse: Warehouse) -> Iterator[str]:
    """A private copy of the module's warehouse."""
    name = f"telemetry_report_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=warehouse.template)
    yield url
    local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def gx_dir(tmp_path: Path) -> Path:
    """A GX directory whose Data Docs site has an index and the failing run's result page."""
    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    (site / DOCS_PAGE).parent.mkdir(parents=True)
    (site / "index.html").write_text("<html><body><h1>Data Docs index</h1></body></html>")
    (site / DOCS_PAGE).write_text("<html><body><h1>minute_snapshots result</h1></body></html>")
    (tmp_path / "gx" / "great_expectations.yml").write_text("secret: not for the web\n")
    return tmp_path / "gx"


def client(url: str, gx: Path, **kwargs: object) -> TestClient:
    site = gx / "uncommitted" / "data_docs" / "local_site"
    return TestClient(create_app(database_url=lambda: url, docs_root=lambda: site, **kwargs))


def check_page(html: str) -> None:
    """What a reviewer must see: the last (failing) run first, its failure, the Data Docs, one point a day."""
    articles = re.findall(r'<article class="run (\w+)[^"]*" data-run-id="([^"]*)"', html)
    assert articles == [("failed", FAILING_RUN), ("passed", PASSING_RUN)]
    latest = html[html.index(f'data-run-id="{FAILING_RUN}"') : html.index(f'data-run-id="{PASSING_RUN}"')]
    assert ">FAILED<" in latest and FAILING_EXPECTATION in latest and FAILING_COLUMN in latest
    assert "raw_minute_snapshots" in latest and "1 unexpected of 1440" in latest
    assert "2 assets" in latest
    # the expectations that errored are apart from the data failures, with their cause, once per cause
    failures = latest[latest.index('<table class="failures">') : latest.index("</table>")]
    assert failures.count('<tr class="failure">') == 1 and "errored" not in failures
    errors = latest[latest.index('<table class="errors">') :]
    errors = errors[: errors.index("</table>")]
    assert errors.count('<tr class="error-group">') == 1 and "marts_days" in errors
    # (text compared unescaped: Jinja writes a quote as &#34;, a browser's DOM as it is)
    assert f"errored: {ERRORED_CAUSE}" in unescape(errors) and "2 expectations" in errors
    assert "1 failed on the data" in latest and "2 errored" in latest
    # the dbt builds whose tests did not all pass: the failing one, its data failure apart from its error
    builds = re.findall(r'<article class="build (\w+)" data-invocation-id="([^"]*)"', html)
    assert builds == [("failed", DBT_FAILING_BUILD)]
    build = html[html.index(f'data-invocation-id="{DBT_FAILING_BUILD}"') :]
    build = build[: build.index("</article>")]
    dbt_failures = build[build.index('<table class="dbt-failures">') : build.index('<table class="dbt-errors">')]
    assert DBT_FAILING_TEST in dbt_failures and "fct_reliability_hourly" in dbt_failures
    assert '<td class="num">3</td>' in dbt_failures and DBT_ERRORED_TEST not in dbt_failures
    dbt_errors = build[build.index('<table class="dbt-errors">') :]
    assert DBT_ERRORED_TEST in dbt_errors and f"errored: {DBT_ERROR_CAUSE}" in unescape(dbt_errors)
    assert "1 failed" in build and "1 errored" in build and "1 skipped" in build
    summary = html[html.index('<section id="summary">') : html.index('<section id="validation-runs">')]
    assert "hourly" in summary and "reliability" in summary and ">FAILED<" in summary and "1/4" in summary
    assert ">PASSED<" in html[html.index(f'data-run-id="{PASSING_RUN}"') :]
    assert '<a id="data-docs" href="data-docs/index.html">' in html
    assert f'href="data-docs/{DOCS_PAGE}"' in latest
    assert "[-1]" not in html  # offending values stay in Data Docs
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert re.findall(r'data-day="([\d-]+)"', svg) == [day.isoformat() for day in MEASURED]
    assert f'data-days="{len(DAYS)}"' in svg
    assert re.search(r"<script", html, re.IGNORECASE) is None


# --------------------------------------------------------------------------- below Airflow


def test_the_page_lists_the_runs_newest_first_with_their_failures(report_url: str, gx_dir: Path) -> None:
    with client(report_url, gx_dir) as http:
        page = http.get("/")
        api = http.get("/api/runs")
        docs = http.get("/data-docs/index.html")
        result = http.get(f"/data-docs/{DOCS_PAGE}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]  # no script runs on the page
    check_page(page.text)
    assert api.status_code == 200
    runs = api.json()["runs"]
    assert [(r["run_id"], r["verdict"], r["asset_count"]) for r in runs] == [
        (FAILING_RUN, "FAILED", 2),
        (PASSING_RUN, "PASSED", 3),
    ]
    assert [(f["asset"], f["column"], f["expectation"], f["errored"]) for f in runs[0]["failures"]] == [
        ("marts_days", None, "expect_query_to_return_no_rows", True),
        ("marts_days", None, "expect_column_values_to_be_between", True),
        ("raw_minute_snapshots", FAILING_COLUMN, FAILING_EXPECTATION, False),
    ]
    assert runs[0]["errored"] == 2 and [e["cause"] for e in runs[0]["errors"]] == [ERRORED_CAUSE]
    dbt_tests = api.json()["dbt_tests"]
    assert [(b["invocation_id"], b["verdict"]) for b in dbt_tests["builds_with_problems"]] == [
        (DBT_FAILING_BUILD, "FAILED")
    ]
    assert [(p["test_name"], p["status"], p["cause"]) for p in dbt_tests["builds_with_problems"][0]["problems"]] == [
        (DBT_FAILING_TEST, "fail", None),
        (DBT_ERRORED_TEST, "error", DBT_ERROR_CAUSE),
    ]
    assert [(b["cadence"], b["part"], b["invocation_id"]) for b in dbt_tests["latest"]] == [
        ("hourly", "reliability", DBT_FAILING_BUILD)
    ]
    assert api.json()["reliability_daily"] == [
        {"day": day.isoformat(), "reliability": value} for day, value in sorted(DAYS.items())
    ]
    assert docs.status_code == 200 and "Data Docs index" in docs.text
    assert result.status_code == 200 and "minute_snapshots result" in result.text


def test_hostile_text_from_the_database_is_escaped(report_url: str, gx_dir: Path) -> None:
    hostile = {
        "expectation": "<script>alert('expectation')</script>",
        "column": '"><img src=x onerror=alert(1)>',
        "description": "</td></tr></table><script>alert(2)</script>",
        "observed": {"value": "<b>bold</b>"},
        "exception": "<iframe src=javascript:alert(3)>",
    }
    with psycopg.connect(report_url, autocommit=True) as conn:
        insert_run(
            conn,
            "manual__<script>alert(4)</script>",
            dt.datetime.now(dt.UTC),
            [("raw<svg onload=alert(5)>", "<i>asset</i>", [hostile])],
            dag_id="dag<u>",
            docs_path="/x/local_site/../../../../etc/passwd",
        )
        insert_build(
            conn,
            "inv<script>alert(6)</script>",
            dt.datetime.now(dt.UTC),
            [
                ("<script>alert(7)</script>", "fail", 1, "<img src=x onerror=alert(8)>"),
                ("err<b>x</b>", "error", None, "Database Error in test x\n<iframe src=javascript:alert(9)>"),
            ],
            run_id="<i>run</i>",
        )
    with client(report_url, gx_dir) as http:
        html = http.get("/").text
    for raw in ("<script", "<img", "<iframe", "<b>", "<svg onload", "<i>asset", "<i>run", "<u>", "/etc/passwd"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(&#39;expectation&#39;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "manual__&lt;script&gt;alert(4)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(7)&lt;/script&gt;" in html and "errored: &lt;iframe" in html


def test_an_empty_warehouse_says_what_will_fill_the_page(warehouse_url: str, tmp_path: Path) -> None:
    with client(warehouse_url, tmp_path / "no-gx") as http:
        page = http.get("/")
        docs = http.get("/data-docs/index.html")
        api = http.get("/api/runs")
    assert page.status_code == 200
    assert 'id="no-runs"' in page.text and "telemetry_weekly" in page.text
    assert 'id="no-reliability"' in page.text and "not built yet" in page.text
    assert 'id="no-data-docs"' in page.text and 'href="data-docs/' not in page.text
    assert 'id="no-dbt-problems"' in page.text and "No dbt build has stored its test results yet" in page.text
    assert "<svg" not in page.text
    assert docs.status_code == 404 and "No Data Docs yet" in docs.text
    assert api.status_code == 200
    assert api.json()["runs"] == [] and api.json()["reliability_daily"] is None and api.json()["data_docs"] is None


def test_a_database_that_is_down_gives_503_and_what_to_do(tmp_path: Path) -> None:
    url = f"postgresql://reviewer:hunter2-secret@127.0.0.1:{free_port()}/telemetry"  # nothing listens there
    started = time.monotonic()
    with client(url, tmp_path) as http:
        page = http.get("/")
        api = http.get("/api/runs")
    assert time.monotonic() - started < 10
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "cannot be reached" in page.text and "TELEMETRY_DATABASE_URL" in page.text
    assert "Traceback" not in page.text and "hunter2" not in page.text
    assert api.status_code == 503 and "TELEMETRY_DATABASE_URL" in api.json()["detail"]
    assert "hunter2" not in api.text


def test_an_unmigrated_database_gives_503_run_the_migrations(
    pg_server: local_postgres.PostgresServer, tmp_path: Path
) -> None:
    name = f"telemetry_report_bare_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name)
    try:
        with client(url, tmp_path) as http:
            page = http.get("/")
    finally:
        local_postgres.drop_database(pg_server.url, name)
    assert page.status_code == 503
    assert "no quality.validation_runs table" in page.text and "telemetry-db migrate" in page.text
    assert "Traceback" not in page.text


def test_data_docs_are_served_from_the_site_only(report_url: str, gx_dir: Path) -> None:
    with client(report_url, gx_dir) as http:
        assert http.get("/data-docs/").status_code == 200
        for escape in ("%2e%2e/%2e%2e/great_expectations.yml", "..%2f..%2fgreat_expectations.yml", "%2fetc%2fpasswd"):
            reply = http.get(f"/data-docs/{escape}")
            assert reply.status_code == 404, escape
            assert "not for the web" not in reply.text and "root:" not in reply.text


def test_a_browser_without_a_login_is_sent_to_it_and_the_api_refuses() -> None:
    with refusing_client(create_app) as http:
        page = http.get("/", headers={"accept": "text/html,application/xhtml+xml"})
        api = http.get("/api/runs", headers={"accept": "application/json"})
        docs = http.get("/data-docs/index.html", headers={"accept": "application/json"})
    assert page.status_code == 307 and page.headers["location"] == "/auth/login?next=http://testserver/"
    assert api.status_code == 401 and docs.status_code == 401


def test_the_chart_has_a_point_per_measured_day_and_breaks_at_gaps() -> None:
    days = [DayReliability(day, value) for day, value in sorted(DAYS.items())]
    drawn = chart(days)
    assert drawn is not None
    assert [p.day for p in drawn.points] == MEASURED
    assert len(drawn.segments) == 2  # the null day splits the line
    ys = {p.day: p.y for p in drawn.points}
    assert ys[MEASURED[-1]] < ys[MEASURED[0]] < ys[MEASURED[2]]  # higher reliability is higher up
    assert all(drawn.top <= p.y <= drawn.height - drawn.bottom for p in drawn.points)
    assert chart([]) is None


# --------------------------------------------------------------------------- in Airflow, in a browser


@pytest.fixture(scope="module")
def airflow_meta(pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from airflow_metadata(pg_server, tmp_path_factory, "airflow_report")


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def page_request_hosts(net_log: Path) -> tuple[set[str], set[str]]:
    """The hosts chromium's net log shows requested for the pages, and those of its own services.

    A request made for a page (the navigation, its scripts, styles, fonts, images, XHR, a redirect's next hop)
    carries the page's site in its network isolation key; chromium's own traffic (component updates, the
    clock check, the account list) carries ``null null`` or google.com, and is no page's doing.
    """
    log = read_net_log(net_log)
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls: dict[int, set[str]] = {}
    for_page: set[int] = set()
    for event in log["events"]:
        params, source = event.get("params") or {}, event["source"]["id"]
        for key in ("url", "new_location"):
            if isinstance(params.get(key), str) and params[key].startswith(("http", "ws")):
                urls.setdefault(source, set()).add(params[key])
        if names[event["type"]] == "URL_REQUEST_START_JOB":
            top_site = str(params.get("network_isolation_key", "")).split(" ")[0]
            if urlsplit(top_site).hostname in LOOPBACK:
                for_page.add(source)
    assert for_page, f"{net_log.name} has no request for a page"
    hosts = {urlsplit(url).hostname or "" for source in for_page for url in urls[source]}
    others = {urlsplit(url).hostname or "" for source, found in urls.items() if source not in for_page for url in found}
    return hosts, others


def chromium(*args: str, timeout: float = 60, net_log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, in a profile of its own; ``net_log`` records its every request."""
    if net_log is not None:
        args = (f"--log-net-log={net_log}", "--net-log-capture-mode=Default", *args)
    return run_chromium(*args, profile=ARTEFACTS.parent / f".chromium-profile-{os.getpid()}", timeout=timeout)


def get_json(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


OFFLINE_PAGE = "validations/raw_minute_snapshots/offline/20261201T000000Z/result.html"  # as deep as GX writes them
VENDOR_ROUTE = "data-docs-vendor"


def seed_monitors(url: str) -> None:
    """A stale source checked by the freshness check, a 90 % drop in the last hour, a source of four days."""
    from collectors.orchestration import freshness
    from tests.orchestration.test_report_monitors import HOUR, insert_raw, ledger

    with psycopg.connect(url, autocommit=True) as conn:
        insert_raw(conn)
        last = HOUR - dt.timedelta(hours=1)
        for source, start, rows in (
            ("host_minutes", dt.timedelta(weeks=4, hours=30), 1000),
            ("product_events", dt.timedelta(days=4), 50),
        ):
            hour = last - start
            while hour <= last:
                drop = source == "host_minutes" and hour == last
                ledger(conn, source, hour + dt.timedelta(minutes=5), rows // 10 if drop else rows, rejected=1)
                hour += dt.timedelta(hours=1)
    freshness.store_freshness(url, freshness.check_freshness(url), dag_id="telemetry_hourly", run_id="r")


def offline_site(site: Path) -> None:
    """A page of GX's own asset tags that reports, from a script, which jQuery ran (the vendored one)."""
    from tests.orchestration.test_data_docs_offline import GX_VIEW, gx_like_page

    page = site / OFFLINE_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    probe = "<script>document.body.dataset.jquery = window.jQuery ? jQuery.fn.jquery : 'none';</script>"
    page.write_text(gx_like_page().replace("</body>", "<h1>Validation result, offline</h1>" + probe + "</body>"))
    shutil.copytree(GX_VIEW / "static", site / "static", dirs_exist_ok=True)


@pytest.mark.e2e
def test_a_browser_finds_the_last_validation_run_on_the_airflow_plugin_page(
    airflow_meta: str, report_url: str, gx_dir: Path, tmp_path: Path
) -> None:
    chromium_binary()  # fail early, before starting Airflow
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    seed_monitors(report_url)
    offline_site(gx_dir / "uncommitted" / "data_docs" / "local_site")
    airflow = LocalAirflow(tmp_path / "home", airflow_meta, report_url, extra_env={"TELEMETRY_GX_DIR": str(gx_dir)})
    started = time.monotonic()
    with airflow.services(["api-server"]):
        ready = time.monotonic() - started
        page_url = f"{airflow.api_url}/telemetry-quality/"

        # the plugin and its "Data quality" link are registered. LocalAirflow's simple auth manager makes
        # everyone admin (a middleware adds a token to every request); a bearer token works in any mode
        status, token = get_json(f"{airflow.api_url}/auth/token")
        assert status == 201, token
        status, plugins = get_json(f"{airflow.api_url}/api/v2/plugins", token["access_token"])
        assert status == 200, plugins
        plugin = next(p for p in plugins["plugins"] if p["name"] == "telemetry_quality")
        # (the plugin mounts the dashboards beside the report: tests/orchestration/test_dashboards.py)
        assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/telemetry-quality", "/telemetry-dashboards"]
        assert [(v["name"], v["href"], v["url_route"], v["category"]) for v in plugin["external_views"]] == [
            ("Data quality", "telemetry-quality/", "data-quality", "browse"),
            ("Dashboards", "telemetry-dashboards/", "dashboards", "browse"),
        ]
        status, runs = get_json(f"{page_url}api/runs", token["access_token"])
        assert status == 200 and runs["runs"][0]["run_id"] == FAILING_RUN

        # a browser sees the last run first, its failing expectation, the Data Docs link, the chart, and the
        # dbt build whose test failed, with that test
        browser_started = time.monotonic()
        net_logs = []
        net_logs.append(tmp_path / "net-report.json")
        dom = chromium("--dump-dom", page_url, net_log=net_logs[-1]).stdout
        check_page(dom)
        assert DBT_FAILING_TEST in dom[dom.index('<section id="dbt-tests">') :]
        # the monitors: the stale source, the 90 % drop, the new source without history, the history strips
        freshness = dom[dom.index('<section id="freshness">') :]
        assert re.search(r'data-table="minute_snapshots">.*?class="status stale">stale<', freshness, re.S)
        volume = dom[dom.index('<section id="volume">') :]
        assert re.search(r'data-source="host_minutes">.*?class="status flagged">flagged<', volume, re.S)
        assert re.search(r'data-source="product_events">.*?not enough history', volume, re.S)
        assert f'data-key="test.telemetry.{DBT_FAILING_TEST}.0123456789"' in dom
        screenshot = ARTEFACTS / "data-quality-report.png"
        screenshots = {
            screenshot: page_url,
            ARTEFACTS / "data-quality-report-failed-only.png": page_url + "?failed=true",
            ARTEFACTS / "data-docs-offline.png": page_url + "data-docs/" + OFFLINE_PAGE,
        }
        for shot, url in screenshots.items():
            shot.unlink(missing_ok=True)
            net_logs.append(tmp_path / f"net-{shot.stem}.json")
            size = "--window-size=1280,2400" if shot == screenshot else "--window-size=1280,900"
            chromium(
                f"--screenshot={shot}",
                size,
                "--hide-scrollbars",
                "--virtual-time-budget=5000",
                url,
                net_log=net_logs[-1],
            )
        # the Data Docs page (GX's own tags) ran its vendored jQuery and bootstrap-table, from the report
        docs_dom = chromium(
            "--virtual-time-budget=5000",
            "--dump-dom",
            page_url + "data-docs/" + OFFLINE_PAGE,
            net_log=tmp_path / "net-docs.json",
        ).stdout
        net_logs.append(tmp_path / "net-docs.json")
        assert 'data-jquery="3.7.1"' in docs_dom, docs_dom[-1500:]
        # nothing any of these pages loaded left loopback (the report itself, Data Docs, their assets)
        browser_services: set[str] = set()
        for net_log in net_logs:
            hosts, others = page_request_hosts(net_log)
            assert hosts <= LOOPBACK, (net_log.name, hosts - LOOPBACK)
            browser_services |= others
        assert VENDOR_ROUTE in (tmp_path / "net-docs.json").read_text()
        # the "Data quality" menu entry's page in the Airflow UI embeds the report
        ui = chromium("--virtual-time-budget=10000", "--dump-dom", f"{airflow.api_url}/plugin/data-quality").stdout
        assert re.search(r'<iframe[^>]*src="[^"]*telemetry-quality/"[^>]*title="Data quality"', ui), ui[-2000:]
        browser = time.monotonic() - browser_started
        # the bare prefix is sent to the page rather than to the UI's 404
        with urllib.request.urlopen(f"{airflow.api_url}/telemetry-quality", timeout=30) as reply:
            assert reply.url == page_url and FAILING_RUN in reply.read().decode()
    print(f"\napi-server ready in {ready:.1f} s; chromium {browser:.1f} s; screenshot: {screenshot}")
    print(f"chromium's own requests, no page's: {sorted(browser_services - LOOPBACK)}")
    for shot in screenshots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
        assert shot.stat().st_size > 20_000, shot  # a rendered page, not a blank one
