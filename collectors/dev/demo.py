"""``make demo``: land a simulated week through the real receiver, build it through Airflow, print a summary.

Steps: find PostgreSQL (``TELEMETRY_DATABASE_URL``, else the local server, else
an embedded one), migrate and create partitions, start the receiver and a host
collector as processes, play a seeded population over the last complete ISO week
through the receiver, start a local Airflow (api-server, scheduler,
dag-processor, triggerer; metadata in its own database on the same server), run
``telemetry_hourly`` (one range run), ``telemetry_daily`` (a backfill of the
seven days) and ``telemetry_weekly`` (a backfill of the week: weekly marts,
Great Expectations, cleanup), generate the dbt docs, and print what landed and
what the marts say next to the simulator's ground truth. Everything it started
stops on exit or Ctrl-C (``--serve`` keeps Airflow and the data-quality page up
until Ctrl-C). Running it twice gives the same marts: the week is fixed by the
day the demo runs, and re-sent records are duplicates.
"""

from __future__ import annotations

import argparse
import contextlib
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
from psycopg import sql

from collectors.config import STATE_DIR, Settings
from collectors.dev import local_postgres
from collectors.dev.ports import free_port
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.maintenance import prepare_database

STATE = STATE_DIR / "demo"
DEMO_DATABASE = "telemetry_demo"
AIRFLOW_DATABASE = "telemetry_demo_airflow"
# The comment the demo leaves on the metadata database it creates: the only sign that a database of that name on
# a shared server is the demo's to drop.
AIRFLOW_DATABASE_MARK = "created by make demo (collectors.dev.demo) for its Airflow metadata; every run recreates it"


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.perf_counter()


def done(started: float) -> None:
    print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)


def airflow_metadata_database(server_url: str, name: str = AIRFLOW_DATABASE) -> str:
    """A new, empty Airflow metadata database ``name`` on the server of ``server_url``; its URL.

    An earlier demo's database (it carries ``AIRFLOW_DATABASE_MARK``) is dropped and created again. A database of
    that name without the mark belongs to someone else: it is left alone and the demo stops, saying what to do.
    """
    with psycopg.connect(server_url, autocommit=True) as conn:
        found = conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (name,)
        ).fetchone()
        if found is not None and found[0] != AIRFLOW_DATABASE_MARK:
            server = local_postgres.with_database(server_url, "postgres")
            raise SystemExit(
                f"make demo: database {name} already exists on {server} and make demo did not create it (its comment "
                f"is not {AIRFLOW_DATABASE_MARK!r}), so the demo will not drop it for its Airflow metadata. If it is a "
                f"leftover of an older demo, drop it (psql {server} -c 'drop database {name}'); otherwise run the "
                "demo against another server (unset TELEMETRY_DATABASE_URL for the local or an embedded one)."
            )
        if found is not None:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(AIRFLOW_DATABASE_MARK))
        )
    return local_postgres.with_database(server_url, name)


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


def summary(url: str, truth_dir: Path, start: dt.datetime, end: dt.datetime, since: dt.datetime) -> None:
    """Print what landed and what the marts say; validation and cleanup figures of this demo run (``since``)."""
    with psycopg.connect(url) as conn:
        print("\nRows landed in raw:")
        for table in RAW_TABLES:
            n = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("raw", table))).fetchone()[0]
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

        steps = conn.execute(
            "select step, event, users, conversion_from_start from marts.fct_funnel_weekly"
            " where funnel = 'onboarding' and week_start = %s order by step",
            (start.date(),),
        ).fetchall()
        print(f"\nFunnel 'onboarding', entries in the week of {start:%Y-%m-%d} (marts.fct_funnel_weekly):")
        for index, event, users, conversion in steps:
            print(f"    {index}. {event:<22} {users:>5} users  {float(conversion):.1%} of step 1")

        checks = conn.execute(
            "select count(*), count(*) filter (where not success) from quality.validation_runs"
            " where window_start = %s and started_at >= %s",
            (start, since),
        ).fetchone()
        detached = conn.execute(
            "select count(*) from quality.cleanup_log where action = 'detached' and logged_at >= %s", (since,)
        ).fetchone()[0]
        verdict = "PASSED" if checks[0] and not checks[1] else "FAILED" if checks[1] else "not run"
        print(
            f"\nData quality (quality.validation_runs): {verdict}, {checks[0] - checks[1]} of {checks[0]} "
            f"suites passed; raw partitions detached by the cleanup: {detached} (dropped after the grace period; "
            "telemetry-db partitions detached lists them)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200, help="simulated accounts [200]")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed [7]")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep Airflow running at the end (UI and data-quality page) until Ctrl-C",
    )
    args = parser.parse_args(argv)

    from collectors.dev.local_airflow import LocalAirflow, reset_home
    from collectors.dev.week_runs import last_complete_week, run_week

    STATE.mkdir(parents=True, exist_ok=True)
    demo_started = dt.datetime.now(dt.UTC)
    start = last_complete_week()
    end = start + dt.timedelta(days=7)
    with ExitStack() as stack:
        t = step("Finding PostgreSQL")
        configured = os.environ.get("TELEMETRY_DATABASE_URL")
        server = local_postgres.find_server(STATE_DIR, configured_url=configured)
        stack.callback(lambda: server.handle)  # keeps an embedded server alive until the end
        url = configured or local_postgres.create_database(server.url, DEMO_DATABASE)
        print(f"    {server.origin} server; warehouse database {local_postgres.database_name(url)}")
        done(t)

        t = step("Migrating and creating partitions")
        back_days = (dt.datetime.now(dt.UTC) - start).days + 2
        # the week is landed late: keep message samples long enough for the receiver to accept it
        demo_env = {
            "TELEMETRY_RETENTION_MESSAGE_SAMPLES": str(back_days),
            "TELEMETRY_RELIABILITY_LAG_WINDOWS": "0",  # the week is past its lag but for its last windows
        }
        os.environ.update(demo_env)
        settings = Settings(database_url=url)
        created = prepare_database(settings, back_days=back_days)
        print(f"    partitions created: {sum(created.values())}")
        done(t)

        t = step("Starting the receiver and a host collector")
        token = secrets.token_urlsafe(24)
        port = free_port()
        target = f"127.0.0.1:{port}"
        env = {
            **os.environ,
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
            ["-m", "collectors.senders.host", "--target", target, "--spool-dir", str(STATE / "spool")],
            env,
        )
        print(f"    receiver on {target} (log {STATE / 'receiver.log'})")
        done(t)

        t = step(f"Simulating the week {start:%Y-%m-%d} .. {end:%Y-%m-%d} through the receiver")
        truth_dir = STATE / "truth"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "collectors.dev.simulator",
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

        t = step("Starting Airflow (api-server, scheduler, dag-processor, triggerer)")
        home = STATE / "airflow"
        reset_home(home)
        airflow = LocalAirflow(
            home,
            airflow_metadata_database(server.url),
            url,
            extra_env={
                **demo_env,
                # nothing is scheduled on its own while the demo runs: only its runs and backfills
                "TELEMETRY_SCHEDULE_START": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat(),
            },
        )
        airflow.migrate()
        stack.enter_context(airflow.services())
        print(f"    Airflow UI {airflow.api_url} (logs {home / 'logs'})")
        done(t)

        t = step("Running the DAGs over the week")
        runs = run_week(airflow, start, progress=lambda line: print(f"    {line}", flush=True))
        done(t)

        t = step("Generating the dbt docs")
        from collectors.orchestration.dbt_runner import invoke

        docs = invoke(["docs", "generate", "--static"], database_url=url, target_path=STATE / "dbt-docs").target_path
        done(t)

        summary(url, truth_dir, start, end, since=demo_started)
        gx_docs = Settings().gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
        print(
            "\nWhere to look:\n"
            f"    marts:              psql {url} -c 'select * from marts.fct_telemetry_day'\n"
            f"    dbt docs:           {docs / 'static_index.html'} (one file, open it in a browser)\n"
            f"    Data Docs (GX):     {gx_docs}\n"
            "    data-quality page:  make demo ARGS=--serve keeps Airflow up: <Airflow UI>/telemetry-quality/\n"
            f"    ground truth:       {truth_dir}\n"
            f"    logs:               {STATE}\n"
        )
        if not runs.succeeded:
            print(f"Some DAG runs failed: {runs}; see {home / 'logs'}", file=sys.stderr)
            return 1
        if args.serve:
            print(f"Airflow is up: {airflow.api_url} (Browse > Data quality). Ctrl-C stops everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped", file=sys.stderr)
        sys.exit(130)
