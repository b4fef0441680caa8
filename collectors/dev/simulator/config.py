"""What to simulate: the time range, the scale, the rates, and the declared funnels."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Funnel:
    """A declared funnel: ordered (channel, event) steps; the simulator walks them with ``drop_off`` per step."""

    name: str
    steps: tuple[tuple[str, str], ...]
    window_minutes: int = 60


FUNNELS: tuple[Funnel, ...] = (
    Funnel(
        "onboarding",
        (
            ("user", "signup_started"),
            ("user", "signup_completed"),
            ("app", "tutorial_completed"),
            ("game", "first_battle"),
        ),
    ),
    Funnel(
        "purchase",
        (
            ("store", "store_opened"),
            ("store", "item_viewed"),
            ("store", "checkout_started"),
            ("store", "purchase_completed"),
        ),
    ),
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines the output: the same config (seed included) gives the same records."""

    start: dt.datetime  # UTC, truncated to the minute
    end: dt.datetime  # exclusive
    seed: int = 1
    servers: int = 3
    users: int = 200  # accounts existing before ``start``
    new_accounts_per_day: int = 10
    # game servers
    max_battle_players: int = 8
    # chat
    channels: int = 5
    channel_members: tuple[int, int] = (3, 12)
    messages_per_channel_per_hour: float = 30.0
    loss_rate: float = 0.02  # probability that one member does not receive one message
    # product events
    active_share_per_day: float = 0.5  # users with app sessions on a given day
    funnel_entry_rate: float = 0.4  # sessions that walk a funnel
    drop_off: float = 0.3  # probability of stopping before each next funnel step
    funnels: tuple[Funnel, ...] = field(default=FUNNELS)
    # hosts
    host_minutes: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not 0 <= self.loss_rate <= 1 or not 0 <= self.drop_off <= 1:
            raise ValueError("loss_rate and drop_off are probabilities in [0, 1]")
        if self.servers < 1 or self.users < 1:
            raise ValueError("at least one server and one user")

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)
