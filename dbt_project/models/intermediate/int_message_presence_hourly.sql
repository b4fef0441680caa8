{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='sent_hour',
        on_schema_change='append_new_columns',
        full_refresh=false,
        tags=['hourly', 'daily', 'weekly', 'reliability'],
        pre_hook=["set local jit = off", "set local work_mem = '256MB'", "set local parallel_tuple_cost = 0.01"],
        post_hook="create index if not exists {{ this.name }}_sent_hour on {{ this }} (sent_hour)",
    )
}}

{#-
  The presence summary the reliability marts take their look-back from (macros/reliability.sql):
  per sending hour, channel and receiver, the first and last recording of its samples and their
  count. The daily and weekly marts also take the presence and counts of their run's own hours
  from here, as this build has just written them, instead of aggregating the day's samples per
  receiver a second time.

  Every reliability build rewrites the hours of its run window from raw. delete+insert replaces
  only the hours that have rows in raw, so an hour whose raw partition was dropped keeps its
  rows: the look-back of a later build or a rerun still sees it. Hence full_refresh=false:
  --full-refresh rewrites every hour raw holds and keeps the older ones. The first build (no
  table yet) summarizes all of raw, so the first windows already have their look-back.

  on_schema_change append_new_columns: a table from before the samples column gains it, null in
  its old rows, which no mart reads (they read the counts of rewritten hours only).

  parallel_tuple_cost at a tenth of the default: the planner guesses four times the groups a
  day of samples has (it cannot know that receivers stay in their channels), prices the partial
  aggregates' rows accordingly and keeps a serial plan that takes half as long again.
-#}

with samples as (
    select
        sent_at,
        channel_id,
        receiver_public_key,
        recorded_at
    from {{ ref('stg_chat__message_samples') }}
    where {{ window_filter('sent_at', 'hour') if is_incremental() else 'true' }}
),

final as (
    {{ message_presence_by_hour('samples') }}
)

select
    sent_hour,
    channel_id,
    receiver_public_key,
    first_recorded_at,
    last_recorded_at,
    samples
from final
