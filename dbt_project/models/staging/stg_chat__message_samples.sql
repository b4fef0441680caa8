with source as (
    select * from {{ source('chat', 'message_samples') }}
),

-- one row per natural key (every copy of a sample carries the same sent_at, the partition key);
-- the earliest ingested copy wins
deduplicated as (
    select distinct on (receiver_public_key, message_id, sent_at)
        *
    from source
    order by receiver_public_key, message_id, sent_at, created_at, received_at
),

final as (
    select
        channel_id,
        message_id,
        receiver_public_key,
        sent_at,
        received_at,
        created_at,
        coalesce(received_at, created_at) as recorded_at,
        envelope_id,
        topics
    from deduplicated
)

select * from final
