"""The raw rows every dbt test builds from; each mart test works its expectation out from these."""

from __future__ import annotations

import datetime as dt

import psycopg

from tests.dbt.raw_rows import (
    DAY,
    Histogram,
    HostMinute,
    Snapshot,
    at,
    ensure_partitions,
    insert_accounts,
    insert_events,
    insert_host_minutes,
    insert_samples,
    insert_snapshots,
    sample,
)

NEXT_DAY = DAY + dt.timedelta(days=1)
PREVIOUS_DAY = DAY - dt.timedelta(days=1)

SNAPSHOTS = [
    # 00:00, segment 0: user 1 is listed on both servers (counts twice in user counts, once in their minutes)
    Snapshot("A", at(DAY, "00:00"), player=[1, 2], spectator=[3], menu=[4], total=[1, 2, 3, 4],
             battles=(2, 1, 1), battle_ids=["b1", "b2"]),
    Snapshot("B", at(DAY, "00:00"), player=[1], menu=[5], total=[1, 5], battles=(1, 0, 1), battle_ids=["b3"]),
    Snapshot("A", at(DAY, "00:01"), player=[1], lobby=[2], total=[1, 2], battles=(1, 0, 1),
             battle_ids=["b1"]),
    # 00:02 is missing: not invented
    Snapshot("A", at(DAY, "00:03"), menu=[6], total=[6], battles=(0, 0, 0), battle_ids=[]),
    # 01:10, segment 1: user 7 in two states in one minute; this server sends no battle ids
    Snapshot("A", at(DAY, "01:10"), player=[7], spectator=[7], total=[7], battles=(1, 0, 1)),
    # next day (same week)
    Snapshot("A", at(NEXT_DAY, "00:00"), player=[1], menu=[8], total=[1, 8], battles=(1, 0, 1),
             battle_ids=["b1"]),
]  # fmt: skip

ACCOUNTS = [
    ("acc-5", "5", at(DAY, "10:00")),
    ("acc-6", "6", at(DAY, "23:59", 59)),
    ("acc-9", "9", at(NEXT_DAY, "00:00")),
]

EVENTS = [
    ("e1", "u1", "user", "login", at(DAY, "10:00")),
    ("e2", "u1", "user", "login", at(DAY, "11:00")),
    ("e3", "u2", "user", "login", at(DAY, "12:00")),
    ("e4", "u2", "app", "open", at(NEXT_DAY, "00:00")),
]

# Reliability, hour 10:00-11:00 of DAY, channel c1: receivers r1, r2, r4 are counted (a sample
# recorded before 10:00 and one at or after 11:00); r3 goes silent after the window; r4 gets none
# of the window's messages. r2's samples carry no client clock, so its ingest time counts.
HOUR = at(DAY, "10:00")
SAMPLES = [
    # before the window
    sample("c1", "p1", "r1", at(DAY, "09:30")),
    sample("c1", "p2", "r2", at(DAY, "09:40"), client_clock=False),
    sample("c1", "p3", "r3", at(DAY, "09:50")),
    sample("c1", "p4", "r4", at(DAY, "09:55")),
    # in the window
    sample("c1", "m1", "r1", at(DAY, "10:05")),
    sample("c1", "m2", "r1", at(DAY, "10:15")),
    sample("c1", "m3", "r1", at(DAY, "10:25")),
    sample("c1", "m1", "r2", at(DAY, "10:05"), client_clock=False),
    sample("c1", "m1", "r3", at(DAY, "10:05")),
    sample("c1", "m2", "r3", at(DAY, "10:15")),
    # after the window
    sample("c1", "a1", "r1", at(DAY, "11:10")),
    sample("c1", "a2", "r2", at(DAY, "11:05"), client_clock=False),
    sample("c1", "a4", "r4", at(DAY, "11:20")),
    # channel c2 has one receiver, which gets everything
    sample("c2", "q1", "r1", at(DAY, "09:45")),
    sample("c2", "q2", "r1", at(DAY, "10:30")),
    sample("c2", "q3", "r1", at(DAY, "11:15")),
    # r1 also reports c1 on the days around DAY, so DAY is measurable as a daily window
    sample("c1", "d0", "r1", at(PREVIOUS_DAY, "23:00")),
    sample("c1", "d2", "r1", at(NEXT_DAY, "01:00")),
]

HOST_MINUTES = [
    # host h1, hour 10: two minutes; ping histograms merge across them
    HostMinute("h1", at(DAY, "10:00"), cpu_percent=50.0, memory_percent=90.0, tick_rate=60.0,
               packet_loss_percent=0.5, players=10,
               tick_duration_ms=Histogram([16.0, 16.0, 17.0]),
               player_ping_ms=Histogram([20.0, 40.0, 60.0, 80.0, 250.0]),
               packet_latency_ms=Histogram([5.0])),
    HostMinute("h1", at(DAY, "10:01"), cpu_percent=97.0, memory_percent=80.0, tick_rate=54.0,
               packet_loss_percent=6.0, players=20,
               tick_duration_ms=Histogram([18.0]),
               player_ping_ms=Histogram([0.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0]),
               packet_latency_ms=None),
    # host h2: a plain machine without game-server performance fields, hour 11
    HostMinute("h2", at(DAY, "11:00"), cpu_percent=85.0, memory_percent=96.0),
    # h1 on the next day, for the weekly rollup
    HostMinute("h1", at(NEXT_DAY, "00:00"), cpu_percent=10.0, memory_percent=10.0, tick_rate=59.0,
               packet_loss_percent=0.0, players=5, player_ping_ms=Histogram([150.0])),
]  # fmt: skip


def load(conn: psycopg.Connection) -> None:
    ensure_partitions(conn, DAY - dt.timedelta(days=10), DAY + dt.timedelta(days=10))
    insert_snapshots(conn, SNAPSHOTS)
    insert_accounts(conn, ACCOUNTS)
    insert_events(conn, EVENTS)
    insert_samples(conn, SAMPLES)
    insert_host_minutes(conn, HOST_MINUTES)
