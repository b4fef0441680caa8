"""Faults under load: the receiver killed with SIGKILL, PostgreSQL restarted (crash-like), the spool's disk full.

Several senders push concurrently, each with its own spool; the fault strikes mid-load; then everything
recovers and the spools drain. After each: every record sent (so every record acknowledged) is in the
warehouse exactly once, nothing else is, and the spool holds nothing but whole batches. Figures are printed
(and kept in .state/hardening-figures.json).

Faults already covered elsewhere, not repeated here: test_receiver_process.py (SIGKILL mid-load with one
sender and no spool, SIGTERM drain, spooling through a receiver and a database outage).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collectors.client import IngestClient, SpoolFullError
from collectors.client import spool as spool_module
from collectors.config import RetentionDays, Settings
from collectors.host.collector import HostCollector
from collectors.host.rollup import MinuteRollup
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import metrics
from collectors.receiver.server import Receiver
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions
from tests.collectors import records
from tests.collectors.conftest import REPO_ROOT, TOKEN, free_port, report_figures
from tests.collectors.loadgen import Sender, assert_exactly_once, check_exactly_once

pytestmark = pytest.mark.fault

SENDERS = 4


def start_senders(target: str, spool_root: Path, stop: threading.Event, **options: object) -> list[Sender]:
    senders = [Sender(f"s{i}", target, spool_root / f"s{i}", stop, **options) for i in range(SENDERS)]  # type: ignore[arg-type]
    for sender in senders:
        sender.start()
    return senders


def wait_for_acks(senders: list[Sender], records_acked: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(s.acked for s in senders) < records_acked:
        assert time.monotonic() < deadline, "the load did not get going"
        assert not any(s.error for s in senders), [s.error for s in senders]
        time.sleep(0.05)


def stop_and_drain(senders: list[Sender], stop: threading.Event) -> None:
    stop.set()
    for sender in senders:
        sender.join(60)
        assert not sender.is_alive() and sender.error is None, sender.error
    for sender in senders:
        sender.drain()


# --------------------------------------------------------------------------- receiver SIGKILL


def test_receiver_sigkill_under_load_then_restart(receiver_process, warehouse_url: str, tmp_path: Path) -> None:
    port = free_port()
    process, target = receiver_process(port=port)
    stop = threading.Event()
    started = time.perf_counter()
    senders = start_senders(target, tmp_path, stop, batch=300, attempts=2, timeout=5)
    wait_for_acks(senders, 20 * 300)
    process.send_signal(signal.SIGKILL)  # mid-load: batches in flight, some committed but not acknowledged
    process.wait(10)
    killed_at = sum(s.acked for s in senders)
    time.sleep(1.5)  # the senders spool meanwhile
    receiver_process(port=port)
    wait_for_acks(senders, killed_at + 20 * 300)
    stop_and_drain(senders, stop)
    tally = check_exactly_once(warehouse_url, senders)
    report_figures(
        "fault.receiver_sigkill", senders=SENDERS, seconds=round(time.perf_counter() - started, 1), **tally.figures()
    )
    assert_exactly_once(tally)
    assert tally.spooled_batches > 0  # the outage was felt


# --------------------------------------------------------------------------- PostgreSQL restart


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of its own (the shared one on 5432 is never restarted)."""

    BIN = Path(os.environ.get("TELEMETRY_PG_BIN", "/usr/lib/postgresql/15/bin"))

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
        self.data, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir()
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.BIN / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.socket} -c listen_addresses=127.0.0.1 -c max_connections=40"
        self.run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "log"), "-o", options, *args
        )

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PrivatePostgres.BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PrivatePostgres.BIN} (set TELEMETRY_PG_BIN)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    server = PrivatePostgres()
    try:
        server.pg_ctl("start")
        yield server
    finally:
        server.close()


def test_postgres_restart_under_load(private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    with psycopg.connect(private_postgres.url, autocommit=True) as admin:
        admin.execute("create database telemetry")
    url = private_postgres.url.rsplit("/", 1)[0] + "/telemetry"
    upgrade(url)
    with psycopg.connect(url) as conn:
        ensure_partitions(conn, RetentionDays(), ahead_days=3)
    settings = Settings(
        database_url=url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN, db_wait_seconds=1, workers=4
    )
    receiver = Receiver(settings).start()
    stop = threading.Event()
    started = time.perf_counter()
    try:
        senders = start_senders(f"127.0.0.1:{receiver.port}", tmp_path, stop, batch=300, attempts=3, timeout=5)
        wait_for_acks(senders, 20 * 300)
        before = sum(s.acked for s in senders)
        unavailable = metrics.BATCHES.labels("message_samples", "unavailable")
        refused_before = unavailable._value.get()
        private_postgres.pg_ctl("stop", "-m", "immediate")  # a crash: no checkpoint; recovery from the WAL
        time.sleep(2)
        private_postgres.pg_ctl("start")
        wait_for_acks(senders, before + 20 * 300, timeout=60)
        stop_and_drain(senders, stop)
    finally:
        stop.set()
        receiver.stop(grace=5)
    tally = check_exactly_once(url, senders)
    refused = int(unavailable._value.get() - refused_before)
    report_figures(
        "fault.postgres_restart",
        senders=SENDERS,
        seconds=round(time.perf_counter() - started, 1),
        batches_answered_unavailable=refused,
        **tally.figures(),
    )
    assert_exactly_once(tally)
    assert refused > 0 and tally.spooled_batches > 0  # the outage was felt


# --------------------------------------------------------------------------- disk-full spool


@pytest.fixture
def small_disk() -> Iterator[tuple[Path, str]]:
    """A 1 MiB filesystem (tmpfs) when this process may mount one; else a directory whose writes fail with
    ENOSPC past 1 MiB, injected at the spool's file boundary (also with TELEMETRY_FAULT_NO_MOUNT set). Yields
    (directory, which of the two)."""
    root = Path(tempfile.mkdtemp(prefix="telemetry-spool-"))
    mounted = (
        not os.environ.get("TELEMETRY_FAULT_NO_MOUNT")
        and os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(root)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield root, "tmpfs 1 MiB" if mounted else "ENOSPC injected past 1 MiB"
    finally:
        if mounted:
            subprocess.run(["umount", str(root)], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


class _FullAfter:
    """``open`` for the spool module whose files refuse writes once ``budget`` bytes were written in all."""

    def __init__(self, budget: int) -> None:
        self.left = budget

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 (returned to the caller's with block)
        if "w" not in mode:
            return handle
        outer, write = self, handle.write

        def limited(data: bytes) -> int:
            if len(data) > outer.left:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            outer.left -= len(data)
            return write(data)

        handle.write = limited
        return handle


def test_disk_full_spool(small_disk: tuple[Path, str], warehouse_url: str, monkeypatch, receiver_process) -> None:
    directory, kind = small_disk
    if kind.startswith("ENOSPC"):
        monkeypatch.setattr(spool_module, "open", _FullAfter(1 << 20), raising=False)
    port = free_port()  # nothing listens there yet: every batch is spooled
    target = f"127.0.0.1:{port}"
    spooled_ids: list[str] = []
    held: list[str] = []  # what the sender still holds when the spool is full
    started = time.perf_counter()
    with IngestClient(target, TOKEN, spool_dir=directory, attempts=1, timeout=2, max_batch_records=200) as client:
        for number in range(100):
            ids = [f"b{number}-{i}" for i in range(400)]  # two batches of 200, about 20 kB each
            try:
                result = client.push_message_samples([records.sample(m) for m in ids])
            except SpoolFullError as error:
                full = error
                break
            assert result.spooled_batches == 2
            spooled_ids += ids
        else:
            pytest.fail("the disk never filled")
        assert full.errno == errno.ENOSPC and "is full" in str(full)
        # the sender learns which records of that push are neither delivered nor spooled (offset, count)
        assert full.unsaved in (((0, 200), (200, 200)), ((200, 200),))
        if full.unsaved == ((200, 200),):  # the first half fitted
            spooled_ids += ids[:200]
        held = [ids[offset + i] for offset, count in full.unsaved for i in range(count)]
        spooled = sorted(directory.glob("*.pb"))
        assert len(spooled) * 200 == len(spooled_ids) > 20 * 200
        assert not list(directory.glob(".*")), "a half-written batch was left behind"
        for path in spooled:  # whole requests only
            assert len(pb.PushMessageSamplesRequest.FromString(path.read_bytes()).samples) == 200
        with pytest.raises(SpoolFullError):  # still full: the next push says so too, and keeps nothing half
            client.push_message_samples([records.sample(f"one-more-{i}") for i in range(200)])
        assert sorted(directory.glob("*.pb")) == spooled and not list(directory.glob(".*"))

    receiver_process(port=port)
    with IngestClient(target, TOKEN, spool_dir=directory, attempts=2) as client:
        drained = client.flush_spool()
        assert len(client.spool) == 0 and drained.refused_batches == 0
        resent = client.push_message_samples([records.sample(m) for m in held])  # the sender resends what it held
    with psycopg.connect(warehouse_url) as db:
        found = [m for (m,) in db.execute("select message_id from raw.message_samples")]
    sent = spooled_ids + held
    report_figures(
        "fault.disk_full_spool",
        disk=kind,
        seconds=round(time.perf_counter() - started, 1),
        spooled_batches=len(spooled),
        sent=len(sent),
        acknowledged=drained.accepted + drained.duplicates + resent.accepted + resent.duplicates,
        found=len(set(found)),
        duplicates=len(found) - len(set(found)),
    )
    assert sorted(found) == sorted(sent)
    assert (drained.accepted, resent.accepted) == (len(spooled_ids), len(held))


def test_the_host_collector_holds_what_a_full_spool_cannot_take_and_sends_it_later(
    small_disk: tuple[Path, str], warehouse_url: str, monkeypatch, receiver_process
) -> None:
    directory, kind = small_disk
    port = free_port()  # nothing listens there yet
    target = f"127.0.0.1:{port}"
    with IngestClient(target, TOKEN, spool_dir=directory / "spool", attempts=1, timeout=2) as down:
        if kind.startswith("ENOSPC"):
            budget = _FullAfter(0)
            monkeypatch.setattr(spool_module, "open", budget, raising=False)
        else:
            with (directory / "filler").open("wb") as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"x" * 65536)
                    filler.flush()
        collector = HostCollector(MinuteRollup("held-host", period_seconds=60), down.push_host_minutes, interval=0.2)
        first = collector.run(duration=0.7)  # the receiver is down and the spool is full
    held_samples = first.samples  # the stats are cumulative over runs
    assert first.held == len(collector.held) >= 1 and first.push.spooled_batches == 0
    assert not list((directory / "spool").glob("*.pb"))

    if kind.startswith("ENOSPC"):
        budget.left = 1 << 30
    else:
        (directory / "filler").unlink()
    receiver_process(port=port)
    with IngestClient(target, TOKEN, spool_dir=directory / "spool", attempts=2) as up:
        collector.send = up.push_host_minutes
        # another host id: a second partial record of the same minute would be a duplicate key
        collector.rollup = MinuteRollup("next-host", period_seconds=60)
        second = collector.run(duration=0.7)
    assert second.held == 0 and second.dropped == 0 and not collector.held
    with psycopg.connect(warehouse_url) as db:
        stored = dict(db.execute("select host_id, sum(samples) from raw.host_minutes group by host_id").fetchall())
    # the held records went out with the next push, and nothing else was lost
    assert stored == {"held-host": held_samples, "next-host": second.samples - held_samples}


CRASH_MID_WRITE = """
import os, sys
from pathlib import Path
from collectors.client import spool
spool.os.replace = lambda *a: os._exit(9)  # dies after writing and fsyncing, before the rename
spool.Spool(Path(sys.argv[1])).put("PushMessageSamples", Path(sys.argv[2]).read_bytes())
"""


def test_spool_replay_survives_a_crash_mid_write_and_a_damaged_batch(
    tmp_path: Path, receiver_process, warehouse_url: str
) -> None:
    directory = tmp_path / "spool"
    port = free_port()
    with IngestClient(f"127.0.0.1:{port}", TOKEN, spool_dir=directory, attempts=1, timeout=2) as client:
        assert client.push_message_samples([records.sample(f"a{i}") for i in range(50)]).spooled_batches == 1
    request = tmp_path / "request.pb"
    request.write_bytes(pb.PushMessageSamplesRequest(samples=[records.sample("never-spooled")]).SerializeToString())
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MID_WRITE, str(directory), str(request)], cwd=REPO_ROOT, capture_output=True
    )
    assert crashed.returncode == 9, crashed.stderr
    (partial,) = directory.glob(".*.partial")  # what a crash between write and rename leaves
    (directory / f"{0:020d}-1-000001.PushMessageSamples.pb").write_bytes(b"\xff\xff not a request")  # damaged
    receiver_process(port=port)
    with IngestClient(f"127.0.0.1:{port}", TOKEN, spool_dir=directory, attempts=2) as client:
        assert not partial.exists()  # its writer is dead: removed when the spool is opened; never replayed
        drained = client.flush_spool()  # the damaged batch comes first and must not block the others
        assert (drained.accepted, drained.refused_batches, len(client.spool)) == (50, 1, 0)
        (aside,) = client.spool.refused()
        assert aside.name.startswith("0" * 20) and "INVALID_ARGUMENT" in Path(f"{aside}.reason").read_text()
    with psycopg.connect(warehouse_url) as db:
        assert db.execute("select count(*), count(*) filter (where message_id = 'never-spooled')"
                          " from raw.message_samples").fetchone() == (50, 0)  # fmt: skip
