"""Airflow DAG ``telemetry_partitions``: migrate the warehouse and create raw partitions ahead, daily.

The receiver refuses (to ``raw.rejects``) records whose day has no partition, so this runs every
day at 00:30 UTC and creates ``TELEMETRY_PARTITIONS_AHEAD_DAYS`` days ahead. No catchup: only the
latest run matters.
"""

from collectors.orchestration.airflow_tasks import partitions_dag

dag = partitions_dag(doc_md=__doc__)
