"""Airflow DAG ``telemetry_daily``: the day log, minutes per user, events, sessions, funnels, host metrics.

Builds every model tagged ``daily`` for the run's UTC day ``[data_interval_start, data_interval_end)``;
the daily reliability marts follow one day later (the lag). Manual runs may pass
``window_start``/``window_end`` (midnights, UTC) to rebuild several days in one dbt call, or
``full_refresh_family``.
"""

from collectors.orchestration.airflow_tasks import cadence_dag

dag = cadence_dag("daily", doc_md=__doc__)
