"""Product events carry the share of users their sender kept (sampling), so the marts can estimate totals.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Existing rows were all sent unsampled: the default 1 is their rate. Added to the partitioned parent, the
# column and its check reach every partition.
UPGRADE = """
alter table raw.product_events
    add column sample_rate double precision not null default 1
    constraint product_events_sample_rate_in_range check (sample_rate > 0 and sample_rate <= 1);
"""

DOWNGRADE = "alter table raw.product_events drop column sample_rate;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
