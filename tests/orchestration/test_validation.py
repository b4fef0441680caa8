"""The weekly Great Expectations gate (collectors.orchestration.validation), without Airflow, on a real PostgreSQL.

A simulated day is landed through the receiver and built into marts once (conftest); every test validates
its own copy. Clean data passes and every (suite, asset) run is stored and rendered; each corruption of raw
rows, or of how marts reconcile with raw rows, the ledger or each other, fails the run, and the failing
expectation is named in ``failing_expectations()``, in ``quality.validation_runs.failures`` and in the Data
Docs page of its suite, and nothing else fails. A table that is missing is an error with its cause, not a
data failure. A corruption of a mart's own invariant is the dbt tests' to catch: a real build of that model
fails on exactly that test, and the result is kept in ``quality.dbt_test_results``.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from collectors.orchestration.validation import URL_VARIABLE, ValidationOutcome, validate_week
from tests.support.landed_week import MARTS, LandedWeek

RAW_SUITES = {
    f"raw_{t}": f"raw_{t}_partitions_to_drop"
    for t in (
        "minute_snapshots",
        "message_samples",
        "host_minutes",
        "product_events",
        "accounts_created",
        "server_reports",
    )
}
MART_SUITES = {f"marts_{m}": f"marts_{m}" for m in MARTS}
PASSWORD = "not-a-real-secret-7c1e"  # trust auth ignores it; it must never reach a file under gx_dir


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def run(url: str, week: LandedWeek, gx_dir: Path, *, run_id: str, partitions: bool = True) -> ValidationOutcome:
    started = time.monotonic()
    outcome = validate_week(
        with_password(url),
        week.window_start,
        week.window_end,
        list(week.partitions) if partitions else [],
        gx_dir=gx_dir,
        dag_id="telemetry_weekly",
        run_id=run_id,
    )
    print(f"validate_week {run_id}: {time.monotonic() - started:.1f} s, {len(outcome.results)} suite runs")
    return outcome


def stored_runs(url: str, run_id: str) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("select * from quality.validation_runs where run_id = %s order by validation_id", (run_id,))
        return cur.fetchall()


def page_text(path: Path) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def failed_rows(page: Path) -> list[str]:
    """The text of every row that Data Docs mark as failed on a validation result page."""
    rows = re.findall(r"<tr>(.*?)</tr>", page.read_text(), flags=re.S)
    return [page_text_of(row) for row in rows if "fa-times text-danger" in row]


def page_text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def test_clean_week_passes_every_run_is_stored_and_rendered(week_url: str, landed_week: LandedWeek, tmp_path: Path):
    gx_dir = tmp_path / "gx"
    outcome = run(week_url, landed_week, gx_dir, run_id="scheduled__clean")

    assert outcome.success, outcome.message()
    assert outcome.failing_expectations() == []
    assert {(r.suite, r.asset) for r in outcome.results} == {*RAW_SUITES.items(), *MART_SUITES.items()}
    assert all(r.evaluated >= 1 and r.failed == 0 and r.errored == 0 for r in outcome.results)
    raw = {r.suite: r for r in outcome.results if r.suite in RAW_SUITES}
    assert raw["raw_minute_snapshots"].scope["partitions"] == [f"minute_snapshots_p{landed_week.old_day:%Y%m%d}"]

    rows = stored_runs(week_url, "scheduled__clean")
    assert {(row["suite"], row["asset"]) for row in rows} == {(r.suite, r.asset) for r in outcome.results}
    assert len(rows) == len(outcome.results)
    for row in rows:
        assert row["success"] and row["failed"] == 0 and row["failures"] == []
        assert row["dag_id"] == "telemetry_weekly"
        assert (row["window_start"], row["window_end"]) == (landed_week.window_start, landed_week.window_end)
        assert row["evaluated"] > 0 and row["started_at"] <= row["finished_at"]
        assert Path(row["data_docs_path"]).is_file(), row["data_docs_path"]
    assert next(r for r in rows if r["suite"] == "raw_host_minutes")["scope"]["days"] == [
        landed_week.old_day.isoformat()
    ]

    index = gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert outcome.data_docs_index == index.resolve() and index.is_file()
    listing = index.read_text()
    for suite in (*RAW_SUITES, *MART_SUITES):
        assert suite in listing
    assert "telemetry_weekly__scheduled__clean" in listing
    assert "ge-failed-icon" not in listing

    # The connection string never lands in a file: great_expectations.yml names the variable only,
    # and the variable is gone from the environment after the call.
    config = (gx_dir / "great_expectations.yml").read_text()
    assert "${" + URL_VARIABLE + "}" in config
    assert URL_VARIABLE not in os.environ
    for path in gx_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path

    # Idempotent in the same directory; nothing to drop validates the marts alone.
    again = run(week_url, landed_week, gx_dir, run_id="scheduled__nothing_to_drop", partitions=False)
    assert again.success, again.message()
    assert {(r.suite, r.asset) for r in again.results} == set(MART_SUITES.items())
    assert len(stored_runs(week_url, "scheduled__nothing_to_drop")) == len(MART_SUITES)
    listing = index.read_text()
    assert "telemetry_weekly__scheduled__clean" in listing
    assert "telemetry_weekly__scheduled__nothing_to_drop" in listing


@dataclass(frozen=True)
class Corruption:
    sql: str  # str.format fields: old (the old day), old_p (its partition suffix), window (window start)
    failing: frozenset[tuple[str, str, str]]  # (suite, expectation type, description) that must fail, and only them


LEDGER = "rows per partition day reconcile with quality.ingest_batches (accepted_by_day)"
FIRST_SNAPSHOT = "(select server_id, minute from raw.minute_snapshots_p{old_p} order by minute, server_id limit 1)"

CORRUPTIONS = {
    # (a) a negative battle count in a raw partition about to be dropped (CHECK constraints dropped first)
    "negative_battle_count": Corruption(
        """
        do $$ declare c record; begin
            for c in select conname from pg_constraint
                     where conrelid = 'raw.minute_snapshots'::regclass and contype = 'c' loop
                execute format('alter table raw.minute_snapshots drop constraint %I', c.conname);
            end loop;
        end $$;
        update raw.minute_snapshots set battles_in_progress = -1
        where (server_id, minute) = """
        + FIRST_SNAPSHOT,
        frozenset(
            {
                (
                    "raw_minute_snapshots",
                    "expect_column_values_to_be_between",
                    "battles_in_progress is not negative",
                )
            }
        ),
    ),
    # (b) a duplicated natural key, forced in once the unique constraint is gone; the extra row is not
    # in the ingest ledger either
    "duplicate_natural_key": Corruption(
        """
        alter table raw.minute_snapshots drop constraint minute_snapshots_natural_key;
        insert into raw.minute_snapshots
        select * from raw.minute_snapshots where (server_id, minute) = """
        + FIRST_SNAPSHOT,
        frozenset(
            {
                (
                    "raw_minute_snapshots",
                    "expect_compound_columns_to_be_unique",
                    "natural key (server_id, minute) is unique",
                ),
                ("raw_minute_snapshots", "expect_query_to_return_no_rows", "raw.minute_snapshots " + LEDGER),
            }
        ),
    ),
    # (c) battles in lobby + in progress exceed the total (every count still non-negative)
    "lobby_plus_in_progress_above_total": Corruption(
        """
        update raw.minute_snapshots set battles_lobby = battles_total - battles_in_progress + 1
        where (server_id, minute) = """
        + FIRST_SNAPSHOT,
        frozenset(
            {
                (
                    "raw_minute_snapshots",
                    "expect_query_to_return_no_rows",
                    "counts consistent: battles_lobby + battles_in_progress is at most battles_total",
                )
            }
        ),
    ),
    # (d) a mart row that the raw rows of its period do not account for: an hour of one channel's reliability
    # gone (a mart's own invariants are dbt tests: MART_CORRUPTIONS below)
    "missing_channel_hour": Corruption(
        """
        delete from marts.fct_channel_reliability_hourly
        where (channel_id, hour_start) = (
            select channel_id, hour_start from marts.fct_channel_reliability_hourly
            where samples > 0 and hour_start < timestamptz '{window}'
            order by hour_start, channel_id limit 1)
        """,
        frozenset(
            {
                (
                    "marts_fct_channel_reliability_hourly",
                    "expect_query_to_return_no_rows",
                    "one row per hour and channel with message samples sent in it (days of the dropped partitions)",
                )
            }
        ),
    ),
    # (e) an hour missing for one host in the hourly host metrics (in the weekly window)
    "missing_host_hour": Corruption(
        """
        delete from marts.fct_host_metrics_hourly
        where (host_id, hour_start) = (
            select host_id, hour_start from marts.fct_host_metrics_hourly
            where hour_start >= timestamptz '{window}' + interval '3 hours' order by hour_start, host_id limit 1)
        """,
        frozenset(
            {
                (
                    "marts_fct_host_metrics_hourly",
                    "expect_query_to_return_no_rows",
                    "no gap: one row per host and hour with host records in raw.host_minutes",
                )
            }
        ),
    ),
    # (f) raw rows that the ingest ledger does not account for (one sample lost from a partition to drop)
    "raw_rows_not_in_ledger": Corruption(
        """
        delete from raw.message_samples_p{old_p}
        where ctid = (select ctid from raw.message_samples_p{old_p} order by sent_at, message_id limit 1)
        """,
        frozenset({("raw_message_samples", "expect_query_to_return_no_rows", "raw.message_samples " + LEDGER)}),
    ),
    # (g) a host minute whose maximum is below its average (the receiver refuses such a record today; rows
    # landed before, or by another path, are still checked before they go)
    "maximum_below_average": Corruption(
        """
        update raw.host_minutes_p{old_p} set cpu_percent_max = cpu_percent / 2
        where (host_id, minute) = (
            select host_id, minute from raw.host_minutes_p{old_p} where cpu_percent > 0
            order by minute, host_id limit 1)
        """,
        frozenset(
            {
                (
                    "raw_host_minutes",
                    "expect_query_to_return_no_rows",
                    "readings consistent: cpu_percent_max is at least cpu_percent",
                )
            }
        ),
    ),
    # (h) a snapshot listing more battle ids than it counts battles
    "more_battle_ids_than_battles": Corruption(
        """
        update raw.minute_snapshots set battle_ids = array['x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9'],
            battles_total = 1, battles_lobby = 1, battles_in_progress = 0
        where (server_id, minute) = """
        + FIRST_SNAPSHOT,
        frozenset(
            {
                (
                    "raw_minute_snapshots",
                    "expect_query_to_return_no_rows",
                    "counts consistent: battle_ids lists at most battles_total items",
                )
            }
        ),
    ),
    # (i) a server report that landed (and is in the ingest ledger) after the daily server metrics were built
    "report_missing_from_server_metrics": Corruption(
        """
        insert into raw.server_reports (server_id, reported_at, document)
        values ('late-server', timestamptz '{old} 12:00:00+00', '{{"server_id": "late-server"}}');
        insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day)
        values (gen_random_uuid(), 'server_reports', 1, 0, 0, '{{"{old}": 1}}')
        """,
        frozenset(
            {
                (
                    "marts_fct_server_metrics_daily",
                    "expect_query_to_return_no_rows",
                    "reports per day and server = the rows of raw.server_reports (a row missing on either side fails)",
                )
            }
        ),
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_fails_and_names_the_failing_expectation(
    name: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    corruption = CORRUPTIONS[name]
    statement = corruption.sql.format(
        old=landed_week.old_day, old_p=f"{landed_week.old_day:%Y%m%d}", window=landed_week.window_start.isoformat()
    )
    with psycopg.connect(week_url, autocommit=True) as conn:
        assert conn.execute(statement).rowcount != 0  # the corruption touched a row

    outcome = run(week_url, landed_week, tmp_path / "gx", run_id=f"manual__{name}")

    assert not outcome.success
    failing = {
        (result.suite, failure["expectation"], failure.get("description", ""))
        for result in outcome.results
        for failure in result.failures
    }
    assert failing == corruption.failing, outcome.message()

    lines = outcome.failing_expectations()
    message = outcome.message()
    assert message.startswith("validation failed:")
    rows = {row["suite"]: row for row in stored_runs(week_url, f"manual__{name}")}
    assert len(rows) == len(outcome.results)
    for suite, expectation, description in corruption.failing:
        asset = {**RAW_SUITES, **MART_SUITES}[suite]
        named = [line for line in lines if line.startswith(f"{suite}/{asset}: {expectation}") and description in line]
        assert named and "observed" in named[0], lines
        assert all(line in message for line in named)

        row = rows[suite]
        assert not row["success"] and row["failed"] >= 1
        stored = [f for f in row["failures"] if (f["expectation"], f.get("description")) == (expectation, description)]
        assert stored and stored[0]["observed"] is not None and stored[0].get("sample"), row["failures"]

        page = Path(row["data_docs_path"])
        assert any(description in text for text in failed_rows(page)), failed_rows(page)
    # the suites that passed are stored as passed, and the index marks the failed runs
    assert all(row["success"] for suite, row in rows.items() if suite not in {s for s, _, _ in corruption.failing})
    assert "ge-failed-icon" in outcome.data_docs_index.read_text()


def test_scope_covers_the_partition_days_and_the_window_per_raw_table() -> None:
    from collectors.orchestration.expectations import Scope, day_ranges, mondays
    from collectors.warehouse.partitions import Partition

    start = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday
    old_samples = Partition("message_samples", "message_samples_p20261025", dt.date(2026, 10, 25))
    old_events = Partition("product_events", "product_events_p20260801", dt.date(2026, 8, 1))
    scope = Scope(start, start + dt.timedelta(days=7), (old_events, old_samples))

    window = [dt.date(2026, 11, 2) + dt.timedelta(days=i) for i in range(7)]
    assert scope.window_days == window
    assert scope.days("message_samples") == [dt.date(2026, 10, 25), *window]
    assert scope.days("product_events") == [dt.date(2026, 8, 1), *window]
    assert scope.days("host_minutes") == window  # marts of a table with nothing to drop: the window only
    assert scope.partitions_of("message_samples") == [old_samples]
    assert day_ranges(scope.days("message_samples")) == [
        (dt.date(2026, 10, 25), dt.date(2026, 10, 26)),
        (dt.date(2026, 11, 2), dt.date(2026, 11, 9)),
    ]
    assert mondays(scope.days("message_samples")) == [dt.date(2026, 10, 19), dt.date(2026, 11, 2)]
    # a window that is not day-aligned still covers every day it touches
    assert Scope(start + dt.timedelta(hours=23), start + dt.timedelta(hours=25)).window_days == [
        dt.date(2026, 11, 2),
        dt.date(2026, 11, 3),
    ]


def test_a_missing_table_is_an_error_with_its_cause_not_a_data_failure(
    week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    with psycopg.connect(week_url, autocommit=True) as conn:
        conn.execute("drop table marts.fct_event_counts_daily")

    outcome = run(week_url, landed_week, tmp_path / "gx", run_id="manual__missing_table")
    print(outcome.message())

    assert not outcome.success
    broken = [r for r in outcome.results if not r.success]
    assert [r.suite for r in broken] == ["marts_fct_event_counts_daily"], outcome.message()
    failures = broken[0].failures
    assert failures and all(f.get("errored") is True for f in failures), failures
    assert all("fct_event_counts_daily" in f["exception"] and "does not exist" in f["exception"] for f in failures)
    assert "errored: " in outcome.message() and "does not exist" in outcome.message()
    stored = {row["suite"]: row for row in stored_runs(week_url, "manual__missing_table")}
    row = stored["marts_fct_event_counts_daily"]
    assert row["errored"] == len(failures) == row["failed"]
    assert all(f["errored"] and "does not exist" in f["exception"] for f in row["failures"])
    assert all(r["errored"] == 0 for suite, r in stored.items() if suite != "marts_fct_event_counts_daily")


def test_mart_suites_hold_only_reconciliations() -> None:
    """One home per rule: every mart expectation reads something besides its own mart (raw rows, the ingest
    ledger, another mart); a rule on the mart alone is a dbt test of its model."""
    from collectors.orchestration.expectations import ExpectQueryToReturnNoRows, Scope, build_suites

    start = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    specs = [s for s in build_suites(Scope(start, start + dt.timedelta(days=7))) if s.suite.startswith("marts_")]
    assert {s.suite for s in specs} == set(MART_SUITES)
    for spec in specs:
        mart = spec.asset.removeprefix("marts_")
        assert spec.expectations, spec.suite
        for expectation in spec.expectations:
            assert isinstance(expectation, ExpectQueryToReturnNoRows), (spec.suite, expectation)
            others = set(re.findall(r"\b(raw|quality|marts)\.(\w+)", expectation.unexpected_rows_query))
            assert others - {("marts", mart)}, (spec.suite, expectation.description)


@dataclass(frozen=True)
class MartCorruption:
    sql: str  # str.format fields as Corruption's
    cadence: str
    part: str
    family: str
    build_hours: tuple[int, int]  # the build's window, in hours from the window start: never the corrupted row
    model: str
    failing: str  # the name of the one dbt test of the model that must fail


MART_CORRUPTIONS = {
    "reliability_above_one": MartCorruption(
        """
        update marts.fct_reliability_hourly set reliability = 1.25
        where hour_start = (select min(hour_start) from marts.fct_reliability_hourly where reliability is not null)
        """,
        "hourly",
        "reliability",
        "reliability",
        (10, 11),
        "fct_reliability_hourly",
        "value_between_fct_reliability_hourly_reliability__1__0",
    ),
    "day_log_segment_list_cut_short": MartCorruption(
        """
        update marts.fct_telemetry_day
        set day_log = jsonb_set(day_log, '{{user_counts,player}}', (day_log -> 'user_counts' -> 'player') - 0)
        where day = date '{old}'
        """,
        "daily",
        "marts",
        "day_log",
        (0, 24),
        "fct_telemetry_day",
        "day_log_segment_lists_fct_telemetry_day_day_log__13__battles__user_counts__average_user_counts",
    ),
    "more_warning_minutes_than_minutes_observed": MartCorruption(
        """
        update marts.fct_host_metrics_hourly set cpu_warning_minutes = minutes_observed + 1
        where (host_id, hour_start) = (
            select host_id, hour_start from marts.fct_host_metrics_hourly order by hour_start, host_id limit 1)
        """,
        "hourly",
        "marts",
        "host_metrics",
        (10, 11),
        "fct_host_metrics_hourly",
        "fct_host_metrics_hourly_breach_minutes_within_minutes_observed",
    ),
}


@pytest.mark.parametrize("name", list(MART_CORRUPTIONS))
def test_mart_corruption_fails_the_dbt_test_of_its_model_and_is_kept(
    name: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    from collectors.orchestration.builds import build_part
    from collectors.orchestration.cadences import CADENCES, Window
    from collectors.orchestration.dbt_runner import DbtBuildError

    corruption = MART_CORRUPTIONS[name]
    statement = corruption.sql.format(old=landed_week.old_day, window=landed_week.window_start.isoformat())
    with psycopg.connect(week_url, autocommit=True) as conn:
        assert conn.execute(statement).rowcount == 1
    first, last = corruption.build_hours
    window = Window(
        landed_week.window_start + dt.timedelta(hours=first), landed_week.window_start + dt.timedelta(hours=last)
    )
    started = time.monotonic()
    with pytest.raises(DbtBuildError) as failure:
        build_part(
            CADENCES[corruption.cadence],
            corruption.part,
            window,
            database_url=week_url,
            artefacts_dir=tmp_path / "artefacts",
            dag_id=f"telemetry_{corruption.cadence}",
            run_id=f"manual__{name}",
            family=corruption.family,
        )
    print(f"build_part {name}: {time.monotonic() - started:.1f} s")
    assert [node.split(".")[2] for node in failure.value.failed_nodes] == [corruption.failing]

    with psycopg.connect(week_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        build = cur.execute("select * from quality.dbt_test_runs where run_id = %s", (f"manual__{name}",)).fetchone()
        tests = cur.execute(
            "select * from quality.dbt_test_results where invocation_id = %s order by unique_id",
            (build["invocation_id"],),
        ).fetchall()
    assert build["success"] is False and build["failed"] == 1 and build["errored"] == 0
    assert (build["dag_id"], build["cadence"], build["part"], build["family"]) == (
        f"telemetry_{corruption.cadence}",
        corruption.cadence,
        corruption.part,
        corruption.family,
    )
    assert (build["window_start"], build["window_end"]) == (window.start, window.end)
    assert build["failed_nodes"] == failure.value.failed_nodes
    assert build["tests"] == len(tests) >= 5 and build["passed"] == len(tests) - 1
    assert Path(build["artefacts_path"], "run_results.json").is_file()
    failed = [t for t in tests if t["status"] != "pass"]
    assert [(t["test_name"], t["status"], t["failures"]) for t in failed] == [(corruption.failing, "fail", 1)]
    assert failed[0]["models"] == [corruption.model]
    assert failed[0]["test_type"] == "generic" and failed[0]["run_id"] == f"manual__{name}"
    assert "Got 1 result" in failed[0]["message"] and "select" in failed[0]["compiled_code"].lower()
    assert all(
        t["compiled_code"] is None and t["unique_id"].startswith("test.") for t in tests if t["status"] == "pass"
    )


def test_clean_week_passes_every_dbt_test_of_the_validated_marts(
    week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    """The dbt tests that took over the marts' invariants hold on the landed week, the retention curve included."""
    from collectors.orchestration import dbt_runner as dbt

    started = time.monotonic()
    dbt.build(
        "+fct_retention_weekly_average",
        landed_week.window_start - dt.timedelta(days=1),
        landed_week.window_end,
        database_url=week_url,
        full_refresh=True,
        target_path=tmp_path / "dbt",
    )
    result = dbt.invoke(["test", "--select", " ".join(MARTS)], database_url=week_url, target_path=tmp_path / "dbt")
    print(f"dbt build + test: {time.monotonic() - started:.1f} s, {len(result.nodes)} tests")
    assert len(result.nodes) > 100 and {node.status for node in result.nodes} == {"pass"}
    with psycopg.connect(week_url) as conn:
        offsets = conn.execute("select count(*) from marts.fct_retention_weekly_average").fetchone()[0]
    assert offsets == 13  # weeks 0..12, whatever has matured
