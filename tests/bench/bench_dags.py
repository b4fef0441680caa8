"""DAG parse time: what the dag-processor pays for ``dags/`` every refresh, against a trivial DAG file.

Each figure is the median of several parses, each in a process forked from an interpreter that has already
imported ``airflow.sdk`` and the DagBag (as the dag-processor forks its parsers), so it is the DAG files' own
cost: the task library ``collectors.orchestration.airflow_tasks``, the settings, the timetables. Heavy imports
(dbt, Great Expectations, psycopg) happen only inside the task bodies. ``tests/dags/test_dag_integrity.py``
holds the parse to a bound with the same probe.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
PARSE = """
import json, os, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag


def parse(folder):
    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=folder)
    elapsed = time.perf_counter() - started
    imported = sorted({name.split(".")[0] for name in set(sys.modules) - before})
    errors = {str(path): str(error) for path, error in bag.import_errors.items()}
    return {"seconds": elapsed, "dags": len(bag.dags), "imported": imported, "errors": errors}


rounds, folders = int(sys.argv[1]), sys.argv[2:]
for _ in range(rounds):
    for folder in folders:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                os.write(write, json.dumps({"folder": folder, **parse(folder)}).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            print(pipe.read(), flush=True)
        os.waitpid(pid, 0)
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


@dataclass(frozen=True)
class Parse:
    folder: Path
    seconds: float
    dags: int
    imported: frozenset[str]  # top-level packages the DAG files pulled in


def parses(folders: list[Path], home: Path, rounds: int = ROUNDS) -> list[Parse]:
    """Parse each folder ``rounds`` times, each time in a child forked from one interpreter that has imported
    ``airflow.sdk`` and the DagBag, as the dag-processor parses: nothing the DAG files import is loaded yet."""
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(rounds), *map(str, folders)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"folder"')]
    if done.returncode != 0 or len(found) != rounds * len(folders):
        raise RuntimeError(f"parsing {folders} failed:\n{done.stderr[-3000:]}")
    errors = {path: error for one in found for path, error in one["errors"].items()}
    if errors:
        raise RuntimeError(f"import errors: {errors}")
    return [Parse(Path(one["folder"]), one["seconds"], one["dags"], frozenset(one["imported"])) for one in found]


def median_seconds(found: list[Parse], folder: Path) -> float:
    return statistics.median(p.seconds for p in found if p.folder == folder)


def trivial_folder(tmp: Path) -> Path:
    folder = tmp / "trivial"
    folder.mkdir(exist_ok=True)
    (folder / "trivial.py").write_text(TRIVIAL_DAG)
    return folder


def run(server_url: str) -> dict[str, float]:
    ours = REPO_ROOT / "dags"
    with tempfile.TemporaryDirectory() as tmp:
        trivial = trivial_folder(Path(tmp))
        found = parses([ours, trivial], Path(tmp) / "home")
    seconds, baseline = median_seconds(found, ours), median_seconds(found, trivial)
    dags = next(p.dags for p in found if p.folder == ours)
    print(f"   dags/: {dags} DAGs in {seconds:.3f} s; one trivial DAG: {baseline:.3f} s (median of {ROUNDS})")
    return {"dags.parse_seconds": seconds, "dags.parse_vs_trivial_dag": seconds / baseline}
