"""Airflow DAG ``telemetry_weekly``: weekly marts, data-quality gate, then the cleanup of raw partitions.

Builds every model tagged ``weekly`` for the run's UTC week (Monday to Monday), the weekly
reliability after a week's lag, then validates with Great Expectations the raw partitions older
than the retention and the marts built from them (results in ``quality.validation_runs`` and the
Data Docs), and only if that passed drops those partitions (logged in ``quality.cleanup_log``).
A failed validation drops nothing and fails the run, naming the failing expectations.
"""

from collectors.orchestration.airflow_tasks import cadence_dag

dag = cadence_dag("weekly", doc_md=__doc__)
