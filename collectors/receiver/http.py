"""The HTTP/JSON side of the receiver: the shapes the original senders speak, on the same ingest core as gRPC.

A request is answered in this order, each step before the body is read: a missing or wrong bearer token is 401,
a token over its rate is 429 with ``Retry-After``, a content type or encoding the route does not read is 415, a
declared length over ``max_batch_bytes`` is 413. The body must then arrive within ``receive_timeout_seconds``
(else 408) and stay under the limit, gzip expanded included (else 413). Decoding and the ingest core (rules,
writer, rejects, ledger) run on the receiver's worker threads under its in-flight byte budget, exactly as a gRPC
batch does, and the answer comes after the commit: 200 with the ack (``accepted``, ``duplicates``, ``rejected``,
``rejects``, ``retry_indexes``, ``batch_id``), 400 for a body that is not JSON, 503 with ``Retry-After`` while
the database cannot be reached.

``POST /received-messages`` answers as status-im telemetry does (201, the messages as received); its ack is in
the ``X-Telemetry-*`` headers. ``GET /health`` and ``/healthz`` answer from the receiver's database watch.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse, Response

from collectors.config import Settings
from collectors.ingest import metrics, registry
from collectors.ingest.service import ENDPOINTS, BatchRefused, IngestService, Refusal
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import json_schemas
from collectors.receiver.auth import bearer_token, token_matches
from collectors.receiver.json_records import ROUTES, BodyRefused, Route, gunzip, json_elements, product_events
from collectors.receiver.limits import RateLimiter

STATUS = {
    Refusal.MALFORMED: 400,
    Refusal.EMPTY: 400,
    Refusal.TOO_LARGE: 413,
    Refusal.UNAVAILABLE: 503,
    Refusal.FAILED: 500,
}
JSON = "application/json"
NDJSON = "application/x-ndjson"
ENDPOINT_OF = {endpoint.table.name: endpoint for endpoint in ENDPOINTS}
_encode = msgspec.json.encode


@dataclass
class HttpIngest:
    """What the HTTP routes share with the rest of one receiver: its settings, ingest core, worker threads,
    in-flight byte budget (``hold``), rate limiter and the database watch (``database_up``)."""

    settings: Settings
    service: IngestService
    executor: futures.Executor
    hold: Callable[[int], Any]
    limiter: RateLimiter
    database_up: Callable[[], bool]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode({"error": message}), status, headers=headers, media_type=JSON)


def ack_body(ack: pb.IngestAck) -> dict[str, Any]:
    return {
        "accepted": ack.accepted,
        "duplicates": ack.duplicates,
        "rejected": ack.rejected,
        "rejects": [{"index": r.index, "reason": r.reason} for r in ack.rejects],
        "retry_indexes": list(ack.retry_indexes),
        "batch_id": ack.batch_id,
    }


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused (413) once it passes ``limit`` bytes and (408) when it has not all come within
    ``timeout`` seconds: a sender that trickles its body holds a coroutine, never a worker, and not for long."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BodyRefused("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyRefused(f"the body of {int(declared)} bytes exceeds the limit of {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(f"the body exceeds the limit of {limit} bytes", status=413)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(f"the body did not arrive within {timeout:g} s", status=408) from None
    return b"".join(chunks)


class Routes:
    """The request handlers of one receiver's HTTP side."""

    def __init__(self, ingest: HttpIngest) -> None:
        self.ingest = ingest
        self.settings = ingest.settings
        self.tokens = ingest.settings.token_list()

    def refusal(self, request: Request, route: Route) -> Response | None:
        """The answer to a request refused on its headers alone (auth, rate, type, encoding), else None."""
        s = self.settings
        token = bearer_token(request.headers.get("authorization", ""))
        if not token or not token_matches(token, self.tokens):
            metrics.UNAUTHENTICATED.inc()
            return error(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
        wait = self.ingest.limiter.acquire(token)
        if wait is not None:
            metrics.BATCHES.labels(route.table.name, "rate_limited").inc()
            return error(
                429,
                f"rate limited: at most {s.rate_limit_per_second:g} requests per second per token "
                f"(burst {s.rate_limit_burst}); retry in {wait:.2f} s",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        accepted = (JSON, NDJSON) if route.ndjson else (JSON,)
        if content_type not in accepted:
            return error(415, f"Content-Type must be {' or '.join(accepted)}, not {content_type or 'missing'!r}")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return error(415, f"Content-Encoding must be gzip or none, not {encoding!r}")
        return None

    def work(self, route: Route, body: bytes, gzipped: bool, ndjson: bool, batch_id: str, deadline: float):
        """On a worker thread: decode the body, then the ingest core; the ack and the elements as sent."""
        if gzipped:
            body = gunzip(body, self.settings.max_batch_bytes)
        elements = json_elements(body, ndjson=ndjson, single_object=route.single_object)
        if route.decode is product_events:  # derived event ids follow the privacy settings
            decoded = product_events(elements, self.ingest.service.privacy)
        else:
            decoded = route.decode(elements)
        ack = self.ingest.service.ingest_records(
            ENDPOINT_OF[route.table.name],
            decoded.items,
            batch_id,
            deadline=deadline,
            originals=decoded.originals,
            refused=decoded.refused,
        )
        if route.table is registry.SERVER_REPORTS:  # committed: the reports become the servers' live gauges
            metrics.LIVE_SERVERS.observe_reports(decoded.items, ack)
        return ack, decoded.originals

    async def post(self, route: Route, request: Request) -> Response:
        refused = self.refusal(request, route)
        if refused is not None:
            return refused
        s = self.settings
        started = time.monotonic()
        try:
            body = await read_body(request, s.max_batch_bytes, s.receive_timeout_seconds)
        except BodyRefused as refusal:
            if refusal.status == 408:
                metrics.BATCHES.labels(route.table.name, "not_received").inc()
            return error(refusal.status, str(refusal), {"Connection": "close"})
        except ClientDisconnect:
            return error(400, "the client went away before its body arrived")
        ndjson = request.headers.get("content-type", "").lower().startswith(NDJSON)
        gzipped = request.headers.get("content-encoding", "").strip().lower() == "gzip"
        work = functools.partial(
            self.work,
            route,
            body,
            gzipped,
            ndjson,
            request.headers.get("x-batch-id", ""),
            started + s.max_batch_seconds,
        )
        async with self.ingest.hold(len(body)):
            try:
                ack, originals = await asyncio.get_running_loop().run_in_executor(self.ingest.executor, work)
            except BodyRefused as refusal:
                return error(refusal.status, str(refusal))
            except BatchRefused as refusal:
                status = STATUS[refusal.refusal]
                retry = {"Retry-After": str(max(1, math.ceil(s.db_wait_seconds)))} if status == 503 else None
                return error(status, str(refusal), retry)
        if route.status_im:
            # status-im telemetry's clients expect 201 and the messages back; the ack rides in headers
            headers = {
                "X-Telemetry-Accepted": str(ack.accepted),
                "X-Telemetry-Duplicates": str(ack.duplicates),
                "X-Telemetry-Rejected": str(ack.rejected),
                "X-Telemetry-Batch-Id": ack.batch_id,
            }
            return Response(b"[" + b",".join(originals) + b"]", 201, headers=headers, media_type=JSON)
        return Response(_encode(ack_body(ack)), 200, media_type=JSON)

    def handler(self, route: Route) -> Callable[[Request], Any]:
        async def post(request: Request) -> Response:
            return await self.post(route, request)

        return post

    async def health(self, request: Request) -> Response:
        if self.ingest.database_up():
            return PlainTextResponse("OK")
        return PlainTextResponse("database unreachable", 503, headers={"Retry-After": "5"})


def _openapi(route: Route) -> dict[str, Any]:
    element = route.schema
    body = {"type": "array", "items": element, "minItems": 1}
    if route.single_object:
        body = {"anyOf": [element, body]}
    content: dict[str, Any] = {JSON: {"schema": body}}
    if route.ndjson:
        content[NDJSON] = {"schema": {"type": "string", "description": "one JSON object per line"}}
    return {"requestBody": {"required": True, "content": content}, "security": [{"bearer": []}]}


def _responses(route: Route) -> dict[int | str, dict[str, Any]]:
    err = {"content": {JSON: {"schema": json_schemas.ERROR}}}
    ok: dict[int | str, dict[str, Any]]
    if route.status_im:
        ok = {201: {"description": "stored; the messages as received (ack in X-Telemetry-* headers)"}}
    else:
        ok = {200: {"description": "stored (after the commit)", "content": {JSON: {"schema": json_schemas.ACK}}}}
    return ok | {
        400: {"description": "the body is not JSON, or holds no record", **err},
        401: {"description": "missing or invalid bearer token; nothing written", **err},
        408: {"description": "the body did not arrive in time", **err},
        413: {"description": "over the size or record limit", **err},
        415: {"description": "wrong Content-Type or Content-Encoding", **err},
        429: {"description": "rate limited; see Retry-After", **err},
        503: {"description": "the database is unreachable; see Retry-After", **err},
    }


def create_app(ingest: HttpIngest) -> FastAPI:
    routes = Routes(ingest)
    app = FastAPI(
        title="Telemetry receiver (HTTP/JSON)",
        version="1",
        description="The same ingest contract as the gRPC receiver: validation, raw.rejects, ack after commit.",
        docs_url=None,
        redoc_url=None,
    )
    for route in ROUTES:
        app.add_api_route(
            route.path,
            routes.handler(route),
            methods=["POST"],
            summary=route.summary,
            response_model=None,
            status_code=201 if route.status_im else 200,
            openapi_extra=_openapi(route),
            responses=_responses(route),
        )
    for path in ("/health", "/healthz"):
        app.add_api_route(path, routes.health, methods=["GET"], response_model=None, summary="up, database reachable")
    app.openapi_schema = None
    schema = app.openapi()
    schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if ingest.settings.http_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ingest.settings.http_cors_origins,
            allow_methods=["POST", "GET"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "X-Batch-Id"],
            expose_headers=["Retry-After", "X-Telemetry-Accepted", "X-Telemetry-Duplicates", "X-Telemetry-Rejected"],
            max_age=600,
        )
    return app
