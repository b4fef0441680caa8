"""Find a PostgreSQL to work with: the configured one, the local one (started if it is down), or an embedded one.

Order: ``TELEMETRY_DATABASE_URL`` when it is set; else the server on 127.0.0.1:5432, starting an installed Debian
cluster that is down; else an embedded server from the ``pgserver`` wheel, kept under ``.state/pgdata`` and alive
as long as the returned handle.

:class:`ScratchCluster` is a throwaway cluster of one's own (``initdb`` into a directory, ``pg_ctl``), for what
must not touch a shared server: the tests (which run on one with ``fsync`` off, where dropping a database costs
0.1 s instead of 1.6 s) and the fault tests that crash it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from collectors.dev.ports import free_port

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class PostgresServer:
    """A reachable server; ``url`` points at its maintenance database ``postgres``."""

    url: str
    origin: str  # "configured", "local", "local-started" or "embedded"
    handle: Any = None  # the pgserver handle; the embedded server stops when it is released

    def database_url(self, dbname: str) -> str:
        return with_database(self.url, dbname)


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database name replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def is_reachable(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.OperationalError:
        return False


def _start_debian_clusters() -> bool:
    """Start every installed Debian cluster that is down; True when one was started."""
    if not shutil.which("pg_lsclusters") or not shutil.which("pg_ctlcluster"):
        return False
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    started = False
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] == "down":
            version, cluster = fields[0], fields[1]
            print(f"starting PostgreSQL cluster {version}/{cluster}", file=sys.stderr)
            result = subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                print(f"could not start {version}/{cluster}: {result.stderr.strip()}", file=sys.stderr)
            started = started or result.returncode == 0
    return started


def _embedded(state_dir: Path) -> PostgresServer:
    import pgserver  # imported late: only needed when no server runs

    data_dir = state_dir / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting embedded PostgreSQL in {data_dir}", file=sys.stderr)
    handle = pgserver.get_server(data_dir, cleanup_mode="stop")
    return PostgresServer(url=with_database(handle.get_uri(), "postgres"), origin="embedded", handle=handle)


def find_server(state_dir: Path = Path(".state"), *, configured_url: str | None = None) -> PostgresServer:
    """A reachable PostgreSQL server, following the order described in the module docstring."""
    configured_url = configured_url or os.environ.get("TELEMETRY_DATABASE_URL")
    if configured_url:
        if not is_reachable(configured_url):
            raise RuntimeError(
                f"TELEMETRY_DATABASE_URL={configured_url!r} is not reachable: start that server, "
                "fix the URL, or unset it to use the local or an embedded PostgreSQL"
            )
        return PostgresServer(url=configured_url, origin="configured")
    if is_reachable(LOCAL_SERVER_URL):
        return PostgresServer(url=LOCAL_SERVER_URL, origin="local")
    if _start_debian_clusters():
        for _ in range(50):
            if is_reachable(LOCAL_SERVER_URL):
                return PostgresServer(url=LOCAL_SERVER_URL, origin="local-started")
            time.sleep(0.2)
    return _embedded(state_dir)


def create_database(server_url: str, dbname: str, *, template: str | None = None, drop: bool = False) -> str:
    """Create ``dbname`` on the server (optionally from ``template``) and return its URL."""
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        if drop:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            statement = sql.SQL("create database {}").format(sql.Identifier(dbname))
            if template:
                statement += sql.SQL(" template {}").format(sql.Identifier(template))
            conn.execute(statement)
    return with_database(server_url, dbname)


def drop_database(server_url: str, dbname: str) -> None:
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (``TELEMETRY_PG_BIN``, else the newest Debian install)."""
    configured = os.environ.get("TELEMETRY_PG_BIN")
    if configured:
        return Path(configured)
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return installed[-1].parent if installed else None


class ScratchCluster:
    """A PostgreSQL cluster of its own in a temporary directory, on a free port of 127.0.0.1.

    ``durable=False`` turns fsync, synchronous commit and full-page writes off: nothing survives a crash of
    the machine, and everything (above all CREATE and DROP DATABASE, which checkpoint) is much faster. As root it
    runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    """

    def __init__(self, *, durable: bool = True, bin_dir: Path | None = None) -> None:
        found = bin_dir or postgres_bin()
        if found is None or not (found / "initdb").exists():
            raise FileNotFoundError("no PostgreSQL server programs found (install postgresql or set TELEMETRY_PG_BIN)")
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
        self.data, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir()
        self.port = free_port()
        self.durable = durable
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            if not shutil.which("runuser"):
                raise PermissionError("running as root without runuser: cannot start PostgreSQL as another user")
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.socket} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "log"), "-o", options, *args
        )

    def start(self) -> ScratchCluster:
        self.pg_ctl("start")
        return self

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)
