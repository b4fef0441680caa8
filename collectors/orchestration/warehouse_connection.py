"""Where the DAGs and the report page find the warehouse: the Airflow connection ``telemetry_warehouse`` when it
is defined, else ``TELEMETRY_DATABASE_URL``.

Tasks read connections through the Task SDK and the api-server through its models, so each caller passes its
own lookup; the rule and the connection's name live here. Light on purpose: DAG files import it when parsed.
"""

from __future__ import annotations

from collections.abc import Callable

WAREHOUSE_CONN_ID = "telemetry_warehouse"


def warehouse_url(connection_uri: Callable[[str], str | None]) -> str:
    """``connection_uri(conn_id)`` gives the connection's URI, or None when it is not defined."""
    uri = connection_uri(WAREHOUSE_CONN_ID)
    if uri is None:
        from collectors.config import get_settings

        return get_settings().database_url
    # Airflow writes postgres:// (its conn type); libpq and psycopg want postgresql://
    return "postgresql://" + uri.split("://", 1)[1]
