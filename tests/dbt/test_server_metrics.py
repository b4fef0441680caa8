"""Server metrics marts (fct_server_metrics_{minutely,hourly,daily,weekly}) built from game servers' own reports.

The reports are the game server's telemetry document exactly as its documentation shows it, plus variants of it
that cross each threshold at known minutes, one that sits on every threshold without crossing it, and reports
with whole sections missing. They are built the way Airflow builds them (``build_part`` of the hourly, daily and
weekly cadences, one in-process dbt build each) in a database of their own, and every expected value below is
worked out by hand in the comments. Thresholds (warning / critical): CPU > 80 / > 95 %, memory > 85 / > 95 %,
tick rate < 58 / < 55 FPS, the report's own ping p95 > 100 / > 200 ms, packet loss > 1 / > 5 %; a report past
the critical threshold is past the warning one too, and a breach minute is a minute with at least one breaching
report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.orchestration.builds import build_part
from collectors.orchestration.cadences import DAILY, HOURLY, WEEKLY, Cadence, Window
from tests.support.server_reports import DROP, EXAMPLE, variant

DAY = dt.date(2025, 1, 15)  # a Wednesday: the example's own day
NEXT_DAY = dt.date(2025, 1, 16)
WEEK_START = dt.date(2025, 1, 13)  # its Monday
MARTS = {
    "fct_server_metrics_minutely": "minute_start",
    "fct_server_metrics_hourly": "hour_start",
    "fct_server_metrics_daily": "day",
    "fct_server_metrics_weekly": "week_start",
}


def at(day: dt.date, clock: str) -> dt.datetime:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return dt.datetime(day.year, day.month, day.day, hours, minutes, seconds, tzinfo=dt.UTC)


S1, S2 = "server-001", "server-002"
R0 = at(DAY, "10:30:00")
REPORTS: list[tuple[str, dt.datetime, dict[str, Any]]] = [
    # minute 10:30 of server-001: the example, then a warning on every threshold, then a critical one on every one
    (S1, R0, json.loads(EXAMPLE)),
    (
        S1,
        at(DAY, "10:30:05"),
        variant(
            S1,
            at(DAY, "10:30:05"),
            {
                "hardware.cpu_usage_percent": 85.2,  # > 80
                "hardware.memory_usage_percent": 90,  # > 85 (taken as sent; the bytes are not rechecked)
                "performance.tick_rate_fps": 57,  # < 58
                "network.player_ping_percentiles.p95": 151,  # > 100
                "network.player_ping_percentiles.p99": 180,
                "network.packet_loss_percent": 2,  # > 1
            },
        ),
    ),
    (
        S1,
        at(DAY, "10:30:10"),
        variant(
            S1,
            at(DAY, "10:30:10"),
            {
                "hardware.cpu_usage_percent": 97,  # > 95
                "hardware.memory_usage_percent": 96,  # > 95
                "hardware.memory_used_bytes": 8_000_000_000,
                "performance.tick_rate_fps": 54,  # < 55
                "performance.avg_tick_duration_ms": 18.52,
                "performance.tick_duration_percentiles.p95": 19.0,
                "performance.tick_duration_percentiles.p99": 22.0,
                "network.player_ping_percentiles.p95": 250,  # > 200
                "network.player_ping_percentiles.p99": 300,
                "network.packet_loss_percent": 6,  # > 5
                "network.avg_player_ping_ms": 120.5,
                "network.packets_per_sec_incoming": 18000,
                "network.packets_per_sec_outgoing": 14000,
                "network.active_connections": 1200,
                "game.active_player_count": 1200,
            },
        ),
    ),
    # minute 10:31: a calm report, then a CPU warning from a report without its network section
    (
        S1,
        at(DAY, "10:31:00"),
        variant(
            S1,
            at(DAY, "10:31:00"),
            {
                "hardware.cpu_usage_percent": 50,
                "hardware.memory_usage_percent": 30,
                "performance.tick_rate_fps": 60,
                "network.player_ping_percentiles.p95": 80,
                "network.packet_loss_percent": 0.4,
            },
        ),
    ),
    (S1, at(DAY, "10:31:05"), variant(S1, at(DAY, "10:31:05"), {"hardware.cpu_usage_percent": 81, "network": DROP})),
    # minute 11:02: every value exactly on a threshold (no breach but the CPU warning: 95 is > 80, not > 95), then
    # CPU exactly 80 in a report with neither network nor game section
    (
        S1,
        at(DAY, "11:02:00"),
        variant(
            S1,
            at(DAY, "11:02:00"),
            {
                "hardware.cpu_usage_percent": 95,
                "hardware.memory_usage_percent": 85,
                "performance.tick_rate_fps": 58,
                "network.player_ping_percentiles.p95": 100,
                "network.packet_loss_percent": 1,
                "game.active_player_count": 1246,
            },
        ),
    ),
    (
        S1,
        at(DAY, "11:02:05"),
        variant(S1, at(DAY, "11:02:05"), {"hardware.cpu_usage_percent": 80, "network": DROP, "game": DROP}),
    ),
    # the next day (same week): a critical CPU report
    (
        S1,
        at(NEXT_DAY, "00:00:10"),
        variant(
            S1,
            at(NEXT_DAY, "00:00:10"),
            {"hardware.cpu_usage_percent": 99, "network.player_ping_percentiles.p95": 63},
        ),
    ),
    # a second server that reports only its CPU
    (
        S2,
        R0,
        {"server_id": S2, "timestamp": "2025-01-15T10:30:00Z", "hardware": {"cpu_usage_percent": 10.5}},
    ),
]


@pytest.fixture(scope="module")
def server_url(pg_server: local_postgres.PostgresServer, template_url: str) -> Iterator[str]:
    name = f"telemetry_servers_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select raw.ensure_partitions('server_reports', %s, %s)", (DAY, NEXT_DAY))
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into raw.server_reports (server_id, reported_at, document, batch_id)"
                    " values (%s, %s, %s, %s)",
                    [(server, reported_at, json.dumps(doc), uuid.uuid4()) for server, reported_at, doc in REPORTS],
                )
        yield url
    finally:
        local_postgres.drop_database(pg_server.url, name)


WINDOWS: list[tuple[Cadence, Window]] = [
    # ranges of each cadence, as a manual Airflow run passes them: both days hour by hour, both days, the week
    (HOURLY, Window(at(DAY, "00:00:00"), at(NEXT_DAY, "00:00:00") + dt.timedelta(days=1))),
    (DAILY, Window(at(DAY, "00:00:00"), at(NEXT_DAY, "00:00:00") + dt.timedelta(days=1))),
    (WEEKLY, Window(at(WEEK_START, "00:00:00"), at(WEEK_START, "00:00:00") + dt.timedelta(days=7))),
]


def build_all(url: str, artefacts: Path, run: str) -> dict[str, set[str]]:
    """Every cadence's marts part for its window; the models each build ran."""
    built = {}
    for cadence, window in WINDOWS:
        record = build_part(cadence, "marts", window, database_url=url, artefacts_dir=artefacts, run_id=run)
        results = json.loads((record.artefacts_path / "run_results.json").read_text())["results"]
        built[cadence.name] = {
            r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.telemetry.fct_server")
        }
    return built


def snapshot(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            table: [row[0] for row in conn.execute(f"select t::text from marts.{table} as t order by 1").fetchall()]
            for table in MARTS
        }


def row_versions(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            table: [row[0] for row in conn.execute(f"select xmin::text from marts.{table} order by 1").fetchall()]
            for table in MARTS
        }


@pytest.fixture(scope="module")
def built(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    artefacts = tmp_path_factory.mktemp("server_metrics")
    models = build_all(server_url, artefacts, "first")
    return {"models": models, "artefacts": artefacts}


def row(url: str, table: str, period: object, server: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"select to_jsonb(t) from marts.{table} as t where {MARTS[table]} = %s and server_id = %s",
            (period, server),
        ).fetchall()
    assert len(rows) == 1, (table, period, server)
    return rows[0][0]


def breaches(found: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in found.items() if k.endswith(("_reports", "_minutes")) and k != "minutes_observed"}


def breach_counts(**per_threshold: tuple[int, int, int, int]) -> dict[str, int]:
    """name=(warning reports, critical reports, warning minutes, critical minutes); the rest are 0."""
    counts = {}
    for name in ("cpu", "memory", "tick_rate", "ping_p95", "packet_loss"):
        values = per_threshold.get(name, (0, 0, 0, 0))
        for (level, unit), value in zip(
            [("warning", "reports"), ("critical", "reports"), ("warning", "minutes"), ("critical", "minutes")],
            values,
            strict=True,
        ):
            counts[f"{name}_{level}_{unit}"] = value
    return counts


def test_each_cadence_builds_its_server_marts(built: dict[str, Any]) -> None:
    assert built["models"] == {
        "hourly": {"fct_server_metrics_minutely", "fct_server_metrics_hourly"},
        "daily": {"fct_server_metrics_daily"},
        "weekly": {"fct_server_metrics_weekly"},
    }


def test_staging_types_the_document_and_leaves_missing_fields_null(server_url: str, built: dict[str, Any]) -> None:
    with psycopg.connect(server_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        example = cur.execute(
            "select * from staging.stg_game_servers__server_reports where server_id = %s and reported_at = %s",
            (S1, R0),
        ).fetchone()
        count = cur.execute("select count(*) as n from staging.stg_game_servers__server_reports").fetchone()["n"]
        bare = cur.execute(
            "select * from staging.stg_game_servers__server_reports where server_id = %s", (S2,)
        ).fetchone()
    assert count == len(REPORTS)
    # fractional gauges are numeric, exactly as sent
    assert {k: v for k, v in example.items() if k not in ("batch_id", "ingested_at")} == {
        "server_id": S1,
        "reported_at": R0,
        "cpu_usage_percent": Decimal("45.2"),
        "cpu_core_count": 4,
        "memory_used_bytes": 2147483648,
        "memory_total_bytes": 8589934592,
        "memory_usage_percent": Decimal("25.0"),
        "packets_per_sec_incoming": Decimal(15000),
        "packets_per_sec_outgoing": Decimal(12000),
        "avg_player_ping_ms": Decimal("45.3"),
        "player_ping_p50_ms": Decimal("42.0"),
        "player_ping_p95_ms": Decimal("58.0"),
        "player_ping_p99_ms": Decimal("72.0"),
        "active_connections": 1250,
        "packet_loss_percent": None,  # the example carries no packet loss
        "tick_rate_fps": Decimal("59.8"),
        "target_fps": Decimal("60.0"),
        "avg_tick_duration_ms": Decimal("16.72"),
        "tick_duration_p50_ms": Decimal("16.5"),
        "tick_duration_p95_ms": Decimal("17.2"),
        "tick_duration_p99_ms": Decimal("18.5"),
        "active_player_count": 1250,
        "entities_per_map": {"map-001": 5000, "map-002": 3200},
    }
    assert bare["cpu_usage_percent"] == Decimal("10.5")
    typed = set(bare) - {"server_id", "reported_at", "cpu_usage_percent", "batch_id", "ingested_at"}
    assert [k for k in typed if bare[k] is not None] == []  # every field the report lacks is null


def test_minutely_counts_breaching_reports_and_flags_the_minute(server_url: str, built: dict[str, Any]) -> None:
    first = row(server_url, "fct_server_metrics_minutely", R0, S1)
    # 10:30 holds the example, the warning report and the critical report
    assert (first["reports"], first["minutes_observed"]) == (3, 1)
    # CPU 45.2, 85.2, 97: mean 227.4 / 3
    assert (first["cpu_usage_percent_avg"], first["cpu_usage_percent_min"], first["cpu_usage_percent_max"]) == (
        75.8,
        45.2,
        97.0,
    )
    # the reports' own ping p95: 58, 151, 250 -> mean 459 / 3 = 153, max 250; p99 72, 180, 300
    assert (first["ping_p95_mean"], first["ping_p95_max"], first["ping_p99_max"]) == (153.0, 250.0, 300.0)
    # packet loss: only the two variants carry it (2, 6): mean 4
    assert (first["packet_loss_percent_avg"], first["packet_loss_percent_min"]) == (4.0, 2.0)
    # on every threshold: one warning and one critical report (the critical one counts as a warning too)
    assert breaches(first) == breach_counts(
        cpu=(2, 1, 1, 1), memory=(2, 1, 1, 1), tick_rate=(2, 1, 1, 1), ping_p95=(2, 1, 1, 1), packet_loss=(2, 1, 1, 1)
    )

    second = row(server_url, "fct_server_metrics_minutely", at(DAY, "10:31:00"), S1)
    # CPU 50 and 81 (a warning); the second report has no network section: ping, loss, connections from one report
    assert (second["reports"], second["cpu_usage_percent_avg"]) == (2, 65.5)
    assert (second["ping_p95_mean"], second["ping_p95_max"], second["active_connections_avg"]) == (80.0, 80.0, 1250.0)
    assert (second["packet_loss_percent_avg"], second["active_player_count_avg"]) == (0.4, 1250.0)
    assert breaches(second) == breach_counts(cpu=(1, 0, 1, 0))

    boundary = row(server_url, "fct_server_metrics_minutely", at(DAY, "11:02:00"), S1)
    # CPU 95 (a warning, not critical) and 80 (nothing); memory 85, tick rate 58, ping p95 100, loss 1: no breach
    assert breaches(boundary) == breach_counts(cpu=(1, 0, 1, 0))
    assert (boundary["tick_rate_fps_min"], boundary["ping_p95_max"], boundary["packet_loss_percent_max"]) == (
        58.0,
        100.0,
        1.0,
    )

    with psycopg.connect(server_url) as conn:
        minutes = conn.execute(
            "select server_id, minute_start from marts.fct_server_metrics_minutely order by 2, 1"
        ).fetchall()
    assert minutes == [
        (S1, at(DAY, "10:30:00")),
        (S2, at(DAY, "10:30:00")),
        (S1, at(DAY, "10:31:00")),
        (S1, at(DAY, "11:02:00")),
        (S1, at(NEXT_DAY, "00:00:00")),
    ]


def test_hourly_means_are_over_reports(server_url: str, built: dict[str, Any]) -> None:
    hour = row(server_url, "fct_server_metrics_hourly", at(DAY, "10:00:00"), S1)
    expected = {
        "reports": 5,  # 10:30 (3) and 10:31 (2)
        "minutes_observed": 2,
        # 45.2 + 85.2 + 97 + 50 + 81 = 358.4 over 5 reports (the minute means 75.8 and 65.5 would give 70.65)
        "cpu_usage_percent_avg": 71.68,
        "cpu_usage_percent_min": 45.2,
        "cpu_usage_percent_max": 97.0,
        # 25 + 90 + 96 + 30 + 25 = 266 / 5
        "memory_usage_percent_avg": 53.2,
        "memory_usage_percent_min": 25.0,
        "memory_usage_percent_max": 96.0,
        # 4 * 2147483648 + 8000000000 = 16589934592 / 5
        "memory_used_bytes_avg": 3317986918.4,
        "memory_used_bytes_min": 2147483648,
        "memory_used_bytes_max": 8000000000,
        # the report without a network section counts for none of the network gauges: 4 reports
        "packets_per_sec_incoming_avg": 15750.0,  # (3 * 15000 + 18000) / 4
        "packets_per_sec_incoming_min": 15000.0,
        "packets_per_sec_incoming_max": 18000.0,
        "packets_per_sec_outgoing_avg": 12500.0,  # (3 * 12000 + 14000) / 4
        "packets_per_sec_outgoing_min": 12000.0,
        "packets_per_sec_outgoing_max": 14000.0,
        "avg_player_ping_ms_avg": 64.1,  # (3 * 45.3 + 120.5) / 4 = 256.4 / 4
        "avg_player_ping_ms_min": 45.3,
        "avg_player_ping_ms_max": 120.5,
        "active_connections_avg": 1237.5,  # (3 * 1250 + 1200) / 4
        "active_connections_min": 1200,
        "active_connections_max": 1250,
        "packet_loss_percent_avg": 2.8,  # 2 + 6 + 0.4 = 8.4 over the 3 reports that carry it
        "packet_loss_percent_min": 0.4,
        "packet_loss_percent_max": 6.0,
        "tick_rate_fps_avg": 58.12,  # 59.8 + 57 + 54 + 60 + 59.8 = 290.6 / 5
        "tick_rate_fps_min": 54.0,
        "tick_rate_fps_max": 60.0,
        "avg_tick_duration_ms_avg": 17.08,  # 4 * 16.72 + 18.52 = 85.4 / 5
        "avg_tick_duration_ms_min": 16.72,
        "avg_tick_duration_ms_max": 18.52,
        "active_player_count_avg": 1240.0,  # 4 * 1250 + 1200 = 6200 / 5
        "active_player_count_min": 1200,
        "active_player_count_max": 1250,
        # the reports' own percentiles, never a period percentile: ping p95 58, 151, 250, 80 (4 reports)
        "ping_p95_mean": 134.75,  # 539 / 4
        "ping_p95_max": 250.0,
        "ping_p99_max": 300.0,
        "tick_duration_p95_mean": 17.56,  # 4 * 17.2 + 19 = 87.8 / 5
        "tick_duration_p95_max": 19.0,
        "tick_duration_p99_max": 22.0,
        # CPU: 85.2, 97, 81 warn (97 critical), in both minutes; the other thresholds only in 10:30
        **breach_counts(
            cpu=(3, 1, 2, 1),
            memory=(2, 1, 1, 1),
            tick_rate=(2, 1, 1, 1),
            ping_p95=(2, 1, 1, 1),
            packet_loss=(2, 1, 1, 1),
        ),
    }
    assert {k: v for k, v in hour.items() if k not in ("hour_start", "server_id")} == expected

    # the minutely rows add up to the hour: breach minutes are minutes, and a minute counts once
    with psycopg.connect(server_url) as conn:
        summed = conn.execute(
            "select sum(reports), sum(minutes_observed), sum(cpu_warning_reports), sum(cpu_warning_minutes),"
            " sum(cpu_critical_minutes) from marts.fct_server_metrics_minutely"
            " where server_id = %s and minute_start >= %s and minute_start < %s",
            (S1, at(DAY, "10:00:00"), at(DAY, "11:00:00")),
        ).fetchone()
    assert summed == (5, 2, 3, 2, 1)

    later = row(server_url, "fct_server_metrics_hourly", at(DAY, "11:00:00"), S1)
    # 95 and 80: one CPU warning; the second report has no game section, the first says 1246 players
    assert (later["reports"], later["minutes_observed"], later["cpu_usage_percent_avg"]) == (2, 1, 87.5)
    assert (later["active_player_count_avg"], later["ping_p95_mean"], later["ping_p95_max"]) == (1246.0, 100.0, 100.0)
    assert breaches(later) == breach_counts(cpu=(1, 0, 1, 0))

    bare = row(server_url, "fct_server_metrics_hourly", at(DAY, "10:00:00"), S2)
    assert (bare["reports"], bare["minutes_observed"], bare["cpu_usage_percent_avg"]) == (1, 1, 10.5)
    assert bare["tick_rate_fps_avg"] is None and bare["ping_p95_mean"] is None and bare["ping_p95_max"] is None
    assert breaches(bare) == breach_counts()


def test_daily_and_weekly_count_every_report_and_minute(server_url: str, built: dict[str, Any]) -> None:
    day = row(server_url, "fct_server_metrics_daily", DAY, S1)
    # 7 reports in minutes 10:30, 10:31, 11:02; CPU 358.4 + 95 + 80 = 533.4 / 7
    assert (day["reports"], day["minutes_observed"], day["cpu_usage_percent_avg"]) == (7, 3, 76.2)
    # ping p95 of the 5 reports with a network section: 58 + 151 + 250 + 80 + 100 = 639 / 5
    assert (day["ping_p95_mean"], day["ping_p95_max"]) == (127.8, 250.0)
    # connections 4950 + 1250 over 5; players 6200 + 1246 over 6
    assert (day["active_connections_avg"], day["active_player_count_avg"]) == (1240.0, 1241.0)
    # CPU warnings 85.2, 97, 81, 95 in three minutes; 95 exactly is not critical, 80 exactly is nothing
    assert breaches(day) == breach_counts(
        cpu=(4, 1, 3, 1), memory=(2, 1, 1, 1), tick_rate=(2, 1, 1, 1), ping_p95=(2, 1, 1, 1), packet_loss=(2, 1, 1, 1)
    )
    next_day = row(server_url, "fct_server_metrics_daily", NEXT_DAY, S1)
    assert (next_day["reports"], next_day["cpu_usage_percent_avg"]) == (1, 99.0)
    assert breaches(next_day) == breach_counts(cpu=(1, 1, 1, 1))
    assert row(server_url, "fct_server_metrics_daily", DAY, S2)["reports"] == 1

    week = row(server_url, "fct_server_metrics_weekly", WEEK_START, S1)
    # both days: 8 reports in 4 minutes; CPU 533.4 + 99 = 632.4 / 8; ping p95 639 + 63 = 702 over 6 reports
    assert (week["reports"], week["minutes_observed"], week["cpu_usage_percent_avg"]) == (8, 4, 79.05)
    assert (week["cpu_usage_percent_min"], week["cpu_usage_percent_max"]) == (45.2, 99.0)
    assert (week["ping_p95_mean"], week["ping_p95_max"], week["tick_rate_fps_min"]) == (117.0, 250.0, 54.0)
    assert breaches(week) == breach_counts(
        cpu=(5, 2, 4, 2), memory=(2, 1, 1, 1), tick_rate=(2, 1, 1, 1), ping_p95=(2, 1, 1, 1), packet_loss=(2, 1, 1, 1)
    )


def test_no_column_is_named_like_a_period_percentile(server_url: str, built: dict[str, Any]) -> None:
    with psycopg.connect(server_url) as conn:
        columns = conn.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'marts' and table_name like 'fct_server_metrics_%%'"
        ).fetchall()
    assert {table for table, _ in columns} == set(MARTS)
    assert [c for c in columns if re.search(r"_p(50|95|99)$", c[1])] == []
    percentile_columns = {c for _, c in columns if re.search(r"_p\d\d_", c)}
    assert percentile_columns == {
        "ping_p95_mean",
        "ping_p95_max",
        "ping_p99_max",
        "tick_duration_p95_mean",
        "tick_duration_p95_max",
        "tick_duration_p99_max",
    } | {f"ping_p95_{level}_{unit}" for level in ("warning", "critical") for unit in ("reports", "minutes")}


def test_a_second_build_of_the_same_windows_changes_nothing(server_url: str, built: dict[str, Any]) -> None:
    before, versions = snapshot(server_url), row_versions(server_url)
    assert all(before.values())
    build_all(server_url, built["artefacts"], "again")
    assert row_versions(server_url) != versions  # the windows' rows were deleted and inserted again ...
    assert snapshot(server_url) == before  # ... identical
