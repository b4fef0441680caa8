"""The ledger of dbt builds takes the monthly cadence.

Revision ID: 0009_monthly_builds
Revises: 0008_rejects_daily
"""

from alembic import op

revision = "0009_monthly_builds"
down_revision = "0008_rejects_daily"
branch_labels = None
depends_on = None

# The cadence check names the cadences that may record a build (collectors.orchestration.cadences.CADENCES); a
# monthly build refused here would fail its task after the marts were written.
UPGRADE = r"""
alter table quality.dbt_builds drop constraint dbt_builds_cadence_check;
alter table quality.dbt_builds add constraint dbt_builds_cadence_check
    check (cadence in ('hourly', 'daily', 'weekly', 'monthly'));
"""

DOWNGRADE = r"""
delete from quality.dbt_builds where cadence = 'monthly';
alter table quality.dbt_builds drop constraint dbt_builds_cadence_check;
alter table quality.dbt_builds add constraint dbt_builds_cadence_check
    check (cadence in ('hourly', 'daily', 'weekly'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
