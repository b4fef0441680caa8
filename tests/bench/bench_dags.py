"""DAG parse time: what the dag-processor pays for ``dags/`` every refresh, against a trivial DAG file.

Each figure is the median of several parses, each in a fresh interpreter that has already imported
``airflow.sdk`` (as the dag-processor has), so it is the DAG files' own cost: the factory in
``collectors.orchestration.airflow_tasks``, the settings, the timetables. Heavy imports (dbt, Great
Expectations) happen only inside the task bodies.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
PARSE = """
import sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(elapsed, len(bag.dags))
"""
TRIVIAL_DAG = """
import datetime as dt
from airflow.sdk import DAG, task

with DAG(dag_id="trivial", schedule="@daily", start_date=dt.datetime(2026, 1, 1), catchup=False):

    @task
    def hello() -> None:
        print("hello")

    hello()
"""


def parse_seconds(folder: Path, home: Path) -> tuple[float, int]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
    }
    times, count = [], 0
    for _ in range(ROUNDS):
        done = subprocess.run(
            [sys.executable, "-c", PARSE, str(folder)], env=env, capture_output=True, text=True, check=True
        )
        seconds, count = done.stdout.split()[-2:]
        times.append(float(seconds))
    return statistics.median(times), int(count)


def run(server_url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home, trivial = Path(tmp) / "home", Path(tmp) / "trivial"
        trivial.mkdir()
        (trivial / "trivial.py").write_text(TRIVIAL_DAG)
        ours, dags = parse_seconds(REPO_ROOT / "dags", home)
        baseline, _ = parse_seconds(trivial, home)
    print(f"   dags/: {dags} DAGs in {ours:.3f} s; one trivial DAG: {baseline:.3f} s (median of {ROUNDS})")
    return {"dags.parse_seconds": ours, "dags.parse_vs_trivial_dag": ours / baseline}
