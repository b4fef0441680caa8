"""Monitors for the data-quality report: source freshness, volume per hour, the ingest ledger, refused records.

* Freshness: the last check of every raw table (``quality.source_freshness``, written every hour by the
  hourly DAG's ``check_source_freshness``, rules from the dbt sources), stale (dbt's error) or late (warn).
* Volume: rows accepted per source per hour (``quality.ingest_batches``, by the hour the batch landed) against
  the same hour of the week in the ``BASELINE_WEEKS`` weeks before. The expected value is the median of the
  weeks in which the source was landing (anything in the same ``VOLUME_HOURS`` hours of that week: an hour
  without a batch then counts as 0, while a source that was not there yet, or down that whole day, gives no
  history rather than a zero to compare with); with fewer than ``MIN_WEEKS`` of them the hour is "not enough
  history", not a failure. Only those blocks of hours are read: 5 days of the ledger, not 5 weeks. An hour
  is flagged below ``LOW_RATIO`` or above ``HIGH_RATIO`` times the median, unless it is within ``MIN_ROWS``
  rows of it (so three rows instead of one is not an alarm); a 90 % drop is 0.1 times the median, flagged.
* The ledger per source and day: accepted, duplicates, refused; the refused records' top reasons.

Each part reads on its own and says why when it cannot (a missing table, a role without the grant), so one
missing piece never takes the page down. No Airflow, dbt or GX import.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

log = logging.getLogger(__name__)

BASELINE_WEEKS = 4
MIN_WEEKS = 2
LOW_RATIO = 0.5
HIGH_RATIO = 2.0
MIN_ROWS = 10
VOLUME_HOURS = 24  # complete hours shown per source
LEDGER_DAYS = 7
REJECT_DAYS = 7
REJECT_REASONS = 15
REASON_LIMIT = 200
FRESHNESS_OVERDUE = dt.timedelta(hours=2)  # the hourly check is this late: say so

T = TypeVar("T")


# --------------------------------------------------------------------------- freshness


@dataclass(frozen=True)
class SourceFreshness:
    source_name: str
    table_name: str
    checked_at: dt.datetime
    max_loaded_at: dt.datetime | None
    age_seconds: float | None
    warn_after_s: float | None
    error_after_s: float | None
    status: str  # pass, warn, error

    @property
    def label(self) -> str:
        return {"pass": "fresh", "warn": "late", "error": "stale"}.get(self.status, self.status)

    @property
    def age(self) -> str:
        return "no row" if self.age_seconds is None else duration(self.age_seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source_name,
            "table": self.table_name,
            "checked_at": self.checked_at.isoformat(),
            "max_loaded_at": self.max_loaded_at.isoformat() if self.max_loaded_at else None,
            "age_seconds": self.age_seconds,
            "warn_after_seconds": self.warn_after_s,
            "error_after_seconds": self.error_after_s,
            "status": self.status,
            "label": self.label,
        }


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


FRESHNESS_QUERY = """
select distinct on (table_name) source_name, table_name, checked_at, max_loaded_at, age_seconds, warn_after_s,
       error_after_s, status
from quality.source_freshness
order by table_name, checked_at desc
"""


# --------------------------------------------------------------------------- volume


@dataclass(frozen=True)
class VolumeHour:
    hour: dt.datetime
    rows: int
    expected: float | None  # median of the baseline weeks; None: not enough history
    weeks: int  # baseline weeks the source was landing in

    @property
    def status(self) -> str:
        """ok, low, high, or history (not enough of it: no verdict)."""
        if self.expected is None:
            return "history"
        if abs(self.rows - self.expected) <= MIN_ROWS:
            return "ok"
        if self.rows < LOW_RATIO * self.expected:
            return "low"
        if self.rows > HIGH_RATIO * self.expected:
            return "high"
        return "ok"

    @property
    def flagged(self) -> bool:
        return self.status in ("low", "high")

    @property
    def title(self) -> str:
        when = self.hour.strftime("%a %Y-%m-%d %H:00 UTC")
        if self.expected is None:
            return f"{when}: {self.rows} rows; not enough history ({self.weeks} of {MIN_WEEKS} weeks needed)"
        change = f"{(self.rows / self.expected - 1) * 100:+.0f} %" if self.expected else "from 0"
        return f"{when}: {self.rows} rows, expected {self.expected:g} ({change}, {self.weeks} weeks)"


@dataclass(frozen=True)
class SourceVolume:
    source: str
    hours: list[VolumeHour] = field(default_factory=list)  # oldest first

    @property
    def last(self) -> VolumeHour | None:
        return self.hours[-1] if self.hours else None

    @property
    def flagged(self) -> list[VolumeHour]:
        return [h for h in self.hours if h.flagged]

    @property
    def status(self) -> str:
        if self.flagged:
            return "flagged"
        if self.hours and all(h.status == "history" for h in self.hours):
            return "history"
        return "ok"

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "hours": [
                {
                    "hour": h.hour.isoformat(),
                    "rows": h.rows,
                    "expected": h.expected,
                    "weeks": h.weeks,
                    "status": h.status,
                }
                for h in self.hours
            ],
        }


VOLUME_QUERY = """
select source, date_trunc('hour', received_at) as hour, sum(accepted)::bigint as rows
from quality.ingest_batches
where received_at >= %(since)s and received_at < %(until)s
group by source, date_trunc('hour', received_at)
order by source, hour
"""


def volume_blocks(until: dt.datetime, hours: int = VOLUME_HOURS) -> list[tuple[dt.datetime, dt.datetime]]:
    """The ledger read: the last ``hours`` before ``until``, and the same hours of each baseline week."""
    week = dt.timedelta(weeks=1)
    return [(until - k * week - dt.timedelta(hours=hours), until - k * week) for k in range(BASELINE_WEEKS + 1)]


def volumes(
    rows: list[tuple[str, dt.datetime, int]], until: dt.datetime, hours: int = VOLUME_HOURS
) -> list[SourceVolume]:
    """Every source's last ``hours`` complete hours before ``until`` (an hour boundary) against its baseline."""
    by_source: dict[str, dict[dt.datetime, int]] = {}
    for source, hour, count in rows:
        by_source.setdefault(source, {})[hour] = int(count)
    week = dt.timedelta(weeks=1)
    blocks = volume_blocks(until, hours)
    result = []
    for source, counts in sorted(by_source.items()):
        # the baseline weeks whose block of hours has a row of this source: it was landing then
        landing = {k for k, (start, end) in enumerate(blocks) if any(start <= h < end and n for h, n in counts.items())}
        shown = []
        for i in range(hours, 0, -1):
            hour = until - dt.timedelta(hours=i)
            baseline = [counts.get(hour - k * week, 0) for k in range(1, BASELINE_WEEKS + 1) if k in landing]
            expected = statistics.median(baseline) if len(baseline) >= MIN_WEEKS else None
            shown.append(VolumeHour(hour, counts.get(hour, 0), expected, len(baseline)))
        result.append(SourceVolume(source, shown))
    return result


@dataclass(frozen=True)
class Band:
    baseline_weeks: int
    min_weeks: int
    low_ratio: float
    high_ratio: float
    min_rows: int


def band() -> Band:
    return Band(BASELINE_WEEKS, MIN_WEEKS, LOW_RATIO, HIGH_RATIO, MIN_ROWS)


# --------------------------------------------------------------------------- ledger and rejects


@dataclass(frozen=True)
class LedgerDay:
    day: dt.date
    source: str
    batches: int
    accepted: int
    duplicates: int
    rejected: int
    conflicts: int
    deferred: int


LEDGER_QUERY = """
select (received_at at time zone 'UTC')::date as day, source, count(*) as batches, sum(accepted)::bigint,
       sum(duplicates)::bigint, sum(rejected)::bigint, sum(conflicts)::bigint, sum(deferred)::bigint
from quality.ingest_batches
where received_at >= %(since)s
group by 1, 2
order by 1 desc, 2
"""


@dataclass(frozen=True)
class RejectReason:
    source: str
    reason: str
    records: int
    last_at: dt.datetime


REJECTS_QUERY = """
select source, left(reason, %(limit)s) as reason, count(*) as records, max(rejected_at) as last_at
from raw.rejects
where rejected_at >= %(since)s
group by 1, 2
order by records desc, source, reason
limit %(top)s
"""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Monitors:
    """Each part is None when it cannot be read; its note says why (or that it is empty)."""

    freshness: list[SourceFreshness] | None = None
    freshness_note: str | None = None
    volume: list[SourceVolume] | None = None
    volume_note: str | None = None
    ledger: list[LedgerDay] | None = None
    ledger_note: str | None = None
    rejects: list[RejectReason] | None = None
    rejects_note: str | None = None
    volume_until: dt.datetime | None = None

    @property
    def stale(self) -> list[SourceFreshness]:
        return [f for f in self.freshness or [] if f.status == "error"]

    def as_json(self) -> dict[str, Any]:
        def rows(items: list[Any] | None) -> list[dict[str, Any]] | None:
            if items is None:
                return None
            return [
                {k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in item.__dict__.items()}
                for item in items
            ]

        return {
            "freshness": None if self.freshness is None else [f.as_json() for f in self.freshness],
            "freshness_note": self.freshness_note,
            "volume": None if self.volume is None else [v.as_json() for v in self.volume],
            "volume_note": self.volume_note,
            "volume_band": band().__dict__,
            "ledger_daily": rows(self.ledger),
            "ledger_note": self.ledger_note,
            "reject_reasons": rows(self.rejects),
            "rejects_note": self.rejects_note,
        }


def _part(conn: psycopg.Connection, table: str, read: Callable[[], T]) -> tuple[T | None, str | None]:
    """One part of the monitors, or why not (in a savepoint-free autocommit session each query stands alone)."""
    try:
        return read(), None
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None, f"{table} is not there yet: run the migrations (telemetry-db migrate)."
    except psycopg.errors.InsufficientPrivilege:
        return None, f"The database role may not read {table} (grant telemetry_reviewer)."
    except psycopg.Error as error:
        log.warning("reading %s: %s", table, error)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return None, f"{table} could not be read: {first[:300]}"


def read_monitors(conn: psycopg.Connection, now: dt.datetime | None = None) -> Monitors:
    now = now or dt.datetime.now(dt.UTC)
    until = now.replace(minute=0, second=0, microsecond=0)

    freshness, freshness_note = _part(
        conn,
        "quality.source_freshness",
        lambda: [SourceFreshness(*row) for row in conn.execute(FRESHNESS_QUERY).fetchall()],
    )
    if freshness == []:
        freshness_note = "No freshness check yet: the hourly DAG (telemetry_hourly) checks every raw table every hour."
    elif freshness:
        last = max(f.checked_at for f in freshness)
        if now - last > FRESHNESS_OVERDUE:
            freshness_note = (
                f"The last check was {duration((now - last).total_seconds())} ago: is telemetry_hourly running?"
            )

    hourly, volume_note = _part(
        conn,
        "quality.ingest_batches",
        lambda: [
            row
            for since, end in volume_blocks(until)
            for row in conn.execute(VOLUME_QUERY, {"since": since, "until": end}).fetchall()
        ],
    )
    volume = None if hourly is None else volumes(hourly, until)
    if volume == []:
        volume_note = "Nothing landed in these hours, nor in the same hours of the 4 weeks before."

    ledger, ledger_note = _part(
        conn,
        "quality.ingest_batches",
        lambda: [
            LedgerDay(*row)
            for row in conn.execute(LEDGER_QUERY, {"since": until - dt.timedelta(days=LEDGER_DAYS)}).fetchall()
        ],
    )
    rejects, rejects_note = _part(
        conn,
        "raw.rejects",
        lambda: [
            RejectReason(*row)
            for row in conn.execute(
                REJECTS_QUERY,
                {"since": now - dt.timedelta(days=REJECT_DAYS), "limit": REASON_LIMIT, "top": REJECT_REASONS},
            ).fetchall()
        ],
    )
    return Monitors(freshness, freshness_note, volume, volume_note, ledger, ledger_note, rejects, rejects_note, until)
