"""``make demo``: land a simulated week through the real receiver, build the marts, print a summary.

Steps: find PostgreSQL (``TELEMETRY_DATABASE_URL``, else the local server, else
an embedded one), migrate and create partitions, start the receiver and a host
collector as processes, play a seeded population over the past week through the
receiver, build every dbt model for that week, print what landed and what the
marts say next to the simulator's ground truth. Everything it started stops on
exit or Ctrl-C; running it twice gives the same marts (the week is fixed by
the day the demo runs, and re-sent records are duplicates).

Today the dbt build is invoked directly; the Airflow DAGs (issue 6) will take
that step over.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from collectors.config import Settings
from collectors.warehouse import local_postgres
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.maintenance import prepare_database

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE = REPO_ROOT / ".state" / "demo"
DEMO_DATABASE = "telemetry_demo"


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.perf_counter()


def done(started: float) -> None:
    print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(stack: ExitStack, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(STATE / f"{name}.log", "w")  # noqa: SIM115 - closed by the exit stack
    stack.callback(log.close)
    process = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    stack.callback(stop)
    return process


def wait_for_receiver(target: str, process: subprocess.Popen) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the receiver exited; see {STATE / 'receiver.log'}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise SystemExit(f"the receiver did not become healthy; see {STATE / 'receiver.log'}")


def summary(url: str, truth_dir: Path, start: dt.datetime, end: dt.datetime) -> None:
    with psycopg.connect(url) as conn:
        print("\nRows landed in raw:")
        for table in RAW_TABLES:
            n = conn.execute(f"select count(*) from raw.{table}").fetchone()[0]
            print(f"    raw.{table:<20} {n:>10,}")
        rejects = conn.execute("select count(*) from raw.rejects").fetchone()[0]
        print(f"    raw.rejects              {rejects:>10,}")

        day = conn.execute(
            "select day, unique_users, unique_players, minutes_total, minutes_player, peak_total, battles,"
            " accounts_created from marts.fct_telemetry_day where day >= %s and day < %s order by day desc limit 1",
            (start.date(), end.date()),
        ).fetchone()
        if day:
            print(
                f"\nDay log {day[0]} (marts.fct_telemetry_day): {day[1]} unique users, {day[2]} players, "
                f"{day[3]:,} user-minutes ({day[4]:,} playing), peak {day[5]} online, {day[6]} battles, "
                f"{day[7]} accounts created"
            )
        worst = conn.execute(
            "select channel_id, round(avg(reliability)::numeric, 4), sum(missing), sum(total)"
            " from marts.fct_channel_reliability_daily where day >= %s and day < %s and total > 0"
            " group by channel_id order by 2 limit 3",
            (start.date(), end.date()),
        ).fetchall()
        expected: dict[str, list[float]] = {}
        truth_file = truth_dir / "channel_reliability.csv"
        if truth_file.exists():
            with truth_file.open() as handle:
                for row in csv.DictReader(handle):
                    expected.setdefault(row["channel_id"], []).append(float(row["reliability"]))
        print("\nChannels with the worst reliability (marts.fct_channel_reliability_daily, mean over days):")
        for channel, reliability, missing, total in worst:
            truth = expected.get(channel)
            truth_text = f" (simulator: {sum(truth) / len(truth):.4f})" if truth else ""
            print(f"    {channel:<16} {reliability}{truth_text}  missing {missing:,} of {total:,}")
        overall = conn.execute(
            "select round(avg(reliability)::numeric, 4) from marts.fct_reliability_daily where day >= %s and day < %s",
            (start.date(), end.date()),
        ).fetchone()[0]
        print(f"    overall R, mean over days: {overall}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--days", type=int, default=7, help="days of history to simulate [7]")
    parser.add_argument("--users", type=int, default=200, help="simulated accounts [200]")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed [7]")
    args = parser.parse_args(argv)

    STATE.mkdir(parents=True, exist_ok=True)
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=args.days)
    with ExitStack() as stack:
        t = step("Finding PostgreSQL")
        configured = os.environ.get("TELEMETRY_DATABASE_URL")
        server = local_postgres.find_server(REPO_ROOT / ".state", configured_url=configured)
        stack.callback(lambda: server.handle)  # keeps an embedded server alive until the end
        url = configured or local_postgres.create_database(server.url, DEMO_DATABASE)
        print(f"    {server.origin} server; warehouse database {local_postgres.database_name(url)}")
        done(t)

        t = step("Migrating and creating partitions")
        retention_env = {"TELEMETRY_RETENTION_MESSAGE_SAMPLES": str(args.days + 2)}
        os.environ.update(retention_env)
        settings = Settings(database_url=url)
        created = prepare_database(settings, back_days=args.days + 2)
        print(f"    partitions created: {sum(created.values())}")
        done(t)

        t = step("Starting the receiver and a host collector")
        token = secrets.token_urlsafe(24)
        port = free_port()
        target = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            **retention_env,
            "TELEMETRY_DATABASE_URL": url,
            "TELEMETRY_INGEST_TOKENS": token,
            "TELEMETRY_TOKEN": token,
            "TELEMETRY_METRICS_PORT": str(free_port()),
        }
        receiver = start_process(stack, "receiver", ["-m", "collectors.receiver.cli", "--listen", target], env)
        wait_for_receiver(target, receiver)
        start_process(
            stack,
            "host-collector",
            ["-m", "collectors.host", "--target", target, "--spool-dir", str(STATE / "spool")],
            env,
        )
        print(f"    receiver on {target} (log {STATE / 'receiver.log'})")
        done(t)

        t = step(f"Simulating {args.days} days ({start:%Y-%m-%d} .. {end:%Y-%m-%d}) through the receiver")
        truth_dir = STATE / "truth"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "collectors.simulator",
                "--start",
                start.isoformat(),
                "--end",
                end.isoformat(),
                "--seed",
                str(args.seed),
                "--users",
                str(args.users),
                "--target",
                target,
                "--truth-dir",
                str(truth_dir),
            ],
            env=env,
            check=True,
        )
        done(t)

        t = step("Building every dbt model for the week (dbt build, in-process)")
        sys.path.insert(0, str(REPO_ROOT / "plugins"))
        from telemetry_ops.dbt import build

        result = build("+tag:hourly +tag:daily +tag:weekly", start, end, database_url=url, target_path=STATE / "dbt")
        print(f"    {len(result.nodes)} nodes ok; run results in {result.run_results_path}")
        done(t)

        summary(url, truth_dir, start, end)
        print(
            "\nWhere to look:\n"
            f"    marts:        psql {url} -c 'select * from marts.fct_telemetry_day'\n"
            f"    ground truth: {truth_dir}\n"
            f"    logs:         {STATE}\n"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped", file=sys.stderr)
        sys.exit(130)
