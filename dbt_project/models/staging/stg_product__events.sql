with source as (
    select * from {{ source('product', 'product_events') }}
),

deduplicated as (
    select distinct on (event_id, "timestamp")
        *
    from source
    order by event_id, "timestamp", ingested_at, batch_id
),

final as (
    select
        event_id,
        schema_version,
        channel,
        event,
        "timestamp" as occurred_at,
        user_id,
        session_id,
        payload,
        sample_rate,
        ingested_at
    from deduplicated
)

select * from final
