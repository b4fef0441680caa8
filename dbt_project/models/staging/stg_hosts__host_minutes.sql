with source as (
    select * from {{ source('hosts', 'host_minutes') }}
),

deduplicated as (
    select distinct on (host_id, minute)
        *
    from source
    order by host_id, minute, ingested_at, batch_id
),

final as (
    select
        host_id,
        minute,
        samples,
        cpu_percent,
        cpu_percent_max,
        load_average_1m,
        load_average_5m,
        load_average_15m,
        memory_total_bytes,
        memory_used_bytes,
        memory_free_bytes,
        memory_percent,
        memory_percent_max,
        disk_read_bytes_per_s,
        disk_write_bytes_per_s,
        disk_read_ops_per_s,
        disk_write_ops_per_s,
        net_recv_bytes_per_s,
        net_sent_bytes_per_s,
        net_recv_packets_per_s,
        net_sent_packets_per_s,
        tick_duration_ms,
        player_ping_ms,
        packet_latency_ms,
        tick_rate,
        connections,
        players,
        entities,
        packet_loss_percent,
        ingested_at
    from deduplicated
)

select * from final
