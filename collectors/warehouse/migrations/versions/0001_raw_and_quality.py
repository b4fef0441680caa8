"""Raw landing tables (day-partitioned), raw.rejects, quality ledger, partition functions, roles.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
create schema if not exists raw;
create schema if not exists quality;
create schema if not exists marts;

-- Minute snapshot of one game server (seed 000): user ids per client state, battle counts.
create table raw.minute_snapshots (
    server_id            text        not null,
    minute               timestamptz not null,
    player               bigint[]    not null default '{}',
    spectator            bigint[]    not null default '{}',
    lobby                bigint[]    not null default '{}',
    menu                 bigint[]    not null default '{}',
    total                bigint[]    not null default '{}',
    battles_total        integer     not null,
    battles_lobby        integer     not null,
    battles_in_progress  integer     not null,
    battle_ids           text[],
    batch_id             uuid,
    ingested_at          timestamptz not null default now(),
    constraint minute_snapshots_natural_key unique (server_id, minute)
) partition by range (minute);

-- Chat message sample (seed 002); created_at is stamped by the receiver.
create table raw.message_samples (
    message_id           text        not null,
    channel_id           text        not null,
    receiver_public_key  text        not null,
    sent_at              timestamptz not null,
    topics               bytea       not null default '',
    envelope_id          text        not null default '',
    received_at          timestamptz,
    created_at           timestamptz not null default now(),
    batch_id             uuid,
    constraint message_samples_natural_key unique (receiver_public_key, message_id, sent_at)
) partition by range (sent_at);

-- One record per host and minute (seed 001); histograms are sparse log-bucket jsonb
-- {"i": [bucket index...], "c": [count...], "z": zero_count, "sum", "min", "max"}.
create table raw.host_minutes (
    host_id                 text        not null,
    minute                  timestamptz not null,
    samples                 integer     not null,
    cpu_percent             double precision not null,
    cpu_percent_max         double precision not null,
    cpu_percent_per_core    double precision[] not null default '{}',
    load_average_1m         double precision not null,
    load_average_5m         double precision not null,
    load_average_15m        double precision not null,
    memory_total_bytes      bigint not null,
    memory_used_bytes       bigint not null,
    memory_free_bytes       bigint not null,
    memory_percent          double precision not null,
    memory_percent_max      double precision not null,
    disk_read_bytes_per_s   double precision not null,
    disk_write_bytes_per_s  double precision not null,
    disk_read_ops_per_s     double precision not null,
    disk_write_ops_per_s    double precision not null,
    net_recv_bytes_per_s    double precision not null,
    net_sent_bytes_per_s    double precision not null,
    net_recv_packets_per_s  double precision not null,
    net_sent_packets_per_s  double precision not null,
    tick_duration_ms        jsonb,
    player_ping_ms          jsonb,
    packet_latency_ms       jsonb,
    tick_rate               double precision,
    connections             integer,
    players                 integer,
    entities                integer,
    packet_loss_percent     double precision,
    batch_id                uuid,
    ingested_at             timestamptz not null default now(),
    constraint host_minutes_natural_key unique (host_id, minute)
) partition by range (minute);

-- telemetry_event_v1 product event (seeds 003, 004).
create table raw.product_events (
    event_id        text        not null,
    schema_version  text        not null,
    channel         text        not null,
    event           text        not null,
    "timestamp"     timestamptz not null,
    user_id         text        not null,
    session_id      text,
    payload         jsonb       not null default '{}',
    batch_id        uuid,
    ingested_at     timestamptz not null default now(),
    constraint product_events_natural_key unique (event_id, "timestamp")
) partition by range ("timestamp");

-- account_created events on channel "user".
create table raw.accounts_created (
    event_id     text        not null,
    user_id      text        not null,
    created_at   timestamptz not null,
    batch_id     uuid,
    ingested_at  timestamptz not null default now(),
    constraint accounts_created_natural_key unique (event_id, created_at)
) partition by range (created_at);

-- Every refused record, with the original bytes and the reason.
create table raw.rejects (
    reject_id     bigint generated always as identity primary key,
    source        text        not null,
    reason        text        not null,
    record        bytea       not null,
    record_index  integer,
    batch_id      uuid,
    file_name     text,
    line_number   integer,
    rejected_at   timestamptz not null default now()
);
create index rejects_rejected_at on raw.rejects (rejected_at);
create index rejects_batch_id on raw.rejects (batch_id);

-- One row per batch and target table that landed (the receiver's and loaders' ledger).
create table quality.ingest_batches (
    batch_id         uuid        not null,
    source           text        not null,
    accepted         integer     not null check (accepted >= 0),
    duplicates       integer     not null check (duplicates >= 0),
    rejected         integer     not null check (rejected >= 0),
    accepted_by_day  jsonb       not null default '{}',
    received_at      timestamptz not null default now()
);
create index ingest_batches_received_at on quality.ingest_batches (received_at);

-- Partition column of each raw table.
create table quality.raw_tables (
    table_name        text primary key,
    partition_column  text not null
);
insert into quality.raw_tables values
    ('minute_snapshots', 'minute'),
    ('message_samples', 'sent_at'),
    ('host_minutes', 'minute'),
    ('product_events', 'timestamp'),
    ('accounts_created', 'created_at');

-- Daily partitions of raw.<table> for every day in [p_from, p_to]; returns how many it created.
create function raw.ensure_partitions(p_table text, p_from date, p_to date)
returns integer language plpgsql as $$
declare
    d date;
    created integer := 0;
    part text;
begin
    if not exists (select 1 from quality.raw_tables where table_name = p_table) then
        raise exception 'unknown raw table %', p_table using errcode = 'invalid_parameter_value';
    end if;
    perform pg_advisory_xact_lock(hashtext('raw.ensure_partitions'));
    d := p_from;
    while d <= p_to loop
        part := format('%s_p%s', p_table, to_char(d, 'YYYYMMDD'));
        if to_regclass(format('raw.%I', part)) is null then
            execute format(
                'create table raw.%I partition of raw.%I for values from (%L) to (%L)',
                part, p_table, d::timestamp at time zone 'UTC', (d + 1)::timestamp at time zone 'UTC');
            created := created + 1;
        end if;
        d := d + 1;
    end loop;
    return created;
end $$;

-- The daily partitions of raw.<table> with their day, oldest first.
create function raw.partitions(p_table text)
returns table (partition_name text, day date) language sql stable as $$
    select c.relname::text, to_date(right(c.relname, 8), 'YYYYMMDD')
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    join pg_class p on p.oid = i.inhparent
    join pg_namespace n on n.oid = p.relnamespace
    where n.nspname = 'raw' and p.relname = p_table and p.relkind = 'p' and c.relkind = 'r'
    order by 2
$$;

-- Partitions whose whole day lies more than p_days days before p_today.
create function raw.partitions_older_than(
    p_table text, p_days integer, p_today date default (now() at time zone 'UTC')::date
)
returns table (partition_name text, day date) language sql stable as $$
    select partition_name, day from raw.partitions(p_table) where day < p_today - p_days order by day
$$;

-- Roles: group roles (NOLOGIN); grant them to login users.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'telemetry_ingest') then
        create role telemetry_ingest nologin;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'telemetry_analyst') then
        create role telemetry_analyst nologin;
    end if;
end $$;

grant usage on schema raw, quality to telemetry_ingest;
grant insert on raw.minute_snapshots, raw.message_samples, raw.host_minutes,
                raw.product_events, raw.accounts_created, raw.rejects to telemetry_ingest;
grant insert on quality.ingest_batches to telemetry_ingest;

grant usage on schema marts to telemetry_analyst;
grant select on all tables in schema marts to telemetry_analyst;
alter default privileges in schema marts grant select on tables to telemetry_analyst;
"""

DOWNGRADE = """
drop schema raw cascade;
drop table quality.ingest_batches;
drop table quality.raw_tables;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
