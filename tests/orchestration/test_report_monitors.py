"""The report's history strips, freshness, volume, ingest ledger, refused records, filter and models page.

Against a real migrated warehouse (FastAPI's TestClient over ``create_app``), each with rows written as the
real writers write them: dbt builds as ``collectors.orchestration.test_results`` stores them, ledger rows as
the ingest writer, raw rows with their ingest times, freshness checked by ``collectors.orchestration.freshness``
(the rules read from the dbt project's ``__sources.yml``). The band's arithmetic is tested on its own below.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
import warnings
from pathlib import Path

import psycopg
import pytest

from collectors.orchestration import freshness
from collectors.orchestration.report import create_app
from collectors.orchestration.report_monitors import MIN_WEEKS, VolumeHour, volumes
from tests.orchestration.test_report_page import insert_build, insert_run

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
HOUR = NOW.replace(minute=0, second=0)  # the current (incomplete) hour starts here
DAILY_TEST = "accepted_range_fct_telemetry_day_players__0"
DAILY_MODEL = "fct_reliability_hourly"  # what insert_build says every test tests


def client(url: str, tmp_path: Path) -> TestClient:
    return TestClient(
        create_app(
            database_url=lambda: url,
            docs_root=lambda: tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site",
            artefacts_dir=lambda: tmp_path / "artefacts",
            clock=lambda: NOW,  # the hours the rows were written for, even when the test crosses an hour
        )
    )


def section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}">')
    return html[start : html.index("</section>", start)]


# --------------------------------------------------------------------------- dbt history, filter, models page


def daily_builds(conn: psycopg.Connection) -> list[str]:
    """Five daily builds: the test passes four times, then fails; another test always passes."""
    ids = []
    for i in range(5):
        invocation = f"daily-{i}-{uuid.uuid4().hex[:6]}"
        status, failures, message = (
            ("fail", 7, "Got 7 results, configured to fail if != 0") if i == 4 else ("pass", 0, "")
        )
        insert_build(
            conn,
            invocation,
            NOW - dt.timedelta(days=5 - i),
            [(DAILY_TEST, status, failures, message), ("not_null_fct_telemetry_day_day", "pass", 0, "")],
            cadence="daily",
            part="marts",
            run_id=f"scheduled__day-{i}",
        )
        ids.append(invocation)
    return ids


def write_manifest(tmp_path: Path) -> None:
    target = tmp_path / "artefacts" / "target" / "daily"
    target.mkdir(parents=True)
    manifest = {
        "metadata": {"generated_at": NOW.isoformat(), "invocation_id": "x"},
        "nodes": {
            f"model.telemetry.{DAILY_MODEL}": {
                "resource_type": "model",
                "name": DAILY_MODEL,
                "schema": "marts",
                "alias": DAILY_MODEL,
                "description": "Reliability per channel and hour <b>escaped</b>.",
                "original_file_path": f"models/marts/{DAILY_MODEL}.sql",
                "columns": {"reliability": {"name": "reliability", "description": "Share of messages seen."}},
                "tags": ["hourly"],
            },
            f"test.telemetry.{DAILY_TEST}.0123456789": {
                "resource_type": "test",
                "name": DAILY_TEST,
                "depends_on": {"nodes": [f"model.telemetry.{DAILY_MODEL}"]},
            },
        },
        "sources": {},
    }
    (target / "manifest.json").write_text(json.dumps(manifest))


def test_a_failing_dbt_test_of_a_daily_build_shows_with_its_model_and_history(
    warehouse_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        builds = daily_builds(conn)
    write_manifest(tmp_path)
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
        failed_only = http.get("/?failed=true").text
        api = http.get("/api/runs").json()
        models = http.get("/models")
    dbt = section(html, "dbt-tests")
    # the failing build with its test and model, linked to the model's section of the models page
    assert f'data-invocation-id="{builds[-1]}"' in dbt
    row = dbt[dbt.index(f'data-key="test.telemetry.{DAILY_TEST}.0123456789"') :]
    row = row[: row.index("</tr>")]
    assert DAILY_TEST in row and f'href="models#node-{DAILY_MODEL}"' in row and "daily marts" in row
    # its strip: five runs oldest first, the last failed
    assert re.findall(r'data-status="(\w+)"', row) == ["pass", "pass", "pass", "pass", "fail"]
    assert '<td class="num fail">1</td>' in row
    # the failing one comes first; the always-passing one is listed too, but not under "failed only"
    keys = re.findall(r'dbt-history-row" data-key="([^"]+)"', dbt)
    assert keys[0] == f"test.telemetry.{DAILY_TEST}.0123456789" and len(keys) == 2
    assert re.findall(r'dbt-history-row" data-key="([^"]+)"', section(failed_only, "dbt-tests")) == keys[:1]
    assert 'id="failed-only"' in failed_only and 'id="failed-only-link"' in html
    history = {h["name"]: h for h in api["dbt_test_history"]}
    assert [r["status"] for r in history[DAILY_TEST]["runs"]] == ["pass"] * 4 + ["fail"]
    assert history[DAILY_TEST]["runs"][-1]["run"] == builds[-1]
    # the models page has the model's section, its test with the last status, the description escaped
    assert models.status_code == 200
    assert f'id="node-{DAILY_MODEL}"' in models.text and DAILY_TEST in models.text
    assert "&lt;b&gt;escaped&lt;/b&gt;" in models.text and "<b>escaped" not in models.text
    part = models.text[models.text.index(DAILY_TEST) :]
    assert part.index("fail") < part.index("</p>")


def test_without_a_manifest_failures_are_not_linked_and_the_models_page_says_why(
    warehouse_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        daily_builds(conn)
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
        models = http.get("/models").text
    assert DAILY_TEST in html and 'href="models#' not in html and 'id="models-link"' not in html
    assert 'id="no-models"' in models


def test_validation_history_has_a_strip_per_asset_and_failing_expectation(warehouse_url: str, tmp_path: Path) -> None:
    failure = {"expectation": "expect_column_values_to_not_be_null", "column": "server_id", "observed": "2 nulls"}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for week in range(3):
            failures = [failure] if week == 1 else []
            insert_run(
                conn,
                f"scheduled__week-{week}",
                NOW - dt.timedelta(weeks=3 - week),
                [("raw", "raw_minute_snapshots", failures), ("raw", "raw_host_minutes", [])],
                docs_path=f"/x/local_site/validations/week-{week}.html",
            )
    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    (site / "validations").mkdir(parents=True)
    (site / "validations" / "week-1.html").write_text("<html>week 1</html>")
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
        failed_only = http.get("/?failed=true").text
    runs = section(html, "validation-runs")
    table = runs[runs.index('id="validation-history"') :]
    rows = dict(re.findall(r'data-key="([^"]+)">(.*?)</tr>', table, re.S))
    assert re.findall(r'data-status="(\w+)"', rows["raw/raw_minute_snapshots"]) == ["passed", "failed", "passed"]
    assert re.findall(r'data-status="(\w+)"', rows["raw/raw_host_minutes"]) == ["passed"] * 3
    key = "raw/raw_minute_snapshots/expect_column_values_to_not_be_null/server_id"
    assert re.findall(r'data-status="(\w+)"', rows[key]) == ["passed", "failed", "passed"]
    # a failure links to its Data Docs result page
    failing_run = runs[runs.index('data-run-id="scheduled__week-1"') :]
    assert (
        'class="docs-link" href="data-docs/validations/week-1.html"' in failing_run[: failing_run.index("</article>")]
    )
    # "failed only": the passing runs and the asset that always passed are gone
    shown = section(failed_only, "validation-runs")
    assert re.findall(r'data-run-id="([^"]+)"', shown) == ["scheduled__week-1"]
    assert "raw/raw_host_minutes" not in shown and key in shown


# --------------------------------------------------------------------------- freshness


def insert_raw(conn: psycopg.Connection) -> None:
    """minute_snapshots last landed 10 h ago (stale: 6 h), accounts_created 30 h ago (late: 26 h, stale 50 h),
    message_samples a minute ago; product_events only in a partition older than the check reads."""
    conn.execute(
        "insert into raw.minute_snapshots (server_id, minute, battles_total, battles_lobby, battles_in_progress,"
        " ingested_at) values ('s1', %s, 1, 0, 1, %s)",
        (NOW - dt.timedelta(hours=10, minutes=1), NOW - dt.timedelta(hours=10)),
    )
    conn.execute(
        "insert into raw.accounts_created (event_id, user_id, created_at, ingested_at) values ('e1', 'u1', %s, %s)",
        (NOW - dt.timedelta(hours=30), NOW - dt.timedelta(hours=30)),
    )
    conn.execute(
        "insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at, created_at)"
        " values ('m1', 'c1', 'k1', %s, %s)",
        (NOW - dt.timedelta(minutes=2), NOW - dt.timedelta(minutes=1)),
    )
    conn.execute(
        "insert into raw.product_events (event_id, schema_version, channel, event, timestamp, user_id, ingested_at)"
        " values ('p1', 'telemetry_event_v1', 'app', 'opened', %s, 'u1', %s)",
        (NOW - dt.timedelta(days=6), NOW - dt.timedelta(minutes=5)),
    )


def test_freshness_follows_the_dbt_rules_and_a_stale_source_shows_as_stale(warehouse_url: str, tmp_path: Path) -> None:
    rules = {r.table_name: r for r in freshness.load_rules()}
    assert rules["minute_snapshots"].error_after == dt.timedelta(hours=6)
    assert rules["product_events"].warn_after == dt.timedelta(hours=26)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        insert_raw(conn)
    checks = {c.rule.table_name: c for c in freshness.check_freshness(warehouse_url, now=NOW)}
    assert set(checks) == set(rules)
    assert checks["minute_snapshots"].status == "error"
    assert checks["minute_snapshots"].age == dt.timedelta(hours=10)
    assert checks["accounts_created"].status == "warn"
    assert checks["message_samples"].status == "pass"
    # the product event's partition is older than the check reads: it does not make the source fresh
    assert checks["product_events"].max_loaded_at is None and checks["product_events"].status == "error"
    freshness.store_freshness(warehouse_url, list(checks.values()), dag_id="telemetry_hourly", run_id="r1")
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
        failed_only = http.get("/?failed=true").text
        api = http.get("/api/runs").json()
    table = section(html, "freshness")
    rows = dict(re.findall(r'data-table="(\w+)">(.*?)</tr>', table, re.S))
    assert 'class="status stale">stale<' in rows["minute_snapshots"] and "10.0 h" in rows["minute_snapshots"]
    assert 'class="status late">late<' in rows["accounts_created"]
    assert 'class="status fresh">fresh<' in rows["message_samples"]
    assert "none in the partitions read" in rows["product_events"]
    summary = section(html, "summary")
    assert "stale source" in summary and "minute_snapshots" in summary
    assert 'data-table="message_samples"' not in section(failed_only, "freshness")
    by_table = {f["table"]: f["label"] for f in api["monitors"]["freshness"]}
    assert by_table["minute_snapshots"] == "stale" and by_table["message_samples"] == "fresh"


def test_the_freshness_query_reads_only_the_recent_partitions(warehouse_url: str) -> None:
    rule = next(r for r in freshness.load_rules() if r.table_name == "minute_snapshots")
    since = freshness.lookback_from(rule, NOW)
    with psycopg.connect(warehouse_url) as conn:
        partitions = [
            name for (name,) in conn.execute("select relname from pg_class where relname like 'minute_snapshots_p%'")
        ]
        plan = "\n".join(
            line
            for (line,) in conn.execute(b"explain " + freshness.freshness_query(rule, since, "minute").as_bytes(conn))
        )
    read = set(re.findall(r"minute_snapshots_p(\d{8})", plan))
    assert read and all(day >= since.strftime("%Y%m%d") for day in read)
    assert len(read) < len(partitions)  # the older ones exist, and are not read


def test_no_check_yet_says_the_hourly_dag_does_it(warehouse_url: str, tmp_path: Path) -> None:
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
    assert "No freshness check yet" in section(html, "freshness") and "telemetry_hourly" in section(html, "freshness")


# --------------------------------------------------------------------------- volume, ledger, rejects


def ledger(conn: psycopg.Connection, source: str, at: dt.datetime, accepted: int, **counts: int) -> None:
    conn.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, conflicts, deferred,"
        " received_at) values (%s, %s, %s, %s, %s, 0, 0, %s)",
        (uuid.uuid4(), source, accepted, counts.get("duplicates", 0), counts.get("rejected", 0), at),
    )


def test_a_90_percent_drop_is_flagged_and_a_first_week_is_not_enough_history(
    warehouse_url: str, tmp_path: Path
) -> None:
    last = HOUR - dt.timedelta(hours=1)  # the last complete hour
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        # host_minutes: five weeks of 1,000 rows an hour (one batch each hour), the last hour 100
        hour = last - dt.timedelta(weeks=4, hours=30)
        while hour <= last:
            ledger(conn, "host_minutes", hour + dt.timedelta(minutes=7), 100 if hour == last else 1000, duplicates=3)
            hour += dt.timedelta(hours=1)
        # product_events: landing since four days only
        hour = last - dt.timedelta(days=4)
        while hour <= last:
            ledger(conn, "product_events", hour + dt.timedelta(minutes=1), 50, rejected=2)
            hour += dt.timedelta(hours=1)
        for i, reason in enumerate(
            ["payload: not a JSON object", "timestamp: more than 5 minutes ahead"] * 3 + ["dnt"]
        ):
            conn.execute(
                "insert into raw.rejects (source, reason, record, rejected_at) values ('product_events', %s, 'x', %s)",
                (reason, NOW - dt.timedelta(hours=i)),
            )
    with client(warehouse_url, tmp_path) as http:
        html = http.get("/").text
        failed_only = http.get("/?failed=true").text
        api = http.get("/api/runs").json()
    volume = section(html, "volume")
    rows = dict(re.findall(r'data-source="(\w+)">(.*?)</tr>', volume, re.S))
    assert 'class="status flagged">flagged<' in rows["host_minutes"]
    cells = re.findall(r'data-status="(\w+)"', rows["host_minutes"])
    assert cells == ["ok"] * 23 + ["low"]
    assert f'data-hour="{last.isoformat()}"' in rows["host_minutes"] and "100 vs 1000" in rows["host_minutes"]
    assert 'class="status history">not enough history<' in rows["product_events"]
    assert set(re.findall(r'data-status="(\w+)"', rows["product_events"])) == {"history"}
    assert "flagged" not in rows["product_events"]
    assert re.findall(r'data-source="(\w+)"', section(failed_only, "volume")) == ["host_minutes"]
    assert "outside the band" in section(html, "summary")
    by_source = {v["source"]: v for v in api["monitors"]["volume"]}
    assert by_source["host_minutes"]["hours"][-1] == {
        "hour": last.isoformat(),
        "rows": 100,
        "expected": 1000,
        "weeks": 4,
        "status": "low",
    }
    # the ledger per source and day, and the refused records' reasons, most first
    days = re.findall(
        r'<tr class="ledger-row">\s*<td>([\d-]+)</td><td><code>(\w+)</code></td>', section(html, "ingest-ledger")
    )
    assert (last.date().isoformat(), "host_minutes") in days and (last.date().isoformat(), "product_events") in days
    ledger_api = [d for d in api["monitors"]["ledger_daily"] if d["source"] == "product_events"]
    assert sum(d["rejected"] for d in ledger_api) == 2 * sum(d["batches"] for d in ledger_api)
    reasons = [(r["reason"], r["records"]) for r in api["monitors"]["reject_reasons"]]
    assert reasons == [("payload: not a JSON object", 3), ("timestamp: more than 5 minutes ahead", 3), ("dnt", 1)]
    assert "payload: not a JSON object" in section(html, "ingest-ledger")


def steady(weeks: int, rows: int = 1000, *, last_rows: int | None = None) -> tuple[list, dt.datetime]:
    until = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    start = until - dt.timedelta(weeks=weeks)
    data, hour = [], start
    while hour < until:
        data.append(("s", hour, rows))
        hour += dt.timedelta(hours=1)
    if last_rows is not None:
        data[-1] = ("s", data[-1][1], last_rows)
    return data, until


@pytest.mark.parametrize(
    ("last_rows", "status"),
    [(100, "low"), (499, "low"), (500, "ok"), (1000, "ok"), (2000, "ok"), (2001, "high"), (0, "low")],
)
def test_the_band_is_half_to_twice_the_median(last_rows: int, status: str) -> None:
    data, until = steady(5, last_rows=last_rows)
    (volume,) = volumes(data, until)
    assert volume.last is not None and volume.last.expected == 1000 and volume.last.status == status


def test_history_needs_weeks_in_which_the_source_landed() -> None:
    data, until = steady(1, last_rows=100)  # a first week: nothing to compare with, whatever the drop
    assert {h.status for h in volumes(data, until)[0].hours} == {"history"}
    # steady(n) has the last hour in n - 1 weeks before: one week short, then enough
    data, until = steady(MIN_WEEKS, last_rows=100)
    assert volumes(data, until)[0].last.status == "history"  # type: ignore[union-attr]
    data, until = steady(MIN_WEEKS + 1, last_rows=100)
    assert volumes(data, until)[0].last.status == "low"  # type: ignore[union-attr]
    # an hour without any batch in a week the source was landing counts as zero rows
    data, until = steady(5)
    data = [row for row in data if row[1] != until - dt.timedelta(weeks=2, hours=1)]
    assert volumes(data, until)[0].last.weeks == 4  # type: ignore[union-attr]
    # a week the source was down the whole 24 hours gives no history, rather than zeros to compare with
    data, until = steady(5)
    down = (until - dt.timedelta(weeks=2, hours=24), until - dt.timedelta(weeks=2))
    data = [row for row in data if not down[0] <= row[1] < down[1]]
    assert volumes(data, until)[0].last.weeks == 3  # type: ignore[union-attr]
    # small numbers: within MIN_ROWS of the median is no alarm
    assert VolumeHour(until, 3, 1, 4).status == "ok" and VolumeHour(until, 0, 12, 4).status == "low"
