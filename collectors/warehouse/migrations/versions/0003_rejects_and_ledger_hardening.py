"""Rejects that collapse on replay and keep a bounded part of their record; conflicts and deferred records counted.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- What a reject keeps of a large record is its start; the size and hash describe the record as sent.
alter table raw.rejects
    add column record_bytes  integer,
    add column record_sha256 text;

-- A replayed batch carries the same batch id: its rejects collapse like its records (earlier replays may have
-- stored some twice; the first copy stays).
delete from raw.rejects as later
using raw.rejects as earlier
where later.batch_id = earlier.batch_id
  and later.source = earlier.source
  and later.record_index = earlier.record_index
  and later.reject_id > earlier.reject_id;
create unique index rejects_batch_record on raw.rejects (batch_id, source, record_index);

-- conflicts: records refused because an earlier record of the batch has their natural key with other contents
-- (counted among `rejected` too); deferred: records neither stored nor refused when the receiver's time for the
-- batch ran out (the sender resends them).
alter table quality.ingest_batches
    add column conflicts integer not null default 0 check (conflicts >= 0),
    add column deferred  integer not null default 0 check (deferred >= 0);
"""

DOWNGRADE = """
alter table quality.ingest_batches drop column deferred, drop column conflicts;
drop index raw.rejects_batch_record;
alter table raw.rejects drop column record_sha256, drop column record_bytes;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
