"""A non-editable install works without the checkout: the wheel carries the package, its data (migrations,
templates, the proto, the Prometheus config and alert rules) and the dbt project; the CLIs run and the DAGs parse
against the installed package. A plain install of the wheel, in a fresh venv, is the sender side only and sends
to a real receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIS = ("collectors.receiver.cli", "collectors.warehouse.cli", "collectors.senders.host.cli",
        "collectors.senders.loader.cli", "collectors.dev.simulator.cli", "collectors.orchestration.cli")  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = (root / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a directory of its own (dependencies: this venv's)."""
    root = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        assert "Provides-Extra: all" in archive.read(metadata).decode()  # `pip install '.[all]'` names it
    for expected in (
        "collectors/dbt_project/dbt_project.yml",
        "collectors/dbt_project/models/marts/fct_telemetry_day.sql",
        "collectors/warehouse/migrations/versions/0001_raw_and_quality.py",
        "collectors/warehouse/migrations/script.py.mako",
        "collectors/orchestration/templates/report.html",
        "collectors/proto/telemetry/v1/ingest.proto",
        "collectors/monitoring/prometheus.yml",
        "collectors/monitoring/alerts.yml",
    ):
        assert expected in names, expected
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python with the installed package first on the path and this venv's packages for the dependencies,
    from a directory outside the checkout (so nothing of the checkout can be imported)."""
    deps = sysconfig.get_paths()["purelib"]
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={"PYTHONPATH": f"{site}:{deps}", "PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(cwd / "airflow")},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_installed_package_runs_without_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = _run(installed, tmp_path, "-c", "import collectors, collectors.config as c; print(collectors.__file__); "
                 "print(c.CHECKOUT); print(c.Settings().dbt_project_dir)")  # fmt: skip
    assert where.returncode == 0, where.stderr
    package, checkout, project = where.stdout.split()
    assert package.startswith(str(installed)) and checkout == "None"
    assert (Path(project) / "dbt_project.yml").is_file() and project.startswith(str(installed))
    for module in CLIS:
        done = _run(installed, tmp_path, "-m", module, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, (module, done.stderr)


def test_the_dags_parse_with_the_installed_package(installed: Path, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    shutil.copytree(REPO_ROOT / "dags", dags)
    program = (
        "import importlib.util, pathlib, sys\n"
        "from airflow.sdk import DAG\n"
        "found = []\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).glob('*.py')):\n"
        "    spec = importlib.util.spec_from_file_location(path.stem, path)\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    found += [v.dag_id for v in vars(module).values() if isinstance(v, DAG)]\n"
        "import collectors\n"
        "print(collectors.__file__)\n"
        "print(' '.join(sorted(found)))\n"
    )
    done = _run(installed, tmp_path, "-c", program, str(dags))
    assert done.returncode == 0, done.stderr
    package, ids = done.stdout.splitlines()
    assert package.startswith(str(installed))
    assert set(ids.split()) >= {"telemetry_hourly", "telemetry_daily", "telemetry_weekly", "telemetry_partitions"}


WAREHOUSE_PACKAGES = {"apache-airflow", "dbt-core", "great-expectations", "psycopg", "psycopg-binary", "fastapi"}
SEND = """
import sys, time
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import IngestClient
minute = pb.HostMinute(host_id="sender-venv", samples=60, cpu_percent=3.0, cpu_percent_max=4.0)
minute.minute.seconds = (int(time.time()) // 60 - 2) * 60
with IngestClient(sys.argv[1], sys.argv[2]) as client:
    print(client.push_host_minutes([minute]).accepted)
"""


def test_a_plain_install_is_the_sender_side_and_sends_to_a_receiver(wheel: Path, receiver, tmp_path: Path) -> None:
    from tests.support.receivers import TOKEN

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    constraints = REPO_ROOT / ".ci" / "constraints.txt"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", constraints, wheel],
        check=True,
        capture_output=True,
        timeout=600,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "freeze"], check=True, capture_output=True, text=True
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "grpcio" in names and not names & WAREHOUSE_PACKAGES, sorted(names & WAREHOUSE_PACKAGES)
    sent = subprocess.run(
        [python, "-c", SEND, f"127.0.0.1:{receiver.port}", TOKEN],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0 and sent.stdout.strip() == "1", sent.stderr
    for cli in ("telemetry-host-collector", "telemetry-load-events"):
        helped = subprocess.run([venv / "bin" / cli, "--help"], capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0 and "usage:" in helped.stdout, (cli, helped.stderr)
    lines = tmp_path / "events.jsonl"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    lines.write_text(
        json.dumps({"schema_version": "telemetry_event_v1", "channel": "app", "event": "open", "timestamp": at,
                    "user_id": "u1", "event_id": "from-the-sender-venv"}) + "\n"
    )  # fmt: skip
    load = [venv / "bin" / "telemetry-load-events", str(lines), "--no-progress"]
    through = subprocess.run(
        [*load, "--target", f"127.0.0.1:{receiver.port}"],
        env={"PATH": "/usr/bin:/bin", "TELEMETRY_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert through.returncode == 0 and "landed 1" in through.stderr, through.stderr
    direct = subprocess.run([*load, "--database-url", "postgresql://x/y"], capture_output=True, text=True, timeout=60)
    assert direct.returncode == 2 and "telemetry-warehouse[receiver]" in direct.stderr, direct.stderr
