"""The weekly cleanup detaches expired raw partitions and drops them after a grace period, and deletes mart rows
past their grain's retention.

Revision ID: 0010_cleanup_grace
Revises: 0009_monthly_builds
"""

from alembic import op

revision = "0010_cleanup_grace"
down_revision = "0009_monthly_builds"
branch_labels = None
depends_on = None

# A detached partition is moved out of raw, into raw_detached, where nothing reads it (dbt's sources, GX and the
# partition functions look at raw only) and no role but the owner may touch it: it is kept whole until its
# drop_after, so a cleanup that went too far can be undone with `telemetry-db partitions reattach`.
UPGRADE = r"""
create schema raw_detached;
comment on schema raw_detached is
    'raw partitions the weekly cleanup detached; dropped after quality.cleanup_log.drop_after, '
    'restored with telemetry-db partitions reattach';

alter table quality.cleanup_log drop constraint cleanup_log_action_check;
alter table quality.cleanup_log add constraint cleanup_log_action_check
    check (action in ('dropped', 'kept', 'detached', 'reattached'));
alter table quality.cleanup_log add column drop_after timestamptz;
alter table quality.cleanup_log add constraint cleanup_log_detached_drop_after
    check ((action = 'detached') = (drop_after is not null));

-- One row per mart table and weekly cleanup that found expired periods: what it deleted, and how many expired
-- periods wait because the coarser rows built from them are not built yet.
create table quality.mart_retention_log (
    mart_retention_id bigint generated always as identity primary key,
    dag_id            text,
    run_id            text,
    table_name        text        not null,
    grain             text        not null check (grain in ('hourly', 'daily', 'weekly', 'monthly')),
    retention_days    integer     not null check (retention_days > 0),
    first_period      timestamptz,
    last_period       timestamptz,
    periods_deleted   integer     not null check (periods_deleted >= 0),
    rows_deleted      bigint      not null check (rows_deleted >= 0),
    periods_waiting   integer     not null check (periods_waiting >= 0),
    logged_at         timestamptz not null default now()
);
grant select on quality.mart_retention_log to telemetry_reviewer, telemetry_analyst;
"""

DOWNGRADE = r"""
drop table quality.mart_retention_log;
alter table quality.cleanup_log drop constraint cleanup_log_detached_drop_after;
alter table quality.cleanup_log drop column drop_after;
delete from quality.cleanup_log where action in ('detached', 'reattached');
alter table quality.cleanup_log drop constraint cleanup_log_action_check;
alter table quality.cleanup_log add constraint cleanup_log_action_check check (action in ('dropped', 'kept'));
drop schema raw_detached cascade;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
