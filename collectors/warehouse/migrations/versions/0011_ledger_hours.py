"""The ingest ledger says which hours a batch landed rows in; the build ledger when a build started, and which
model family a build was restricted to.

Revision ID: 0011_ledger_hours
Revises: 0010_cleanup_grace
"""

from alembic import op

revision = "0011_ledger_hours"
down_revision = "0010_cleanup_grace"
branch_labels = None
depends_on = None

# The reconcile planner (collectors.orchestration.reconcile) compares the two: a window is stale when rows of its
# hours arrived after its last build started. Rows written before this revision have no hours (null): the planner
# then takes the batch's days (accepted_by_day), which over-reaches to every hour of those days but misses none.
# A build's start is what matters, not its end: rows landing while dbt runs may or may not have been read. Builds
# recorded before this revision started at finished_at less elapsed_seconds, near enough.
UPGRADE = r"""
alter table quality.ingest_batches add column accepted_by_hour jsonb;
comment on column quality.ingest_batches.accepted_by_hour is
    'rows accepted per UTC hour of the partition column, {"2026-01-01T05:00:00+00:00": n}; null on rows older than '
    'the column (use accepted_by_day)';
alter table quality.dbt_builds add column started_at timestamptz, add column family text;
comment on column quality.dbt_builds.started_at is
    'when the build took the dbt lock and started; null on rows older than the column';
comment on column quality.dbt_builds.family is
    'the one model family the build was restricted to; null: the whole part, the only builds that cover a window';
"""

DOWNGRADE = r"""
delete from quality.dbt_builds where family is not null;
alter table quality.dbt_builds drop column family, drop column started_at;
alter table quality.ingest_batches drop column accepted_by_hour;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
