"""``telemetry-ops`` in-process: the plan it prints from a real warehouse's ledgers, and the builds ``reconcile`` and
``rebuild`` run, in order, through the DAGs' build function (replaced here by a recorder: dbt is not run)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from collectors.orchestration import builds
from collectors.orchestration.cadences import CADENCES, Cadence, Window, parse_instant
from collectors.orchestration.cli import main
from collectors.orchestration.rebuild import steps
from collectors.orchestration.reconcile import requested
from collectors.senders.client import IngestClient
from tests.support import records

NOW = "2026-12-20T12:30:00Z"


def at(text: str) -> dt.datetime:
    return parse_instant(text)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Window, str | None, str | None]]:
    """What build_part was asked to build, in order."""
    calls: list[tuple[str, str, Window, str | None, str | None]] = []

    def record(cadence: Cadence, part: str, window: Window, **kwargs: object) -> None:
        calls.append((cadence.name, part, window, kwargs["family"], kwargs["dag_id"]))  # type: ignore[arg-type]

    monkeypatch.setattr(builds, "build_part", record)
    return calls


def ledgers(db: psycopg.Connection) -> None:
    """Every hour and day of 2026-12-19 built on time; then late rows of host metrics for 05:00."""
    day = Window(at("2026-12-19T00:00:00Z"), at("2026-12-20T00:00:00Z"))
    hours = [Window(day.start + dt.timedelta(hours=h), day.start + dt.timedelta(hours=h + 1)) for h in range(24)]
    for cadence, window in [("daily", day)] + [("hourly", hour) for hour in hours]:
        for part in ("marts", "reliability"):
            db.execute(
                "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds,"
                " started_at) values (%s, %s, %s, %s, 1, 1, %s)",
                (cadence, part, window.start, window.end, window.end),
            )
    db.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day,"
        " accepted_by_hour, received_at) values (gen_random_uuid(), 'host_minutes', 1, 0, 0,"
        " '{\"2026-12-19\": 1}', '{\"2026-12-19T05:00:00+00:00\": 1}', '2026-12-20T09:00:00Z')"
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_names_every_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in ("plan", "reconcile", "rebuild", "telemetry-ops rebuild --family day_log --from 2026-01-01"):
        assert word in text


def test_plan_prints_the_windows_and_why_and_builds_nothing(
    warehouse_url: str, db: psycopg.Connection, built: list, capsys: pytest.CaptureFixture[str]
) -> None:
    ledgers(db)
    common = ["--database-url", warehouse_url, "--now", NOW]
    code, out, _ = run(capsys, *common, "plan", "--lookback-days", "1.5", "--json")
    assert code == 0 and built == []
    plan = json.loads(out)
    assert plan["now"] == "2026-12-20T12:30:00+00:00" and plan["since"] == "2026-12-19T00:30:00+00:00"
    late = "late rows arrived 2026-12-20T09:00:00+00:00 after build"
    assert [(p["cadence"], p["window_start"], p["reason"].startswith(late)) for p in plan["due"]] == [
        ("hourly", "2026-12-19T05:00:00+00:00", True),
        *[("hourly", f"2026-12-20T{h:02}:00:00+00:00", False) for h in range(11)],  # never built
    ]
    assert all(p["reason"] == "never built" for p in plan["due"][1:])
    # the day's lag (one day) has not passed; the last hour's has not either
    assert [(p["cadence"], p["window_start"]) for p in plan["pending"]] == [
        ("hourly", "2026-12-20T11:00:00+00:00"),
        ("daily", "2026-12-19T00:00:00+00:00"),
    ]
    assert plan["pending"][1]["due_at"] == "2026-12-21T00:00:00+00:00"
    code, out, _ = run(capsys, *common, "plan", "--lookback-days", "1.5")
    assert code == 0
    assert (
        "due, in the order they are built (12):" in out and "pending, until the lag after them has passed (2):" in out
    )
    assert "  hourly   [2026-12-19T05:00:00+00:00, 2026-12-19T06:00:00+00:00)  late rows arrived" in out


def test_reconcile_builds_the_due_windows_in_order_as_ranges(
    warehouse_url: str, db: psycopg.Connection, built: list, capsys: pytest.CaptureFixture[str]
) -> None:
    ledgers(db)
    now = "2026-12-21T01:00:00Z"  # the day's lag has passed
    code, _, err = run(capsys, "--database-url", warehouse_url, "--now", now, "reconcile", "--lookback-days", "2")
    assert code == 0
    hour_five = Window(at("2026-12-19T05:00:00Z"), at("2026-12-19T06:00:00Z"))
    never = Window(at("2026-12-20T00:00:00Z"), at("2026-12-21T00:00:00Z"))  # hour 00:00 of the 21st is in its lag
    day = Window(at("2026-12-19T00:00:00Z"), at("2026-12-20T00:00:00Z"))
    assert [(c, p, w) for c, p, w, _, _ in built] == [
        ("hourly", "marts", hour_five),
        ("hourly", "reliability", hour_five),
        ("hourly", "marts", never),
        ("hourly", "reliability", never),
        ("daily", "marts", day),
        ("daily", "reliability", day),
    ]  # 2026-12-20 is still in its lag; the week of 2026-12-14 ends on the 21st, its lag a week later
    assert {(family, dag) for *_, family, dag in built} == {(None, "telemetry-ops")}
    assert "building hourly marts [2026-12-19T05:00:00+00:00, 2026-12-19T06:00:00+00:00)" in err
    assert "done: 6 builds for 26 windows; 3 pending" in err


def test_rebuild_takes_every_grain_of_the_days_in_order(built: list, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--now", "2026-08-01T00:00:00Z", "rebuild", "--family", "day_log", "--from", "2026-05-30"]
    code, out, _ = run(capsys, *args, "--to", "2026-06-02")
    assert code == 0
    assert [(c, p, str(w)) for c, p, w, _, _ in built] == [
        ("hourly", "marts", "[2026-05-30T00:00:00+00:00, 2026-06-02T00:00:00+00:00)"),
        ("hourly", "reliability", "[2026-05-30T00:00:00+00:00, 2026-06-02T00:00:00+00:00)"),
        ("daily", "marts", "[2026-05-30T00:00:00+00:00, 2026-06-02T00:00:00+00:00)"),
        ("daily", "reliability", "[2026-05-30T00:00:00+00:00, 2026-06-02T00:00:00+00:00)"),
        ("weekly", "marts", "[2026-05-25T00:00:00+00:00, 2026-06-08T00:00:00+00:00)"),
        ("weekly", "reliability", "[2026-05-25T00:00:00+00:00, 2026-06-08T00:00:00+00:00)"),
        ("monthly", "marts", "[2026-05-01T00:00:00+00:00, 2026-07-01T00:00:00+00:00)"),
    ]
    assert {family for *_, family, _ in built} == {"day_log"}
    assert "asked for [2026-05-30T00:00:00+00:00, 2026-06-02T00:00:00+00:00)" in out


def test_rebuild_dry_run_builds_nothing_and_leaves_unfinished_windows_pending(
    built: list, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--now", "2026-06-01T00:30:00Z", "rebuild", "--from", "2026-05-31", "--to", "2026-06-01", "--dry-run"]
    code, out, _ = run(capsys, *args, "--json")
    assert code == 0 and built == []
    plan = json.loads(out)
    assert [(p["cadence"], p["window_start"], p["due_at"]) for p in plan["pending"]] == [
        ("hourly", "2026-05-31T23:00:00+00:00", "2026-06-01T01:00:00+00:00"),  # one hour's lag
        ("daily", "2026-05-31T00:00:00+00:00", "2026-06-02T00:00:00+00:00"),  # one day's
        ("weekly", "2026-05-25T00:00:00+00:00", "2026-06-08T00:00:00+00:00"),  # one week's
        ("monthly", "2026-05-01T00:00:00+00:00", "2026-06-02T00:00:00+00:00"),  # no lag, but it reads the day
    ]
    assert len(plan["due"]) == 23  # the other hours of the day


def test_errors_say_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rebuild", "--from", "2026-06-02", "--to", "2026-06-01"])
    assert exited.value.code == 2
    assert "--to (2026-06-01) must be after --from (2026-06-02)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rebuild", "--from", "June", "--to", "2026-06-01"])
    assert "'June' is not a date like 2026-01-01" in capsys.readouterr().err
    code, _, err = run(capsys, "--database-url", "postgresql://nobody@127.0.0.1:1/none", "plan")
    assert code == 2 and "cannot read the ledgers" in err and "TELEMETRY_DATABASE_URL" in err


def test_consecutive_windows_of_a_cadence_are_one_range() -> None:
    planned = requested(at("2026-05-30T00:00:00Z"), at("2026-06-02T00:00:00Z"), now=at("2026-08-01T00:00:00Z"))
    ranges = steps(planned.due)
    assert [(s.cadence.name, s.part) for s in ranges] == [(c.name, part) for c in CADENCES.values() for part in c.parts]
    gap = tuple(p for p in planned.due if p.window.start != at("2026-05-31T00:00:00Z") or p.cadence.name != "daily")
    days = [s.window for s in steps(gap) if s.cadence.name == "daily" and s.part == "marts"]
    assert days == [
        Window(at("2026-05-30T00:00:00Z"), at("2026-05-31T00:00:00Z")),
        Window(at("2026-06-01T00:00:00Z"), at("2026-06-02T00:00:00Z")),
    ]


@pytest.mark.slow
def test_rebuild_builds_every_grain_of_a_day_with_dbt_and_again_changes_nothing(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_ARTEFACTS_DIR", str(tmp_path / "artefacts"))
    # the first of last month: its week and its month have ended, and the lags after them have passed
    day = (dt.datetime.now(dt.UTC).date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    db.execute("select raw.ensure_partitions('minute_snapshots', %s, %s)", (day, day))
    for minute in range(3):
        db.execute(
            "insert into raw.minute_snapshots (server_id, minute, battles_total, battles_lobby, battles_in_progress,"
            " player, menu, total) values ('s1', %s, 1, 0, 1, '{1, 2}', '{}', '{1, 2}')",
            (dt.datetime.combine(day, dt.time(0, minute), tzinfo=dt.UTC),),
        )
    args = ["--database-url", warehouse_url, "rebuild", "--from", day.isoformat()]
    args += ["--to", (day + dt.timedelta(days=1)).isoformat()]
    marts = "select " + ", ".join(
        f"(select jsonb_agg(t) from marts.fct_telemetry_{grain} as t)" for grain in ("day", "week", "month")
    )
    assert main(args) == 0
    first = db.execute(marts).fetchone()
    assert [(d["day"], d["minutes_observed"]) for d in first[0]] == [(day.isoformat(), 3)]
    assert len(first[1]) == 1 and first[2][0]["month_start"] == day.isoformat()
    ledger = "select cadence, part, count(*) from quality.dbt_builds where dag_id = 'telemetry-ops' group by 1, 2"
    assert sorted(db.execute(ledger).fetchall()) == sorted(
        (c.name, part, 1) for c in CADENCES.values() for part in c.parts
    )
    assert main(args) == 0
    assert db.execute(marts).fetchone() == first


@pytest.mark.slow
def test_late_rows_landed_by_the_receiver_are_planned_and_reconcile_brings_them_into_the_marts(
    warehouse_url: str,
    db: psycopg.Connection,
    client: IngestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEMETRY_ARTEFACTS_DIR", str(tmp_path / "artefacts"))
    monkeypatch.setenv("TELEMETRY_RELIABILITY_LAG_WINDOWS", "0")  # yesterday is due today, not tomorrow
    day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)

    def land(*minutes: dt.datetime) -> None:
        snapshots = []
        for minute in minutes:
            snapshot = records.snapshot("s1")
            snapshot.minute.CopyFrom(records.ts(minute))
            snapshots.append(snapshot)
        assert client.push_minute_snapshots(snapshots).accepted == len(minutes)

    def minutes_observed() -> int:
        return db.execute(
            "select minutes_observed from marts.fct_telemetry_day where day = %s", (day.date(),)
        ).fetchone()[0]

    common = ["--database-url", warehouse_url]
    land(*(day + dt.timedelta(hours=4, minutes=m) for m in range(3)))
    assert main([*common, "reconcile", "--lookback-days", "2"]) == 0
    assert minutes_observed() == 3
    capsys.readouterr()

    land(day + dt.timedelta(hours=5), day + dt.timedelta(hours=5, minutes=1))  # late: the day was built
    assert main([*common, "plan", "--lookback-days", "2", "--json"]) == 0
    late = {
        (p["cadence"], p["window_start"])
        for p in json.loads(capsys.readouterr().out)["due"]
        if p["reason"].startswith("late rows arrived") and p["reason"].endswith("(raw.minute_snapshots)")
    }
    assert ("daily", day.isoformat()) in late
    assert not [w for w in late if w[0] == "hourly"]  # no hourly model reads the snapshots
    assert main([*common, "reconcile", "--lookback-days", "2"]) == 0
    assert minutes_observed() == 5
    capsys.readouterr()
    assert main([*common, "plan", "--lookback-days", "2", "--json"]) == 0
    assert not [p for p in json.loads(capsys.readouterr().out)["due"] if p["reason"].startswith("late rows")]
