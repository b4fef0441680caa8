-- Game servers' reports (raw.server_reports), one row per report, the known fields typed out of the document
-- (macro server_report_number, macros/server_metrics.sql).
with source as (
    select * from {{ source('game_servers', 'server_reports') }}
),

-- one row per natural key. Raw's unique constraint already holds it; the DISTINCT ON keeps the view's grain
-- even where that constraint is gone, and costs little because filters on `reported_at` (a DISTINCT ON column)
-- still reach the day partitions
deduplicated as (
    select distinct on (server_id, reported_at)
        *
    from source
    order by server_id, reported_at, ingested_at, batch_id
),

-- fractional gauges stay numeric, exactly as sent: the marts compare them with the thresholds and average
-- them without a detour through floating point
final as (
    select
        server_id,
        reported_at,
        {{ server_report_number('{hardware,cpu_usage_percent}', 'numeric') }} as cpu_usage_percent,
        case
            when jsonb_typeof(document #> '{hardware,cpu_usage_per_core}') = 'array'
                then jsonb_array_length(document #> '{hardware,cpu_usage_per_core}')
        end as cpu_core_count,
        {{ server_report_number('{hardware,memory_used_bytes}', 'bigint') }} as memory_used_bytes,
        {{ server_report_number('{hardware,memory_total_bytes}', 'bigint') }} as memory_total_bytes,
        {{ server_report_number('{hardware,memory_usage_percent}', 'numeric') }} as memory_usage_percent,
        {{ server_report_number('{network,packets_per_sec_incoming}', 'numeric') }} as packets_per_sec_incoming,
        {{ server_report_number('{network,packets_per_sec_outgoing}', 'numeric') }} as packets_per_sec_outgoing,
        {{ server_report_number('{network,avg_player_ping_ms}', 'numeric') }} as avg_player_ping_ms,
        {{ server_report_number('{network,player_ping_percentiles,p50}', 'numeric') }} as player_ping_p50_ms,
        {{ server_report_number('{network,player_ping_percentiles,p95}', 'numeric') }} as player_ping_p95_ms,
        {{ server_report_number('{network,player_ping_percentiles,p99}', 'numeric') }} as player_ping_p99_ms,
        {{ server_report_number('{network,active_connections}', 'integer') }} as active_connections,
        {{ server_report_number('{network,packet_loss_percent}', 'numeric') }} as packet_loss_percent,
        {{ server_report_number('{performance,tick_rate_fps}', 'numeric') }} as tick_rate_fps,
        {{ server_report_number('{performance,target_fps}', 'numeric') }} as target_fps,
        {{ server_report_number('{performance,avg_tick_duration_ms}', 'numeric') }} as avg_tick_duration_ms,
        {{ server_report_number('{performance,tick_duration_percentiles,p50}', 'numeric') }} as tick_duration_p50_ms,
        {{ server_report_number('{performance,tick_duration_percentiles,p95}', 'numeric') }} as tick_duration_p95_ms,
        {{ server_report_number('{performance,tick_duration_percentiles,p99}', 'numeric') }} as tick_duration_p99_ms,
        {{ server_report_number('{game,active_player_count}', 'integer') }} as active_player_count,
        case
            when jsonb_typeof(document #> '{game,entities_per_map}') = 'object' then document #> '{game,entities_per_map}'
        end as entities_per_map,
        batch_id,
        ingested_at
    from deduplicated
)

select * from final
