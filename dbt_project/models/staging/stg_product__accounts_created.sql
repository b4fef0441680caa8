with source as (
    select * from {{ source('product', 'accounts_created') }}
),

deduplicated as (
    select distinct on (event_id, created_at)
        *
    from source
    order by event_id, created_at, ingested_at, batch_id
),

final as (
    select
        event_id,
        user_id,
        created_at,
        ingested_at
    from deduplicated
)

select * from final
