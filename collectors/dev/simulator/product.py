"""App users: sessions of product events that walk the declared funnels, and account creations.

Sessions of one user are at least 31 minutes apart and shorter than a day,
so the warehouse's sessionisation (30 min idle, 24 h max) finds exactly the
generated sessions (a new account's ``account_created`` event carries the id
of the session it opens). Funnel attempts start before 23:00 UTC so an attempt
never reaches into the next day's attempts.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass

from collectors.dev.simulator.config import Funnel, SimulationConfig
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

NOISE_EVENTS = (("app", "page_view"), ("app", "click"), ("app", "settings_opened"), ("game", "replay_watched"))


@dataclass(frozen=True)
class Attempt:
    funnel: str
    user_id: str
    step_times: tuple[dt.datetime, ...]  # when each reached step happened; [0] is the entry


@dataclass
class ProductDay:
    events: list[pb.ProductEvent]
    attempts: list[Attempt]


def account_minutes(config: SimulationConfig) -> dict[int, int]:
    """New account id -> minute of the range (from 0) it is created, ``new_accounts_per_day`` a day."""
    rng = random.Random(f"{config.seed}:accounts")
    count = round(config.new_accounts_per_day * config.minutes / 1440)
    minutes = sorted(rng.randrange(config.minutes) for _ in range(count))
    return {config.users + 1 + i: minute for i, minute in enumerate(minutes)}


class Product:
    def __init__(self, config: SimulationConfig, accounts: dict[int, int]) -> None:
        self.config = config
        self.accounts = accounts
        self.rng = random.Random(f"{config.seed}:product")
        self.serial = 0
        self.sessions = 0

    def _event(
        self, user_id: str, session_id: str | None, at: dt.datetime, kind: tuple[str, str], **payload
    ) -> pb.ProductEvent:
        self.serial += 1
        event = pb.ProductEvent(
            event_id=f"ev-{self.config.seed}-{self.serial}",
            schema_version="telemetry_event_v1",
            channel=kind[0],
            event=kind[1],
            user_id=user_id,
            session_id=session_id or "",
            payload_json=json.dumps(payload, separators=(",", ":")) if payload else "",
        )
        event.timestamp.FromDatetime(at)
        return event

    def _session(
        self,
        user_id: str,
        start: dt.datetime,
        day_end: dt.datetime,
        funnel: Funnel | None,
        day: ProductDay,
        account_created_at: dt.datetime | None = None,
    ) -> dt.datetime:
        """Events of one session from ``start``; returns the time of its last event.

        A new account's ``account_created`` event (seconds before ``start``) opens its first session.
        """
        rng = self.rng
        self.sessions += 1
        session_id = f"s-{self.config.seed}-{self.sessions}"
        if account_created_at is not None:
            day.events.append(
                self._event(user_id, session_id, account_created_at, ("user", "account_created"), source="simulator")
            )
        at = start
        day.events.append(
            self._event(user_id, session_id, at, ("app", "app_open"), platform=rng.choice(("pc", "mac", "linux")))
        )
        for _ in range(rng.randint(0, 4)):
            at += dt.timedelta(seconds=rng.randint(5, 90))
            day.events.append(self._event(user_id, session_id, at, rng.choice(NOISE_EVENTS)))
        if funnel is not None and at < day_end - dt.timedelta(hours=1):
            at += dt.timedelta(seconds=rng.randint(5, 60))
            times = [at]
            day.events.append(self._event(user_id, session_id, at, funnel.steps[0], funnel=funnel.name))
            for step in funnel.steps[1:]:
                if rng.random() < self.config.drop_off:
                    break
                at += dt.timedelta(seconds=rng.randint(10, 240))
                day.events.append(self._event(user_id, session_id, at, step, funnel=funnel.name))
                times.append(at)
            day.attempts.append(Attempt(funnel.name, user_id, tuple(times)))
        at += dt.timedelta(seconds=rng.randint(5, 120))
        day.events.append(self._event(user_id, session_id, at, ("app", "app_close")))
        return at

    def day(self, day_start: dt.datetime) -> ProductDay:
        """Every product event of the UTC day starting at ``day_start`` (before clipping to the range)."""
        config, rng = self.config, self.rng
        day = ProductDay([], [])
        day_end = day_start + dt.timedelta(days=1)
        onboarding = next((f for f in config.funnels if f.name == "onboarding"), None)
        others = [f for f in config.funnels if f.name != "onboarding"] or list(config.funnels)
        existing = list(range(1, config.users + 1))
        for uid, minute in self.accounts.items():
            created = config.start + dt.timedelta(minutes=minute)
            if created < day_start:
                existing.append(uid)
            elif created < day_end:
                created += dt.timedelta(seconds=rng.randrange(60))
                first = created + dt.timedelta(seconds=rng.randint(1, 30))
                self._session(str(uid), first, day_end, onboarding, day, account_created_at=created)
        for uid in existing:
            if rng.random() >= config.active_share_per_day:
                continue
            # from 01:00, and ending before 23:00: sessions of two days are always more than 30 min apart
            at = day_start + dt.timedelta(hours=1, seconds=rng.randrange(19 * 3600))
            for _ in range(rng.choice((1, 1, 2, 3))):
                if at >= day_end - dt.timedelta(minutes=90):
                    break
                funnel = rng.choice(others) if rng.random() < config.funnel_entry_rate else None
                last = self._session(str(uid), at, day_end, funnel, day)
                at = last + dt.timedelta(minutes=rng.randint(31, 240))
        day.events.sort(key=lambda e: (e.timestamp.seconds, e.timestamp.nanos, e.event_id))
        return day
