"""Receivers for tests: in-process (fast) and as a real subprocess (for signals and kills)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collectors.client import IngestClient
from collectors.config import Settings
from collectors.receiver.server import Receiver

TOKEN = "test-token-" + "x" * 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver(warehouse_url: str) -> Iterator[Receiver]:
    settings = Settings(database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    running = Receiver(settings).start()
    yield running
    running.stop(grace=5)


@pytest.fixture
def client(receiver: Receiver, tmp_path: Path) -> Iterator[IngestClient]:
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=tmp_path / "spool", attempts=2) as c:
        yield c


def wait_serving(target: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver at {target} did not become healthy")
            time.sleep(0.1)


@pytest.fixture
def receiver_process(warehouse_url: str) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start ``telemetry-receiver`` as a real process: returns (process, target). Stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(port: int | None = None, **env: str) -> tuple[subprocess.Popen, str]:
        port = port or free_port()
        environment = {
            **os.environ,
            "TELEMETRY_DATABASE_URL": warehouse_url,
            "TELEMETRY_INGEST_TOKENS": TOKEN,
            "TELEMETRY_METRICS_PORT": str(free_port()),
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "collectors.receiver.cli", "--listen", f"127.0.0.1:{port}"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        wait_serving(f"127.0.0.1:{port}")
        return process, f"127.0.0.1:{port}"

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
