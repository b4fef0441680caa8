"""Ledgers the Airflow DAGs write: dbt builds, validation runs, cleanup log, task failures.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- One row per successful dbt build of one cadence over one window. The weekly cleanup drops a raw
-- partition only when every build its day feeds is here (DESIGN.md, "Orchestration").
create table quality.dbt_builds (
    build_id        bigint generated always as identity primary key,
    cadence         text        not null check (cadence in ('hourly', 'daily', 'weekly')),
    part            text        not null,  -- 'marts' or 'reliability' (built after the lag)
    window_start    timestamptz not null,
    window_end      timestamptz not null check (window_end > window_start),
    dag_id          text,
    run_id          text,
    full_refresh    boolean     not null default false,
    nodes           integer     not null,
    elapsed_seconds double precision not null,
    artefacts_path  text,
    finished_at     timestamptz not null default now()
);
create index dbt_builds_window on quality.dbt_builds (cadence, part, window_start, window_end);

-- One row per suite run on one asset within the weekly Great Expectations checkpoint run.
create table quality.validation_runs (
    validation_id   bigint generated always as identity primary key,
    dag_id          text,
    run_id          text,
    window_start    timestamptz not null,
    window_end      timestamptz not null,
    suite           text        not null,
    asset           text        not null,
    success         boolean     not null,
    evaluated       integer     not null,
    failed          integer     not null,
    -- [{"expectation": ..., "column": ..., "kwargs": {...}, "observed": ...}] of the failing ones
    failures        jsonb       not null default '[]',
    -- what the asset covered: {"partitions": [...], "days": [...]} for raw, {"days": [...], ...} for marts
    scope           jsonb       not null default '{}',
    data_docs_path  text,
    started_at      timestamptz not null,
    finished_at     timestamptz not null default now()
);
create index validation_runs_finished_at on quality.validation_runs (finished_at desc);

-- What the weekly cleanup dropped (or refused to drop, with the reason).
create table quality.cleanup_log (
    cleanup_id      bigint generated always as identity primary key,
    dag_id          text,
    run_id          text,
    table_name      text        not null,
    partition_name  text        not null,
    day             date        not null,
    action          text        not null check (action in ('dropped', 'kept')),
    reason          text        not null,
    logged_at       timestamptz not null default now()
);

-- Task failures recorded by the DAGs' failure callback.
create table quality.task_failures (
    failure_id      bigint generated always as identity primary key,
    dag_id          text        not null,
    task_id         text        not null,
    run_id          text        not null,
    try_number      integer,
    error           text        not null,
    failed_at       timestamptz not null default now()
);

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'telemetry_reviewer') then
        create role telemetry_reviewer nologin;
    end if;
end $$;
-- Reviewers read the data-quality history; analysts may too.
grant usage on schema quality to telemetry_reviewer, telemetry_analyst;
grant select on quality.validation_runs, quality.cleanup_log, quality.dbt_builds
    to telemetry_reviewer, telemetry_analyst;
"""

DOWNGRADE = """
drop table quality.task_failures;
drop table quality.cleanup_log;
drop table quality.validation_runs;
drop table quality.dbt_builds;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
