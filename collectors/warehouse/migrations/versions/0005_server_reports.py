"""Game servers' own reports (every few seconds), landed as sent.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- One report of a game server (its POST /api/v1/telemetry document): the whole document, unknown fields
-- included; the known fields were checked on the way in. dbt reads the gauges out of it.
create table raw.server_reports (
    server_id    text        not null,
    reported_at  timestamptz not null,
    document     jsonb       not null,
    batch_id     uuid,
    ingested_at  timestamptz not null default now(),
    constraint server_reports_natural_key unique (server_id, reported_at)
) partition by range (reported_at);

insert into quality.raw_tables values ('server_reports', 'reported_at');
grant insert on raw.server_reports to telemetry_ingest;
"""

DOWNGRADE = """
delete from quality.raw_tables where table_name = 'server_reports';
drop table raw.server_reports;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
