"""Reliability marts against hand-worked and brute-force results, each in a database of its own.

* The original status-im aggregator's fixture "TestRunAggregatorSimpleWithMessageMissing", with
  fixed times: the receivers were heard 3.5 hours before the window, which the 7-day look-back
  reaches (a look-back of one window length did not, and gave no reliability at all).
* A seeded random population checked window by window against a direct Python reading of the
  rule, through a full refresh, a run of many windows, single windows, and reruns after the raw
  rows of a look-back day are gone (the presence summary keeps what they said).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest

from collectors.orchestration import dbt_runner as dbt
from tests.dbt.raw_rows import UTC, Sample, ensure_partitions, insert_samples

NOW = dt.datetime(2026, 11, 3, 12, 0, tzinfo=UTC)  # the fixture's time.Now()
HOUR = dt.timedelta(hours=1)


def status_im_fixture() -> list[Sample]:
    """The fixture's samples. Its samples carry no client clock, so recorded = created_at: now,
    except the two that the fixture moves back to their sending time."""
    half_past = NOW - dt.timedelta(hours=1, minutes=30)
    early = NOW - dt.timedelta(hours=5, minutes=30)
    return [
        Sample("1", "1", "1", NOW, None, NOW),
        Sample("3", "2", "1", half_past, None, NOW),
        Sample("3", "3", "1", half_past, None, NOW),
        Sample("3", "4", "1", early, None, early),
        Sample("1", "1", "2", NOW, None, NOW),
        Sample("3", "2", "2", half_past, None, NOW),
        Sample("3", "4", "2", early, None, early),
    ]


def load(url: str, samples: Iterable[Sample], first: dt.date, last: dt.date) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_partitions(conn, first, last)
        insert_samples(conn, list(samples))


def test_status_im_simple_with_message_missing(warehouse_url: str, tmp_path: Path) -> None:
    load(warehouse_url, status_im_fixture(), NOW.date() - dt.timedelta(days=1), NOW.date() + dt.timedelta(days=1))
    start, end = NOW - 2 * HOUR, NOW - HOUR  # agg.Run(time.Hour): the hour that ended an hour ago
    dbt.build("+fct_reliability_hourly", start, end, database_url=warehouse_url, target_path=tmp_path)
    with psycopg.connect(warehouse_url) as conn:
        channels = conn.execute(
            """
            select channel_id, messages, receivers, total, missing, reliability, status_compat_reliability
            from marts.fct_channel_reliability_hourly where hour_start = %s order by channel_id
            """,
            (start,),
        ).fetchall()
        overall = conn.execute(
            """
            select channels, channels_measured, total, missing, reliability, status_compat_reliability
            from marts.fct_reliability_hourly where hour_start = %s
            """,
            (start,),
        ).fetchall()
    # Chat 3: both receivers were heard before S (message 4, recorded at now - 5.5 h) and after E
    # (messages 2 and 3, recorded now); M = {2, 3}, R = {1, 2}: 4 expected deliveries, receiver 2
    # missed message 3. Chat 1 has no row: nothing of it was sent in the window and no receiver
    # was heard in it before S, so it is not measured (total 0 in the original's terms too).
    assert channels == [("3", 2, 2, 4, 1, Decimal("0.75"), channels[0][6])]
    # The original's own rule: counts 2 and 1, max 2: 1 - 1/3, the fixture's 0.67.
    compat = channels[0][6]
    assert abs(compat - Decimal(2) / 3) < Decimal("1e-18") and round(compat, 2) == Decimal("0.67")
    assert overall == [(1, 1, 4, 1, Decimal("0.75"), compat)]


# ---------------------------------------------------------------- brute force

LOOKBACK = dt.timedelta(days=7)
DAY = dt.datetime(2026, 11, 3, tzinfo=UTC)  # a Tuesday
DATA_START, DATA_END = DAY - dt.timedelta(days=9), DAY + dt.timedelta(days=3)
GRAINS = {
    "hour": ("fct_channel_reliability_hourly", "hour_start", HOUR),
    "day": ("fct_channel_reliability_daily", "day", dt.timedelta(days=1)),
}


def random_samples(seed: int = 7) -> list[Sample]:
    """Three channels, seven receivers that come and go, lost deliveries, and recordings of every
    kind: the client's clock (a little early or late), the ingest time, and replays ingested days
    later without a client clock."""
    rng = random.Random(seed)
    receivers = [f"r{i}" for i in range(1, 8)]
    samples: list[Sample] = []
    for channel in ("c1", "c2", "c3"):
        members = rng.sample(receivers, 4)
        online = {r: sorted(rng.sample(range(int((DATA_END - DATA_START) / HOUR)), 90)) for r in members}
        for index in range(160):
            sent = DATA_START + dt.timedelta(seconds=rng.randrange(int((DATA_END - DATA_START).total_seconds())))
            hour = int((sent - DATA_START) / HOUR)
            for receiver in members:
                if hour not in online[receiver] or rng.random() < 0.15:
                    continue
                kind = rng.random()
                message = f"{channel}-m{index}"
                if kind < 0.6:  # the client's clock, up to a minute behind the sender's
                    received = sent + dt.timedelta(seconds=rng.randrange(-60, 900))
                    created = max(sent, received) + dt.timedelta(seconds=rng.randrange(1, 30))
                    samples.append(Sample(channel, message, receiver, sent, received, created))
                elif kind < 0.9:  # no client clock: the ingest time
                    created = sent + dt.timedelta(seconds=rng.randrange(1, 5400))
                    samples.append(Sample(channel, message, receiver, sent, None, created))
                else:  # replayed days later without a client clock
                    created = sent + dt.timedelta(hours=rng.randrange(1, 60))
                    samples.append(Sample(channel, message, receiver, sent, None, created))
    return samples


def recorded(sample: Sample) -> dt.datetime:
    return sample.received_at or sample.created_at


def period_start(ts: dt.datetime, grain: str) -> dt.datetime:
    start = ts.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if grain == "day" else start


def expected_rows(samples: list[Sample], grain: str, windows: Iterable[dt.datetime]) -> set[tuple[object, ...]]:
    """The rule read literally, window by window and channel by channel."""
    period = GRAINS[grain][2]
    rows = set()
    for start in windows:
        end = start + period
        near = [s for s in samples if start - LOOKBACK <= s.sent_at < end + period]
        inside = [s for s in samples if start <= s.sent_at < end]
        heard_after_end = {s.receiver for s in samples if start <= s.sent_at < end + period and recorded(s) >= end}
        for channel in sorted({s.channel_id for s in inside} | {s.channel_id for s in near}):
            mine = [s for s in near if s.channel_id == channel]
            counted = {
                r
                for r in {s.receiver for s in mine}
                if any(recorded(s) < start for s in mine if s.receiver == r)
                and any(recorded(s) >= end for s in mine if s.receiver == r)
            }
            window = [s for s in inside if s.channel_id == channel]
            if not window and not counted:
                continue
            deliveries = {(s.receiver, s.message_id) for s in window if s.receiver in counted}
            messages = {m for _, m in deliveries}
            total = len(messages) * len(counted)
            counts = {}
            for receiver in heard_after_end:
                n = len({s.message_id for s in window if s.receiver == receiver})
                if n:
                    counts[receiver] = n
            compat = None
            if counts:
                top = max(counts.values())
                compat = 1 - Fraction(sum(top - n for n in counts.values()), sum(counts.values()))
            rows.add(
                (
                    start if grain == "hour" else start.date(),
                    channel,
                    len(messages),
                    len(counted),
                    total,
                    len(deliveries),
                    None if total == 0 else 1 - Fraction(total - len(deliveries), total),
                    len(window),
                    len({s.receiver for s in window}),
                    compat,
                )
            )
    return rows


def mart_rows(url: str, grain: str, first: dt.datetime, last: dt.datetime) -> set[tuple[object, ...]]:
    table, column, _ = GRAINS[grain]
    bounds = (first, last) if grain == "hour" else (first.date(), last.date())
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"""
            select {column}, channel_id, messages, receivers, total, delivered, reliability, samples,
                   receivers_seen, status_compat_reliability
            from marts.{table} where {column} >= %s and {column} < %s
            """,
            bounds,
        ).fetchall()

    def exact(value: Decimal | None) -> Fraction | None:
        return None if value is None else Fraction(value).limit_denominator(10**6)

    return {(*row[:6], exact(row[6]), row[7], row[8], exact(row[9])) for row in rows}


def every(first: dt.datetime, last: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    return [first + i * step for i in range(int((last - first) / step))]


@pytest.mark.slow
def test_reliability_equals_the_rule_read_literally(warehouse_url: str, tmp_path: Path) -> None:
    samples = random_samples()
    load(warehouse_url, samples, DATA_START.date() - dt.timedelta(days=1), DATA_END.date() + dt.timedelta(days=1))
    selection = "+fct_channel_reliability_hourly +fct_channel_reliability_daily"

    def build(start: dt.datetime, end: dt.datetime, **kwargs: object) -> None:
        dbt.build(selection, start, end, database_url=warehouse_url, target_path=tmp_path, data_tests=False, **kwargs)

    def check(grain: str, first: dt.datetime, last: dt.datetime) -> None:
        expected = expected_rows(samples, grain, every(first, last, GRAINS[grain][2]))
        assert mart_rows(warehouse_url, grain, first, last) == expected, grain
        assert sum(row[3] for row in expected) > 20, "the check counts receivers"

    # a full refresh computes every window of the data
    build(DAY, DAY + dt.timedelta(days=1), full_refresh=True)
    check("hour", DATA_START, DATA_END - HOUR)
    check("day", DATA_START, DATA_END - dt.timedelta(days=1))
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("truncate marts.fct_channel_reliability_hourly, marts.fct_channel_reliability_daily")

    # windows built two days at once, one hour at a time and one day at a time take their
    # look-back from the summary, with the same result
    build(DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1))
    for hour in (DAY + 9 * HOUR, DAY + 10 * HOUR):
        build(hour, hour + HOUR)
    build(DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2))
    check("hour", DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1))
    check("day", DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=2))

    # the raw rows of a look-back day gone (as when its partition is dropped): a rerun still sees
    # them in the summary, where reading raw alone would now count fewer receivers
    before = mart_rows(warehouse_url, "hour", DAY, DAY + dt.timedelta(days=1))
    before_day = mart_rows(warehouse_url, "day", DAY, DAY + dt.timedelta(days=1))
    gone = (DAY - dt.timedelta(days=1), DAY)
    with psycopg.connect(warehouse_url) as conn:
        deleted = conn.execute("delete from raw.message_samples where sent_at >= %s and sent_at < %s", gone).rowcount
    assert deleted > 20
    remaining = [s for s in samples if not gone[0] <= s.sent_at < gone[1]]
    assert expected_rows(remaining, "hour", every(DAY, DAY + dt.timedelta(days=1), HOUR)) != before
    build(DAY, DAY + dt.timedelta(days=1))
    assert mart_rows(warehouse_url, "hour", DAY, DAY + dt.timedelta(days=1)) == before
    assert mart_rows(warehouse_url, "day", DAY, DAY + dt.timedelta(days=1)) == before_day
