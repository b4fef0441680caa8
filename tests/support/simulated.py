"""Land a simulation through a real, in-process receiver: shared by the dbt acceptance tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import psycopg
from google.protobuf.message import Message
from psycopg import sql

from collectors.config import RetentionDays, Settings
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.run import BufferedSender, play
from collectors.dev.simulator.truth import GroundTruth
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.warehouse.partitions import ensure_partitions
from tests.support.receivers import TOKEN

HOURLY_MARTS = ("fct_channel_reliability_hourly", "fct_reliability_hourly", "fct_host_metrics_hourly")
DAILY_MARTS = (
    "fct_telemetry_day",
    "fct_minutes_per_user_daily",
    "fct_channel_reliability_daily",
    "fct_reliability_daily",
    "fct_event_counts_daily",
    "fct_host_metrics_daily",
    "fct_sessions",
    "fct_funnel_daily",
)


def snapshot(
    url: str, tables: tuple[str, ...], start: dt.datetime | None = None, end: dt.datetime | None = None
) -> dict[str, list[str]]:
    """Every row of each mart, as sorted text (a multiset that compares exactly).

    With ``start``/``end``, only rows whose period (the table's first date or timestamp column:
    ``hour_start``, ``day``, ``session_start``...) lies in ``[start, end)``.
    """
    with psycopg.connect(url) as conn:
        rows = {}
        for table in tables:
            query = sql.SQL("select * from marts.{}").format(sql.Identifier(table))
            params: tuple[object, ...] = ()
            if start is not None:
                column = conn.execute(
                    "select column_name from information_schema.columns where table_schema = 'marts'"
                    " and table_name = %s and (data_type = 'date' or data_type like 'timestamp%%')"
                    " order by ordinal_position limit 1",
                    (table,),
                ).fetchone()[0]
                query += sql.SQL(" where {c} >= %s and {c} < %s").format(c=sql.Identifier(column))
                params = (start, end)
            rows[table] = sorted(repr(row) for row in conn.execute(query, params).fetchall())
        return rows


def land_simulation(
    url: str,
    config: SimulationConfig,
    spool_dir: Path,
    on_record: Callable[[str, Message], None] | None = None,
    retention: RetentionDays | None = None,
) -> tuple[GroundTruth, dict[str, int]]:
    """Play ``config`` through a receiver writing to ``url``; returns the ground truth and records accepted per kind.

    ``on_record`` sees every record before it is sent (e.g. to tally an independent oracle). A longer
    ``retention`` lands days the default one refuses (and creates their partitions), as if they had been
    landed when they were fresh.
    """
    settings = Settings(
        database_url=url,
        listen="127.0.0.1:0",
        metrics_port=0,
        ingest_tokens=TOKEN,
        retention=retention or RetentionDays(),
    )
    if retention is not None:
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_partitions(conn, retention, ahead_days=3)
    receiver = Receiver(settings).start()
    try:
        with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=spool_dir, attempts=2) as client:
            sender = BufferedSender(client)

            def send(kind: str, record: Message) -> None:
                if on_record is not None:
                    on_record(kind, record)
                sender.add(kind, record)

            truth = play(config, send)
            sender.flush()
    finally:
        receiver.stop(grace=5)
    return truth, {kind: result.accepted for kind, result in sender.results.items()}
