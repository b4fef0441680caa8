"""Assemble and run the receiver: gRPC server, auth, health, /metrics, connection pool, graceful stop."""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server
from psycopg_pool import ConnectionPool

from collectors.config import Settings
from collectors.receiver.auth import BearerTokenInterceptor
from collectors.receiver.service import SERVICE_NAME, IngestService, generic_handler
from collectors.receiver.writer import BatchWriter

log = logging.getLogger(__name__)


class Receiver:
    """A running receiver. ``stop()`` stops taking new calls, finishes in-flight batches, then closes the pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(
            settings.receiver_database_url,
            min_size=1,
            max_size=settings.workers,
            kwargs={"options": "-c timezone=UTC", "connect_timeout": 10},
            check=ConnectionPool.check_connection,
            timeout=settings.db_wait_seconds,  # then UNAVAILABLE, and the client retries
            open=False,
            name="receiver",
        )
        self.health = health.HealthServicer()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="ingest"),
            interceptors=[BearerTokenInterceptor(settings.token_list())],
            options=[
                ("grpc.max_receive_message_length", settings.max_batch_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.server.add_generic_rpc_handlers((generic_handler(IngestService(BatchWriter(self.pool), settings)),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self._bind()
        self.metrics_server = None
        self._stopped = threading.Event()

    def _bind(self) -> int:
        s = self.settings
        if s.tls_cert_file and s.tls_key_file:
            credentials = grpc.ssl_server_credentials([(s.tls_key_file.read_bytes(), s.tls_cert_file.read_bytes())])
            port = self.server.add_secure_port(s.listen, credentials)
        elif s.tls_cert_file or s.tls_key_file:
            raise ValueError("TLS needs both TELEMETRY_TLS_CERT_FILE and TELEMETRY_TLS_KEY_FILE")
        else:
            port = self.server.add_insecure_port(s.listen)
        if port == 0:
            raise OSError(f"cannot listen on {s.listen}: address in use or invalid")
        return port

    def start(self) -> Receiver:
        self.pool.open(wait=True, timeout=30)
        if self.settings.metrics_port:
            self.metrics_server, _ = start_http_server(self.settings.metrics_port, addr="127.0.0.1")
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("receiver listening on port %s (tls=%s)", self.port, bool(self.settings.tls_cert_file))
        return self

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight batches commit (up to ``grace`` seconds), then release everything."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace).wait()
        self.pool.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info("receiver stopped")

    def wait(self) -> None:
        self.server.wait_for_termination()
