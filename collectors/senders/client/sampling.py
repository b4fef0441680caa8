"""Which product events a sender keeps: sampling by user, and the users who opted out of tracking.

Sampling is by user, never by event: a user is kept for an event whose rate is ``r`` when a keyed hash of the
user id, read as a number in [0, 1), is below ``r``. The same user is kept or dropped on every device and in
every batch, so a kept user's whole journey is there (funnels, sessions and retention stay consistent: this is
how PostHog and Amplitude sample), and a user kept at a lower rate is kept at every higher one. Each kept event
carries its ``sample_rate``, from which the marts estimate totals (an event stands for 1 / rate events).

An event that already carries a ``sample_rate`` was sampled by whoever sent it on: it is kept as it is, because
sampling it again would make the stored rate no longer the chance that its user is in the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collectors.proto.telemetry.v1 import ingest_pb2 as pb

if TYPE_CHECKING:
    from collectors.config import Settings


@dataclass(frozen=True)
class Sampling:
    """``rates``: by ``"channel/event"``, ``"channel"`` or ``"*"`` (the most specific wins; 1 when none
    matches), each in (0, 1]; ``salt``: keys the hash, so that another deployment samples other users;
    ``opted_out``: user ids whose events are never sent (the app's Do Not Track list), beside events that
    carry ``dnt`` themselves."""

    rates: Mapping[str, float] = field(default_factory=dict)
    salt: str = field(default="", repr=False)  # a secret: never in logs or tracebacks
    opted_out: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        for key, rate in self.rates.items():
            if not 0 < rate <= 1:
                raise ValueError(f"sampling rate for {key!r} must be in (0, 1], not {rate}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Sampling:
        """The deployment's sampling: ``TELEMETRY_SAMPLING_RATES`` and ``TELEMETRY_SAMPLING_SALT``."""
        return cls(rates=dict(settings.sampling_rates), salt=settings.sampling_salt.get_secret_value())

    def rate(self, channel: str, event: str) -> float:
        for key in (f"{channel}/{event}", channel, "*"):
            if key in self.rates:
                return self.rates[key]
        return 1.0

    def position(self, user_id: str) -> float:
        """Where the user falls in [0, 1): the same for every event and sender with this salt."""
        digest = hashlib.sha256(f"{self.salt}\x1f{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def keep(self, event: pb.ProductEvent) -> bool:
        """Whether the event's user is in the sample for it; a kept event's ``sample_rate`` is set when its rate
        is below 1. Opting out is not looked at here (see :meth:`select`). Takes anything with the event's
        attributes (a ProductEvent, or the loader's parsed line)."""
        if event.HasField("sample_rate"):
            return True
        rate = self.rate(event.channel, event.event)
        if rate < 1:
            if self.position(event.user_id) >= rate:
                return False
            event.sample_rate = rate
        return True

    def select(self, events: Sequence[pb.ProductEvent]) -> tuple[list[int], int, int]:
        """The positions of the events to send (their ``sample_rate`` set when below 1), and how many were
        dropped by sampling and for opting out."""
        kept: list[int] = []
        sampled_out = opted_out = 0
        for index, event in enumerate(events):
            if event.dnt or event.user_id in self.opted_out:
                opted_out += 1
            elif self.keep(event):
                kept.append(index)
            else:
                sampled_out += 1
        return kept, sampled_out, opted_out
