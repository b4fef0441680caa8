{#-
  The run window. Airflow passes --vars '{"window_start": ..., "window_end": ...}' (ISO 8601);
  an incremental model then recomputes every period (minute, hour, day or week) that overlaps
  [window_start, window_end) from the raw rows of those periods, and delete+insert replaces
  exactly those periods. With aligned windows (the DAGs' intervals) that is exactly the window.
  Without the vars, or with --full-refresh, the window is inactive and models read everything.

  Bounds are rendered as timestamp literals computed here, so PostgreSQL prunes the raw
  tables' day partitions at plan time: a run costs what its window holds, not the history.
-#}

{#- True on --full-refresh; a macro of its own so unit tests can override it. -#}
{% macro telemetry_full_refresh() -%}
    {{ return(flags.FULL_REFRESH) }}
{%- endmacro %}

{% macro telemetry_window() -%}
    {%- if telemetry_full_refresh() -%}
        {{ return(none) }}
    {%- endif -%}
    {#- The runner passes the window in the environment, read only when a model runs: a var that changes from
        run to run makes dbt parse the whole project again (seconds per run), an environment variable read at
        run time does not. A var given explicitly (even null, as unit tests do) wins. -#}
    {%- set raw_start = var('window_start', 'from the environment') -%}
    {%- set raw_end = var('window_end', 'from the environment') -%}
    {%- if raw_start == 'from the environment' -%}
        {%- set raw_start = (env_var('TELEMETRY_DBT_WINDOW_START', '') if execute else '') or none -%}
    {%- endif -%}
    {%- if raw_end == 'from the environment' -%}
        {%- set raw_end = (env_var('TELEMETRY_DBT_WINDOW_END', '') if execute else '') or none -%}
    {%- endif -%}
    {%- if raw_start is none and raw_end is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if raw_start is none or raw_end is none -%}
        {{ exceptions.raise_compiler_error("vars window_start and window_end go together; got window_start=" ~ raw_start ~ ", window_end=" ~ raw_end) }}
    {%- endif -%}
    {%- set start = telemetry_parse_timestamp(raw_start, 'window_start') -%}
    {%- set end = telemetry_parse_timestamp(raw_end, 'window_end') -%}
    {%- if start >= end -%}
        {{ exceptions.raise_compiler_error("window_start (" ~ raw_start ~ ") must be before window_end (" ~ raw_end ~ ")") }}
    {%- endif -%}
    {{ return({'start': start, 'end': end}) }}
{%- endmacro %}

{% macro telemetry_parse_timestamp(value, name) -%}
    {%- set text = (value | string) | replace('Z', '+00:00') | replace(' ', 'T') -%}
    {%- set parsed = none -%}
    {%- if modules.re.match('^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?)?([+-]\\d{2}:\\d{2})?$', text) -%}
        {%- set parsed = modules.datetime.datetime.fromisoformat(text) -%}
    {%- endif -%}
    {%- if parsed is none -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ "=" ~ value ~ " is not an ISO 8601 timestamp") }}
    {%- endif -%}
    {%- if parsed.tzinfo is none -%}
        {%- set parsed = parsed.replace(tzinfo=modules.pytz.utc) -%}
    {%- endif -%}
    {{ return(parsed.astimezone(modules.pytz.utc)) }}
{%- endmacro %}

{#- Length of one period of the grain; fixed lengths, so no session time zone can bend them. Months, quarters
    and years have no fixed length: their bounds come from add_periods, and no SQL steps by them. -#}
{% macro grain_interval(grain) -%}
    {%- if grain == 'minute' -%} interval '1 minute'
    {%- elif grain == 'hour' -%} interval '1 hour'
    {%- elif grain == 'day' -%} interval '24 hours'
    {%- elif grain == 'week' -%} interval '168 hours'
    {%- else -%} {{ exceptions.raise_compiler_error("no fixed length for the grain " ~ grain) }}
    {%- endif -%}
{%- endmacro %}

{% macro grain_timedelta(grain) -%}
    {%- if grain not in ('minute', 'hour', 'day', 'week') -%}
        {{ exceptions.raise_compiler_error("no fixed length for the grain " ~ grain ~ "; use add_periods") }}
    {%- endif -%}
    {%- set minutes = {'minute': 1, 'hour': 60, 'day': 1440, 'week': 10080}[grain] -%}
    {{ return(modules.datetime.timedelta(minutes=minutes)) }}
{%- endmacro %}

{#- Calendar grains: months in one period. -#}
{% macro grain_months(grain) -%}
    {{ return({'month': 1, 'quarter': 3, 'year': 12}.get(grain, 0)) }}
{%- endmacro %}

{#- ts (a python datetime on a period start of `grain`) moved by `periods` periods of the grain. -#}
{% macro add_periods(ts, grain, periods=1) -%}
    {%- set months = grain_months(grain) -%}
    {%- if not months -%}
        {{ return(ts + grain_timedelta(grain) * periods) }}
    {%- endif -%}
    {%- set index = ts.year * 12 + ts.month - 1 + months * periods -%}
    {{ return(ts.replace(year=index // 12, month=index % 12 + 1)) }}
{%- endmacro %}

{#- Start of the UTC period (minute, hour, day, week from Monday, month, quarter, year) that holds ts (a python
    datetime). -#}
{% macro floor_to_grain(ts, grain) -%}
    {%- set t = ts.replace(second=0, microsecond=0) -%}
    {%- if grain != 'minute' -%}
        {%- set t = t.replace(minute=0) -%}
    {%- endif -%}
    {%- if grain != 'minute' and grain != 'hour' -%}
        {%- set t = t.replace(hour=0) -%}
    {%- endif -%}
    {%- if grain == 'week' -%}
        {%- set t = t - modules.datetime.timedelta(days=t.weekday()) -%}
    {%- endif -%}
    {%- set months = grain_months(grain) -%}
    {%- if months -%}
        {%- set t = t.replace(day=1, month=t.month - (t.month - 1) % months) -%}
    {%- endif -%}
    {{ return(t) }}
{%- endmacro %}

{#- [first period start, last period end) of the periods of `grain` that overlap the window. -#}
{% macro window_period_bounds(grain) -%}
    {%- set w = telemetry_window() -%}
    {%- if w is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set lower = floor_to_grain(w.start, grain) -%}
    {%- set upper = add_periods(floor_to_grain(w.end - modules.datetime.timedelta(microseconds=1), grain), grain) -%}
    {{ return({'lower': lower, 'upper': upper}) }}
{%- endmacro %}

{% macro timestamp_literal(ts) -%}
    '{{ ts.isoformat() }}'::timestamptz
{%- endmacro %}

{#-
  SQL predicate keeping the rows of `column` (timestamptz) inside the periods of `grain` that
  overlap the window, widened by `margin_periods` periods on both sides; `true` when inactive.
-#}
{% macro window_filter(column, grain, margin_periods=0) -%}
    {%- set bounds = window_period_bounds(grain) -%}
    {%- if bounds is none -%}
        true
    {%- else -%}
        {{ column }} >= {{ timestamp_literal(add_periods(bounds.lower, grain, -margin_periods)) }} and {{ column }} < {{ timestamp_literal(add_periods(bounds.upper, grain, margin_periods)) }}
    {%- endif -%}
{%- endmacro %}

{#- The same for a `date` column (daily, weekly, monthly, quarterly and yearly marts). -#}
{% macro window_filter_date(column, grain) -%}
    {%- set bounds = window_period_bounds(grain) -%}
    {%- if bounds is none -%}
        true
    {%- else -%}
        {{ column }} >= '{{ bounds.lower.date().isoformat() }}'::date and {{ column }} < '{{ bounds.upper.date().isoformat() }}'::date
    {%- endif -%}
{%- endmacro %}

{#- The UTC period start of a timestamptz expression. -#}
{% macro period_start(expression, grain) -%}
    date_trunc('{{ grain }}', {{ expression }}, 'UTC')
{%- endmacro %}

{#- The same value by arithmetic: bins of the grain's fixed length from a Monday midnight UTC are the UTC
    hours, days and weeks, and date_bin costs a fraction of date_trunc with a time zone, which converts
    every value (about a second per million samples). For expressions evaluated once per raw row. -#}
{% macro utc_period_start(expression, grain) -%}
    date_bin({{ grain_interval(grain) }}, {{ expression }}, '2000-01-03 00:00:00+00'::timestamptz)
{%- endmacro %}

{#- The UTC calendar date of a timestamptz expression. -#}
{% macro utc_date(expression) -%}
    ({{ expression }} at time zone 'UTC')::date
{%- endmacro %}

{#-
  A data test's `where` config may hold `__window__(column, grain)`: the periods of `grain` that overlap the run
  window (window_filter on a timestamptz column for minute and hour, window_filter_date on a date column for day,
  week, month, quarter and year; `true` when no window is set, so a full refresh tests every row). A test of a table that grows with
  every run then reads what the run wrote instead of the whole table. Configs are rendered when the project is
  parsed, before the window is known, so the placeholder is replaced here, when the test runs; any other `where`
  behaves as dbt's own get_where_subquery.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set state = namespace(where=where) -%}
    {%- for found in modules.re.finditer('__window__\\(\\s*(\\w+)\\s*,\\s*(\\w+)\\s*\\)', where) -%}
        {%- set column, grain = found.group(1), found.group(2) -%}
        {%- if grain in ('minute', 'hour') -%}
            {%- set predicate = window_filter(column, grain) -%}
        {%- else -%}
            {%- set predicate = window_filter_date(column, grain) -%}
        {%- endif -%}
        {%- set state.where = state.where.replace(found.group(0), '(' ~ (predicate | trim) ~ ')') -%}
    {%- endfor -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ state.where ~ ') dbt_subquery') }}
{%- endmacro %}
