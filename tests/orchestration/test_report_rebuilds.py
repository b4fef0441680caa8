"""The report page's rebuilds: the windows the reconcile rebuilt and its plan as of now, from a real warehouse's
ledgers (the FastAPI app, below Airflow)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

from collectors.orchestration.cadences import parse_instant
from collectors.orchestration.report import create_app
from tests.support.pages import TestClient

NOW = parse_instant("2026-12-20T12:30:00Z")


def test_the_page_lists_the_windows_rebuilt_and_the_ones_due_and_pending(
    warehouse_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    day = (parse_instant("2026-12-19T00:00:00Z"), parse_instant("2026-12-20T00:00:00Z"))
    for part in ("marts", "reliability"):
        db.execute(
            "insert into quality.dbt_builds (cadence, part, window_start, window_end, dag_id, run_id, nodes,"
            " elapsed_seconds, started_at, finished_at) values ('daily', %s, %s, %s, 'telemetry_reconcile',"
            " 'scheduled__x', 1, 1, %s, %s)",
            (part, *day, day[1], day[1] + dt.timedelta(minutes=1)),
        )
    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    app = create_app(database_url=lambda: warehouse_url, docs_root=lambda: site, clock=lambda: NOW)
    with TestClient(app) as http:
        page = http.get("/")
        api = http.get("/api/runs").json()["rebuilds"]
    assert page.status_code == 200
    assert page.text.count('<tr class="rebuilt">') == 2 and "telemetry_reconcile" in page.text
    # nothing else was ever built: the last hour and the week before wait for their lag, the rest is due
    assert [(p["cadence"], p["window_start"]) for p in api["pending"]] == [
        ("hourly", "2026-12-20T11:00:00+00:00"),
        ("weekly", "2026-12-07T00:00:00+00:00"),
    ]
    assert {p["reason"] for p in api["due"]} == {"never built"}
    assert 'class="rebuild-pending" data-cadence="hourly" data-window-start="2026-12-20T11:00:00+00:00"' in page.text
    assert len(api["due"]) + len(api["pending"]) == page.text.count('<tr class="rebuild-')
    assert [r["dag_id"] for r in api["rebuilt"]] == ["telemetry_reconcile"] * 2


def test_an_empty_warehouse_says_what_rebuilds(warehouse_url: str, tmp_path: Path) -> None:
    app = create_app(database_url=lambda: warehouse_url, docs_root=lambda: tmp_path, clock=lambda: NOW)
    with TestClient(app) as http:
        page = http.get("/")
    assert 'id="no-rebuilt"' in page.text and "telemetry-ops rebuild what is late" in page.text
