"""Builders of valid protobuf records for tests (each test changes what it needs)."""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf.timestamp_pb2 import Timestamp

from collectors.proto.telemetry.v1 import ingest_pb2 as pb


def ts(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def this_minute(minutes_ago: int = 0) -> dt.datetime:
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return now - dt.timedelta(minutes=minutes_ago)


def snapshot(server_id: str = "srv-1", minutes_ago: int = 1, players: tuple[int, ...] = (1, 2)) -> pb.MinuteSnapshot:
    menu = (100, 101)
    return pb.MinuteSnapshot(
        server_id=server_id,
        minute=ts(this_minute(minutes_ago)),
        clients=pb.ClientStates(player=players, menu=menu, total=(*players, *menu)),
        battles=pb.BattleCounts(total=3, lobby=1, in_progress=2),
        battle_ids=["b1", "b2", "b3"],
    )


def sample(message_id: str, channel: str = "chan-1", receiver: str = "key-1", minutes_ago: int = 1) -> pb.MessageSample:
    return pb.MessageSample(
        message_id=message_id,
        channel_id=channel,
        receiver_public_key=receiver,
        sent_at=ts(this_minute(minutes_ago)),
        topics=b"\x01\x02",
        envelope_id=f"env-{message_id}",
        received_at=ts(this_minute(minutes_ago) + dt.timedelta(seconds=2)),
    )


def host_minute(host_id: str = "host-1", minutes_ago: int = 1) -> pb.HostMinute:
    hist = pb.LogHistogram(bucket_index=[10, 12], bucket_count=[3, 1], sum=4.5, min=1.0, max=1.3)
    return pb.HostMinute(
        host_id=host_id,
        minute=ts(this_minute(minutes_ago)),
        samples=60,
        cpu_percent=12.5,
        cpu_percent_max=40.0,
        cpu_percent_per_core=[10.0, 15.0],
        load_average_1m=0.5,
        load_average_5m=0.4,
        load_average_15m=0.3,
        memory_total_bytes=8 << 30,
        memory_used_bytes=2 << 30,
        memory_free_bytes=6 << 30,
        memory_percent=25.0,
        memory_percent_max=26.0,
        server=pb.ServerPerformance(tick_duration_ms=hist, tick_rate=60.0, players=5, packet_loss_percent=0.1),
    )


def event(
    event_id: str, name: str = "app_open", channel: str = "app", minutes_ago: int = 1, **payload: object
) -> pb.ProductEvent:
    return pb.ProductEvent(
        event_id=event_id,
        schema_version="telemetry_event_v1",
        channel=channel,
        event=name,
        timestamp=ts(this_minute(minutes_ago)),
        user_id="user-1",
        session_id="s-1",
        payload_json=json.dumps(payload),
    )
