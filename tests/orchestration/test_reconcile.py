"""The reconcile planner: which windows to build again and why, from arrivals and builds (pure, no database)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from collectors.orchestration.cadences import CADENCES, DAILY, HOURLY, MONTHLY, WEEKLY, Cadence, Window, parse_instant
from collectors.orchestration.cleanup import FEEDS
from collectors.orchestration.reconcile import Arrival, Build, Plan, due_at, lookback_windows, plan

NOW = parse_instant("2026-12-20T12:30:00Z")  # a Sunday; 2026-11-30 is a Monday, its week ends in December
MONTH = dt.timedelta(days=30)


def plan_with(arrivals: list[Arrival], builds: list[Build], **kwargs: Any) -> Plan:
    """The plan with the registry's feeds: which raw table feeds which part of which cadence."""
    return plan(arrivals, builds, feeds=FEEDS, **kwargs)


def at(text: str) -> dt.datetime:
    return parse_instant(text)


def window(cadence: Cadence, start: str) -> Window:
    return Window(at(start), cadence.shift(at(start)))


def on_time(now: dt.datetime = NOW, lookback: dt.timedelta = MONTH, lag: float = 0.0) -> list[Build]:
    """Every window of every cadence built as its DAG would: the marts just after the window, reliability once the
    lag has passed (if it has by ``now``); coarser cadences a minute after finer ones, as the scheduler runs them."""
    builds = []
    for rank, cadence in enumerate(CADENCES.values(), start=1):
        for w in lookback_windows(cadence, now, lookback):
            builds.append(Build(cadence.name, "marts", w, w.end + dt.timedelta(minutes=rank)))
            ready = due_at(cadence, w, lag)
            if "reliability" in cadence.parts and ready <= now:
                builds.append(Build(cadence.name, "reliability", w, ready + dt.timedelta(minutes=rank)))
    return builds


def late(table: str, hour: str, received: str) -> Arrival:
    start = at(hour)
    return Arrival(table, start, start + dt.timedelta(hours=1), at(received))


def listed(planned: tuple) -> list[tuple[str, str, str]]:
    return [(p.cadence.name, p.window.start.isoformat(), p.reason) for p in planned]


def keys(planned: tuple) -> list[tuple[str, str]]:
    return [(p.cadence.name, p.window.start.isoformat()) for p in planned]


def test_nothing_is_planned_when_every_window_was_built_after_its_rows() -> None:
    rows = [late("host_minutes", "2026-12-10T05:00:00Z", "2026-12-10T05:30:00Z")]  # landed before its build
    result = plan_with(rows, on_time(), now=NOW, lookback=MONTH, lag_windows=0)
    assert isinstance(result, Plan)
    assert result.due == () and result.pending == ()


def test_late_rows_plan_their_hour_then_its_day_week_and_month_across_a_month_end() -> None:
    rows = [late("host_minutes", "2026-11-30T23:00:00Z", "2026-12-18T08:00:00Z")]
    result = plan_with(rows, on_time(), now=NOW, lookback=MONTH, lag_windows=0)
    assert result.pending == ()
    hour_built, day_built = "2026-12-01T00:01:00+00:00", "2026-12-01T00:02:00+00:00"
    assert listed(result.due) == [
        (
            "hourly",
            "2026-11-30T23:00:00+00:00",
            f"late rows arrived 2026-12-18T08:00:00+00:00 after build {hour_built} (raw.host_minutes)",
        ),
        (
            "daily",
            "2026-11-30T00:00:00+00:00",
            f"late rows arrived 2026-12-18T08:00:00+00:00 after build {day_built} (raw.host_minutes)",
        ),
        (
            "weekly",
            "2026-11-30T00:00:00+00:00",
            "late rows arrived 2026-12-18T08:00:00+00:00 after build 2026-12-07T00:03:00+00:00 (raw.host_minutes)",
        ),
        (
            "monthly",
            "2026-11-01T00:00:00+00:00",
            "reads the daily window [2026-11-30T00:00:00+00:00, 2026-12-01T00:00:00+00:00), planned before it",
        ),
    ]


def test_a_window_never_built_is_planned_and_so_is_what_reads_it() -> None:
    day = window(DAILY, "2026-12-09T00:00:00Z")
    builds = [b for b in on_time() if not (b.cadence == "daily" and b.window == day)]
    result = plan_with([], builds, now=NOW, lookback=MONTH, lag_windows=0)
    assert listed(result.due) == [
        ("daily", "2026-12-09T00:00:00+00:00", "never built"),
        ("weekly", "2026-12-07T00:00:00+00:00", f"reads the daily window {day}, planned before it"),
    ]  # December has not ended: its month is not planned yet


def test_a_part_never_built_is_named() -> None:
    hour = window(HOURLY, "2026-12-12T07:00:00Z")
    builds = [b for b in on_time() if not (b.cadence == "hourly" and b.window == hour and b.part == "reliability")]
    result = plan_with([], builds, now=NOW, lookback=MONTH, lag_windows=0)
    assert listed(result.due) == [("hourly", "2026-12-12T07:00:00+00:00", "reliability part never built")]


def test_a_range_run_covers_every_window_in_it() -> None:
    days = Window(at("2026-12-01T00:00:00Z"), at("2026-12-07T00:00:00Z"))
    builds = [b for b in on_time() if not (b.cadence == "daily" and days.start <= b.window.start < days.end)]
    builds += [Build("daily", part, days, at("2026-12-07T00:00:30Z")) for part in ("marts", "reliability")]
    assert plan_with([], builds, now=NOW, lookback=MONTH, lag_windows=0).due == ()
    # late rows of one of its days plan that day only (and its week), not the range
    rows = [late("host_minutes", "2026-12-03T10:00:00Z", "2026-12-09T00:00:00Z")]
    due = keys(plan_with(rows, builds, now=NOW, lookback=MONTH, lag_windows=0).due)
    assert due == [
        ("hourly", "2026-12-03T10:00:00+00:00"),
        ("daily", "2026-12-03T00:00:00+00:00"),
        ("weekly", "2026-11-30T00:00:00+00:00"),
    ]


def test_windows_are_planned_once_whatever_the_number_of_reasons() -> None:
    rows = [
        late("server_reports", "2026-12-02T03:00:00Z", "2026-12-15T00:00:00Z"),
        late("host_minutes", "2026-12-02T03:00:00Z", "2026-12-16T00:00:00Z"),
        late("host_minutes", "2026-12-02T04:00:00Z", "2026-12-15T00:00:00Z"),
        late("server_reports", "2026-12-03T04:00:00Z", "2026-12-15T00:00:00Z"),
    ]
    builds = [b for b in on_time() if not (b.cadence == "weekly" and b.part == "reliability")]
    result = plan_with(rows, builds, now=NOW, lookback=MONTH, lag_windows=0)
    assert keys(result.due) == [
        ("hourly", "2026-12-02T03:00:00+00:00"),
        ("hourly", "2026-12-02T04:00:00+00:00"),
        ("hourly", "2026-12-03T04:00:00+00:00"),
        ("daily", "2026-12-02T00:00:00+00:00"),
        ("daily", "2026-12-03T00:00:00+00:00"),
        ("weekly", "2026-11-16T00:00:00+00:00"),
        ("weekly", "2026-11-23T00:00:00+00:00"),
        ("weekly", "2026-11-30T00:00:00+00:00"),
        ("weekly", "2026-12-07T00:00:00+00:00"),
    ]
    # the latest arrival is named, with every table late in the window; a part never built comes first
    assert result.due[0].reason.startswith("late rows arrived 2026-12-16T00:00:00+00:00 after build")
    assert result.due[0].reason.endswith("(raw.host_minutes, raw.server_reports)")
    assert {p.reason for p in result.due if p.cadence is WEEKLY} == {"reliability part never built"}


def test_a_daily_build_after_the_month_was_built_plans_the_month() -> None:
    builds = on_time()
    day = window(DAILY, "2026-11-30T00:00:00Z")
    builds.append(Build("daily", "reliability", day, at("2026-12-10T00:00:00Z")))  # the months read no reliability
    assert plan_with([], builds, now=NOW, lookback=MONTH, lag_windows=0).due == ()
    builds.append(Build("daily", "marts", day, at("2026-12-10T01:00:00Z")))  # a manual range run, say
    rebuilt = f"daily build of {day} at 2026-12-10T01:00:00+00:00 after build"
    assert listed(plan_with([], builds, now=NOW, lookback=MONTH, lag_windows=0).due) == [
        ("weekly", "2026-11-30T00:00:00+00:00", f"{rebuilt} 2026-12-07T00:03:00+00:00"),
        ("monthly", "2026-11-01T00:00:00+00:00", f"{rebuilt} 2026-12-01T00:04:00+00:00"),
    ]


def test_the_look_back_takes_the_windows_that_overlap_it_and_have_ended() -> None:
    midnight = at("2026-12-20T00:00:00Z")
    two_days = dt.timedelta(days=2)
    result = plan_with([], [], now=midnight, lookback=two_days, lag_windows=0)
    hours = [p.window.start for p in result.due if p.cadence is HOURLY]
    assert hours[0] == at("2026-12-18T00:00:00Z") and hours[-1] == at("2026-12-19T23:00:00Z") and len(hours) == 48
    assert keys(tuple(p for p in result.due if p.cadence is not HOURLY)) == [
        ("daily", "2026-12-18T00:00:00+00:00"),
        ("daily", "2026-12-19T00:00:00+00:00"),
    ]  # the day ending where the look-back starts is out; the week and the month in progress are not listed
    assert all(p.reason == "never built" for p in result.due)
    # half an hour later the look-back starts inside an hour: that hour overlaps it, and is in
    later = plan_with([], [], now=midnight + dt.timedelta(minutes=30), lookback=two_days, lag_windows=0)
    assert [p.window.start for p in later.due if p.cadence is HOURLY] == hours
    # rows older than the look-back plan nothing
    old = [late("host_minutes", "2026-12-17T23:00:00Z", "2026-12-19T00:00:00Z")]
    builds = on_time(midnight, two_days)
    assert plan_with(old, builds, now=midnight, lookback=two_days, lag_windows=0).due == ()


def test_a_window_is_pending_until_the_reliability_lag_after_it_has_passed() -> None:
    now = at("2026-12-01T12:00:00Z")
    builds = on_time(now, MONTH, lag=1)
    rows = [late("host_minutes", "2026-11-30T10:00:00Z", "2026-12-01T11:00:00Z")]
    result = plan_with(rows, builds, now=now, lookback=MONTH, lag_windows=1)
    assert keys(result.due) == [("hourly", "2026-11-30T10:00:00+00:00")]
    pending = {(p.cadence.name, p.window.start.isoformat()): p for p in result.pending}
    # the day's scheduled run still waits the day's lag for its reliability part; the month has no reliability,
    # but reads the day, and waits for it
    day, month = pending["daily", "2026-11-30T00:00:00+00:00"], pending["monthly", "2026-11-01T00:00:00+00:00"]
    assert day.due_at == month.due_at == at("2026-12-02T00:00:00Z")
    assert day.reason == "reliability part never built" and month.reason.startswith("reads the daily window")
    # the last hour and the last day wait for their reliability part as their scheduled runs do
    assert pending["hourly", "2026-12-01T11:00:00+00:00"].reason == "reliability part never built"
    assert pending["hourly", "2026-12-01T11:00:00+00:00"].due_at == at("2026-12-01T13:00:00Z")
    assert all(p.due_at > now for p in result.pending)
    assert (
        plan_with(rows, builds, now=at("2026-12-02T00:00:00Z"), lookback=MONTH, lag_windows=1).due[-1].cadence
        is MONTHLY
    )


def test_as_dict_names_the_window_and_why() -> None:
    result = plan_with([], [], now=at("2026-12-20T01:00:00Z"), lookback=dt.timedelta(hours=1), lag_windows=0)
    assert [p.as_dict() for p in result.due] == [
        {
            "cadence": "hourly",
            "window_start": "2026-12-20T00:00:00+00:00",
            "window_end": "2026-12-20T01:00:00+00:00",
            "reason": "never built",
            "due_at": "2026-12-20T01:00:00+00:00",
        }
    ]


def test_late_rows_plan_only_the_parts_their_table_feeds_and_message_samples_their_neighbours_too() -> None:
    # message samples feed reliability only, of the window they fall in and of the windows either side (a
    # receiver counts when it was seen before and after a window)
    rows = [late("message_samples", "2026-12-10T05:00:00Z", "2026-12-15T00:00:00Z")]
    result = plan_with(rows, on_time(), now=NOW, lookback=MONTH, lag_windows=0)
    assert keys(result.due) == [
        ("hourly", "2026-12-10T04:00:00+00:00"),
        ("hourly", "2026-12-10T05:00:00+00:00"),
        ("hourly", "2026-12-10T06:00:00+00:00"),
        ("daily", "2026-12-09T00:00:00+00:00"),
        ("daily", "2026-12-10T00:00:00+00:00"),
        ("daily", "2026-12-11T00:00:00+00:00"),
        ("weekly", "2026-11-30T00:00:00+00:00"),
        ("weekly", "2026-12-07T00:00:00+00:00"),
    ]  # the week after, 2026-12-14, has not ended
    hour = result.due[1]
    assert hour.reason == (
        "late rows arrived 2026-12-15T00:00:00+00:00 after build 2026-12-10T06:01:00+00:00 (raw.message_samples)"
    )
    # the snapshots feed the daily and weekly marts: no hour reads them
    rows = [late("minute_snapshots", "2026-12-10T05:00:00Z", "2026-12-15T00:00:00Z")]
    assert keys(plan_with(rows, on_time(), now=NOW, lookback=MONTH, lag_windows=0).due) == [
        ("daily", "2026-12-10T00:00:00+00:00"),
        ("weekly", "2026-12-07T00:00:00+00:00"),
    ]
