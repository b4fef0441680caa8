"""Game servers minute by minute: users log in and out and move between menu, lobby, player and spectator;
battles open in a lobby, go in progress and end. Each minute yields one snapshot (and host record) per server."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.histogram import log_histogram
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

OFFLINE, MENU, LOBBY, PLAYER, SPECTATOR = "offline", "menu", "lobby", "player", "spectator"
STATES = (PLAYER, SPECTATOR, LOBBY, MENU)
LEAVE_BATTLE = {LOBBY: 0.03, PLAYER: 0.01, SPECTATOR: 0.06}  # per-minute chance of going back to the menu


@dataclass
class Battle:
    battle_id: str
    server: int
    opened_minute: int
    start_after: int  # minutes in lobby before it can start
    length: int  # minutes in progress
    in_progress_since: int | None = None
    members: set[int] = field(default_factory=set)  # lobby members, then players
    spectators: set[int] = field(default_factory=set)


@dataclass
class User:
    user_id: int
    created_minute: int  # may be negative: existed before the range
    state: str = OFFLINE
    server: int = 0
    battle: Battle | None = None


def login_probability(moment: dt.datetime) -> float:
    """Per-minute chance that an offline user logs in: a daily curve peaking at 20:00 UTC."""
    hour = moment.hour + moment.minute / 60
    return 0.004 + 0.008 * (1 + math.cos((hour - 20) / 24 * 2 * math.pi)) / 2


class World:
    """The game side of the simulation. ``step(minute)`` advances one minute and returns that minute's records."""

    def __init__(self, config: SimulationConfig, account_minutes: dict[int, int]) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}:world")
        self.users = [User(uid, -1) for uid in range(1, config.users + 1)]
        self.pending = sorted((minute, uid) for uid, minute in account_minutes.items())  # accounts yet to exist
        self.battles: list[Battle] = []
        self.battle_serial = 0
        # the exact values behind each host's histograms this minute: (host_id, metric) -> values
        self.distributions: dict[tuple[str, str], list[float]] = {}

    # ------------------------------------------------------------------ transitions

    def _open_battle(self, user: User, minute: int) -> None:
        self.battle_serial += 1
        battle = Battle(
            f"b-{self.config.seed}-{self.battle_serial}",
            user.server,
            minute,
            start_after=self.rng.randint(2, 6),
            length=self.rng.randint(8, 25),
        )
        self.battles.append(battle)
        self._join(user, battle)

    def _join(self, user: User, battle: Battle) -> None:
        battle.members.add(user.user_id)
        user.battle, user.state = battle, LOBBY

    def _leave_battle(self, user: User) -> None:
        if user.battle is not None:
            user.battle.members.discard(user.user_id)
            user.battle.spectators.discard(user.user_id)
        user.battle, user.state = None, MENU

    def _advance_battles(self, minute: int, by_id: dict[int, User]) -> None:
        for battle in list(self.battles):
            age = minute - battle.opened_minute
            if battle.in_progress_since is None:
                if age >= battle.start_after and len(battle.members) >= 2:
                    battle.in_progress_since = minute
                    for uid in battle.members:
                        by_id[uid].state = PLAYER
                elif age >= 10 or not battle.members:
                    self._close(battle, by_id)
            elif minute - battle.in_progress_since >= battle.length or not battle.members:
                self._close(battle, by_id)

    def _close(self, battle: Battle, by_id: dict[int, User]) -> None:
        for uid in battle.members | battle.spectators:
            user = by_id[uid]
            user.battle, user.state = None, MENU
        battle.members.clear()
        battle.spectators.clear()
        self.battles.remove(battle)

    def _move(self, user: User, minute: int, p_login: float) -> None:
        rng = self.rng
        r = rng.random()
        if user.state == OFFLINE:
            if r < p_login:
                user.state, user.server = MENU, rng.randrange(self.config.servers)
            return
        if r < 0.004:  # disconnect from anywhere
            self._leave_battle(user)
            user.state = OFFLINE
            return
        if user.state == MENU:
            if r < 0.03:
                user.state = OFFLINE
            elif r < 0.20:
                lobbies = [
                    b
                    for b in self.battles
                    if b.server == user.server
                    and b.in_progress_since is None
                    and len(b.members) < self.config.max_battle_players
                ]
                if lobbies and rng.random() < 0.8:
                    self._join(user, rng.choice(lobbies))
                else:
                    self._open_battle(user, minute)
            elif r < 0.23:
                running = [b for b in self.battles if b.server == user.server and b.in_progress_since is not None]
                if running:
                    battle = rng.choice(running)
                    battle.spectators.add(user.user_id)
                    user.battle, user.state = battle, SPECTATOR
        elif r < LEAVE_BATTLE.get(user.state, 0.0):
            self._leave_battle(user)

    def step(self, minute: int, moment: dt.datetime) -> tuple[list[pb.MinuteSnapshot], list[pb.HostMinute]]:
        while self.pending and self.pending[0][0] <= minute:
            _, uid = self.pending.pop(0)
            self.users.append(User(uid, minute))
        by_id = {u.user_id: u for u in self.users}
        p_login = login_probability(moment)
        for user in self.users:
            self._move(user, minute, p_login)
        self._advance_battles(minute, by_id)
        # who is where, per server, in one pass (user ids ascending within each list)
        lists = [{state: [] for state in (*STATES, "total")} for _ in range(self.config.servers)]
        for user in self.users:
            if user.state != OFFLINE:
                lists[user.server][user.state].append(user.user_id)
                lists[user.server]["total"].append(user.user_id)
        snapshots = self._snapshots(moment, lists)
        return snapshots, self._hosts(moment, lists) if self.config.host_minutes else []

    # ------------------------------------------------------------------ records

    def _snapshots(self, moment: dt.datetime, lists: list[dict[str, list[int]]]) -> list[pb.MinuteSnapshot]:
        snapshots = []
        for server in range(self.config.servers):
            states = lists[server]
            battles = [b for b in self.battles if b.server == server]
            lobby = sum(1 for b in battles if b.in_progress_since is None)
            snapshot = pb.MinuteSnapshot(
                server_id=server_id(server),
                clients=pb.ClientStates(**states),
                battles=pb.BattleCounts(total=len(battles), lobby=lobby, in_progress=len(battles) - lobby),
                battle_ids=[b.battle_id for b in battles],
            )
            snapshot.minute.FromDatetime(moment)
            snapshots.append(snapshot)
        return snapshots

    def _hosts(self, moment: dt.datetime, lists: list[dict[str, list[int]]]) -> list[pb.HostMinute]:
        rng = self.rng
        records = []
        for server in range(self.config.servers):
            online, players = len(lists[server]["total"]), len(lists[server][PLAYER])
            load = players / max(1, self.config.users / self.config.servers)
            cpu = min(100.0, 5 + 60 * load + rng.uniform(0, 5))
            cores = [min(100.0, max(0.0, cpu + rng.uniform(-5, 5))) for _ in range(4)]
            tick_ms = [rng.lognormvariate(math.log(11.0 * (1 + load)), 0.08) for _ in range(60)]  # 60 Hz until busy
            pings = [rng.lognormvariate(math.log(45), 0.35) for _ in range(max(1, min(players, 60)))]
            latency = [rng.lognormvariate(math.log(20), 0.3) for _ in range(60)]
            memory_total = 16 << 30
            used = int(memory_total * min(0.95, 0.2 + 0.5 * load + rng.uniform(0, 0.02)))
            record = pb.HostMinute(
                host_id=server_id(server),
                samples=60,
                cpu_percent=cpu,
                cpu_percent_max=min(100.0, cpu + rng.uniform(0, 10)),
                cpu_percent_per_core=cores,
                load_average_1m=cpu / 25,
                load_average_5m=cpu / 27,
                load_average_15m=cpu / 30,
                memory_total_bytes=memory_total,
                memory_used_bytes=used,
                memory_free_bytes=memory_total - used,
                memory_percent=100 * used / memory_total,
                memory_percent_max=min(100.0, 100 * used / memory_total + rng.uniform(0, 1)),
                disk_read_bytes_per_s=rng.uniform(1e3, 1e5),
                disk_write_bytes_per_s=rng.uniform(1e4, 1e6),
                disk_read_ops_per_s=rng.uniform(0, 50),
                disk_write_ops_per_s=rng.uniform(1, 200),
                net_recv_bytes_per_s=2000.0 * online + rng.uniform(0, 1000),
                net_sent_bytes_per_s=5000.0 * online + rng.uniform(0, 1000),
                net_recv_packets_per_s=30.0 * online,
                net_sent_packets_per_s=60.0 * online,
                server=pb.ServerPerformance(
                    tick_duration_ms=log_histogram(tick_ms),
                    player_ping_ms=log_histogram(pings),
                    packet_latency_ms=log_histogram(latency),
                    tick_rate=min(60.0, 1000 / (sum(tick_ms) / len(tick_ms))),
                    connections=online,
                    players=players,
                    entities=100 + 10 * players,
                    packet_loss_percent=min(100.0, rng.expovariate(2.0)),
                ),
            )
            record.minute.FromDatetime(moment)
            records.append(record)
            host = record.host_id
            self.distributions[(host, "tick_duration_ms")] = tick_ms
            self.distributions[(host, "player_ping_ms")] = pings
            self.distributions[(host, "packet_latency_ms")] = latency
        return records


def server_id(server: int) -> str:
    return f"game-{server + 1:02d}"
