"""Calendar months in the cadence arithmetic, and the fixed-length cadences unchanged beside them."""

from __future__ import annotations

import datetime as dt

import pytest

from collectors.orchestration.cadences import CADENCES, DAILY, HOURLY, MONTHLY, WEEKLY, Cadence, Window


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def test_floor_finds_the_first_of_the_month_at_midnight_utc() -> None:
    assert MONTHLY.floor(utc(2026, 11, 18, 5, 30)) == utc(2026, 11, 1)
    assert MONTHLY.floor(utc(2026, 12, 31, 23, 59, 59)) == utc(2026, 12, 1)
    assert MONTHLY.floor(utc(2026, 1, 1)) == utc(2026, 1, 1)
    # 1 March 00:30 in +01:00 is still 28 February in UTC
    assert MONTHLY.floor(dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == utc(2026, 2, 1)


def test_periods_cross_a_year_end_month_by_month_with_their_own_lengths() -> None:
    starts = MONTHLY.periods(utc(2025, 11, 15), utc(2026, 3, 1))
    assert starts == [utc(2025, 11, 1), utc(2025, 12, 1), utc(2026, 1, 1), utc(2026, 2, 1)]
    lengths = [(MONTHLY.shift(s) - s).days for s in starts]
    assert lengths == [30, 31, 31, 28]
    assert MONTHLY.shift(utc(2025, 12, 1)) == utc(2026, 1, 1)  # December -> January
    assert MONTHLY.shift(utc(2026, 1, 1), -1) == utc(2025, 12, 1)
    assert MONTHLY.shift(utc(2024, 1, 31)) == utc(2024, 2, 29)  # a day past the month's end is cut to it
    assert MONTHLY.periods(utc(2026, 1, 1), utc(2026, 1, 1)) == []


def test_a_window_must_start_and_end_on_the_first_of_a_month() -> None:
    Window(utc(2025, 12, 1), utc(2026, 2, 1)).check_aligned(MONTHLY)
    for start, end in [(utc(2025, 12, 2), utc(2026, 1, 1)), (utc(2025, 12, 1), utc(2025, 12, 29))]:
        with pytest.raises(ValueError, match="not on a monthly boundary"):
            Window(start, end).check_aligned(MONTHLY)
    with pytest.raises(ValueError, match="not on a monthly boundary"):
        Window(utc(2025, 12, 1, 1), utc(2026, 1, 1)).check_aligned(MONTHLY)


@pytest.mark.parametrize("cadence", [HOURLY, DAILY, WEEKLY])
def test_fixed_cadences_step_by_their_length(cadence: Cadence) -> None:
    moment = utc(2026, 11, 18, 5, 30)
    start = cadence.floor(moment)
    assert cadence.length is not None
    assert cadence.shift(start, 3) == start + 3 * cadence.length
    assert cadence.periods(start, start + 2 * cadence.length) == [start, start + cadence.length]
    assert cadence.parts == ("marts", "reliability")


def test_the_floors_of_the_fixed_cadences_are_unchanged() -> None:
    moment = utc(2026, 11, 18, 5, 30)  # a Wednesday
    assert [CADENCES[n].floor(moment) for n in ("hourly", "daily", "weekly")] == [
        utc(2026, 11, 18, 5),
        utc(2026, 11, 18),
        utc(2026, 11, 16),
    ]


def test_a_cadence_is_fixed_or_calendar_never_both() -> None:
    with pytest.raises(ValueError, match="not both or neither"):
        Cadence("odd", "0 0 1 * *", dt.timedelta(days=30), months=1)
    with pytest.raises(ValueError, match="not both or neither"):
        Cadence("odd", "0 0 1 * *")
