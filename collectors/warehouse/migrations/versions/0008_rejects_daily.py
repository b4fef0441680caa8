"""Rejects are kept for a retention (weekly cleanup); what stays of them is a count per day, source and reason.

Revision ID: 0008_rejects_daily
Revises: 0007_source_freshness
"""

from alembic import op

revision = "0008_rejects_daily"
down_revision = "0007_source_freshness"
branch_labels = None
depends_on = None

# raw.rejects grows with every refused record; the weekly cleanup deletes the rows older than
# TELEMETRY_RETENTION_REJECTS days (collectors.orchestration.cleanup.prune_rejects) and adds them here first, in
# the same statement. A day pruned in two runs (a retention made shorter) adds up, hence the sums.
UPGRADE = r"""
create table quality.rejects_daily (
    day            date        not null,  -- UTC day of rejected_at
    source         text        not null,
    reason         text        not null,
    rejects        bigint      not null check (rejects > 0),
    record_bytes   bigint      not null default 0 check (record_bytes >= 0),  -- sizes as sent, where known
    first_rejected timestamptz not null,
    last_rejected  timestamptz not null,
    pruned_at      timestamptz not null default now(),  -- the last cleanup that added to the row
    primary key (day, source, reason)
);

grant select on quality.rejects_daily to telemetry_reviewer, telemetry_analyst;
"""

DOWNGRADE = "drop table quality.rejects_daily;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
