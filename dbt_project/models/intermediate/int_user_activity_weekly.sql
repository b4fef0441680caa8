{#- The history outlives raw and --full-refresh keeps it (full_refresh=false), so a new column is added
    to the stored table (append_new_columns) and rows stored before it have it NULL (see sample_rate). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['week_start', 'user_id'],
        on_schema_change='append_new_columns',
        full_refresh=false,
        tags=['weekly'],
        post_hook="create index if not exists {{ this.name }}_user on {{ this }} (user_id, week_start)",
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}

{#-
  One row per user and UTC week (Monday) with any product event: the history retention needs
  ("first event ever") after raw product events are dropped (90 days by default). Hence
  full_refresh=false: --full-refresh rebuilds every week raw still holds and keeps the older
  weeks. A windowed run rewrites the window's weeks from raw and folds late arrivals (events
  ingested during the window whose timestamp is up to product_late_arrival_days before it)
  into the rows of their weeks.

  sample_rate is the largest sample_rate among the user's events of the week: the chance that
  sampling by user keeps them active in it (docs/DESIGN.md, "Sampling"). Rows stored before the
  column existed have it NULL; they were landed before events could be sampled (raw's rate of
  such rows is 1), and the retention marts read NULL as 1.
-#}

{%- set bounds = window_period_bounds('week') -%}
{#- the stored table gets sample_rate only after this query has run (append_new_columns): until then there is
    none to read (nor in a unit test, where `this` is a fixture) -#}
{%- set stored_rate = 'null::double precision' -%}
{%- if execute and is_incremental() and this is not string and 'sample_rate' in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) -%}
    {%- set stored_rate = 'stored.sample_rate' -%}
{%- endif -%}
{%- set arrivals = ref('stg_product__event_arrivals') %}

with window_activity as (
    select
        {{ utc_date(period_start('occurred_at', 'week')) }} as week_start,
        user_id,
        min(occurred_at) as first_event_at,
        max(occurred_at) as last_event_at,
        max(sample_rate) as sample_rate
    from {{ arrivals }}
    where {{ window_filter('occurred_at', 'week') }}
    group by 1, 2
)

{%- if bounds is not none and product_late_arrival_days() > 0 %},

late_activity as (
    select
        {{ utc_date(period_start('occurred_at', 'week')) }} as week_start,
        user_id,
        min(occurred_at) as first_event_at,
        max(occurred_at) as last_event_at,
        max(sample_rate) as sample_rate
    from ({{ product_late_arrivals('week', with_rate=true) }}) as late
    group by 1, 2
),

late_merged as (
    select
        late_activity.week_start,
        late_activity.user_id,
        {%- if is_incremental() %}
        least(late_activity.first_event_at, stored.first_event_at) as first_event_at,
        greatest(late_activity.last_event_at, stored.last_event_at) as last_event_at,
        case
            when stored.user_id is null then late_activity.sample_rate
            -- a stored row without a rate was landed before events could be sampled
            else greatest(late_activity.sample_rate, coalesce({{ stored_rate }}, 1))
        end as sample_rate
    from late_activity
    left join {{ this }} as stored
        on stored.week_start = late_activity.week_start
        and stored.user_id = late_activity.user_id
        {%- else %}
        late_activity.first_event_at,
        late_activity.last_event_at,
        late_activity.sample_rate
    from late_activity
        {%- endif %}
),

final as (
    select * from window_activity
    union all
    select * from late_merged
)

{%- else %},

final as (
    select * from window_activity
)

{%- endif %}

select
    week_start,
    user_id,
    first_event_at,
    last_event_at,
    sample_rate
from final
