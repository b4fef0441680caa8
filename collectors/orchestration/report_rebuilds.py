"""The report's rebuilds: the windows the reconcile DAG and ``telemetry-ops`` built lately, and the plan as of now
(what they would build, and what waits for the lag after it), from the ledgers.

Each part reads on its own and says why when it cannot, as the monitors do. No Airflow, dbt or GX import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from collectors.config import Settings
from collectors.orchestration.cleanup import FEEDS
from collectors.orchestration.rebuild import REBUILDERS
from collectors.orchestration.reconcile import DEFAULT_LOOKBACK, Plan, plan
from collectors.orchestration.reconcile_ledgers import read_ledgers
from collectors.orchestration.report_monitors import _part

REBUILT_LIMIT = 30  # builds on the page, newest first

REBUILT_QUERY = """
select cadence, part, window_start, window_end, dag_id, run_id, finished_at, family
from quality.dbt_builds
where dag_id = any(%(rebuilders)s)
order by finished_at desc
limit %(limit)s
"""


@dataclass(frozen=True)
class Rebuilt:
    cadence: str
    part: str
    window_start: dt.datetime
    window_end: dt.datetime
    dag_id: str
    run_id: str | None
    finished_at: dt.datetime
    family: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "cadence": self.cadence,
            "part": self.part,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "finished_at": self.finished_at.isoformat(),
            "family": self.family,
        }


@dataclass(frozen=True)
class Rebuilds:
    rebuilt: list[Rebuilt] | None  # None: not readable (``rebuilt_note`` says why)
    rebuilt_note: str | None
    plan: Plan | None
    plan_note: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "rebuilt": None if self.rebuilt is None else [r.as_json() for r in self.rebuilt],
            "rebuilt_note": self.rebuilt_note,
            "due": None if self.plan is None else [p.as_dict() for p in self.plan.due],
            "pending": None if self.plan is None else [p.as_dict() for p in self.plan.pending],
            "plan_note": self.plan_note,
        }


def read_rebuilds(conn: psycopg.Connection, now: dt.datetime | None = None) -> Rebuilds:
    now = now or dt.datetime.now(dt.UTC)
    settings = Settings()
    rebuilt, rebuilt_note = _part(
        conn,
        "quality.dbt_builds",
        lambda: [
            Rebuilt(*row)
            for row in conn.execute(REBUILT_QUERY, {"rebuilders": list(REBUILDERS), "limit": REBUILT_LIMIT})
        ],
    )
    if rebuilt == []:
        rebuilt_note = "Nothing rebuilt yet: the telemetry_reconcile DAG and telemetry-ops rebuild what is late."

    def current() -> Plan:
        future = dt.timedelta(seconds=settings.max_future_seconds)
        arrivals, builds = read_ledgers(conn, now=now, lookback=DEFAULT_LOOKBACK, max_future=future)
        lag = settings.reliability_lag_windows
        return plan(arrivals, builds, feeds=FEEDS, now=now, lookback=DEFAULT_LOOKBACK, lag_windows=lag)

    planned, plan_note = _part(conn, "quality.ingest_batches and quality.dbt_builds", current)
    return Rebuilds(rebuilt, rebuilt_note, planned, plan_note)
