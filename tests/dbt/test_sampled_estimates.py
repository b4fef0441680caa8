"""Sampled product events against the simulator's ground truth: a population's events land once whole and once
through the loader's sampling (10 % of users, the deployment's Sampling from TELEMETRY_SAMPLING_RATES), dbt
builds the product marts of both, and

* the whole landing's marts equal the truth (every estimate is the count itself, every row reliable);
* in the sampled one, every (day, channel, event) with at least 30 sampled users has estimated_events (and
  estimated_users) within 3 standard errors of the truth, the standard error estimated from the sampled data
  (Horvitz-Thompson, user-clustered: Var = sum over sampled users of (1 - r) / r^2 * e_u^2, e_u the user's
  events; 1 for users), and estimate_reliable says whether it had 30 sampled users;
* the funnel conversions of the sampled users are within sampling error of the truth's,
  |p_hat - p| < 3 sqrt(p (1 - p) / n) with n the sampled entrants, and estimated_users per step within 3
  standard errors of the truth's users.

The truth is the simulator's: the events its product part generated (tallied here per cell) and
GroundTruth.funnel_users. One app event is sampled at 50 % beside the 10 % of everything else, so that a cell's
rate, not a global one, is what the marts weigh by. The hash, the salt and the seed are fixed, so the draws,
and with them the margins, are the same on every run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.product import Product, account_minutes
from collectors.dev.simulator.truth import GroundTruth
from collectors.orchestration import dbt_runner as dbt
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import Sampling
from collectors.senders.loader.cli import main as load_events

pytestmark = pytest.mark.slow

FIRST_DAY = dt.datetime.combine(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4), dt.time(), dt.UTC)
DAYS = 2
END = FIRST_DAY + dt.timedelta(days=DAYS)
CONFIG = SimulationConfig(
    start=FIRST_DAY,
    end=END,
    seed=23,
    users=4000,  # about 2,000 active a day: several cells of 30 sampled users and more at 10 %
    new_accounts_per_day=500,  # the onboarding funnel's entrants: about 50 sampled a day
    host_minutes=False,
)
RATES = {"*": 0.1, "app/app_open": 0.5}
SALT = "sampled-estimates-acceptance"
MIN_USERS = 30
MODELS = "+fct_event_counts_daily +fct_funnel_daily +fct_feature_adoption_weekly +fct_retention_weekly_average"


@dataclass
class Cell:
    events: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


@dataclass
class Population:
    events: list[pb.ProductEvent]
    truth: GroundTruth
    cells: dict[tuple[str, str, str], Cell]


def simulate() -> Population:
    """The simulator's product part, day by day: its events and its funnel truth."""
    product = Product(CONFIG, account_minutes(CONFIG))
    truth = GroundTruth(CONFIG)
    events: list[pb.ProductEvent] = []
    for offset in range(DAYS):
        day = product.day(FIRST_DAY + dt.timedelta(days=offset))
        events += day.events
        for attempt in day.attempts:
            truth.attempt(attempt, CONFIG.end)
    cells: dict[tuple[str, str, str], Cell] = defaultdict(Cell)
    for event in events:
        at = event.timestamp.ToDatetime(dt.UTC)
        assert FIRST_DAY <= at < END
        cell = cells[(at.date().isoformat(), event.channel, event.event)]
        cell.events.add(event.event_id)
        cell.users.add(event.user_id)
    return Population(events, truth, cells)


def jsonl(events: list[pb.ProductEvent], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            line = {
                "schema_version": event.schema_version,
                "event_id": event.event_id,
                "channel": event.channel,
                "event": event.event,
                "timestamp": event.timestamp.ToDatetime(dt.UTC).isoformat(),
                "user_id": event.user_id,
            }
            if event.session_id:
                line["session_id"] = event.session_id
            if event.payload_json:
                line["payload"] = json.loads(event.payload_json)
            handle.write(json.dumps(line) + "\n")
    return path


@dataclass
class Landing:
    url: str

    def rows(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


@dataclass
class Built:
    population: Population
    whole: Landing
    sampled: Landing


@pytest.fixture(scope="module")
def built(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("sampled_estimates")
    population = simulate()
    lines = jsonl(population.events, tmp / "events.jsonl")
    names = [f"telemetry_sampled_{kind}_{os.getpid()}_{uuid.uuid4().hex[:8]}" for kind in ("whole", "sampled")]
    urls = [
        local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
        for name in names
    ]
    try:
        for url, rates in zip(urls, (None, RATES), strict=True):
            with pytest.MonkeyPatch.context() as env:
                env.delenv("TELEMETRY_SAMPLING_RATES", raising=False)
                if rates is not None:
                    env.setenv("TELEMETRY_SAMPLING_RATES", json.dumps(rates))
                    env.setenv("TELEMETRY_SAMPLING_SALT", SALT)
                assert load_events([str(lines), "--database-url", url, "--no-progress", "-q", "--workers", "0"]) == 0
            # data tests included: the estimate tests of every product mart run on both landings
            target = tmp / ("dbt_whole" if rates is None else "dbt_sampled")
            dbt.build(MODELS, FIRST_DAY, END, database_url=url, full_refresh=True, target_path=target)
        yield Built(population, Landing(urls[0]), Landing(urls[1]))
    finally:
        for name in names:
            local_postgres.drop_database(pg_server.url, name)


def event_counts(landing: Landing) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    rows = landing.rows(
        "select day::text, channel, event, events, users, estimated_events, estimated_users, min_sample_rate,"
        " estimate_reliable from marts.fct_event_counts_daily"
    )
    return {(day, channel, event): tuple(rest) for day, channel, event, *rest in rows}


def test_the_whole_landing_equals_the_truth_and_its_estimates_are_the_counts(built: Built) -> None:
    cells = built.population.cells
    got = event_counts(built.whole)
    assert set(got) == set(cells)
    for key, cell in cells.items():
        n_events, n_users = len(cell.events), len(cell.users)
        assert got[key] == (n_events, n_users, n_events, n_users, 1.0, True), key


def test_the_loader_kept_the_users_the_senders_sampling_keeps(built: Built) -> None:
    sampling = Sampling(rates=RATES, salt=SALT)
    expected = sorted(
        (e.event_id, sampling.rate(e.channel, e.event))
        for e in built.population.events
        if sampling.position(e.user_id) < sampling.rate(e.channel, e.event)
    )
    stored = sorted(built.sampled.rows("select event_id, sample_rate from raw.product_events"))
    assert stored == expected
    assert 0.08 < len(stored) / len(built.population.events) < 0.2


def test_estimated_events_are_within_3_standard_errors_of_the_truth(built: Built) -> None:
    """Every (day, channel, event) with at least 30 sampled users; the variance from the sampled data."""
    per_user = built.sampled.rows(
        """
        select ("timestamp" at time zone 'UTC')::date::text, channel, event, user_id, count(*), max(sample_rate)
        from raw.product_events group by 1, 2, 3, 4
        """
    )
    variance: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for day, channel, event, _, events, rate in per_user:
        terms = variance[(day, channel, event)]
        terms[0] += (1 - rate) / rate**2 * events**2  # user-clustered: the user's events come and go together
        terms[1] += (1 - rate) / rate**2
    got = event_counts(built.sampled)
    checked = []
    for key, (events, users, estimated_events, estimated_users, min_rate, reliable) in got.items():
        assert reliable == (users >= MIN_USERS), key
        assert min_rate in (0.1, 0.5), key
        if users < MIN_USERS:
            continue
        truth = built.population.cells[key]
        events_se, users_se = (math.sqrt(v) for v in variance[key])
        assert abs(float(estimated_events) - len(truth.events)) < 3 * events_se, (key, estimated_events, truth)
        assert abs(float(estimated_users) - len(truth.users)) < 3 * users_se, (key, estimated_users, truth)
        assert estimated_events == sum(Decimal(1) / Decimal(str(min_rate)) for _ in range(events)), key
        checked.append(key)
    assert len(checked) >= 10, checked
    assert {day for day, _, _ in checked} == {
        (FIRST_DAY + dt.timedelta(days=d)).date().isoformat() for d in range(DAYS)
    }
    assert any(event == "app_open" for _, _, event in checked)  # the cell sampled at 50 %
    assert any(not reliable for *_, reliable in got.values())  # and thin cells are marked


def funnel_rows(landing: Landing) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """The daily funnel rows of the simulator's funnels: the seeds' others use the funnel options, which the
    simulator's truth does not model."""
    rows = landing.rows(
        "select day::text, funnel, step, users, estimated_users, min_sample_rate, estimate_reliable"
        " from marts.fct_funnel_daily where funnel = any(%s)",
        ([f.name for f in CONFIG.funnels],),
    )
    return {(day, funnel, step): tuple(rest) for day, funnel, step, *rest in rows}


def truth_users(built: Built) -> dict[tuple[str, str, int], int]:
    return {key: len(users) for key, users in built.population.truth.funnel_users.items()}


def test_the_whole_landing_funnels_equal_the_truth(built: Built) -> None:
    truth = truth_users(built)
    got = funnel_rows(built.whole)
    assert {key: users for key, (users, *_) in got.items() if users} == truth
    assert all(estimated == users and reliable for users, estimated, _, reliable in got.values())


def test_sampled_funnel_conversions_are_within_sampling_error_of_the_truth(built: Built) -> None:
    truth = truth_users(built)
    got = funnel_rows(built.sampled)
    checked = 0
    for (day, funnel, step), (users, estimated, min_rate, reliable) in got.items():
        entrants = got[(day, funnel, 1)][0]
        assert reliable == (users >= MIN_USERS), (day, funnel, step)
        if users:
            assert min_rate == 0.1  # every funnel step's event is sampled at 10 %
            se = math.sqrt(users * (1 - min_rate) / min_rate**2)
            assert abs(float(estimated) - truth[(day, funnel, step)]) < 3 * se, (day, funnel, step, estimated)
        if step == 1 or entrants < MIN_USERS:
            continue
        p = truth.get((day, funnel, step), 0) / truth[(day, funnel, 1)]
        p_hat = users / entrants
        assert abs(p_hat - p) <= 3 * math.sqrt(p * (1 - p) / entrants), (day, funnel, step, p_hat, p, entrants)
        checked += 1
    assert checked == DAYS * 2 * 3, checked  # both funnels, both days, steps 2 to 4
