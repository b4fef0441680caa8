"""The weekly cleanup detaches expired raw partitions and drops them after a grace period.

Revision ID: 0010_detached_partitions
Revises: 0009_monthly_builds
"""

from alembic import op

revision = "0010_detached_partitions"
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
"""

DOWNGRADE = r"""
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
