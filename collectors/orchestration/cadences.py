"""The cadences the DAGs run, the window one run owns, and what a manual run may ask for.

No Airflow, dbt or database import: the DAG files read these at parse time (``dags.parse_seconds``),
the dbt task and the cleanup use them, and tests use them without a scheduler.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

# a date as ISO 8601 writes it (a JSON-schema pattern; an impossible day such as 02-31 is refused later)
DATE_PATTERN = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_MONTH_START = "[0-9]{4}-(0[1-9]|1[0-2])-01"
_UTC = "(Z|[+-]00:?00)"


@dataclass(frozen=True)
class Cadence:
    """A dbt tag and the Airflow schedule whose intervals are its windows.

    A period is either a fixed ``length`` (hour, day, week) or ``months`` calendar months, whose length varies
    (28 to 31 days); code that steps from one period to the next uses ``shift``, which handles both.
    """

    name: str
    cron: str
    length: dt.timedelta | None = None
    months: int = 0
    # the dbt parts its DAG builds (collectors.orchestration.builds.PARTS): the monthly DAG has no reliability
    parts: tuple[str, ...] = ("marts", "reliability")
    # the cadences whose tables its models read (which raw tables feed which part: the registry's feeds); a window
    # must be rebuilt after what it reads changed (collectors.orchestration.reconcile)
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.length is None) == (self.months == 0):
            raise ValueError(f"cadence {self.name!r}: give a fixed length or a number of months, not both or neither")

    @property
    def dag_id(self) -> str:
        return f"telemetry_{self.name}"

    def floor(self, moment: dt.datetime) -> dt.datetime:
        """Start of the period (hour, UTC day, UTC Monday week, UTC month) that holds ``moment``."""
        moment = moment.astimezone(dt.UTC)
        if self.name == "hourly":
            return moment.replace(minute=0, second=0, microsecond=0)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.months:
            month_index = day.year * 12 + day.month - 1
            month_index -= month_index % self.months
            return day.replace(year=month_index // 12, month=month_index % 12 + 1, day=1)
        if self.name == "daily":
            return day
        return day - dt.timedelta(days=day.weekday())

    def shift(self, start: dt.datetime, periods: int = 1) -> dt.datetime:
        """``start`` moved by ``periods`` periods (negative: back). Calendar months keep the day of the month, cut
        to the last day of a shorter month (a period start, the first, is always kept)."""
        if self.length is not None:
            return start + self.length * periods
        month_index = start.year * 12 + start.month - 1 + self.months * periods
        year, month = month_index // 12, month_index % 12 + 1
        return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))

    def bound_pattern(self) -> str:
        """JSON-schema ``pattern`` of a window bound of this cadence: an ISO 8601 UTC instant on a boundary.

        Airflow checks it when a run is triggered, so a bad ``--conf`` is refused before any task runs. A
        pattern cannot tell a Monday, so a weekly bound is only held to midnight here; ``check_aligned`` (in
        the DAG's first task) refuses the rest. A monthly bound is the first of a month at midnight. Empty means
        "not given", as for ``run_window``.
        """
        clock = "([01][0-9]|2[0-3]):00" if self.name == "hourly" else "00:00"
        date = _MONTH_START if self.months == 1 else DATE_PATTERN
        return f"^({date}T{clock}(:00(\\.0{{1,6}})?)?{_UTC})?$"

    def periods(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Starts of every period that overlaps ``[start, end)``."""
        moment, starts = self.floor(start), []
        while moment < end:
            starts.append(moment)
            moment = self.shift(moment)
        return starts


HOURLY = Cadence("hourly", "0 * * * *", dt.timedelta(hours=1))
DAILY = Cadence("daily", "0 0 * * *", dt.timedelta(days=1))
# the weekly marts roll up the daily tables (weekly reliability and product analytics read raw as well)
WEEKLY = Cadence("weekly", "0 0 * * 1", dt.timedelta(weeks=1), reads=("daily",))
# Reliability needs raw samples of its whole window and look-ahead (docs/DESIGN.md, "Month, quarter and year"),
# which the weekly cleanup drops long before a month and its look-ahead month have passed; for the same reason the
# monthly models read the daily tables only.
MONTHLY = Cadence("monthly", "0 0 1 * *", months=1, parts=("marts",), reads=("daily",))
CADENCES: dict[str, Cadence] = {c.name: c for c in (HOURLY, DAILY, WEEKLY, MONTHLY)}

# Model families a manual run may fully refresh (dbt node-name patterns, intersected with the cadence tag). Here
# rather than with the builds so that the DAGs' params name them without importing dbt's runner.
MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "day_log": ("fct_telemetry_*",),
    "minutes_per_user": ("fct_minutes_per_user_*",),
    "reliability": ("int_message_presence_*", "fct_channel_reliability_*", "fct_reliability_*"),
    "host_metrics": ("int_host_*", "fct_host_metrics_*"),
    "server_metrics": ("int_server_*", "fct_server_metrics_*"),
    "event_counts": ("fct_event_counts_*",),
    "product": ("fct_sessions", "int_funnel_*", "fct_funnel_*", "fct_retention_*", "fct_feature_adoption_*"),
}


def _plain_utc(moment: dt.datetime) -> dt.datetime:
    """A plain ``datetime`` in UTC (Airflow hands out pendulum DateTimes, whose arithmetic can drop the zone)."""
    utc = moment.astimezone(dt.UTC)
    return dt.datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC: what one run builds, deletes and rebuilds."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"window bounds must be timezone-aware: {self.start!r}, {self.end!r}")
        if self.start >= self.end:
            raise ValueError(f"empty window [{self.start.isoformat()}, {self.end.isoformat()})")
        object.__setattr__(self, "start", _plain_utc(self.start))
        object.__setattr__(self, "end", _plain_utc(self.end))

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"

    def covers(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether ``[start, end)`` lies wholly inside the window (a build of it built that period)."""
        return self.start <= start and end <= self.end

    def check_aligned(self, cadence: Cadence) -> None:
        """Raise unless both bounds fall on the cadence's period boundaries (a range run must)."""
        for bound in (self.start, self.end):
            if cadence.floor(bound) != bound:
                raise ValueError(f"{bound.isoformat()} is not on a {cadence.name} boundary; window {self}")


def parse_instant(value: str) -> dt.datetime:
    """An ISO 8601 instant; a value without offset is UTC."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def refuse_unfinished(window: Window, now: dt.datetime | None = None) -> None:
    """Raise unless ``window`` has ended: a window that ends after now is not complete, and the weekly
    cleanup must never count retention from (or drop up to) a moment that has not come yet."""
    now = now or dt.datetime.now(dt.UTC)
    if window.end > now:
        raise ValueError(
            f"window {window} ends after now ({now.isoformat(timespec='seconds')}): a window is built, validated "
            "and cleaned up only once it has ended; trigger it again later or pick an earlier range"
        )


def run_window(context: dict[str, Any] | Any, cadence: Cadence) -> Window:
    """The window a task of this run owns.

    Normally the run's data interval. A manual run may pass ``window_start``/``window_end`` params
    to rebuild a longer range in one dbt call (bounds on the cadence's boundaries); every model is
    window-incremental on its own period grain, so the result equals one run per period.
    """
    params = context.get("params") or {}
    if params.get("window_start") or params.get("window_end"):
        if not (params.get("window_start") and params.get("window_end")):
            raise ValueError("give both window_start and window_end, or neither")
        window = Window(parse_instant(params["window_start"]), parse_instant(params["window_end"]))
        window.check_aligned(cadence)
        return window
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise ValueError("the run has no data interval; is the DAG's timetable a data-interval timetable?")
    return Window(start, end)
