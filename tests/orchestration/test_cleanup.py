"""The weekly cleanup's plan and drop, on a real migrated warehouse (no Airflow)."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.orchestration.builds import selection
from collectors.orchestration.cadences import DAILY, HOURLY, WEEKLY, Window, refuse_unfinished, run_window
from collectors.orchestration.cleanup import (
    count_rows,
    detach_partitions,
    drop_expired_detached,
    missing_builds,
    plan_cleanup,
)
from collectors.warehouse import cli as db_cli
from collectors.warehouse.partitions import ReattachError, detached_partitions, list_partitions, reattach

TODAY = dt.datetime.now(dt.UTC).date()
AS_OF = TODAY - dt.timedelta(days=TODAY.weekday())  # this week's Monday
GRACE = dt.timedelta(days=7)


def record(conn: psycopg.Connection, cadence: str, part: str, start: dt.datetime, end: dt.datetime) -> None:
    conn.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds)"
        " values (%s, %s, %s, %s, 1, 0)",
        (cadence, part, start, end),
    )


def cover_everything(conn: psycopg.Connection) -> None:
    start = dt.datetime.combine(TODAY - dt.timedelta(weeks=20), dt.time(), dt.UTC)
    start -= dt.timedelta(days=start.weekday())
    end = dt.datetime.combine(TODAY + dt.timedelta(weeks=2), dt.time(), dt.UTC)
    end -= dt.timedelta(days=end.weekday())
    for cadence in ("hourly", "daily", "weekly"):
        for part in ("marts", "reliability"):
            record(conn, cadence, part, start, end)


def test_nothing_is_dropped_before_it_is_aggregated(db: psycopg.Connection) -> None:
    plan = plan_cleanup(db, RetentionDays(message_samples=2), as_of=AS_OF, tables=["message_samples"])
    assert plan.drop == [] and plan.keep
    assert all(k.reason.startswith("not aggregated yet: hourly reliability") for k in plan.keep)


def test_message_samples_need_the_neighbouring_windows_built(db: psycopg.Connection) -> None:
    day = AS_OF - dt.timedelta(days=10)
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    for cadence in ("hourly", "daily"):
        record(db, cadence, "reliability", start, start + dt.timedelta(days=1))
    week = WEEKLY.floor(start)
    record(db, "weekly", "reliability", week, week + WEEKLY.length)
    missing = missing_builds(db, "message_samples", day)
    # the hour before and after the day, the days either side and the weeks either side are still missing
    assert f"hourly reliability {(start - HOURLY.length).isoformat()}" in missing
    assert f"hourly reliability {(start + DAILY.length).isoformat()}" in missing
    assert f"daily reliability {(start - DAILY.length).isoformat()}" in missing
    assert f"weekly reliability {(week - WEEKLY.length).isoformat()}" in missing
    assert len(missing) == 2 + 2 + 2
    assert missing_builds(db, "minute_snapshots", day) == [
        f"daily marts {start.isoformat()}",
        f"weekly marts {week.isoformat()}",
    ]


def test_detaches_exactly_the_validated_partitions_older_than_the_retention(db: psycopg.Connection) -> None:
    cover_everything(db)
    retention = RetentionDays(message_samples=2, minute_snapshots=2, host_minutes=2)
    tables = ["message_samples", "minute_snapshots", "host_minutes"]
    plan = plan_cleanup(db, retention, as_of=AS_OF, tables=tables)
    cutoff = AS_OF - dt.timedelta(days=2)
    assert plan.keep == [] and plan.drop
    assert all(p.day < cutoff for p in plan.drop)
    validated = [p for p in plan.drop if p.table != "host_minutes"]  # say host minutes were not validated
    dropped = detach_partitions(
        db, plan, count_rows(db, validated), grace=GRACE, dag_id="telemetry_weekly", run_id="test"
    )
    assert sorted(dropped, key=str) == sorted(validated, key=str)
    for table in tables:
        days = {p.day for p in list_partitions(db, table)}
        if table == "host_minutes":
            assert any(d < cutoff for d in days)
        else:
            assert days and min(days) >= cutoff  # everything older is gone, everything newer is there
    log = db.execute("select action, count(*) from quality.cleanup_log group by action").fetchall()
    kept = sum(1 for p in plan.drop if p.table == "host_minutes")
    assert dict(log) == {"detached": len(validated), "kept": kept}
    assert {d.partition for d in detached_partitions(db)} == set(validated)


def test_selection_per_part_and_family() -> None:
    assert selection(HOURLY, "marts").select == (
        "tag:hourly +tag:hourly,config.materialized:view +tag:hourly,resource_type:seed"
    )
    assert selection(HOURLY, "marts").exclude == "tag:reliability"
    assert selection(DAILY, "reliability").select == "tag:daily,tag:reliability"
    family = selection(WEEKLY, "marts", "host_metrics")
    assert family.select == "tag:weekly,int_host_* tag:weekly,fct_host_metrics_*"
    assert family.exclude == "tag:reliability"
    with pytest.raises(ValueError, match="unknown model family"):
        selection(WEEKLY, "marts", "nope")


def test_run_window_is_the_data_interval_or_an_aligned_manual_range() -> None:
    start = dt.datetime(2026, 11, 2, 4, tzinfo=dt.UTC)
    context = {"params": {}, "data_interval_start": start, "data_interval_end": start + HOURLY.length}
    assert run_window(context, HOURLY) == Window(start, start + HOURLY.length)
    manual = {"params": {"window_start": "2026-11-02T00:00:00Z", "window_end": "2026-11-04T00:00:00Z"}}
    assert run_window(manual, DAILY).end - run_window(manual, DAILY).start == dt.timedelta(days=2)
    with pytest.raises(ValueError, match="not on a daily boundary"):
        run_window({"params": {"window_start": "2026-11-02T01:00:00", "window_end": "2026-11-03T00:00:00"}}, DAILY)
    with pytest.raises(ValueError, match="empty window"):
        Window(start, start)


def test_a_window_that_ends_in_the_future_is_refused_and_drops_nothing_inside_the_retention(
    db: psycopg.Connection,
) -> None:
    now = dt.datetime.now(dt.UTC)
    monday = WEEKLY.floor(now)
    with pytest.raises(ValueError, match="ends after now"):
        refuse_unfinished(Window(monday, monday + WEEKLY.length), now)
    refuse_unfinished(Window(monday - WEEKLY.length, monday), now)  # the last complete week is fine
    cover_everything(db)
    # a plan asked for as of a day after tomorrow still counts the retention back from today
    retention = RetentionDays(message_samples=2)
    plan = plan_cleanup(db, retention, as_of=TODAY + dt.timedelta(days=3), tables=["message_samples"])
    assert plan.as_of == TODAY
    assert plan.drop and all(p.day < TODAY - dt.timedelta(days=2) for p in plan.drop)
    assert not [p for p in plan.drop if p.day >= TODAY]
    # and even a plan that lists today's partition (made by hand here) never drops it
    (todays,) = [p for p in list_partitions(db, "message_samples") if p.day == TODAY]
    plan.drop.append(todays)
    dropped = detach_partitions(db, plan, {**count_rows(db, plan.drop)}, grace=GRACE, run_id="future")
    assert todays not in dropped and todays in list_partitions(db, "message_samples")
    assert db.execute(
        "select reason from quality.cleanup_log where partition_name = %s", (todays.name,)
    ).fetchone() == ("today's and future partitions are never dropped",)


def test_rows_that_land_after_validation_keep_their_partition(db: psycopg.Connection) -> None:
    cover_everything(db)
    retention = RetentionDays(message_samples=2)
    plan = plan_cleanup(db, retention, as_of=AS_OF, tables=["message_samples"])
    validated = count_rows(db, plan.drop)  # what the validate task counts before validating
    late, other = plan.drop[0], plan.drop[1]
    # a sample acknowledged between validate and cleanup, into a partition about to go
    sent_at = dt.datetime.combine(late.day, dt.time(12), dt.UTC)
    db.execute(
        "insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at)"
        " values ('late', 'c', 'r', %s)",
        (sent_at,),
    )
    dropped = detach_partitions(db, plan, validated, grace=GRACE, run_id="late")
    assert late not in dropped and other in dropped
    assert db.execute("select count(*) from raw.message_samples where message_id = 'late'").fetchone() == (1,)
    (reason,) = db.execute("select reason from quality.cleanup_log where partition_name = %s", (late.name,)).fetchone()
    assert reason.startswith("rows arrived after validation (0 were validated, 1 are there now)")


def landed(conn: psycopg.Connection, table: str, day: dt.date, received_at: dt.datetime) -> None:
    """A batch in the ingest ledger that landed rows of ``day`` in ``table`` at ``received_at``."""
    conn.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day,"
        " received_at) values (gen_random_uuid(), %s, 1, 0, 0, %s, %s)",
        (table, f'{{"{day.isoformat()}": 1}}', received_at),
    )


def test_rows_that_arrived_after_the_last_build_keep_their_partition_until_it_is_rebuilt(
    db: psycopg.Connection,
) -> None:
    cover_everything(db)  # every build finished now
    retention = RetentionDays(minute_snapshots=2)
    first = plan_cleanup(db, retention, as_of=AS_OF, tables=["minute_snapshots"])
    late_day, on_time_day = first.drop[0].day, first.drop[1].day
    now = db.execute("select now()").fetchone()[0]
    landed(db, "minute_snapshots", on_time_day, now - dt.timedelta(hours=1))  # before the builds
    landed(db, "minute_snapshots", late_day, now + dt.timedelta(minutes=5))  # a spooled sender, replayed later

    plan = plan_cleanup(db, retention, as_of=AS_OF, tables=["minute_snapshots"])
    kept = {k.partition.day: k.reason for k in plan.keep}
    assert set(kept) == {late_day} and on_time_day in {p.day for p in plan.drop}
    assert kept[late_day].startswith("rows arrived at ") and "after the last build of daily marts" in kept[late_day]
    assert kept[late_day].endswith("; rebuild first")

    start = dt.datetime.combine(late_day, dt.time(), dt.UTC)
    db.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds, finished_at)"
        " values ('daily', 'marts', %s, %s, 1, 0, %s), ('weekly', 'marts', %s, %s, 1, 0, %s)",
        (
            start,
            start + DAILY.length,
            now + dt.timedelta(minutes=10),
            WEEKLY.floor(start),
            WEEKLY.floor(start) + WEEKLY.length,
            now + dt.timedelta(minutes=10),
        ),
    )
    assert late_day in {p.day for p in plan_cleanup(db, retention, as_of=AS_OF, tables=["minute_snapshots"]).drop}


def test_a_detached_partition_is_dropped_after_its_grace_period_and_reattached_whole_before(
    db: psycopg.Connection, warehouse_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cover_everything(db)
    retention = RetentionDays(message_samples=2)
    plan = plan_cleanup(db, retention, as_of=AS_OF, tables=["message_samples"])
    kept, gone = plan.drop[0], plan.drop[1]
    for partition in (kept, gone):
        sent_at = dt.datetime.combine(partition.day, dt.time(12), dt.UTC)
        db.execute(
            "insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at)"
            " select 'm' || i, 'c', 'r', %s from generate_series(1, 3) as i",
            (sent_at,),
        )
    one_day = dt.timedelta(days=1)
    detach_partitions(db, plan, count_rows(db, [kept, gone]), grace=one_day, run_id="weekly")
    assert kept not in list_partitions(db, "message_samples") and gone not in list_partitions(db, "message_samples")
    assert db.execute("select count(*) from raw.message_samples").fetchone() == (0,)  # nothing reads them
    detached = {d.partition: d.drop_after for d in detached_partitions(db)}
    assert set(detached) == {kept, gone}
    assert db.execute(f"select count(*) from raw_detached.{kept.name}").fetchone() == (3,)

    assert drop_expired_detached(db) == []  # within the grace period nothing goes
    now = db.execute("select now()").fetchone()[0]
    # the operator reattaches one of them with the documented command
    assert db_cli.main(["--database-url", warehouse_url, "partitions", "reattach", kept.name]) == 0
    assert f"raw.{kept.name} is attached to raw.message_samples again" in capsys.readouterr().out
    assert kept in list_partitions(db, "message_samples")
    assert db.execute("select count(*) from raw.message_samples").fetchone() == (3,)  # every row is back

    assert drop_expired_detached(db, now=now + one_day + dt.timedelta(seconds=1), run_id="next") == [gone]
    assert detached_partitions(db) == []
    assert db.execute("select to_regclass(%s)", (f"raw_detached.{gone.name}",)).fetchone() == (None,)
    log = db.execute(
        "select partition_name, action, drop_after is not null from quality.cleanup_log"
        " where partition_name in (%s, %s) order by cleanup_id",
        (kept.name, gone.name),
    ).fetchall()
    assert log == [
        (kept.name, "detached", True),
        (gone.name, "detached", True),
        (kept.name, "reattached", False),
        (gone.name, "dropped", False),
    ]


def test_reattach_replaces_an_empty_partition_made_again_and_refuses_one_with_rows(
    db: psycopg.Connection, warehouse_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cover_everything(db)
    plan = plan_cleanup(db, RetentionDays(message_samples=2), as_of=AS_OF, tables=["message_samples"])
    first, second = plan.drop[0], plan.drop[1]
    detach_partitions(db, plan, count_rows(db, [first, second]), grace=GRACE)
    # a partition run with a longer look-back makes both days again, empty; a late row lands in the second
    db.execute("select raw.ensure_partitions('message_samples', %s, %s)", (first.day, second.day))
    sent_at = dt.datetime.combine(second.day, dt.time(3), dt.UTC)
    db.execute(
        "insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at)"
        " values ('late', 'c', 'r', %s)",
        (sent_at,),
    )
    assert reattach(db, first.name) == first
    assert first in list_partitions(db, "message_samples")
    with pytest.raises(ReattachError, match="exists again and holds rows"):
        reattach(db, second.name)
    assert db_cli.main(["--database-url", warehouse_url, "partitions", "reattach", "message_samples_p2001"]) == 2
    assert "is not a raw partition's name" in capsys.readouterr().err
    assert db_cli.main(["--database-url", warehouse_url, "partitions", "reattach", first.name]) == 2
    assert "does not exist; `telemetry-db partitions detached` lists them" in capsys.readouterr().err
    assert db_cli.main(["--database-url", warehouse_url, "partitions", "detached"]) == 0
    assert f"raw_detached.{second.name}\t{second.day}\tdropped after " in capsys.readouterr().out


def test_the_reliability_look_back_never_outreaches_the_sample_retention() -> None:
    from collectors.config import Settings
    from collectors.orchestration.builds import dbt_vars

    assert dbt_vars(Settings()) == {"reliability_lookback_days": 7}
    assert dbt_vars(Settings(retention=RetentionDays(message_samples=3))) == {"reliability_lookback_days": 3}
    assert dbt_vars(Settings(reliability_lookback_days=2)) == {"reliability_lookback_days": 2}


def test_a_build_of_one_model_family_covers_no_window(db: psycopg.Connection) -> None:
    day = AS_OF - dt.timedelta(days=10)
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    week = WEEKLY.floor(start)
    for cadence, window_start, length in (("daily", start, DAILY.length), ("weekly", week, WEEKLY.length)):
        db.execute(
            "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds, family)"
            " values (%s, 'marts', %s, %s, 1, 0, 'day_log')",
            (cadence, window_start, window_start + length),
        )
    assert missing_builds(db, "minute_snapshots", day) == [
        f"daily marts {start.isoformat()}",
        f"weekly marts {week.isoformat()}",
    ]
