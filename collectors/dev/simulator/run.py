"""Play a simulation minute by minute, hand each record to a sink, and tally the ground truth."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

from collectors.dev.simulator.chat import Chat
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.product import Product, account_minutes
from collectors.dev.simulator.truth import GroundTruth
from collectors.dev.simulator.world import World
from collectors.ingest import registry
from collectors.senders.client import IngestClient, PushResult

KINDS = tuple(table.name for table in registry.SENT)  # what the simulator plays: every table senders push


def records(config: SimulationConfig, truth: GroundTruth) -> Iterator[tuple[dt.datetime, str, Message]]:
    """(minute, kind, record) in time order, one minute at a time; ``truth`` is filled on the way."""
    accounts = account_minutes(config)
    world, chat, product = World(config, accounts), Chat(config), Product(config, accounts)
    members = {c.channel_id: len(c.members) for c in chat.channels}
    day_events: list = []
    position = 0
    current_day: dt.date | None = None
    start = config.start.timestamp()
    for minute in range(config.minutes):
        moment = config.start + dt.timedelta(minutes=minute)
        if moment.date() != current_day:
            current_day = moment.date()
            day = product.day(dt.datetime.combine(current_day, dt.time(), dt.UTC))
            day_events, position = day.events, 0
            for attempt in day.attempts:
                if config.start <= attempt.step_times[0]:
                    truth.attempt(attempt, config.end)
        snapshots, hosts = world.step(minute, moment)
        truth.minute(moment, snapshots)
        if hosts:
            truth.distributions(moment, world.distributions)
        for snapshot in snapshots:
            yield moment, "minute_snapshots", snapshot
        for host in hosts:
            yield moment, "host_minutes", host
        samples, deliveries = chat.step(moment)
        truth.messages(deliveries, members)
        for sample in samples:
            yield moment, "message_samples", sample
        next_minute = (moment + dt.timedelta(minutes=1)).timestamp()
        while position < len(day_events) and day_events[position].timestamp.seconds < next_minute:
            event = day_events[position]
            position += 1
            if event.timestamp.seconds >= start:  # the first day's events before the range are not played
                truth.event(event)
                yield moment, "product_events", event


class BufferedSender:
    """Collects records per kind and pushes them in batches of ``batch_records`` through the client."""

    def __init__(self, client: IngestClient, batch_records: int = 2000) -> None:
        self.client = client
        self.batch_records = batch_records
        self.buffers: dict[str, list[Message]] = defaultdict(list)
        self.results: dict[str, PushResult] = defaultdict(PushResult)

    def add(self, kind: str, record: Message) -> None:
        buffer = self.buffers[kind]
        buffer.append(record)
        if len(buffer) >= self.batch_records:
            self.flush(kind)

    def flush(self, kind: str | None = None) -> None:
        for name in [kind] if kind else list(self.buffers):
            if self.buffers[name]:
                self.results[name].merge(self.client.push(name, self.buffers[name]))
                self.buffers[name] = []


def play(
    config: SimulationConfig,
    send: Callable[[str, Message], None] | None,
    *,
    speed: float = 0.0,
    on_minute: Callable[[dt.datetime], None] | None = None,
) -> GroundTruth:
    """Run the simulation; ``send(kind, record)`` gets every record (None: only the truth is computed).

    ``speed`` > 0 paces the playback at that many simulated seconds per real second (0 = as fast as possible).
    """
    truth = GroundTruth(config)
    started = time.monotonic()
    last: dt.datetime | None = None
    for moment, kind, record in records(config, truth):
        if moment != last:
            if on_minute is not None:
                on_minute(moment)
            if speed > 0:
                ahead = (moment - config.start).total_seconds() / speed - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            last = moment
        truth.record(kind, record)
        if send is not None:
            send(kind, record)
    truth.finish()
    return truth
