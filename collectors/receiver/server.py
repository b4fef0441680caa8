"""Assemble and run the receiver: gRPC (asyncio) server, auth, health, /metrics, worker threads, graceful stop.

Waiting costs nothing, working is bounded: the server runs on an asyncio event loop, so a call whose request has
not arrived yet is a suspended coroutine, not a held thread. Each call must deliver its request within
``receive_timeout_seconds``; calls past ``max_concurrent_calls`` are refused at once; refused tokens are answered
before their request is read. Parsing, validation and the database work run in a pool of ``workers`` threads
(one database connection each), admitted only while the request bytes in work stay under
``max_inflight_bytes``, which bounds the receiver's memory. Health checks never wait behind ingest work.

``Receiver`` runs the event loop in a thread of its own, so it can be started and stopped from plain code
(the CLI, tests).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import psycopg
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from psycopg_pool import ConnectionPool

from collectors.config import Settings
from collectors.ingest import metrics
from collectors.ingest.registry import SERVER_REPORTS
from collectors.ingest.service import ENDPOINTS, SERVICE_NAME, BatchRefused, Endpoint, IngestService, Refusal
from collectors.ingest.writer import BatchWriter
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.auth import BearerTokenInterceptor
from collectors.receiver.http import HttpIngest, create_app
from collectors.receiver.limits import RateLimiter

log = logging.getLogger(__name__)

STATUS = {
    Refusal.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.EMPTY: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Refusal.FAILED: grpc.StatusCode.INTERNAL,
}
HEALTH_EVERY = 2.0  # seconds between the database watch's queries
# Of the time the client still gives a call, the share the receiver may spend on the batch: the rest is for the
# commit, the answer and the network.
DEADLINE_SHARE = 0.8


def _showing_live_servers(work: Callable[[], pb.IngestAck], payload: bytes) -> pb.IngestAck:
    """On the worker thread: the batch of game-server reports, then its stored reports as live gauges."""
    ack = work()
    metrics.LIVE_SERVERS.observe_reports(pb.PushServerReportsRequest.FromString(payload).reports, ack)
    return ack


class ReceiverConfigError(ValueError):
    """The receiver cannot start as configured; the message says what to fix."""


class ByteBudget:
    """At most ``capacity`` request bytes in work at once; a request waits for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._room = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.capacity)  # a request larger than the budget waits until it has it all
        async with self._room:
            await self._room.wait_for(lambda: self.used + size <= self.capacity)
            self.used += size
        metrics.INFLIGHT_BYTES.inc(size)
        try:
            yield
        finally:
            metrics.INFLIGHT_BYTES.dec(size)
            async with self._room:
                self.used -= size
                self._room.notify_all()


def tls_credentials(cert_file: Path | None, key_file: Path | None) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files, checked first so that a mistake gets a clear message (gRPC itself only
    says "Failed to bind")."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ReceiverConfigError("TLS needs both TELEMETRY_TLS_CERT_FILE and TELEMETRY_TLS_KEY_FILE")
    contents = {}
    for what, path in (("certificate", cert_file), ("key", key_file)):
        try:
            contents[what] = Path(path).read_bytes()
        except OSError as error:
            raise ReceiverConfigError(f"cannot read the TLS {what} file {path}: {error.strerror}") from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise ReceiverConfigError(
                f"the TLS key {key_file} does not belong to the certificate {cert_file}"
            ) from None
        raise ReceiverConfigError(
            f"the TLS certificate {cert_file} or key {key_file} is not a PEM certificate and private key "
            f"({error.reason or error})"
        ) from None
    return grpc.ssl_server_credentials([(contents["key"], contents["certificate"])])


class Receiver:
    """A running receiver. ``stop()`` stops taking new calls, finishes in-flight batches, then closes the pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.credentials = tls_credentials(settings.tls_cert_file, settings.tls_key_file)
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
        self.service = IngestService(BatchWriter(self.pool, max_reject_bytes=settings.max_reject_bytes), settings)
        self.executor = futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="ingest")
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.port = 0
        self.http_port = 0
        self.database_up = True  # the pool opened; the watch keeps this true while the database answers
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self.metrics_server = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ lifecycle (called from plain threads)

    def start(self) -> Receiver:
        self.pool.open(wait=True, timeout=30)
        metrics.POOLS.watch(self.pool)
        self._thread = threading.Thread(target=self._run, name="receiver-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            metrics.POOLS.forget(self.pool)
            self.pool.close()
            raise self._failure
        s = self.settings
        if s.metrics_port:
            self.metrics_server, _ = start_http_server(s.metrics_port, addr=s.metrics_addr)
        log.info(
            "receiver listening on port %s%s (tls=%s)",
            self.port,
            f", HTTP on port {self.http_port}" if self.http_port else "",
            self.credentials is not None,
        )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight batches commit (up to ``grace`` seconds), then release everything."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop).result()
            self._thread.join()
        self.executor.shutdown(wait=True)
        metrics.POOLS.forget(self.pool)
        self.pool.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info("receiver stopped")

    def wait(self) -> None:
        """Block until the receiver stops."""
        if self._thread is not None:
            self._thread.join()

    # ------------------------------------------------------------------ the event loop

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(); after start, logged
            if not self._ready.is_set():
                self._failure = error
                self._ready.set()
            else:
                log.exception("the receiver's event loop stopped")

    async def _serve(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self.budget = ByteBudget(s.max_inflight_bytes)
        server = grpc.aio.server(
            # metrics first: they count the calls the token check refuses too
            interceptors=[
                metrics.GrpcMetricsInterceptor(),
                BearerTokenInterceptor(s.token_list(), limiter=self.limiter),
            ],
            options=[
                ("grpc.max_receive_message_length", s.max_batch_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=s.max_concurrent_calls,
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if s.grpc_reflection:  # grpcurl and friends list and describe the services without a .proto at hand
            names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
        if self.credentials is not None:
            port = server.add_secure_port(s.listen, self.credentials)
        else:
            port = server.add_insecure_port(s.listen)
        if port == 0:
            raise ReceiverConfigError(f"cannot listen on {s.listen}: address in use or invalid")
        self.port, self._server = port, server
        await server.start()
        if s.http_listen:
            await self._start_http()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._watch_task = asyncio.create_task(self._watch_database())
        self._ready.set()
        await server.wait_for_termination()
        if self._http_task is not None:  # the loop ends when this returns: HTTP requests in flight finish first
            await self._http_task

    async def _start_http(self) -> None:
        s = self.settings
        host, _, port = s.http_listen.rpartition(":")
        try:
            sock = socket.create_server((host.strip("[]") or "127.0.0.1", int(port)), backlog=1024)
        except (OSError, ValueError) as error:
            raise ReceiverConfigError(
                f"cannot listen for HTTP on {s.http_listen!r} (TELEMETRY_HTTP_LISTEN, host:port or empty): {error}"
            ) from None
        self.http_port = sock.getsockname()[1]
        ingest = HttpIngest(s, self.service, self.executor, self.budget.hold, self.limiter, lambda: self.database_up)
        config = uvicorn.Config(
            create_app(ingest),
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=15,
            timeout_graceful_shutdown=math.ceil(s.shutdown_grace_seconds),
            ssl_certfile=s.tls_cert_file,
            ssl_keyfile=s.tls_key_file,
        )
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise ReceiverConfigError(f"the HTTP receiver did not start on {s.http_listen}")
            await asyncio.sleep(0.01)

    async def _watch_database(self) -> None:
        """Every ``HEALTH_EVERY`` seconds, one query on a connection of its own: the HTTP health answers and the
        gRPC health status follow it, so a load balancer stops sending while the database is away."""
        assert self._health is not None
        conn: psycopg.AsyncConnection | None = None
        try:
            while True:
                up, conn = await self._database_answers(conn)
                if up != self.database_up:
                    log.warning("the database is %s", "reachable again" if up else "unreachable")
                    serving = health_pb2.HealthCheckResponse.SERVING
                    status = serving if up else health_pb2.HealthCheckResponse.NOT_SERVING
                    for name in ("", SERVICE_NAME):
                        await self._health.set(name, status)
                self.database_up = up
                metrics.DATABASE_UP.set(1 if up else 0)
                await asyncio.sleep(HEALTH_EVERY)
        finally:
            if conn is not None:
                await conn.close()

    async def _database_answers(
        self, conn: psycopg.AsyncConnection | None
    ) -> tuple[bool, psycopg.AsyncConnection | None]:
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.receiver_database_url, connect_timeout=int(HEALTH_EVERY), autocommit=True
                )
            await asyncio.wait_for(conn.execute("select 1"), HEALTH_EVERY)
            return True, conn
        except (psycopg.Error, OSError, TimeoutError):
            if conn is not None:
                await conn.close()
            return False, None

    async def _shutdown(self, grace: float) -> None:
        assert self._server is not None and self._health is not None
        if self._watch_task is not None:
            self._watch_task.cancel()
        await self._health.enter_graceful_shutdown()
        http_stopped: list[asyncio.Task] = []
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True  # stops accepting, lets requests in flight finish
            http_stopped.append(self._http_task)
        await asyncio.gather(self._server.stop(grace), *http_stopped)

    def _handlers(self) -> grpc.GenericRpcHandler:
        """Handlers that take the request as a stream: they decide how long to wait for it, and get raw bytes, so
        a malformed request is INVALID_ARGUMENT, not INTERNAL."""

        def bind(endpoint: Endpoint) -> grpc.RpcMethodHandler:
            return grpc.stream_unary_rpc_method_handler(functools.partial(self._handle, endpoint))

        return grpc.method_handlers_generic_handler(SERVICE_NAME, {e.method: bind(e) for e in ENDPOINTS})

    async def _handle(
        self, endpoint: Endpoint, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        s = self.settings
        started = time.monotonic()
        try:
            payload = await asyncio.wait_for(anext(requests), s.receive_timeout_seconds)
        except TimeoutError:
            metrics.BATCHES.labels(endpoint.table.name, "not_received").inc()
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request did not arrive within {s.receive_timeout_seconds:g} s",
            )
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request")
        deadline = started + s.max_batch_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, started + remaining * DEADLINE_SHARE)
        async with self.budget.hold(len(payload)):
            work = functools.partial(self.service.ingest, endpoint, payload, deadline=deadline)
            if endpoint.table is SERVER_REPORTS:
                work = functools.partial(_showing_live_servers, work, payload)
            try:
                ack = await asyncio.get_running_loop().run_in_executor(self.executor, work)
            except BatchRefused as refused:
                await context.abort(STATUS[refused.refusal], str(refused))
        return endpoint.response(ack=ack).SerializeToString()
