"""Small, hand-made raw rows for the dbt tests; the expected mart values are worked out in the tests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

UTC = dt.UTC
# Tuesday of the ISO week that starts on Monday 2026-11-02.
DAY = dt.date(2026, 11, 3)
WEEK_START = dt.date(2026, 11, 2)


def at(day: dt.date, hhmm: str, seconds: int = 0) -> dt.datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, hours, minutes, seconds, tzinfo=UTC)


def ensure_partitions(conn: psycopg.Connection, first: dt.date, last: dt.date) -> None:
    for table in (
        "minute_snapshots",
        "message_samples",
        "host_minutes",
        "product_events",
        "accounts_created",
    ):
        conn.execute("select raw.ensure_partitions(%s, %s, %s)", (table, first, last))


@dataclass
class Snapshot:
    server_id: str
    minute: dt.datetime
    player: Sequence[int] = ()
    spectator: Sequence[int] = ()
    lobby: Sequence[int] = ()
    menu: Sequence[int] = ()
    total: Sequence[int] = ()
    battles: tuple[int, int, int] = (0, 0, 0)  # total, lobby, in_progress
    battle_ids: Sequence[str] | None = None


def insert_snapshots(conn: psycopg.Connection, snapshots: Sequence[Snapshot]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.minute_snapshots (server_id, minute, player, spectator, lobby, menu, total,
                battles_total, battles_lobby, battles_in_progress, battle_ids)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    s.server_id,
                    s.minute,
                    list(s.player),
                    list(s.spectator),
                    list(s.lobby),
                    list(s.menu),
                    list(s.total),
                    *s.battles,
                    None if s.battle_ids is None else list(s.battle_ids),
                )
                for s in snapshots
            ],
        )


@dataclass
class Sample:
    channel_id: str
    message_id: str
    receiver: str
    sent_at: dt.datetime
    received_at: dt.datetime | None
    created_at: dt.datetime


def sample(
    channel: str,
    message: str,
    receiver: str,
    sent: dt.datetime,
    *,
    delay_s: int = 2,
    client_clock: bool = True,
) -> Sample:
    """A sample recorded `delay_s` after sending, by the client clock or else by the ingest time."""
    recorded = sent + dt.timedelta(seconds=delay_s)
    if client_clock:
        # replayed history: the receiver stored it much later, the client clock says when it arrived
        return Sample(channel, message, receiver, sent, recorded, recorded + dt.timedelta(days=10))
    return Sample(channel, message, receiver, sent, None, recorded)


def insert_samples(conn: psycopg.Connection, samples: Sequence[Sample]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at,
                received_at, created_at)
            values (%s, %s, %s, %s, %s, %s)
            """,
            [(s.message_id, s.channel_id, s.receiver, s.sent_at, s.received_at, s.created_at) for s in samples],
        )


def insert_accounts(conn: psycopg.Connection, accounts: Sequence[tuple[str, str, dt.datetime]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.accounts_created (event_id, user_id, created_at) values (%s, %s, %s)", accounts
        )


def insert_events(conn: psycopg.Connection, events: Sequence[tuple[str, str, str, str, dt.datetime]]) -> None:
    """Rows of (event_id, user_id, channel, event, timestamp)."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.product_events (event_id, schema_version, channel, event, "timestamp", user_id)
            values (%s, 'telemetry_event_v1', %s, %s, %s, %s)
            """,
            [(e, channel, event, ts, user) for e, user, channel, event, ts in events],
        )


@dataclass
class Histogram:
    """A log-bucket histogram of exact values, bucketed like the collectors do."""

    values: Sequence[float]
    relative_accuracy: float = 0.005
    extra: dict[str, float] = field(default_factory=dict)

    def document(self) -> str:
        import math

        gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        counts: dict[int, int] = {}
        zero = 0
        for v in self.values:
            if v <= 0:
                zero += 1
            else:
                index = math.ceil(math.log(v) / math.log(gamma))
                counts[index] = counts.get(index, 0) + 1
        indexes = sorted(counts)
        return json.dumps(
            {
                "i": indexes,
                "c": [counts[i] for i in indexes],
                "z": zero,
                "sum": float(sum(self.values)),
                "min": float(min(self.values)),
                "max": float(max(self.values)),
            }
        )


@dataclass
class HostMinute:
    host_id: str
    minute: dt.datetime
    cpu_percent: float
    memory_percent: float
    tick_rate: float | None = None
    packet_loss_percent: float | None = None
    players: int | None = None
    tick_duration_ms: Histogram | None = None
    player_ping_ms: Histogram | None = None
    packet_latency_ms: Histogram | None = None


def insert_host_minutes(conn: psycopg.Connection, rows: Sequence[HostMinute]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.host_minutes (host_id, minute, samples, cpu_percent, cpu_percent_max,
                load_average_1m, load_average_5m, load_average_15m, memory_total_bytes, memory_used_bytes,
                memory_free_bytes, memory_percent, memory_percent_max, disk_read_bytes_per_s,
                disk_write_bytes_per_s, disk_read_ops_per_s, disk_write_ops_per_s, net_recv_bytes_per_s,
                net_sent_bytes_per_s, net_recv_packets_per_s, net_sent_packets_per_s, tick_duration_ms,
                player_ping_ms, packet_latency_ms, tick_rate, players, packet_loss_percent)
            values (%s, %s, 60, %s, %s, 1, 1, 1, 1000, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0, 0, 0,
                %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    r.host_id,
                    r.minute,
                    r.cpu_percent,
                    r.cpu_percent,
                    int(r.memory_percent * 10),
                    1000 - int(r.memory_percent * 10),
                    r.memory_percent,
                    r.memory_percent,
                    None if r.tick_duration_ms is None else r.tick_duration_ms.document(),
                    None if r.player_ping_ms is None else r.player_ping_ms.document(),
                    None if r.packet_latency_ms is None else r.packet_latency_ms.document(),
                    r.tick_rate,
                    r.players,
                    r.packet_loss_percent,
                )
                for r in rows
            ],
        )
