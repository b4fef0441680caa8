"""dbt test results kept per build; validation failures that are errors counted apart.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Of the failed expectations (failed), those that raised instead of evaluating the data (a missing table, a
-- query error): their entries in failures carry "errored": true and the exception.
alter table quality.validation_runs
    add column errored integer not null default 0 check (errored >= 0 and errored <= failed);

-- One row per dbt build that left run results, failed builds included (quality.dbt_builds has only the
-- successful ones: it is the cleanup's ledger). invocation_id is dbt's own id of the invocation.
create table quality.dbt_test_runs (
    invocation_id   text        primary key,
    dag_id          text,
    run_id          text,
    cadence         text,
    part            text,
    family          text,  -- a manual full refresh of one model family, else null
    window_start    timestamptz,
    window_end      timestamptz,
    success         boolean     not null,  -- no node errored or failed (a warning passes)
    nodes           integer     not null,
    tests           integer     not null,
    passed          integer     not null,
    failed          integer     not null,
    warned          integer     not null,
    errored         integer     not null,
    skipped         integer     not null,
    -- every node of the build that errored or failed, models included (a model error skips its tests)
    failed_nodes    text[]      not null default '{}',
    dbt_version     text,
    started_at      timestamptz,
    generated_at    timestamptz not null,
    elapsed_seconds double precision,
    artefacts_path  text,
    recorded_at     timestamptz not null default now()
);
create index dbt_test_runs_generated_at on quality.dbt_test_runs (generated_at desc);

-- One row per test node per build.
create table quality.dbt_test_results (
    invocation_id     text        not null references quality.dbt_test_runs on delete cascade,
    unique_id         text        not null,
    dag_id            text,
    run_id            text,
    test_name         text        not null,
    test_type         text        not null check (test_type in ('generic', 'singular', 'unit')),
    test_kind         text,  -- the generic test (unique, value_between, ...); null for the others
    models            text[]      not null default '{}',  -- what it tests (models, seeds, sources)
    column_name       text,
    severity          text,
    -- fail: the data broke the rule; error: the test could not run (its SQL failed)
    status            text        not null check (status in ('pass', 'fail', 'warn', 'error', 'skipped')),
    failures          integer,
    message           text,
    execution_seconds double precision,
    -- kept for the tests that did not pass; a passing test's SQL is the project's, found by unique_id
    compiled_code     text,
    started_at        timestamptz,
    completed_at      timestamptz,
    primary key (invocation_id, unique_id)
);
create index dbt_test_results_problems on quality.dbt_test_results (status, unique_id) where status <> 'pass';

grant select on quality.dbt_test_runs, quality.dbt_test_results to telemetry_reviewer, telemetry_analyst;
"""

DOWNGRADE = """
drop table quality.dbt_test_results;
drop table quality.dbt_test_runs;
alter table quality.validation_runs drop column errored;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
