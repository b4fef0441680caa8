"""Which windows to build again, and why: the ingest ledger's arrivals against the build ledger's builds.

A window of a cadence is planned when, within the look-back:

* a part of its cadence was never built for it (``never built``, ``reliability part never built``);
* rows of a raw table that feeds a part of its cadence (``collectors.ingest.registry``: ``Feed``) arrived for
  its hours after that part's last build started (``late rows arrived ... after build ...``): the build may have
  read the window before they landed. A table that feeds the neighbouring windows too (message samples: a
  receiver counts when seen before and after a window) makes its rows late for the windows either side;
* it reads another cadence's tables and one of those windows was built after it (a daily range run after the
  month was built), or is planned before it (a late day comes before its week and its month).

Builds are compared by when they started, under the warehouse-wide dbt lock that serialises them, so a build that
started before another also finished before it. The plan is in dependency order (every hour, then every day,
week and month, each by start): building it in that order rebuilds what a window reads before the window. A
window is due once the reliability lag after it has passed (the lag its DAG's sensor waits, for cadences with a
reliability part); until then it is pending, the scheduled run's to finish, and listed but not built.

``requested`` plans a range asked for (``telemetry-ops rebuild``) the same way: every window that overlaps it, in
the same order, with the same lag.

Pure: no database, no Airflow, no dbt (``reconcile_ledgers`` reads the ledgers, ``rebuild`` builds a plan).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from collectors.orchestration.cadences import CADENCES, HOURLY, Cadence, Window

DEFAULT_LOOKBACK = dt.timedelta(days=7)


class Feed(Protocol):
    """What ``collectors.ingest.registry.Feed`` says (not imported: the DAG files import this module)."""

    cadence: str
    part: str
    neighbours: bool


@dataclass(frozen=True)
class Arrival:
    """Rows of one raw table whose event times fall in ``[start, end)`` (an hour; a day for ledger rows older than
    the hours), the latest of them landed at ``received_at``."""

    table: str
    start: dt.datetime
    end: dt.datetime
    received_at: dt.datetime


@dataclass(frozen=True)
class Build:
    """A successful build of one part of a cadence over ``window`` (one period, or a range run's several)."""

    cadence: str
    part: str
    window: Window
    started_at: dt.datetime


@dataclass(frozen=True)
class Planned:
    """A window to build again, why, and from when (the lag after it, and after what it reads)."""

    cadence: Cadence
    window: Window
    reason: str
    due_at: dt.datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "cadence": self.cadence.name,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "reason": self.reason,
            "due_at": self.due_at.isoformat(),
        }


@dataclass(frozen=True)
class Plan:
    """``due``: to build now, in this order; ``pending``: planned, but the lag after them has not passed."""

    now: dt.datetime
    since: dt.datetime
    due: tuple[Planned, ...]
    pending: tuple[Planned, ...]


def _moment(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def due_at(cadence: Cadence, window: Window, lag_windows: float) -> dt.datetime:
    """When a run of ``cadence`` for ``window`` can build all its parts: the window's end, plus the reliability
    lag (in windows, as ``TELEMETRY_RELIABILITY_LAG_WINDOWS``) when the cadence builds reliability."""
    if "reliability" not in cadence.parts or not lag_windows:
        return window.end
    return cadence.shift(window.end, lag_windows)  # type: ignore[arg-type]  # the sensor shifts by a float too


def lookback_windows(cadence: Cadence, now: dt.datetime, lookback: dt.timedelta) -> list[Window]:
    """The windows of ``cadence`` that overlap ``[now - lookback, now)`` and have ended."""
    starts = cadence.periods(now - lookback, now)
    return [w for w in (Window(s, cadence.shift(s)) for s in starts) if w.end <= now]


def _overlaps(start: dt.datetime, end: dt.datetime, window: Window) -> bool:
    return start < window.end and window.start < end


def _reads(cadence: Cadence, window: Window, planned: dict[str, list[Planned]]) -> list[Planned]:
    """The planned windows of the cadences ``cadence`` reads that overlap ``window``."""
    return [
        p for name in cadence.reads for p in planned.get(name, ()) if _overlaps(p.window.start, p.window.end, window)
    ]


class _Ledgers:
    """The arrivals by the hours they cover and the builds by cadence: a window looks at its own only, so that a
    plan over months of hours stays linear in what it reads."""

    def __init__(
        self, arrivals: Iterable[Arrival], builds: Iterable[Build], feeds: Mapping[str, Iterable[Feed]]
    ) -> None:
        self.feeds = {(f.cadence, f.part, table): f for table, fed in feeds.items() for f in fed}
        self.hours: dict[dt.datetime, list[Arrival]] = defaultdict(list)
        for arrival in arrivals:
            hour = HOURLY.floor(arrival.start)
            while hour < arrival.end:
                self.hours[hour].append(arrival)
                hour = HOURLY.shift(hour)
        self.builds: dict[str, list[Build]] = defaultdict(list)
        for build in builds:
            self.builds[build.cadence].append(build)

    def arrivals(self, window: Window) -> list[Arrival]:
        found: dict[Arrival, None] = {}
        for hour in HOURLY.periods(window.start, window.end):
            found.update(dict.fromkeys(self.hours.get(hour, ())))
        return list(found)


def _late(
    cadence: Cadence, window: Window, last: dict[str, dt.datetime], ledgers: _Ledgers
) -> list[tuple[Arrival, dt.datetime]]:
    """The arrivals that came after the last build of a part they feed, each with that build's start."""
    either_side = Window(cadence.shift(window.start, -1), cadence.shift(window.end))
    late = []
    for arrival in ledgers.arrivals(either_side):
        for part, started in last.items():
            feed = ledgers.feeds.get((cadence.name, part, arrival.table))
            reach = either_side if feed is not None and feed.neighbours else window
            if feed is not None and arrival.received_at > started and _overlaps(arrival.start, arrival.end, reach):
                late.append((arrival, started))
    return late


def _stale(cadence: Cadence, window: Window, upstream: list[Planned], ledgers: _Ledgers) -> str | None:
    """Why ``window`` must be built again, or None: it need not."""
    covering = [b for b in ledgers.builds[cadence.name] if b.window.covers(window.start, window.end)]
    starts = {part: max((b.started_at for b in covering if b.part == part), default=None) for part in cadence.parts}
    missing = [part for part, started in starts.items() if started is None]
    if missing:
        return "never built" if len(missing) == len(starts) else f"{', '.join(missing)} part never built"
    last = {part: started for part, started in starts.items() if started is not None}
    late = _late(cadence, window, last, ledgers)
    if late:
        arrival, build = max(late, key=lambda pair: pair[0].received_at)
        tables = ", ".join(sorted({f"raw.{a.table}" for a, _ in late}))
        return f"late rows arrived {_moment(arrival.received_at)} after build {_moment(build)} ({tables})"
    built = min(last.values())
    newer = [
        b
        for name in cadence.reads
        for b in ledgers.builds.get(name, ())
        if b.part == "marts" and b.started_at > built and _overlaps(b.window.start, b.window.end, window)
    ]
    if newer:
        latest = max(newer, key=lambda b: b.started_at)
        return f"{latest.cadence} build of {latest.window} at {_moment(latest.started_at)} after build {_moment(built)}"
    if upstream:
        first = upstream[0]
        return f"reads the {first.cadence.name} window {first.window}, planned before it"
    return None


def _plan(
    now: dt.datetime,
    since: dt.datetime,
    lag_windows: float,
    windows: Callable[[Cadence], list[Window]],
    reason: Callable[[Cadence, Window, list[Planned]], str | None],
) -> Plan:
    """The ``windows`` of every cadence that have a ``reason``, each due once the lag after it, and after every
    planned window it reads, has passed; in dependency order."""
    planned: dict[str, list[Planned]] = {}
    for cadence in CADENCES.values():  # finest first: what a cadence reads is planned before it
        for window in windows(cadence):
            upstream = _reads(cadence, window, planned)
            why = reason(cadence, window, upstream)
            if why is not None:
                after = max([due_at(cadence, window, lag_windows), *(p.due_at for p in upstream)])
                planned.setdefault(cadence.name, []).append(Planned(cadence, window, why, after))
    ordered = [p for name in CADENCES for p in planned.get(name, ())]
    return Plan(
        now=now,
        since=since,
        due=tuple(p for p in ordered if p.due_at <= now),
        pending=tuple(p for p in ordered if p.due_at > now),
    )


def plan(
    arrivals: Iterable[Arrival],
    builds: Iterable[Build],
    *,
    feeds: Mapping[str, Iterable[Feed]],
    now: dt.datetime,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    lag_windows: float = 1.0,
) -> Plan:
    """The windows, within ``lookback`` before ``now``, to build again, in dependency order (see the module);
    ``feeds``: per raw table, the parts of cadences it feeds (the registry's)."""
    ledgers = _Ledgers(arrivals, builds, feeds)
    return _plan(
        now,
        now - lookback,
        lag_windows,
        lambda cadence: lookback_windows(cadence, now, lookback),
        lambda cadence, window, upstream: _stale(cadence, window, upstream, ledgers),
    )


def requested(start: dt.datetime, end: dt.datetime, *, now: dt.datetime, lag_windows: float = 1.0) -> Plan:
    """Every window of every cadence that overlaps ``[start, end)``: the days asked for, their hours, and the weeks
    and months that read them, in dependency order. Windows that have not ended, or whose lag has not passed, are
    pending: their scheduled runs build them."""
    asked = f"asked for [{_moment(start)}, {_moment(end)})"
    return _plan(
        now,
        start,
        lag_windows,
        lambda cadence: [Window(s, cadence.shift(s)) for s in cadence.periods(start, end)],
        lambda cadence, window, upstream: asked,
    )
