-- Every landed row of raw.product_events with its ingest time: what arrived when. No dedup:
-- raw's unique key (event_id, "timestamp") is stg_product__events' dedup key, so these rows are
-- already the deduplicated events, and without a DISTINCT ON every filter (user, ingest time)
-- reaches the partitions before anything is sorted.
with source as (
    select * from {{ source('product', 'product_events') }}
),

final as (
    select
        event_id,
        channel,
        event,
        user_id,
        "timestamp" as occurred_at,
        payload,
        sample_rate,
        ingested_at
    from source
)

select * from final
