"""Airflow DAG ``telemetry_hourly``: the hourly marts for each hour, then its reliability after the lag.

Builds every model tagged ``hourly`` (host metrics, reliability) for the run's data interval
``[data_interval_start, data_interval_end)``; reliability waits one hour more (the lag) so that
receivers seen after the hour count. Manual runs may pass ``window_start``/``window_end`` to rebuild
a range of hours in one dbt call, or ``full_refresh_family``.
"""

from collectors.orchestration.airflow_tasks import cadence_dag

dag = cadence_dag("hourly", doc_md=__doc__)
