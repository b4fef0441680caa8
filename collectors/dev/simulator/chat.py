"""Chat channels: members send messages; each member (the sender too, as its client stores its own
message) receives each message unless it is lost, with probability ``loss_rate``: reliability is known."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass

from collectors.dev.simulator.config import SimulationConfig
from collectors.proto.telemetry.v1 import ingest_pb2 as pb


@dataclass(frozen=True)
class Channel:
    channel_id: str
    members: tuple[str, ...]  # receiver public keys
    topics: bytes


@dataclass(frozen=True)
class Delivery:
    """One message as generated: who should have received it and who did."""

    channel_id: str
    message_id: str
    sent_at: dt.datetime
    expected: int
    delivered: int


def public_key(user_id: int) -> str:
    return "0x" + hashlib.sha256(f"user-{user_id}".encode()).hexdigest()[:40]


class Chat:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}:chat")
        low, high = config.channel_members
        self.channels = []
        for c in range(config.channels):
            size = min(config.users, self.rng.randint(low, high))
            members = sorted(self.rng.sample(range(1, config.users + 1), size))
            channel_id = f"chan-{config.seed}-{c + 1}"
            topics = hashlib.sha256(channel_id.encode()).digest()[:8]
            self.channels.append(Channel(channel_id, tuple(public_key(m) for m in members), topics))
        self.serial = 0

    def step(self, moment: dt.datetime) -> tuple[list[pb.MessageSample], list[Delivery]]:
        rng = self.rng
        samples: list[pb.MessageSample] = []
        deliveries: list[Delivery] = []
        per_minute = self.config.messages_per_channel_per_hour / 60
        for channel in self.channels:
            count = int(per_minute) + (rng.random() < per_minute % 1)
            for _ in range(count):
                self.serial += 1
                message_id = f"msg-{self.config.seed}-{self.serial}"
                sent_at = moment + dt.timedelta(seconds=rng.randrange(60), microseconds=rng.randrange(10**6))
                delivered = 0
                for key in channel.members:
                    if rng.random() < self.config.loss_rate:
                        continue
                    delivered += 1
                    sample = pb.MessageSample(
                        message_id=message_id,
                        channel_id=channel.channel_id,
                        receiver_public_key=key,
                        topics=channel.topics,
                        envelope_id=f"env-{self.config.seed}-{self.serial}",
                    )
                    sample.sent_at.FromDatetime(sent_at)
                    sample.received_at.FromDatetime(sent_at + dt.timedelta(milliseconds=rng.randrange(20, 2000)))
                    samples.append(sample)
                deliveries.append(Delivery(channel.channel_id, message_id, sent_at, len(channel.members), delivered))
        return samples, deliveries
