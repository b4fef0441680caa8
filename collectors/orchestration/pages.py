"""What the data-quality report (:mod:`collectors.orchestration.report`) and the dashboards
(:mod:`collectors.orchestration.dashboards`) serve alike: the 503 problem, the read-only warehouse session,
the templates' environment and the way a refused browser is sent to the login page.

No Airflow, dbt or GX import here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parent / "templates"
CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 15_000


class PageUnavailable(Exception):
    """The page cannot be made; ``str()`` says what to do. Served as 503."""

    def __init__(self, title: str, advice: str, detail: str = "") -> None:
        super().__init__(f"{title}: {advice}")
        self.title = title
        self.advice = advice
        self.detail = detail


def template_environment() -> Environment:
    """A new environment per app: the report adds filters of its own, which the dashboards do not share."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none), at most ``limit`` characters."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def settings_problem(detail: str) -> PageUnavailable:
    return PageUnavailable(
        "The TELEMETRY_* settings of the api-server are invalid",
        "Fix them (see collectors/config.py) and restart the api-server.",
        detail,
    )


def connect(
    database_url: str, *, application_name: str, title: str, detail: Callable[[BaseException], str] = first_line
) -> psycopg.Connection:
    """A read-only, UTC session with a statement timeout; ``PageUnavailable(title, ...)`` when there is none."""
    try:
        return psycopg.connect(
            database_url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options=f"-c timezone=UTC -c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name=application_name,
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise PageUnavailable(
            title,
            "Check that PostgreSQL is up and that TELEMETRY_DATABASE_URL (or the Airflow connection "
            "telemetry_warehouse) of the Airflow api-server names the warehouse, then reload this page.",
            detail(error),
        ) from error


def redirect_to_login(app: FastAPI, login_url: Callable[[str], str]) -> None:
    """A browser's GET of a page that a guard refused (401/403) goes to ``login_url(<this page>)``; the rest
    keep their error, as JSON."""

    @app.exception_handler(HTTPException)
    async def to_login(request: Request, error: HTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
        if error.status_code in (401, 403) and wants_html:
            return RedirectResponse(login_url(str(request.url)), status_code=307)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
