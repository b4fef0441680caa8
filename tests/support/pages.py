"""What the tests of the report and of the dashboards do alike with their pages: Debian's headless chromium
(``make browser``) in a profile of its own, its network log, an Airflow metadata database for the plugin in a
real api-server, and an app whose guard refuses every request, to see where a browser is sent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException

from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2; httpx is what is pinned
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CHROMIUM = "chromium"


def chromium_binary() -> str:
    binary = shutil.which(CHROMIUM)
    if binary is None:
        pytest.fail("chromium is missing: run `make browser` (as root; `make test` does it)", pytrace=False)
    return binary


def run_chromium(*args: str, profile: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, with nothing of its own running in the background, in ``profile`` (removed
    after)."""
    binary = chromium_binary()
    try:
        return subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def read_net_log(net_log: Path) -> dict[str, Any]:
    """Chromium's network log (``--log-net-log``), also when chromium exited before closing it."""
    text = net_log.read_text(errors="replace").rstrip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a log chromium did not close: its events so far
        return json.loads(text.rstrip(",") + "]}")


def airflow_metadata(
    pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[str]:
    """For a module-scoped fixture: a migrated Airflow metadata database, dropped after."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name)
    LocalAirflow(tmp_path_factory.mktemp(prefix), url, url).migrate()
    yield url
    local_postgres.drop_database(pg_server.url, name)


def refusing_client(create_app: Callable[..., FastAPI]) -> TestClient:
    """The app of ``create_app`` behind a guard that refuses everyone (401), with a login page at
    ``/auth/login?next=<the page>``; redirects are not followed, so a test sees where they go."""

    def refuse() -> None:
        raise HTTPException(status_code=401, detail="Not authenticated")

    app = create_app(
        database_url=lambda: "postgresql://unused@127.0.0.1:1/x",
        dependencies=[Depends(refuse)],
        login_url=lambda next_url: "/auth/login?next=" + next_url,
    )
    return TestClient(app, follow_redirects=False)
