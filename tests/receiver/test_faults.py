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
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import psycopg
import pytest

from collectors.config import RetentionDays, Settings
from collectors.dev.local_postgres import ScratchCluster
from collectors.ingest import metrics
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient, PushResult, SpoolFullError, SpoolWriteError
from collectors.senders.client import spool as spool_module
from collectors.senders.host.collector import HostCollector
from collectors.senders.host.rollup import MinuteRollup
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions
from tests.support import records
from tests.support.loadgen import Sender, assert_exactly_once, check_exactly_once
from tests.support.receivers import REPO_ROOT, TOKEN, free_port, report_figures, wait_serving

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


def stored_batches(metrics_port: int) -> float:
    """The receiver's own count of message-sample batches it stored (its /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    wanted = 'telemetry_receiver_batches_total{outcome="stored",source="message_samples"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(wanted))


def test_two_receivers_share_the_load_and_one_killed_loses_nothing(
    receiver_process, warehouse_url: str, tmp_path: Path
) -> None:
    """The senders are given both receivers; round_robin spreads their batches; the survivor takes everything
    once the other is SIGKILLed: nothing acknowledged is lost, nothing lands twice."""
    ports, metrics_ports = [free_port(), free_port()], [free_port(), free_port()]
    processes = [
        receiver_process(port=port, TELEMETRY_METRICS_PORT=str(metrics))[0]
        for port, metrics in zip(ports, metrics_ports, strict=True)
    ]
    stop = threading.Event()
    started = time.perf_counter()
    targets = ",".join(f"127.0.0.1:{port}" for port in ports)
    senders = start_senders(targets, tmp_path, stop, batch=300, attempts=3, timeout=5)
    wait_for_acks(senders, 30 * 300)
    before_kill = [stored_batches(port) for port in metrics_ports]
    assert all(count > 0 for count in before_kill), before_kill  # both took batches
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(10)
    killed_at = sum(s.acked for s in senders)
    survivor_before = stored_batches(metrics_ports[1])
    wait_for_acks(senders, killed_at + 30 * 300)
    assert stored_batches(metrics_ports[1]) > survivor_before
    stop_and_drain(senders, stop)
    tally = check_exactly_once(warehouse_url, senders)
    report_figures(
        "fault.two_receivers_one_killed",
        senders=SENDERS,
        seconds=round(time.perf_counter() - started, 1),
        batches_before_kill=[int(c) for c in before_kill],
        **tally.figures(),
    )
    assert_exactly_once(tally)


# --------------------------------------------------------------------------- PostgreSQL restart


@pytest.fixture
def private_postgres() -> Iterator[ScratchCluster]:
    """A cluster of its own, crashed and restarted by the test (the suite's own server is never restarted)."""
    try:
        server = ScratchCluster()
    except (FileNotFoundError, PermissionError) as why:
        pytest.skip(str(why))
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_postgres_restart_under_load(private_postgres: ScratchCluster, tmp_path: Path) -> None:
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
        # down until a sender has run out of attempts and spooled: a fixed pause is outlasted by the retries when
        # the machine is quiet and PostgreSQL comes back fast
        outage_ends = time.monotonic() + 60
        while not any(s.spooled_batches for s in senders) and time.monotonic() < outage_ends:
            time.sleep(0.2)
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
from collectors.senders.client import spool
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


# --------------------------------------------------------------------------- poison batches


def _events(count: int, bad: set[int], prefix: str) -> list[pb.ProductEvent]:
    """``count`` events; those at ``bad`` carry a payload PostgreSQL refuses though it is valid JSON."""
    events = []
    for i in range(count):
        event = records.event(f"{prefix}-{i}", minutes_ago=5)
        if i in bad:
            event.payload_json = '{"a": "\\ud800"}'  # a lone surrogate: jsonb refuses it
        events.append(event)
    return events


def test_a_poison_batch_is_answered_within_the_deadline_and_lands_whole(warehouse_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    running = Receiver(settings).start()
    target = f"127.0.0.1:{running.port}"
    timeout = 1.5
    spool = tmp_path / "spool"
    try:
        with IngestClient(
            target, TOKEN, spool_dir=spool, attempts=1, timeout=timeout, max_batch_records=20_000
        ) as client:
            calls: list[float] = []
            stub = client._calls["PushProductEvents"]

            def timed(*args, **kwargs):
                started = time.monotonic()
                try:
                    return stub(*args, **kwargs)
                finally:
                    calls.append(time.monotonic() - started)

            client._calls["PushProductEvents"] = timed

            def push_until_settled(events: list[pb.ProductEvent]) -> PushResult:
                """Push, then deliver what the resend rounds left spooled until every record is stored or
                refused."""
                result = client.push_product_events(events)
                while len(client.spool):
                    result.merge(client.flush_spool())
                return result

            # one refused value in 20,000 records: about two passes over the batch, usually in one answer; on
            # a loaded machine the receiver may run out of time and answer with the rest to resend, but never
            # past the deadline, and nothing is lost or landed twice
            started = time.monotonic()
            one = push_until_settled(_events(20_000, {12_345}, "one"))
            one_seconds = time.monotonic() - started
            one_calls = len(calls)
            assert (one.accepted, one.rejected) == (19_999, 1)
            assert len(one.rejects) == 1 and one.rejects[0][1].startswith("refused by the database: ")
            if one_calls == 1:  # a resent remainder numbers its records afresh
                assert one.rejects[0][0] == 12_345
            # every third record refused: more work than one deadline allows; each answer comes in time with the
            # rest to resend, and the client resends it until all is stored or refused
            many = set(range(0, 5_000, 3))
            result = push_until_settled(_events(5_000, many, "many"))
            many_calls = len(calls) - one_calls
            assert max(calls) < timeout and many_calls > 1, calls  # never past the deadline; it had to resend
            assert (result.accepted, result.rejected) == (5_000 - len(many), len(many))
            newer = client.push_product_events(_events(10, set(), "newer"))  # nothing is wedged behind it
            assert newer.accepted == 10 and newer.spooled_batches == 0
    finally:
        running.stop(grace=5)
    with psycopg.connect(warehouse_url) as db:
        landed = db.execute("select count(*) from raw.product_events").fetchone()[0]
        rejects = db.execute(
            "select count(*), count(distinct (batch_id, record_index)) from raw.rejects where source = 'product_events'"
        ).fetchone()
        deferred = db.execute("select coalesce(sum(deferred), 0) from quality.ingest_batches").fetchone()[0]
    assert landed == 19_999 + 5_000 - len(many) + 10
    assert rejects == (1 + len(many), 1 + len(many))  # each refused record once, however often it was resent
    assert deferred > 0  # the receiver did run out of time, and said so instead of keeping the client waiting
    report_figures(
        "fault.poison_batch",
        one_refused_in_20000_seconds=round(one_seconds, 2),
        one_refused_calls=one_calls,
        third_refused_calls=many_calls,
        slowest_call_seconds=round(max(calls), 2),
        client_deadline_seconds=timeout,
        records_deferred_and_resent=deferred,
    )


class _SlowForSome:
    """A stand-in receiver (a real gRPC server on loopback) that never answers in time for batches holding a
    sample named ``stuck``, and acknowledges the others."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.delivered: list[str] = []
        handler = grpc.unary_unary_rpc_method_handler(self.push)
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("telemetry.v1.TelemetryIngest", {"PushMessageSamples": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def push(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        samples = pb.PushMessageSamplesRequest.FromString(request).samples
        ids = [s.message_id for s in samples]
        if "stuck" in ids:
            time.sleep(self.delay)
        else:
            self.delivered += ids
        return pb.PushMessageSamplesResponse(ack=pb.IngestAck(accepted=len(ids))).SerializeToString()


def test_a_stuck_spooled_batch_never_blocks_newer_data_and_is_set_aside_after_its_tries(tmp_path: Path) -> None:
    fake = _SlowForSome(delay=1.5)
    target = f"127.0.0.1:{fake.port}"
    try:
        with IngestClient(
            target, TOKEN, spool_dir=tmp_path / "spool", attempts=1, timeout=0.5, max_spool_attempts=3
        ) as client:
            stuck = pb.PushMessageSamplesRequest(samples=[records.sample("stuck")]).SerializeToString()
            client.spool.put("PushMessageSamples", stuck)
            for round_ in range(3):
                (batch,) = [b for b in client.spool.batches()]
                os.utime(batch.path, (0, 0))  # its back-off is over
                result = client.push_message_samples([records.sample(f"new-{round_}")])
                assert result.accepted == 1 and result.spooled_batches == 0  # newer data goes through at once
            assert len(client.spool) == 0 and result.refused_batches == 1
            (aside,) = client.spool.refused()
            assert "not delivered after 3 tries; last: DEADLINE_EXCEEDED" in Path(f"{aside}.reason").read_text()
            # between tries it waits its own back-off: a push right after a failed try does not touch it
            client.spool.put("PushMessageSamples", stuck)
            client.flush_spool()
            waiting = client.flush_spool()
            assert waiting.waiting_batches == 1 and waiting.delivered_batches == 0
    finally:
        fake.server.stop(0)
    assert fake.delivered == ["new-0", "new-1", "new-2"]


# --------------------------------------------------------------------------- unwritable spools


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, str]]:
    """An empty read-only filesystem (tmpfs mounted ro) when this process may mount one; else a directory
    whose writes fail with EROFS, injected at the spool's file boundary. Yields (directory, which)."""
    root = Path(tempfile.mkdtemp(prefix="telemetry-ro-"))
    mounted = (
        not os.environ.get("TELEMETRY_FAULT_NO_MOUNT")
        and os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield root, "read-only tmpfs" if mounted else "EROFS injected"
    finally:
        if mounted:
            subprocess.run(["umount", str(root)], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _refuse_writes(*_args: object, **_kwargs: object):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_an_unwritable_spool_holds_the_minutes_in_memory_and_sends_them_later(
    read_only_dir: tuple[Path, str], warehouse_url: str, monkeypatch, receiver_process
) -> None:
    directory, kind = read_only_dir
    if kind.startswith("EROFS"):
        monkeypatch.setattr(spool_module, "open", _refuse_writes, raising=False)
    port = free_port()  # nothing listens there yet
    target = f"127.0.0.1:{port}"
    # an empty read-only spool directory: the collector starts all the same
    with IngestClient(target, TOKEN, spool_dir=directory, attempts=1, timeout=2) as down:
        with pytest.raises(SpoolWriteError) as unwritable:
            down.push_host_minutes([records.host_minute("probe")])
        assert "cannot be written" in str(unwritable.value) and unwritable.value.unsaved == ((0, 1),)
        collector = HostCollector(MinuteRollup("ro-host", period_seconds=60), down.push_host_minutes, interval=0.2)
        first = collector.run(duration=0.7)  # receiver down, spool unwritable: held, not a crash
    assert first.held == len(collector.held) >= 1 and first.push.spooled_batches == 0
    held_samples = first.samples
    monkeypatch.undo()
    receiver_process(port=port)
    with IngestClient(target, TOKEN, spool_dir=directory, attempts=2) as up:
        collector.send = up.push_host_minutes
        collector.rollup = MinuteRollup("ro-next", period_seconds=60)
        second = collector.run(duration=0.7)
    assert second.held == 0 and not collector.held
    with psycopg.connect(warehouse_url) as db:
        stored = dict(db.execute("select host_id, sum(samples) from raw.host_minutes group by host_id").fetchall())
    assert stored == {"ro-host": held_samples, "ro-next": second.samples - held_samples}


# --------------------------------------------------------------------------- a full log disk


def test_the_receiver_starts_and_serves_when_its_log_disk_is_full(warehouse_url: str) -> None:
    port = free_port()
    environment = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": warehouse_url,
        "TELEMETRY_INGEST_TOKENS": TOKEN,
        "TELEMETRY_METRICS_PORT": "0",
    }
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        process = subprocess.Popen(
            [sys.executable, "-m", "collectors.receiver.cli", "--listen", f"127.0.0.1:{port}"],
            env=environment,
            stdout=full,
            stderr=full,
        )
    try:
        wait_serving(f"127.0.0.1:{port}")
        with IngestClient(f"127.0.0.1:{port}", TOKEN, attempts=2) as client:
            assert client.push_message_samples([records.sample("logged-nowhere")]).accepted == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
