"""Bearer-token authentication of every ingest call (health checks are open)."""

from __future__ import annotations

import hmac

import grpc

from collectors.receiver import metrics

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def token_matches(presented: str, tokens: list[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit, no length leak per token)."""
    presented_bytes = presented.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented_bytes, token.encode())
    return matched


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` naming a configured token: UNAUTHENTICATED."""

    def __init__(self, tokens: list[str]) -> None:
        if not tokens:
            raise ValueError("no ingest token configured: set TELEMETRY_INGEST_TOKENS")
        self._tokens = list(tokens)

        def refuse(_request, context: grpc.ServicerContext):
            metrics.UNAUTHENTICATED.inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        header = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token_matches(token.strip(), self._tokens):
            return continuation(handler_call_details)
        return self._refusal
