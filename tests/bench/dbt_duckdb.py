"""The DuckDB baseline of the dbt benchmark: the same daily rows from the same raw rows.

``export`` copies the raw rows one daily build reads (the day's minute snapshots and accounts,
the message samples sent in [day - look-back, day + 1 day + 1 day)) from PostgreSQL into an
in-memory DuckDB database; it is not timed, as loading raw is not timed on the dbt side.
``compute`` then runs the day's rules there, timed: channel reliability per channel, minutes per
user per state, and the day log's per-segment figures and day figures. ``compare`` checks the
marts dbt built against those rows, row for row, and raises on the first difference.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import psycopg

STATES = ("player", "spectator", "lobby", "menu", "total")
LOOKBACK = dt.timedelta(days=7)  # var reliability_lookback_days
DAY = dt.timedelta(days=1)

RELIABILITY_SQL = """
with samples as (
    select channel_id, message_id, receiver_public_key, sent_at, coalesce(received_at, created_at) as recorded_at
    from message_samples
    where sent_at >= $lower and sent_at < $reach
),
counted as (
    select channel_id, receiver_public_key
    from samples
    group by all
    having min(recorded_at) < $start and max(recorded_at) >= $end
),
in_window as (
    select * from samples where sent_at >= $start and sent_at < $end
),
per_receiver as (
    select channel_id, receiver_public_key, count(distinct message_id) as messages, count(*) as samples
    from in_window
    group by all
),
deliveries as (
    select channel_id, count(distinct message_id) as messages
    from in_window semi join counted using (channel_id, receiver_public_key)
    group by all
),
delivered as (
    select channel_id, sum(messages) as delivered
    from per_receiver semi join counted using (channel_id, receiver_public_key)
    group by all
),
receivers as (
    select channel_id, count(*) as receivers from counted group by all
),
activity as (
    select channel_id, sum(samples) as samples, count(*) as receivers_seen from per_receiver group by all
),
after_end as (
    select distinct receiver_public_key from samples where sent_at >= $start and recorded_at >= $end
),
compat as (
    select channel_id, sum(channel_max - messages) as compat_missing, sum(messages) as compat_total
    from (
        select *, max(messages) over (partition by channel_id) as channel_max
        from per_receiver semi join after_end using (receiver_public_key)
    )
    group by all
),
channels as (
    select channel_id from activity union select channel_id from receivers
)
select
    channels.channel_id,
    coalesce(deliveries.messages, 0) as messages,
    coalesce(receivers.receivers, 0) as receivers,
    coalesce(delivered.delivered, 0) as delivered,
    coalesce(activity.samples, 0) as samples,
    coalesce(activity.receivers_seen, 0) as receivers_seen,
    compat.compat_missing,
    compat.compat_total
from channels
left join deliveries using (channel_id)
left join receivers using (channel_id)
left join delivered using (channel_id)
left join activity using (channel_id)
left join compat using (channel_id)
order by channel_id
"""

MINUTES_SQL = """
select user_id, state, count(distinct minute) as minutes
from (
    unpivot (select minute, player, spectator, lobby, menu, total from snapshots)
    on player, spectator, lobby, menu, total into name state value user_ids
), unnest(user_ids) as listed (user_id)
group by all
"""

SEGMENTS_SQL = """
with global_minutes as (
    select minute, sum(battles_total) as bt, sum(battles_lobby) as bl, sum(battles_in_progress) as bp,
           sum(len(player)) as player, sum(len(spectator)) as spectator, sum(len(lobby)) as lobby,
           sum(len(menu)) as menu, sum(len(total)) as total
    from snapshots group by minute
)
select floor((epoch(minute) - epoch($start)) / 3600)::integer as segment, count(*) as n,
       sum(bt), sum(bl), sum(bp), sum(player), sum(spectator), sum(lobby), sum(menu), sum(total),
       max(player), max(spectator), max(lobby), max(menu), max(total)
from global_minutes group by all order by segment
"""

DAY_SQL = """
select
    (select count(distinct b) from snapshots, unnest(battle_ids) as listed (b)) as battles,
    (select count(distinct user_id) from accounts) as accounts_created
"""


@dataclass
class Baseline:
    """DuckDB's rows of one day and the seconds its compute took."""

    reliability: list[tuple[Any, ...]]
    minutes: set[tuple[int, str, int]]
    segments: list[tuple[Any, ...]]
    day: tuple[Any, ...]
    reliability_seconds: float
    daily_seconds: float


def _copy_to_csv(conn: psycopg.Connection, query: str, path: Path) -> None:
    with path.open("wb") as out, conn.cursor().copy(f"copy ({query}) to stdout with (format csv, header)") as copy:
        for chunk in copy:
            out.write(chunk)


def export(url: str, start: dt.datetime, workdir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the raw rows the daily build of [start, start + 1 day) reads."""
    end = start + DAY
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-", dir=workdir) as tmp:
        folder = Path(tmp)
        literal = {
            name: f"'{value.isoformat()}'::timestamptz"
            for name, value in {"lower": start - LOOKBACK, "reach": end + DAY, "start": start, "end": end}.items()
        }
        queries = {
            "message_samples": "select channel_id, message_id, receiver_public_key, sent_at, received_at, created_at"
            f" from raw.message_samples where sent_at >= {literal['lower']} and sent_at < {literal['reach']}",
            # arrays as JSON text, which DuckDB casts to lists
            "snapshots": "select server_id, minute, battles_total, battles_lobby, battles_in_progress, "
            + ", ".join(f"array_to_json({state}) as {state}" for state in STATES)
            + ", array_to_json(battle_ids) as battle_ids"
            f" from raw.minute_snapshots where minute >= {literal['start']} and minute < {literal['end']}",
            "accounts": "select user_id, created_at from raw.accounts_created"
            f" where created_at >= {literal['start']} and created_at < {literal['end']}",
        }
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("set timezone = 'UTC'")
            for table, query in queries.items():
                _copy_to_csv(conn, query, folder / f"{table}.csv")
        duck = duckdb.connect()
        duck.execute("set timezone = 'UTC'")
        duck.execute(
            "create table message_samples as select * from read_csv($path, header = true, columns = {"
            "'channel_id': 'varchar', 'message_id': 'varchar', 'receiver_public_key': 'varchar',"
            "'sent_at': 'timestamptz', 'received_at': 'timestamptz', 'created_at': 'timestamptz'})",
            {"path": str(folder / "message_samples.csv")},
        )
        lists = ", ".join(f"'{state}': 'varchar'" for state in (*STATES, "battle_ids"))
        duck.execute(
            "create table snapshots as select server_id, minute, battles_total, battles_lobby, battles_in_progress, "
            + ", ".join(f"{state}::bigint[] as {state}" for state in STATES)
            + ", battle_ids::varchar[] as battle_ids from read_csv($path, header = true, columns = {"
            "'server_id': 'varchar', 'minute': 'timestamptz', 'battles_total': 'bigint', 'battles_lobby': 'bigint',"
            f"'battles_in_progress': 'bigint', {lists}}})",
            {"path": str(folder / "snapshots.csv")},
        )
        duck.execute(
            "create table accounts as select * from read_csv($path, header = true, columns = {"
            "'user_id': 'bigint', 'created_at': 'timestamptz'})",
            {"path": str(folder / "accounts.csv")},
        )
    return duck


def compute(duck: duckdb.DuckDBPyConnection, start: dt.datetime) -> Baseline:
    """The day's rows, DuckDB's compute timed (reliability on its own and the whole day)."""
    end = start + DAY
    window = {"lower": start - LOOKBACK, "reach": end + DAY, "start": start, "end": end}
    started = time.perf_counter()
    reliability = duck.execute(RELIABILITY_SQL, window).fetchall()
    reliability_seconds = time.perf_counter() - started
    minutes = {(int(u), s, int(m)) for u, s, m in duck.execute(MINUTES_SQL).fetchall()}
    segments = duck.execute(SEGMENTS_SQL, {"start": start}).fetchall()
    day = duck.execute(DAY_SQL).fetchone()
    daily_seconds = time.perf_counter() - started
    assert day is not None
    return Baseline(reliability, minutes, segments, day, reliability_seconds, daily_seconds)


def _close(value: object, expected: Fraction) -> bool:
    return abs(Fraction(str(value)) - expected) <= Fraction(1, 10**15)


def compare(url: str, day: dt.date, start: dt.datetime, baseline: Baseline) -> None:
    """Raise AssertionError unless the marts of `day` equal DuckDB's rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        channels = conn.execute(
            "select channel_id, messages, receivers, total, delivered, missing, reliability, samples, receivers_seen,"
            " status_compat_reliability from marts.fct_channel_reliability_daily where day = %s order by channel_id",
            (day,),
        ).fetchall()
        minutes = {
            (int(u), s, int(m))
            for u, s, m in conn.execute(
                "select user_id, state, minutes from marts.fct_minutes_per_user_daily where day = %s", (day,)
            ).fetchall()
        }
        row = conn.execute(
            "select day_log, segment_peak_user_counts, minutes_observed, unique_users, unique_players,"
            " accounts_created, battles from marts.fct_telemetry_day where day = %s",
            (day,),
        ).fetchone()
    _compare_reliability(channels, baseline.reliability)
    if minutes != baseline.minutes:
        raise AssertionError(f"minutes per user differ: {len(minutes ^ baseline.minutes)} rows in one only")
    if row is None:
        raise AssertionError("no fct_telemetry_day row")
    _compare_day(row, baseline)


def _compare_reliability(channels: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    if [c[0] for c in channels] != [e[0] for e in expected]:
        raise AssertionError("the channels of fct_channel_reliability_daily differ from DuckDB's")
    for got, want in zip(channels, expected, strict=True):
        channel, messages, receivers, delivered, samples, receivers_seen, compat_missing, compat_total = want
        total = messages * receivers
        if got[1:6] != (messages, receivers, total, delivered, total - delivered) or got[7:9] != (
            samples,
            receivers_seen,
        ):
            raise AssertionError(f"channel {channel}: {got} vs DuckDB {want}")
        if (got[6] is None) != (total == 0) or (total and not _close(got[6], Fraction(delivered, total))):
            raise AssertionError(f"channel {channel}: reliability {got[6]} vs {delivered}/{total}")
        compat_expected = Fraction(compat_total - compat_missing, compat_total) if compat_total else None
        if (got[9] is None) != (compat_expected is None) or (
            compat_expected is not None and not _close(got[9], compat_expected)
        ):
            raise AssertionError(f"channel {channel}: status_compat_reliability {got[9]} vs {compat_expected}")


def _compare_day(row: tuple[Any, ...], baseline: Baseline) -> None:
    log, peaks, minutes_observed, unique_users, unique_players, accounts_created, battles = row
    log = json.loads(log) if isinstance(log, str) else log
    segments = {int(s[0]): s for s in baseline.segments}
    count = len(log["user_counts"]["total"])
    for index in range(count):
        seg = segments.get(index)
        n = int(seg[1]) if seg else 0
        sums = [int(v) for v in seg[2:10]] if seg else [0] * 8
        highs = [int(v) for v in seg[10:15]] if seg else [0] * 5
        for k, kind in enumerate(("total", "lobby", "in_progress")):
            _expect(log["battles"][kind][index], Fraction(sums[k], n) if n else Fraction(0), f"battles {kind}")
        for k, state in enumerate(STATES):
            _expect(log["user_counts"][state][index], Fraction(sums[3 + k]), f"user_counts {state}")
            average = Fraction(sums[3 + k], n) if n else Fraction(0)
            _expect(log["average_user_counts"][state][index], average, f"average {state}")
            _expect(peaks[state][index], Fraction(highs[k]), f"peak {state}")
    by_state: dict[str, dict[str, int]] = {state: {} for state in STATES}
    for user, state, minutes in baseline.minutes:
        by_state[state][str(user)] = minutes
    if log["minutes_per_user"] != by_state:
        raise AssertionError("day_log minutes_per_user differs from DuckDB's")
    expected_battles, expected_accounts = baseline.day
    figures = (
        minutes_observed,
        unique_users,
        unique_players,
        accounts_created,
        battles,
    )
    expected = (
        sum(int(s[1]) for s in baseline.segments),
        len(by_state["total"]),
        len(by_state["player"]),
        int(expected_accounts),
        int(expected_battles),
    )
    if figures != expected:
        raise AssertionError(f"day figures {figures} vs DuckDB {expected}")


def _expect(value: object, expected: Fraction, what: str) -> None:
    if not _close(Decimal(str(value)), expected):
        raise AssertionError(f"day_log {what}: {value} vs DuckDB {expected}")
