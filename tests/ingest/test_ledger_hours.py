"""The ingest ledger's hours: which hours of which raw table each batch landed rows in, on every path that writes
the ledger (the receiver and the loader's direct COPY), duplicates included, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
from alembic import command

from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import IngestClient
from collectors.senders.loader.cli import main as load
from collectors.warehouse.migrate import alembic_config, upgrade
from tests.support import records

# yesterday, so that every hour used is one day, in the past and inside the message samples' retention
DAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
FIVE, SIX = DAY + dt.timedelta(hours=5), DAY + dt.timedelta(hours=6)


def sample_at(message_id: str, moment: dt.datetime) -> pb.MessageSample:
    sample = records.sample(message_id)
    sample.sent_at.CopyFrom(records.ts(moment))
    sample.received_at.CopyFrom(records.ts(moment + dt.timedelta(seconds=2)))
    return sample


def ledger(db: psycopg.Connection, source: str) -> list[tuple[int, int, dict, dict | None]]:
    return db.execute(
        "select accepted, duplicates, accepted_by_day, accepted_by_hour from quality.ingest_batches"
        " where source = %s order by received_at",
        (source,),
    ).fetchall()


def hour_key(moment: dt.datetime) -> str:
    return moment.isoformat()


def test_a_batch_records_its_rows_per_hour_and_per_day(client: IngestClient, db: psycopg.Connection) -> None:
    before = db.execute("select clock_timestamp()").fetchone()[0]
    batch = [sample_at(f"a{i}", FIVE + dt.timedelta(minutes=i)) for i in range(3)] + [sample_at("b", SIX)]
    assert client.push_message_samples(batch).accepted == 4
    [(accepted, duplicates, by_day, by_hour)] = ledger(db, "message_samples")
    assert (accepted, duplicates) == (4, 0)
    assert by_hour == {hour_key(FIVE): 3, hour_key(SIX): 1}
    assert by_day == {DAY.date().isoformat(): 4}
    arrived = db.execute("select received_at from quality.ingest_batches").fetchone()[0]
    assert before <= arrived <= db.execute("select clock_timestamp()").fetchone()[0]


def test_a_resent_batch_records_only_the_hours_that_got_new_rows(client: IngestClient, db: psycopg.Connection) -> None:
    old = [sample_at(f"a{i}", FIVE + dt.timedelta(minutes=i)) for i in range(3)]
    assert client.push_message_samples(old).accepted == 3
    # one day, partly duplicates: the hour at five got nothing new, the hour at six one row (sent twice)
    mixed = [*old, sample_at("new", SIX), sample_at("new", SIX)]
    result = client.push_message_samples(mixed)
    assert (result.accepted, result.duplicates) == (1, 4)
    assert ledger(db, "message_samples")[1] == (1, 4, {DAY.date().isoformat(): 1}, {hour_key(SIX): 1})
    # all duplicates: the batch landed no hour
    again = client.push_message_samples(old)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert ledger(db, "message_samples")[2] == (0, 3, {}, {})


def test_the_loader_records_hours_too(warehouse_url: str, db: psycopg.Connection, tmp_path: Path) -> None:
    def line(event_id: str, moment: dt.datetime, event: str = "click", channel: str = "app") -> str:
        return json.dumps(
            {
                "schema_version": "telemetry_event_v1",
                "event_id": event_id,
                "channel": channel,
                "event": event,
                "timestamp": moment.isoformat(),
                "user_id": "u1",
                "payload": {},
            }
        )

    path = tmp_path / "events.jsonl"
    lines = [line("e1", FIVE), line("e2", FIVE + dt.timedelta(minutes=59)), line("e3", SIX)]
    lines.append(line("acc", SIX + dt.timedelta(minutes=1), event="account_created", channel="user"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load([str(path), "--database-url", warehouse_url, "--no-progress"]) == 0
    [(accepted, _, by_day, by_hour)] = ledger(db, "product_events")
    assert accepted == 4 and by_day == {DAY.date().isoformat(): 4}
    assert by_hour == {hour_key(FIVE): 2, hour_key(SIX): 2}
    assert ledger(db, "accounts_created") == [(1, 0, {DAY.date().isoformat(): 1}, {hour_key(SIX): 1})]


def test_ledger_rows_written_before_the_hours_stay_valid(db: psycopg.Connection) -> None:
    db.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day)"
        " values (gen_random_uuid(), 'host_minutes', 2, 0, 0, '{\"2026-01-01\": 2}')"
    )
    assert ledger(db, "host_minutes") == [(2, 0, {"2026-01-01": 2}, None)]


def test_the_migration_goes_down_and_up_again_keeping_the_ledgers(warehouse_url: str, db: psycopg.Connection) -> None:
    db.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day,"
        " accepted_by_hour) values (gen_random_uuid(), 'host_minutes', 1, 0, 0, '{\"2026-01-01\": 1}',"
        " '{\"2026-01-01T05:00:00+00:00\": 1}')"
    )
    db.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds, started_at)"
        " values ('daily', 'marts', '2026-01-01Z', '2026-01-02Z', 1, 1, '2026-01-02T00:00:01Z')"
    )
    db.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds, family)"
        " values ('daily', 'marts', '2026-01-01Z', '2026-01-02Z', 1, 1, 'day_log')"
    )
    command.downgrade(alembic_config(warehouse_url), "0010_cleanup_grace")
    assert db.execute("select accepted_by_day from quality.ingest_batches").fetchall() == [({"2026-01-01": 1},)]
    assert db.execute("select count(*) from quality.dbt_builds").fetchone() == (1,)  # a family's covered nothing
    upgrade(warehouse_url)
    assert db.execute("select accepted_by_hour from quality.ingest_batches").fetchall() == [(None,)]
    assert db.execute("select started_at from quality.dbt_builds").fetchall() == [(None,)]
