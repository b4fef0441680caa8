"""Ground truth: what the simulator sent, tallied the way the marts should find it, written as files.

Files (all UTC, days as YYYY-MM-DD):
- ``day_summary.json``: per day, user-minutes per state, unique users and players, accounts created,
  distinct battles, peak concurrent users per state (all servers summed per minute);
- ``minutes_per_user.csv``: day, user_id, state, minutes (``total`` = any connected state);
- ``channel_reliability.csv``: day, channel_id, messages, receivers, expected, delivered, missing,
  reliability (expected = messages x members: every member, the sender too, should receive each message);
- ``sessions.csv``: user_id, session_id, start, end, events;
- ``funnel_steps.csv``: day of entry, funnel, step, channel, event, attempts and distinct users reaching it;
- ``host_percentiles.csv``: per host, metric, period (``hour`` or ``day``) and its start, the exact
  count, p50, p95 and p99 of the values behind the histograms (nearest rank: the smallest value with at
  least q x count values at or below it), to check quantiles read from merged histograms (error <= 0.5 %);
- ``funnels.csv``: the declared funnels (funnel, step, channel, event, window_minutes), a ready dbt seed;
- ``manifest.json``: the config, records sent per kind and a SHA-256 of each kind's records.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import math
from array import array
from collections import Counter, defaultdict
from pathlib import Path

from google.protobuf.message import Message

from collectors.dev.simulator.chat import Delivery
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.product import Attempt
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

STATES = ("player", "spectator", "lobby", "menu", "total")


def _day(moment: dt.datetime) -> str:
    return moment.date().isoformat()


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class GroundTruth:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.user_minutes: Counter[tuple[str, int, str]] = Counter()
        self.state_minutes: dict[str, Counter[str]] = defaultdict(Counter)
        self.peaks: dict[str, Counter[str]] = defaultdict(Counter)
        self.users: dict[str, set[int]] = defaultdict(set)
        self.players: dict[str, set[int]] = defaultdict(set)
        self.battles: dict[str, set[str]] = defaultdict(set)
        self.accounts: Counter[str] = Counter()
        self.channels: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.members: dict[str, int] = {}
        self.sessions: dict[str, list] = {}
        self.funnel_attempts: Counter[tuple[str, str, int]] = Counter()
        self.funnel_users: dict[tuple[str, str, int], set[str]] = defaultdict(set)
        self.values_day: dict[tuple[str, str], array] = defaultdict(lambda: array("d"))
        self.values_hour: dict[tuple[str, str], array] = defaultdict(lambda: array("d"))
        self.percentiles: list[tuple] = []
        self._hour: dt.datetime | None = None
        self.sent: Counter[str] = Counter()
        self.digests: dict[str, hashlib._Hash] = defaultdict(hashlib.sha256)

    # ------------------------------------------------------------------ tallies

    def record(self, kind: str, record: Message) -> None:
        """Count one record sent and fold it into the kind's digest."""
        self.sent[kind] += 1
        data = record.SerializeToString(deterministic=True)
        self.digests[kind].update(len(data).to_bytes(4, "big") + data)

    def minute(self, moment: dt.datetime, snapshots: list[pb.MinuteSnapshot]) -> None:
        day = _day(moment)
        concurrent: Counter[str] = Counter()
        for snapshot in snapshots:
            clients = snapshot.clients
            for state in STATES:
                ids = getattr(clients, state)
                concurrent[state] += len(ids)
                self.state_minutes[day][state] += len(ids)
                for uid in ids:
                    self.user_minutes[(day, uid, state)] += 1
            self.users[day].update(clients.total)
            self.players[day].update(clients.player)
            self.battles[day].update(snapshot.battle_ids)
        for state, count in concurrent.items():
            self.peaks[day][state] = max(self.peaks[day][state], count)

    def distributions(self, moment: dt.datetime, values: dict[tuple[str, str], list[float]]) -> None:
        """The exact values behind this minute's host histograms; closes hours and days as time passes."""
        hour = moment.replace(minute=0, second=0, microsecond=0)
        if self._hour is not None and hour != self._hour:
            self._close("hour", self._hour, self.values_hour)
            if hour.date() != self._hour.date():
                self._close("day", self._hour.replace(hour=0), self.values_day)
        self._hour = hour
        for key, minute_values in values.items():
            self.values_hour[key].extend(minute_values)
            self.values_day[key].extend(minute_values)

    def _close(self, period: str, start: dt.datetime, values: dict[tuple[str, str], array]) -> None:
        for (host, metric), data in sorted(values.items()):
            ordered = sorted(data)
            n = len(ordered)
            if n:
                quantiles = [ordered[max(0, math.ceil(q * n) - 1)] for q in (0.5, 0.95, 0.99)]
                self.percentiles.append((host, metric, period, _iso(start), n, *(f"{v:.6f}" for v in quantiles)))
        values.clear()

    def finish(self) -> None:
        """Close the last hour and day (call once, after the last minute)."""
        if self._hour is not None:
            self._close("hour", self._hour, self.values_hour)
            self._close("day", self._hour.replace(hour=0), self.values_day)
            self._hour = None

    def messages(self, deliveries: list[Delivery], members: dict[str, int]) -> None:
        self.members = members
        for d in deliveries:
            tally = self.channels[(_day(d.sent_at), d.channel_id)]
            tally["messages"] += 1
            tally["expected"] += d.expected
            tally["delivered"] += d.delivered

    def event(self, event: pb.ProductEvent) -> None:
        at = event.timestamp.ToDatetime(dt.UTC)
        if event.channel == "user" and event.event == "account_created":
            self.accounts[_day(at)] += 1
        if event.session_id:
            session = self.sessions.setdefault(event.session_id, [event.user_id, at, at, 0])
            session[1], session[2] = min(session[1], at), max(session[2], at)
            session[3] += 1

    def attempt(self, attempt: Attempt, end: dt.datetime) -> None:
        """One funnel attempt, counting only the steps that happened before the end of the range."""
        day = _day(attempt.step_times[0])
        for step, at in enumerate(attempt.step_times, start=1):
            if at >= end:
                break
            self.funnel_attempts[(day, attempt.funnel, step)] += 1
            self.funnel_users[(day, attempt.funnel, step)].add(attempt.user_id)

    # ------------------------------------------------------------------ files

    def day_summary(self) -> dict[str, dict]:
        days = sorted(set(self.state_minutes) | set(self.accounts))
        return {
            day: {
                "minutes": {s: self.state_minutes[day][s] for s in STATES},
                "unique_users": len(self.users[day]),
                "unique_players": len(self.players[day]),
                "accounts_created": self.accounts[day],
                "battles": len(self.battles[day]),
                "peak_user_counts": {s: self.peaks[day][s] for s in STATES},
            }
            for day in days
        }

    def overall_reliability(self) -> float | None:
        """Mean over channels and days of delivered / expected (the headline R of DESIGN.md)."""
        values = [t["delivered"] / t["expected"] for t in self.channels.values() if t["expected"]]
        return sum(values) / len(values) if values else None

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "day_summary.json").write_text(json.dumps(self.day_summary(), indent=2, sort_keys=True) + "\n")
        self._csv(
            directory / "minutes_per_user.csv",
            ("day", "user_id", "state", "minutes"),
            sorted((day, uid, state, n) for (day, uid, state), n in self.user_minutes.items()),
        )
        rows = []
        for (day, channel), t in sorted(self.channels.items()):
            missing = t["expected"] - t["delivered"]
            reliability = 1 - missing / t["expected"] if t["expected"] else None
            rows.append(
                (
                    day,
                    channel,
                    t["messages"],
                    self.members[channel],
                    t["expected"],
                    t["delivered"],
                    missing,
                    f"{reliability:.6f}" if reliability is not None else "",
                )
            )
        self._csv(
            directory / "channel_reliability.csv",
            ("day", "channel_id", "messages", "receivers", "expected", "delivered", "missing", "reliability"),
            rows,
        )
        self._csv(
            directory / "sessions.csv",
            ("user_id", "session_id", "start", "end", "events"),
            sorted((u, sid, _iso(s), _iso(e), n) for sid, (u, s, e, n) in self.sessions.items()),
        )
        steps = {f.name: f.steps for f in self.config.funnels}
        self._csv(
            directory / "funnel_steps.csv",
            ("day", "funnel", "step", "channel", "event", "attempts", "users"),
            sorted(
                (day, funnel, step, *steps[funnel][step - 1], n, len(self.funnel_users[(day, funnel, step)]))
                for (day, funnel, step), n in self.funnel_attempts.items()
            ),
        )
        self._csv(
            directory / "host_percentiles.csv",
            ("host_id", "metric", "period", "start", "count", "p50", "p95", "p99"),
            sorted(self.percentiles),
        )
        self._csv(
            directory / "funnels.csv",
            ("funnel", "step", "channel", "event", "window_minutes"),
            [
                (f.name, i, channel, event, f.window_minutes)
                for f in self.config.funnels
                for i, (channel, event) in enumerate(f.steps, start=1)
            ],
        )
        (directory / "manifest.json").write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")

    def manifest(self) -> dict:
        config = dataclasses.asdict(self.config)
        config["start"], config["end"] = _iso(self.config.start), _iso(self.config.end)
        return {
            "config": config,
            "records": dict(sorted(self.sent.items())),
            "sha256": {kind: digest.hexdigest() for kind, digest in sorted(self.digests.items())},
            "overall_reliability": self.overall_reliability(),
        }

    @staticmethod
    def _csv(path: Path, header: tuple[str, ...], rows) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
