"""The hypothesis settings every fuzz suite shares: ``TELEMETRY_FUZZ_EXAMPLES`` examples a test (150 by
default), reproducible in CI; ``TELEMETRY_FUZZ_RANDOM=1`` explores instead."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("TELEMETRY_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("TELEMETRY_FUZZ_RANDOM") is None,
)
