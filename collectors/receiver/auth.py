"""Bearer-token authentication of every ingest call (health checks and reflection are open).

A refused call is answered at once, before its request is read: the refusal is a handler that never waits for
the body, so calls without a valid token cannot hold anything of the receiver while they dawdle.
"""

from __future__ import annotations

import hmac
import math

import grpc

from collectors.ingest import metrics
from collectors.receiver.limits import RateLimiter

# health checks and server reflection (which describes the services, never data) need no token
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def token_matches(presented: str, tokens: list[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit, no length leak per token)."""
    presented_bytes = presented.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented_bytes, token.encode())
    return matched


def bearer_token(header: str) -> str | None:
    """The token of an ``authorization`` value ``Bearer <token>`` (scheme in any case), else None."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _refuse(_requests: object, context: grpc.aio.ServicerContext) -> None:
    metrics.UNAUTHENTICATED.inc()
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")


RATE_LIMITED = "rate limited"  # the start of the refusal's details, which the client retries


def _rate_limited(wait: float):
    async def refuse(_requests: object, context: grpc.aio.ServicerContext) -> None:
        context.set_trailing_metadata((("retry-after", str(max(1, math.ceil(wait)))),))
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{RATE_LIMITED}: retry in {wait:.2f} s")

    return grpc.stream_unary_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` naming a configured token: UNAUTHENTICATED; and
    a token's calls over its rate (``limiter``): RESOURCE_EXHAUSTED, "rate limited", before the request is read."""

    def __init__(
        self, tokens: list[str], open_prefixes: tuple[str, ...] = OPEN_PREFIXES, limiter: RateLimiter | None = None
    ) -> None:
        if not tokens:
            raise ValueError("no ingest token configured: set TELEMETRY_INGEST_TOKENS")
        self._tokens = list(tokens)
        self._open = open_prefixes
        self._limiter = limiter
        # a request-streaming handler is called before any message arrives, so it can refuse without reading one
        self._refusal = grpc.stream_unary_rpc_method_handler(_refuse)

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(self._open):
            return await continuation(handler_call_details)
        header = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        token = bearer_token(header)
        if not (token and token_matches(token, self._tokens)):
            return self._refusal
        wait = self._limiter.acquire(token) if self._limiter is not None else None
        if wait is not None:
            return _rate_limited(wait)
        return await continuation(handler_call_details)
