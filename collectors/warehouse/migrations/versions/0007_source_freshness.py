"""Source freshness checked every hour, kept in quality.source_freshness for the data-quality report.

Revision ID: 0007_source_freshness
Revises: 0006
"""

from alembic import op

revision = "0007_source_freshness"
down_revision = "0006"
branch_labels = None
depends_on = None

# One row per raw table per check (collectors.orchestration.freshness, the hourly DAG's check_source_freshness
# task): the newest load time found in the partitions read, its age, the rule it was held to (from the dbt
# sources' freshness), and the verdict. pass / warn / error are dbt's names; error is a stale source.
UPGRADE = r"""
create table quality.source_freshness (
    checked_at       timestamptz not null,
    source_name      text        not null,  -- the dbt source (game_servers, chat, ...)
    table_name       text        not null,  -- raw.<table_name>
    loaded_at_field  text        not null,
    max_loaded_at    timestamptz,           -- null: no row in the partitions read
    age_seconds      double precision,
    warn_after_s     double precision,
    error_after_s    double precision,
    lookback_from    timestamptz not null,  -- the oldest partition key read
    status           text        not null check (status in ('pass', 'warn', 'error')),
    dag_id           text,
    run_id           text,
    primary key (table_name, checked_at)
);
create index source_freshness_checked_at on quality.source_freshness (checked_at desc);

-- the report's pass/fail strip per test reads the last runs of one test
create index dbt_test_results_unique_id on quality.dbt_test_results (unique_id);

grant select on quality.source_freshness to telemetry_reviewer, telemetry_analyst;
"""

DOWNGRADE = """
drop index quality.dbt_test_results_unique_id;
drop table quality.source_freshness;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
