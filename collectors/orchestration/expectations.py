"""The Great Expectations suites of the weekly validation, defined in code (GX 1.x).

``build_suites(scope)`` returns one ``SuiteSpec`` per (suite, asset): a SQL query asset (the raw
partitions about to be dropped, or the marts over the days they cover plus the weekly window) and
the expectations run on it. The raw suites check the rows about to go; the mart suites hold only what
reconciles a mart with raw rows, with the ingest ledger or with another mart: a mart's own invariants
are the dbt tests of its model (one home per rule). Importing this module imports ``great_expectations`` (about 4 s), so
``collectors.orchestration.validation`` imports it only when a validation runs.

Multi-column and cross-table rules use ``ExpectQueryToReturnNoRows``: GX's
``UnexpectedRowsExpectation`` that also keeps a few of the offending rows in its result (the stock
one keeps only their count unless the whole run uses the COMPLETE result format), so a failure
names what broke. Every such expectation carries a ``description`` that names the rule; Data Docs
and ``quality.validation_runs`` show it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations.expectations as gxe
from great_expectations.expectations import UnexpectedRowsExpectation
from great_expectations.render import LegacyDiagnosticRendererType
from great_expectations.render.renderer.renderer import renderer

from collectors.ingest import registry as reg
from collectors.ingest.registry import RawTable
from collectors.warehouse.partitions import Partition

SAMPLE_ROWS = 5  # offending rows kept in a failed ExpectQueryToReturnNoRows result
SAMPLE_TEXT = 200  # characters kept of one value of such a row


class ExpectQueryToReturnNoRows(UnexpectedRowsExpectation):
    """Fails when ``unexpected_rows_query`` returns rows; the result keeps the first few of them.

    ``{batch}`` in the query is the asset's batch. GX substitutes it as ``(subquery) AS subselect``
    unless the query contains a JOIN, in which case the query must alias it itself: ``rows_query``
    below takes care of that.
    """

    @classmethod
    @renderer(renderer_type=LegacyDiagnosticRendererType.OBSERVED_VALUE)
    def _diagnostic_observed_value_renderer(
        cls,
        configuration: Any = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
    ) -> str:
        """Data Docs' observed value: the count of offending rows and the first of them."""
        values = (result.result if result is not None else None) or {}
        count = values.get("observed_value")
        if count is None:
            return "--"
        text = f"{count} unexpected row" + ("" if count == 1 else "s")
        sample = (values.get("details") or {}).get("unexpected_rows_sample")
        if sample:
            text += "; first: " + json.dumps(sample[:2], default=str)
        return html.escape(text)

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: Any = None,
    ) -> dict:
        rows = metrics.get("unexpected_rows_query.table") or []
        count = metrics.get("unexpected_rows_query.row_count") or 0
        result: dict[str, Any] = {"observed_value": count}
        if rows:
            result["details"] = {"unexpected_rows_sample": [_plain_row(row) for row in rows[:SAMPLE_ROWS]]}
        return {"success": count == 0, "result": result}


def _plain_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value)
    return text if len(text) <= SAMPLE_TEXT else text[: SAMPLE_TEXT - 1] + "…"


def _plain_row(row: Any) -> dict[str, Any]:
    mapping = row if isinstance(row, dict) else getattr(row, "_mapping", {})
    return {str(key): _plain_value(value) for key, value in dict(mapping).items()}


_JOIN = re.compile(r"\bjoin\b", re.IGNORECASE)


def rows_query(body: str) -> str:
    """An unexpected-rows query whose ``body`` reads the batch as the CTE ``batch_rows``.

    GX renders ``{batch}`` with an alias of its own unless the query contains a JOIN (then the
    query must alias it): this puts the batch in a CTE either way, so bodies never care.
    """
    alias = " as batch_source" if _JOIN.search(body) else ""
    return f"with batch_rows as (select * from {{batch}}{alias}) {body}"


def no_rows(description: str, body: str) -> ExpectQueryToReturnNoRows:
    sql = "\n".join(line for line in textwrap.dedent(body).strip().splitlines() if line.strip())
    return ExpectQueryToReturnNoRows(unexpected_rows_query=rows_query(sql), description=_checked(description))


def _checked(description: str) -> str:
    """Data Docs render descriptions as markup: keep ``<``, ``>`` and ``$`` out of them."""
    if set(description) & {"<", ">", "$"}:
        raise ValueError(f"description {description!r} would not render: say it in words")
    return description


# Column expectations carry a description naming the column and the rule, so a failing one reads
# the same in Data Docs, in quality.validation_runs and in the task's error message.


def unique(columns: Sequence[str], description: str) -> Any:
    if len(columns) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=columns[0], description=_checked(description))
    return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns), description=_checked(description))


def present(column: str) -> Any:
    return gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} is present")


def not_empty(column: str) -> Any:
    return gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, description=f"{column} is not empty")


def between(column: str, low: float | None = None, high: float | None = None) -> Any:
    if low is not None and high is not None:
        rule = f"between {low} and {high}"
    elif low == 0:
        rule = "is not negative"
    elif low is not None:
        rule = f"is at least {low}"
    else:
        rule = f"is at most {high}"
    return gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, description=f"{column} {rule}"
    )


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """What one weekly validation covers.

    ``partitions`` are the raw partitions the cleanup is about to drop; the marts built from raw
    table t are validated over ``days(t)``: the days of t's partitions plus the days the weekly
    window ``[window_start, window_end)`` overlaps (the raw data of both still exists).
    """

    window_start: dt.datetime
    window_end: dt.datetime
    partitions: tuple[Partition, ...] = ()

    def partitions_of(self, table: str) -> list[Partition]:
        return sorted((p for p in self.partitions if p.table == table), key=lambda p: (p.day, p.name))

    @property
    def window_days(self) -> list[dt.date]:
        start = self.window_start.astimezone(dt.UTC)
        end = self.window_end.astimezone(dt.UTC)
        day, days = start.date(), []
        while dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) < end:
            days.append(day)
            day += dt.timedelta(days=1)
        return days

    def partition_days(self, table: str) -> list[dt.date]:
        return sorted({p.day for p in self.partitions_of(table)})

    def days(self, table: str) -> list[dt.date]:
        return sorted(set(self.window_days) | set(self.partition_days(table)))


# --------------------------------------------------------------------------- SQL helpers (literals only)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def text_literal(value: str) -> str:
    if "{" in value or "}" in value:
        raise ValueError(f"braces are not allowed in a GX query literal: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def date_literal(day: dt.date) -> str:
    return f"date '{day.isoformat()}'"


def date_list(days: Iterable[dt.date]) -> str:
    """``(date 'a', date 'b')``; ``(null::date)`` for none (matches nothing)."""
    items = [date_literal(d) for d in sorted(set(days))]
    return "(" + (", ".join(items) if items else "null::date") + ")"


def day_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Contiguous runs of days as half-open ``[first, last + 1)`` ranges."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + dt.timedelta(days=1))
        else:
            ranges.append((day, day + dt.timedelta(days=1)))
    return ranges


def utc_midnight(day: dt.date) -> str:
    return f"(date '{day.isoformat()}'::timestamp at time zone 'UTC')"


def time_filter(column: str, days: Iterable[dt.date]) -> str:
    """A predicate on a timestamptz column for the UTC days (prunes day partitions)."""
    parts = [f"({column} >= {utc_midnight(a)} and {column} < {utc_midnight(b)})" for a, b in day_ranges(days)]
    return "(" + (" or ".join(parts) if parts else "false") + ")"


def mondays(days: Iterable[dt.date]) -> list[dt.date]:
    return sorted({d - dt.timedelta(days=d.weekday()) for d in days})


def utc_day(column: str) -> str:
    return f"({column} at time zone 'UTC')::date"


def utc_hour(column: str) -> str:
    return f"(date_trunc('hour', {column} at time zone 'UTC') at time zone 'UTC')"


def utc_week(column: str) -> str:
    return f"(date_trunc('week', {column} at time zone 'UTC'))::date"


# --------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class SuiteSpec:
    """One suite on one query asset."""

    suite: str
    asset: str
    query: str
    expectations: list[Any]
    scope: dict[str, Any] = field(default_factory=dict)  # what the asset covers (stored with the run)
    # False for a raw table with nothing to drop: its definitions are kept up to date (so the GX
    # directory never refers to an asset that is gone) but it is not part of the checkpoint run
    active: bool = True


def raw_query(table: RawTable, partitions: Sequence[Partition]) -> str:
    """Exactly the rows of ``partitions``, each with the day its partition holds (no row without partitions)."""
    if not partitions:
        return (
            "select p.*, null::date as partition_day, null::text as partition_name "
            f"from raw.{ident(table.name)} as p where false"
        )
    return "\nunion all\n".join(
        f"select p.*, {date_literal(part.day)} as partition_day, {text_literal(part.name)} as partition_name "
        f"from raw.{ident(part.name)} as p"
        for part in partitions
    )


def _ledger_keys(days: Sequence[dt.date]) -> str:
    """The ``accepted_by_day`` keys of ``days`` as a SQL list (``(null)`` for none)."""
    return "(" + (", ".join(text_literal(d.isoformat()) for d in days) or "null") + ")"


def _ledger_reconciles(table: str, days: Sequence[dt.date]) -> ExpectQueryToReturnNoRows:
    return no_rows(
        f"raw.{table} rows per partition day reconcile with quality.ingest_batches (accepted_by_day)",
        f"""
        , days as (select unnest(array[{", ".join(date_literal(d) for d in days)}]::date[]) as day)
        , landed as (select partition_day as day, count(*) as raw_rows from batch_rows group by partition_day)
        , ledger as (
            select accepted.key::date as day, sum(accepted.value::bigint) as ledger_accepted
            from quality.ingest_batches as b
            cross join lateral jsonb_each_text(b.accepted_by_day) as accepted (key, value)
            where b.source = {text_literal(table)} and accepted.key in {_ledger_keys(days)}
            group by accepted.key
        )
        select days.day, coalesce(landed.raw_rows, 0) as raw_rows,
               coalesce(ledger.ledger_accepted, 0) as ledger_accepted
        from days
        left join landed on landed.day = days.day
        left join ledger on ledger.day = days.day
        where coalesce(landed.raw_rows, 0) <> coalesce(ledger.ledger_accepted, 0)
        """,
    )


def _whole(value: float) -> float:
    """2 rather than 2.0 in descriptions."""
    return int(value) if value == int(value) else value


def _column_expectations(table: RawTable) -> list[Any]:
    """Per column, what the record rules demand of it (the registry's specs): present, not empty, in range."""
    expectations: list[Any] = []
    for column in table.columns:
        spec, name = column.spec, column.name
        if name == "batch_id":
            continue
        if spec is None:  # a column of a table filled from another table's records: present, not empty
            expectations.append(present(name))
            if column.type == "text":
                expectations.append(not_empty(name))
        elif isinstance(spec, reg.Text | reg.SchemaVersion):
            if getattr(spec, "required", True):
                expectations += [present(name), not_empty(name)]
        elif isinstance(spec, reg.Time) and spec.required:
            expectations.append(present(name))
        elif isinstance(spec, reg.Number):
            expectations.append(between(name, _whole(spec.low), None if math.isinf(spec.high) else _whole(spec.high)))
        elif isinstance(spec, reg.Count):
            expectations.append(between(name, 0))
        elif isinstance(spec, reg.SampleRate):
            expectations.append(
                no_rows(
                    f"{name} lies in (0, 1]",
                    f"""
                    select {table.key[0]}, {table.partition_column}, {ident(name)} from batch_rows
                    where not ({ident(name)} > 0 and {ident(name)} <= 1)
                    """,
                )
            )
        elif isinstance(spec, reg.Numbers):
            expectations.append(
                no_rows(
                    f"{name} values lie in [{spec.low:g}, {spec.high:g}]",
                    f"""
                    select {table.key[0]}, {table.partition_column}, {ident(name)} from batch_rows
                    where exists (select 1 from unnest({ident(name)}) as v
                                  where v is null or v < {spec.low} or v > {spec.high})
                    """,
                )
            )
        elif isinstance(spec, reg.Ids | reg.Strings):
            what = "user ids present and not negative" if isinstance(spec, reg.Ids) else "present"
            negative = " or u < 0" if isinstance(spec, reg.Ids) else ""
            expectations.append(
                no_rows(
                    f"{name} lists no item twice, every item {what}",
                    f"""
                    select {table.key[0]}, {table.partition_column}, {ident(name)} from batch_rows
                    where cardinality({ident(name)}) <> (select count(distinct u) from unnest({ident(name)}) as u)
                       or exists (select 1 from unnest({ident(name)}) as u where u is null{negative})
                    """,
                )
            )
    return expectations


def _check_expectation(table: RawTable, check: reg.Check) -> Any:
    """The Great Expectations form of one of the registry's rules that tie columns together."""
    keys = f"{table.key[0]}, {table.partition_column}"
    if isinstance(check, reg.Subsets):
        lists = [ident(c) for c in check.lists]
        return no_rows(
            f"lists consistent: {', '.join(check.lists)} hold only ids of {check.of}",
            f"select {keys}, {', '.join(lists)}, {ident(check.of)} from batch_rows "
            f"where not ({' and '.join(f'{c} <@ {ident(check.of)}' for c in lists)})",
        )
    if isinstance(check, reg.SumAtMost):
        parts = " + ".join(check.parts)
        return no_rows(
            f"counts consistent: {parts} is at most {check.whole}",
            f"select {keys}, {', '.join(check.parts)}, {check.whole} from batch_rows where {parts} > {check.whole}",
        )
    if isinstance(check, reg.CountAtMost):
        return no_rows(
            f"counts consistent: {check.items} lists at most {check.limit} items",
            f"select {keys}, {check.items}, {check.limit} from batch_rows "
            f"where cardinality({ident(check.items)}) > {ident(check.limit)}",
        )
    if isinstance(check, reg.AtLeast):
        return no_rows(
            f"readings consistent: {check.high} is at least {check.low}",
            f"select {keys}, {check.high}, {check.low} from batch_rows where {check.high} < {check.low} - 1e-9",
        )
    if isinstance(check, reg.BytesAtMost):
        total = " + ".join(f"octet_length({ident(c)})" for c in check.columns)
        return no_rows(
            f"keys fit their index: {' and '.join(check.columns)} take at most {check.limit} bytes together",
            f"select {keys} from batch_rows where {total} > {check.limit}",
        )
    raise TypeError(f"no expectation for {check!r}")


def raw_suite(table: RawTable, partitions: Sequence[Partition]) -> SuiteSpec:
    """The suite of one raw table's partitions about to be dropped: the same rules records were let in by."""
    column = ident(table.partition_column)
    expectations: list[Any] = [
        unique(table.key, f"natural key ({', '.join(table.key)}) is unique"),
        *_column_expectations(table),
        no_rows(
            f"{table.partition_column} lies inside the day of its partition",
            f"""
            select partition_name, partition_day, {column} from batch_rows
            where not ({column} >= partition_day::timestamp at time zone 'UTC'
                       and {column} < (partition_day + 1)::timestamp at time zone 'UTC')
            """,
        ),
        *(_check_expectation(table, check) for check in table.checks),
    ]
    expectations.append(_ledger_reconciles(table.name, sorted({p.day for p in partitions})))
    return SuiteSpec(
        suite=f"raw_{table.name}",
        asset=f"raw_{table.name}_partitions_to_drop",
        query=raw_query(table, partitions),
        expectations=expectations,
        scope={"partitions": [p.name for p in partitions], "days": sorted({p.day.isoformat() for p in partitions})},
        active=bool(partitions),
    )


# --------------------------------------------------------------------------- marts
#
# A mart's own invariants (bounds, uniqueness, counts consistent within a row, segment list lengths) are dbt
# tests of its model, run by every build, where a failure stops the build before the ledger records it (so the
# cleanup keeps the raw data). What dbt cannot see is checked here, before raw rows go: that the marts account
# for every raw row and period, for the ingest ledger, and for the marts they roll up from.


def _missing_periods(description: str, expected: str, keys: Sequence[str]) -> ExpectQueryToReturnNoRows:
    """``expected`` (a select of ``keys``) minus the batch's rows."""
    on = " and ".join(f"b.{k} = e.{k}" for k in keys)
    return no_rows(
        description,
        f"""
        select e.* from ({expected}) as e
        where not exists (select 1 from batch_rows as b where {on})
        order by {", ".join(f"e.{k}" for k in keys)}
        """,
    )


GRAINS = {
    # grain: (mart suffix, period column, period expression on a timestamptz)
    "hour": ("hourly", "hour_start", utc_hour),
    "day": ("daily", "day", utc_day),
    "week": ("weekly", "week_start", utc_week),
}


def _period_filter(grain: str, column: str, days: Sequence[dt.date]) -> str:
    if grain == "hour":
        return time_filter(column, days)
    if grain == "day":
        return f"{column} in {date_list(days)}"
    return f"{column} in {date_list(mondays(days))}"


def _mart(name: str, period_column: str, grain: str, days: Sequence[dt.date]) -> tuple[str, str]:
    return (
        f"marts_{name}",
        f"select * from marts.{ident(name)} where {_period_filter(grain, period_column, days)}",
    )


def _scope_days(days: Sequence[dt.date], **extra: Any) -> dict[str, Any]:
    return {"days": [d.isoformat() for d in days], **extra}


def _ledger_by_day(source: str, days: Sequence[dt.date]) -> str:
    """A CTE ``ledger (day, ledger_accepted)``: what quality.ingest_batches accepted of ``source`` per day."""
    return f"""
        , ledger as (
            select accepted.key::date as day, sum(accepted.value::bigint) as ledger_accepted
            from quality.ingest_batches as b
            cross join lateral jsonb_each_text(b.accepted_by_day) as accepted (key, value)
            where b.source = {text_literal(source)} and accepted.key in {_ledger_keys(days)}
            group by accepted.key
        )
    """


def channel_reliability_suite(grain: str, scope: Scope) -> SuiteSpec:
    suffix, period, period_of = GRAINS[grain]
    name = f"fct_channel_reliability_{suffix}"
    days = scope.days("message_samples")
    asset, query = _mart(name, period, grain, days)
    dropped = scope.partition_days("message_samples")
    return SuiteSpec(
        suite=f"marts_{name}",
        asset=asset,
        query=query,
        expectations=[
            _missing_periods(
                f"one row per {grain} and channel with message samples sent in it (days of the dropped partitions)",
                f"""
                select distinct {period_of("sent_at")} as {period}, channel_id from raw.message_samples
                where {time_filter("sent_at", dropped)}
                """,
                (period, "channel_id"),
            ),
        ],
        scope=_scope_days(days, expected_period_days=[d.isoformat() for d in dropped]),
    )


def reliability_suite(grain: str, scope: Scope) -> SuiteSpec:
    suffix, period, period_of = GRAINS[grain]
    name = f"fct_reliability_{suffix}"
    days = scope.days("message_samples")
    asset, query = _mart(name, period, grain, days)
    dropped = scope.partition_days("message_samples")
    return SuiteSpec(
        suite=f"marts_{name}",
        asset=asset,
        query=query,
        expectations=[
            _missing_periods(
                f"one row per {grain} with message samples sent in it (days of the dropped partitions)",
                f"""
                select distinct {period_of("sent_at")} as {period} from raw.message_samples
                where {time_filter("sent_at", dropped)}
                """,
                (period,),
            ),
        ],
        scope=_scope_days(days, expected_period_days=[d.isoformat() for d in dropped]),
    )


def host_metrics_suite(grain: str, scope: Scope) -> SuiteSpec:
    suffix, period, period_of = GRAINS[grain]
    name = f"fct_host_metrics_{suffix}"
    days = scope.days("host_minutes")
    asset, query = _mart(name, period, grain, days)
    raw_minutes = f"""
        select {period_of("minute")} as {period}, host_id, count(*) as raw_minutes from raw.host_minutes
        where {time_filter("minute", days)} group by 1, 2
    """
    expectations: list[Any] = []
    if grain != "week":  # a week's raw data may be partly dropped already; hours and days are whole
        expectations += [
            _missing_periods(
                f"no gap: one row per host and {grain} with host records in raw.host_minutes",
                f"select {period}, host_id from ({raw_minutes}) as r",
                (period, "host_id"),
            ),
            no_rows(
                "minutes_observed = the host's records in raw.host_minutes in the period",
                f"""
                select b.{period}, b.host_id, b.minutes_observed, r.raw_minutes
                from batch_rows as b join ({raw_minutes}) as r on r.{period} = b.{period} and r.host_id = b.host_id
                where b.minutes_observed <> r.raw_minutes
                """,
            ),
        ]
    else:
        expectations.append(
            _missing_periods(
                "one row per host and week with host records in raw.host_minutes",
                f"select distinct {period}, host_id from ({raw_minutes}) as r",
                (period, "host_id"),
            )
        )
    if grain == "day":
        expectations.append(
            no_rows(
                "minutes_observed per day reconcile with quality.ingest_batches (host_minutes accepted_by_day)",
                f"""
                {_ledger_by_day("host_minutes", days)}
                , mart as (select day, sum(minutes_observed) as minutes_observed from batch_rows group by day)
                select coalesce(mart.day, ledger.day) as day, coalesce(mart.minutes_observed, 0) as minutes_observed,
                       coalesce(ledger.ledger_accepted, 0) as ledger_accepted
                from mart full join ledger on ledger.day = mart.day
                where coalesce(mart.minutes_observed, 0) <> coalesce(ledger.ledger_accepted, 0)
                """,
            )
        )
    return SuiteSpec(f"marts_{name}", asset, query, expectations, scope=_scope_days(days))


def server_metrics_suite(scope: Scope) -> SuiteSpec:
    """The daily server metrics account for every report: per day and server, ``reports`` = the raw rows. Minutes,
    hours and weeks are sums of the same reports, and their invariants (breaches within reports and minutes) are
    dbt tests of the models."""
    days = scope.days("server_reports")
    asset, query = _mart("fct_server_metrics_daily", "day", "day", days)
    raw_reports = f"""
        select {utc_day("reported_at")} as day, server_id, count(*) as raw_reports from raw.server_reports
        where {time_filter("reported_at", days)} group by 1, 2
    """
    return SuiteSpec(
        suite="marts_fct_server_metrics_daily",
        asset=asset,
        query=query,
        expectations=[
            no_rows(
                "reports per day and server = the rows of raw.server_reports (a row missing on either side fails)",
                f"""
                select coalesce(b.day, r.day) as day, coalesce(b.server_id, r.server_id) as server_id,
                       coalesce(b.reports, 0) as reports, coalesce(r.raw_reports, 0) as raw_reports
                from batch_rows as b full join ({raw_reports}) as r on r.day = b.day and r.server_id = b.server_id
                where coalesce(b.reports, 0) <> coalesce(r.raw_reports, 0)
                """,
            ),
        ],
        scope=_scope_days(days),
    )


def telemetry_day_suite(scope: Scope) -> SuiteSpec:
    days = scope.days("minute_snapshots")
    asset, query = _mart("fct_telemetry_day", "day", "day", days)
    return SuiteSpec(
        suite="marts_fct_telemetry_day",
        asset=asset,
        query=query,
        expectations=[
            _missing_periods(
                "one row per day with minute snapshots in raw.minute_snapshots",
                f"""
                select distinct {utc_day("minute")} as day from raw.minute_snapshots
                where {time_filter("minute", days)}
                """,
                ("day",),
            ),
        ],
        scope=_scope_days(days),
    )


def telemetry_week_suite(scope: Scope) -> SuiteSpec:
    days = scope.days("minute_snapshots")
    asset, query = _mart("fct_telemetry_week", "week_start", "week", days)
    return SuiteSpec(
        suite="marts_fct_telemetry_week",
        asset=asset,
        query=query,
        expectations=[
            no_rows(
                "days_observed = the week's rows in fct_telemetry_day; minutes add up over the days",
                """
                select w.week_start, w.days_observed, count(d.day) as day_rows,
                       w.minutes_total, coalesce(sum(d.minutes_total), 0) as day_minutes_total
                from batch_rows as w
                left join marts.fct_telemetry_day as d
                    on d.day >= w.week_start and d.day < w.week_start + 7
                group by w.week_start, w.days_observed, w.minutes_total
                having w.days_observed <> count(d.day) or w.minutes_total <> coalesce(sum(d.minutes_total), 0)
                """,
            ),
            _missing_periods(
                "one row per week with minute snapshots in raw.minute_snapshots",
                f"""
                select distinct {utc_week("minute")} as week_start from raw.minute_snapshots
                where {time_filter("minute", days)}
                """,
                ("week_start",),
            ),
        ],
        scope=_scope_days(days, weeks=[d.isoformat() for d in mondays(days)]),
    )


def minutes_per_user_suite(grain: str, scope: Scope) -> SuiteSpec:
    suffix, period, _ = GRAINS[grain]
    name = f"fct_minutes_per_user_{suffix}"
    days = scope.days("minute_snapshots")
    asset, query = _mart(name, period, grain, days)
    rollup = "fct_telemetry_day" if grain == "day" else "fct_telemetry_week"
    return SuiteSpec(
        suite=f"marts_{name}",
        asset=asset,
        query=query,
        expectations=[
            no_rows(
                f"users with state total per {grain} = unique_users of {rollup}",
                f"""
                select r.{period}, r.unique_users, count(distinct b.user_id) as users_in_mart
                from marts.{rollup} as r
                left join batch_rows as b on b.{period} = r.{period} and b.state = 'total'
                where {_period_filter(grain, "r." + period, days)}
                group by r.{period}, r.unique_users
                having r.unique_users <> count(distinct b.user_id)
                """,
            ),
        ],
        scope=_scope_days(days),
    )


def event_counts_suite(scope: Scope) -> SuiteSpec:
    days = scope.days("product_events")
    asset, query = _mart("fct_event_counts_daily", "day", "day", days)
    raw_counts = f"""
        select {utc_day('"timestamp"')} as day, channel, event, count(distinct event_id) as raw_events
        from raw.product_events where {time_filter('"timestamp"', days)} group by 1, 2, 3
    """
    return SuiteSpec(
        suite="marts_fct_event_counts_daily",
        asset=asset,
        query=query,
        expectations=[
            _missing_periods(
                "one row per day, channel and event with events in raw.product_events",
                f"select day, channel, event from ({raw_counts}) as r",
                ("day", "channel", "event"),
            ),
            no_rows(
                "events = distinct event ids in raw.product_events for the day, channel and event",
                f"""
                select b.day, b.channel, b.event, b.events, r.raw_events
                from batch_rows as b join ({raw_counts}) as r
                    on r.day = b.day and r.channel = b.channel and r.event = b.event
                where b.events <> r.raw_events
                """,
            ),
        ],
        scope=_scope_days(days),
    )


def build_suites(scope: Scope) -> list[SuiteSpec]:
    """Every (suite, asset) of the weekly validation: the raw tables (active when they have partitions to drop),
    then the marts' reconciliations. The set never changes from run to run, so GX definitions never go stale."""
    specs = [raw_suite(t, scope.partitions_of(t.name)) for t in reg.RAW_TABLES]
    specs += [telemetry_day_suite(scope), telemetry_week_suite(scope)]
    specs += [minutes_per_user_suite(g, scope) for g in ("day", "week")]
    specs += [channel_reliability_suite(g, scope) for g in GRAINS]
    specs += [reliability_suite(g, scope) for g in GRAINS]
    specs += [host_metrics_suite(g, scope) for g in GRAINS]
    specs.append(server_metrics_suite(scope))
    specs.append(event_counts_suite(scope))
    return specs
