"""Airflow plugin: the data-quality report in the api-server, and a "Data quality" entry in the UI's Browse menu.

The report (``collectors.orchestration.report``) is mounted at ``/telemetry-quality/``; the menu entry shows it
inside the Airflow UI at ``/plugin/data-quality``. The dashboards (``collectors.orchestration.dashboards``) are
mounted at ``/telemetry-dashboards/``, shown at ``/plugin/dashboards`` by a "Dashboards" entry beside it. Both
need an Airflow login, like the rest of the UI: a browser without one is sent to the auth manager's login page
and back.

Airflow imports every ``plugins/*.py`` file by its bare name in every process that loads plugins
(scheduler, workers, dag-processor), so this module imports nothing but ``AirflowPlugin``: the
FastAPI app is built the first time the api-server (or ``airflow plugins``) asks for it.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/telemetry-quality"
DASHBOARDS_PREFIX = "/telemetry-dashboards"  # the analysts' dashboards (collectors.orchestration.dashboards)
# as collectors.orchestration.airflow_tasks (not imported here: it loads the task SDK)


def warehouse_url() -> str:
    """The DAGs' rule (:mod:`collectors.orchestration.warehouse_connection`), read in the api-server."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from collectors.orchestration.warehouse_connection import warehouse_url as rule

    def connection_uri(conn_id: str) -> str | None:
        try:
            return Connection.get_connection_from_secrets(conn_id).get_uri()
        except AirflowNotFoundException:
            return None
        except Exception as error:  # a secrets backend or metadata database hiccup: fall back, say so
            log.warning("reading the %s connection failed (%s); using TELEMETRY_DATABASE_URL", conn_id, error)
            return None

    return rule(connection_uri)


class SlashRedirect:
    """``/telemetry-quality`` -> ``/telemetry-quality/``: the mount answers only below its prefix, and the UI's
    catch-all route would show its 404 page for the bare prefix. Pure ASGI; passes everything else through."""

    def __init__(self, app: Any, prefix: str = URL_PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            root, path = scope.get("root_path", ""), scope.get("path", "")
            if path in (self.prefix, root + self.prefix):
                from starlette.responses import RedirectResponse

                query = scope.get("query_string", b"").decode("latin-1")
                location = root + self.prefix + "/" + (f"?{query}" if query else "")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


class TelemetryQualityPlugin(AirflowPlugin):
    name = "telemetry_quality"
    external_views = [  # noqa: RUF012 (the plugin manager reads plain lists)
        {
            "name": "Data quality",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL
            "url_route": "data-quality",  # shown in the UI at /plugin/data-quality (an iframe)
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Dashboards",
            "href": DASHBOARDS_PREFIX.lstrip("/") + "/",
            "url_route": "dashboards",  # shown in the UI at /plugin/dashboards
            "destination": "nav",
            "category": "browse",
        },
    ]
    fastapi_root_middlewares = [  # noqa: RUF012
        {"middleware": SlashRedirect, "args": [], "kwargs": {}, "name": "telemetry-quality trailing slash"},
        {
            "middleware": SlashRedirect,
            "args": [],
            "kwargs": {"prefix": DASHBOARDS_PREFIX},
            "name": "telemetry-dashboards trailing slash",
        },
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from airflow.api_fastapi.core_api.security import requires_authenticated
        from fastapi import Depends

        from collectors.orchestration import dashboards
        from collectors.orchestration.report import create_app

        app = create_app(
            database_url=warehouse_url,
            dependencies=[Depends(requires_authenticated())],
            login_url=_login_url,
        )
        boards = dashboards.create_app(
            database_url=warehouse_url,
            dependencies=[Depends(requires_authenticated())],
            login_url=_login_url,
        )
        return [
            {"app": app, "url_prefix": URL_PREFIX, "name": "Telemetry data quality report"},
            {"app": boards, "url_prefix": DASHBOARDS_PREFIX, "name": "Telemetry dashboards"},
        ]
