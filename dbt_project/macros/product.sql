{#-
  Product analytics (docs/DESIGN.md items 4 and 5): sessions, funnels, retention, feature adoption.

  Which rows a windowed run rewrites. A run for [window_start, window_end) (periods of the
  model's grain, as window.sql) reopens:
    * what the window's own events touch, and
    * what *late arrivals* touch: events ingested during the window (raw ingested_at) whose
      timestamp lies up to var('product_late_arrival_days') days before it. Every event is
      ingested during some run's window, so every event reaches the marts through one run
      (its own window's or, if late, the next one), however the events were batched.
  Without window vars, or with --full-refresh, everything is rebuilt from raw.
-#}

{% macro product_positive_int(name, default, allow_zero=false) -%}
    {%- set raw = var(name, default) -%}
    {%- set text = raw | string -%}
    {%- if not modules.re.match('^[0-9]+$', text) or ((text | int) == 0 and not allow_zero) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ "=" ~ raw ~ " must be a " ~ ("non-negative" if allow_zero else "positive") ~ " integer") }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}

{% macro session_inactivity_minutes() -%}
    {{ return(product_positive_int('session_inactivity_minutes', 30)) }}
{%- endmacro %}

{% macro session_max_hours() -%}
    {{ return(product_positive_int('session_max_hours', 24)) }}
{%- endmacro %}

{% macro product_late_arrival_days() -%}
    {{ return(product_positive_int('product_late_arrival_days', 7, allow_zero=true)) }}
{%- endmacro %}

{% macro funnel_max_window_minutes() -%}
    {{ return(product_positive_int('funnel_max_window_minutes', 1440)) }}
{%- endmacro %}

{% macro funnel_max_steps() -%}
    {{ return(product_positive_int('funnel_max_steps', 8)) }}
{%- endmacro %}

{% macro retention_weeks() -%}
    {{ return(product_positive_int('retention_weeks', 12)) }}
{%- endmacro %}

{#-
  Planner settings for the session and funnel models (pre-hooks, so `set local` lasts for the
  model's transaction only). Their CTEs carry no statistics, so the planner guesses row counts
  (hundreds for what are millions) and then (1) prefers nested loops over CTE scans, quadratic
  in the day's events, and merge joins that sort a million rows to match a handful, and (2) prices
  a never-executed recursive branch so high that JIT compiles the whole query (seconds).
  (3) work_mem: a day's events sorted by user and time are about 100 MB for 1 M events; at the
  default 4 MB the sort spills to disk (external merge, 45 MB written and read back). The setting
  is per sort or hash node of these models' own transactions, not the server's
  (var product_work_mem, a PostgreSQL size).
-#}
{% macro product_planner_settings() -%}
    {%- set work_mem = var('product_work_mem', '256MB') | string -%}
    {%- if not modules.re.match('^[0-9]+(kB|MB|GB)$', work_mem) -%}
        {{ exceptions.raise_compiler_error("var product_work_mem=" ~ work_mem ~ " must be a PostgreSQL size such as 256MB") }}
    {%- endif -%}
    {{ return([
        "set local jit = off",
        "set local enable_nestloop = off",
        "set local enable_mergejoin = off",
        "set local work_mem = '" ~ work_mem ~ "'",
    ]) }}
{%- endmacro %}

{#- SQL interval literal of a number of minutes. -#}
{% macro minutes_interval(minutes) -%}
    interval '{{ minutes }} minutes'
{%- endmacro %}

{#-
  (user_id, occurred_at) of the late arrivals of the run, and their sample_rate with `with_rate`: rows
  ingested in the window's periods whose timestamp is in the late_days before them. Reads raw arrivals (no dedup needed: only
  who and when matter), so only the late-arrival days' partitions are scanned. Empty when the
  window is inactive (everything is rebuilt then) or product_late_arrival_days = 0.
-#}
{% macro product_late_arrivals(grain, with_rate=false) -%}
    {#- the ref stands outside the condition: the window is known only when the model runs, not when dbt
        parses it, and a ref dbt cannot see while parsing is a missing dependency -#}
    {%- set arrivals_relation = ref('stg_product__event_arrivals') -%}
    {%- set bounds = window_period_bounds(grain) -%}
    {%- set late_days = product_late_arrival_days() -%}
    {%- if bounds is none or late_days == 0 -%}
    select null::text as user_id, null::timestamptz as occurred_at
        {%- if with_rate %}, null::double precision as sample_rate{% endif %} where false
    {%- else -%}
    select arrivals.user_id, arrivals.occurred_at{% if with_rate %}, arrivals.sample_rate{% endif %}
    from {{ arrivals_relation }} as arrivals
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - modules.datetime.timedelta(days=late_days)) }}
        and arrivals.occurred_at < {{ timestamp_literal(bounds.lower) }}
        and arrivals.ingested_at >= {{ timestamp_literal(bounds.lower) }}
        and arrivals.ingested_at < {{ timestamp_literal(bounds.upper) }}
    {%- endif -%}
{%- endmacro %}

{#-
  The funnel entry days a run recomputes (one `day` date column): the days overlapping
  [window lower - longest conversion window, window upper) (an attempt entered shortly before
  the window is completed by the window's events), and for each late arrival t the days
  overlapping [t - longest window, t]. `funnels` is a relation with window_minutes.
-#}
{% macro funnel_reopened_days(funnels) -%}
    {%- set bounds = window_period_bounds('day') -%}
    {%- set longest = '(select make_interval(mins => max(window_minutes)) from ' ~ funnels ~ ')' -%}
    select distinct days.day::date as day
    from (
        select generate_series(
            {{ utc_date('(' ~ timestamp_literal(bounds.lower) ~ ' - ' ~ longest ~ ')') }}::timestamp,
            '{{ (bounds.upper - modules.datetime.timedelta(days=1)).date().isoformat() }}'::timestamp,
            interval '1 day'
        ) as day
        union all
        select generate_series(
            {{ utc_date('(late.occurred_at - ' ~ longest ~ ')') }}::timestamp,
            {{ utc_date('late.occurred_at') }}::timestamp,
            interval '1 day'
        ) as day
        from ({{ product_late_arrivals('day') }}) as late
    ) as days
{%- endmacro %}

{#-
  Events a windowed funnel run reads: from `window_from` (the day of window start - the longest
  allowed conversion window) to `read_to` everything (those days are reopened anyway); before
  that, back to `read_from`, only the days late arrivals reopened (CTE reopened_days) and the
  day after each.
-#}
{% macro funnel_read_filter(column, read_from, window_from, read_to) -%}
    {{ column }} >= {{ timestamp_literal(read_from) }}
        and {{ column }} < {{ timestamp_literal(read_to) }}
        and (
            {{ column }} >= {{ timestamp_literal(window_from) }}
            or {{ utc_date(column) }} in (select day from reopened_days)
            or {{ utc_date(column) }} - 1 in (select day from reopened_days)
        )
{%- endmacro %}

{#-
  Weeks a weekly product mart recomputes (one `week_start` date column): the window's weeks and
  the weeks of late arrivals, each with the `follow` weeks after it (a week's trend looks at the
  week before it), never past the window.
-#}
{% macro product_reopened_weeks(follow=0) -%}
    {%- set bounds = window_period_bounds('week') -%}
    select distinct weeks.week_start::date as week_start
    from (
        select generate_series(
            '{{ bounds.lower.date().isoformat() }}'::timestamp,
            '{{ (bounds.upper - modules.datetime.timedelta(days=7)).date().isoformat() }}'::timestamp,
            interval '7 days'
        ) as week_start
        union all
        select date_trunc('week', {{ utc_date('late.occurred_at') }}::timestamp) + offsets.weeks * interval '7 days'
        from ({{ product_late_arrivals('week') }}) as late
        cross join generate_series(0, {{ follow }}) as offsets (weeks)
    ) as weeks
    where weeks.week_start < '{{ bounds.upper.date().isoformat() }}'::timestamp
{%- endmacro %}

{#-
  Latest loaded event time ("the end of the data", docs/DESIGN.md item 4) for a run over the window
  `bounds` whose attempts start before bounds.upper and close at most `horizon` later:
  'infinity' when some event lies at or after upper + horizon (every such attempt has closed;
  found with one row), else the latest event, looked for after the window, then in it, then
  back to `since` (the first range holding events answers: coalesce stops there). Every scan is
  bounded, so a rerun of an old window costs what its own days hold. Without bounds (full
  build): the latest event.
-#}
{% macro product_data_end(since, bounds, horizon) -%}
    {%- set arrivals = ref('stg_product__event_arrivals') -%}
    {%- if bounds is none -%}
    (select max(occurred_at) from {{ arrivals }})
    {%- else -%}
    {%- set edges = [bounds.upper + horizon, bounds.upper, bounds.lower, since] -%}
    coalesce(
        (select 'infinity'::timestamptz where exists (
            select from {{ arrivals }} where occurred_at >= {{ timestamp_literal(edges[0]) }}))
        {%- for i in range(3) %},
        (select max(occurred_at) from {{ arrivals }}
         where occurred_at >= {{ timestamp_literal(edges[i + 1]) }} and occurred_at < {{ timestamp_literal(edges[i]) }})
        {%- endfor %}
    )
    {%- endif -%}
{%- endmacro %}

{#-
  Incremental strategy `replace_ranges` (fct_sessions): for every value of the key column in the
  new rows, delete the stored rows whose start lies in [min(start), max(end)] of the new rows of
  that key, then insert the new rows. A run rewrites, per user, one contiguous stretch of
  sessions; a stored session starting inside it has its first event inside it, so it is one of
  the recomputed sessions or no longer exists (merged into another) and goes either way.
  Config: replace_ranges={'key': ..., 'start': ..., 'end': ...}.
-#}
{% macro get_incremental_replace_ranges_sql(arg_dict) -%}
    {%- set ranges = config.get('replace_ranges') -%}
    {%- if not ranges -%}
        {{ exceptions.raise_compiler_error("incremental_strategy replace_ranges needs config replace_ranges={'key', 'start', 'end'}") }}
    {%- endif -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }} as dest
    using (
        select {{ ranges.key }} as range_key, min({{ ranges.start }}) as range_low, max({{ ranges.end }}) as range_high
        from {{ source }}
        group by {{ ranges.key }}
    ) as ranges
    where dest.{{ ranges.key }} = ranges.range_key
        and dest.{{ ranges.start }} between ranges.range_low and ranges.range_high
        and dest.{{ ranges.start }} >= (select min({{ ranges.start }}) from {{ source }})
        and dest.{{ ranges.start }} <= (select max({{ ranges.end }}) from {{ source }});

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }}
{%- endmacro %}
