-- Already one row per natural key: raw.message_samples has a unique constraint on
-- (receiver_public_key, message_id, sent_at) and the ingest writer inserts with on conflict do
-- nothing, so the first stored copy is the only one. A distinct on here would
-- sort every sample a build reads (a million a day) to remove nothing.
--
-- One select and no CTEs: PostgreSQL flattens a view like this into the query that reads it (a
-- view with a WITH clause stays a subquery scan of its own), so the reliability models' filters
-- and aggregates work on the partitions' rows directly and may plan in parallel.
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
from {{ source('chat', 'message_samples') }}
