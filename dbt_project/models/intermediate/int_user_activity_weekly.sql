{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['week_start', 'user_id'],
        on_schema_change='fail',
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
-#}

{%- set bounds = window_period_bounds('week') -%}
{%- set arrivals = ref('stg_product__event_arrivals') %}

with window_activity as (
    select
        {{ utc_date(period_start('occurred_at', 'week')) }} as week_start,
        user_id,
        min(occurred_at) as first_event_at,
        max(occurred_at) as last_event_at
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
        max(occurred_at) as last_event_at
    from ({{ product_late_arrivals('week') }}) as late
    group by 1, 2
),

late_merged as (
    select
        late_activity.week_start,
        late_activity.user_id,
        {%- if is_incremental() %}
        least(late_activity.first_event_at, stored.first_event_at) as first_event_at,
        greatest(late_activity.last_event_at, stored.last_event_at) as last_event_at
    from late_activity
    left join {{ this }} as stored
        on stored.week_start = late_activity.week_start
        and stored.user_id = late_activity.user_id
        {%- else %}
        late_activity.first_event_at,
        late_activity.last_event_at
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
    last_event_at
from final
