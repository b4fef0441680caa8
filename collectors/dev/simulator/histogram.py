"""The mergeable log histogram of ingest.proto: bucket i holds gamma^(i-1) < v <= gamma^i, a = 0.005."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from collectors.proto.telemetry.v1 import ingest_pb2 as pb

RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)


def bucket_index(value: float) -> int:
    """The bucket of a positive value (values exactly on a bound belong to the lower bucket)."""
    index = math.ceil(math.log(value) / LOG_GAMMA)
    # guard the float rounding at the bucket bounds
    if GAMMA ** (index - 1) >= value:
        index -= 1
    elif GAMMA**index < value:
        index += 1
    return index


def log_histogram(values: Iterable[float]) -> pb.LogHistogram:
    counts: Counter[int] = Counter()
    zero = 0
    total, low, high = 0.0, math.inf, -math.inf
    for value in values:
        total += value
        low, high = min(low, value), max(high, value)
        if value <= 0:
            zero += 1
        else:
            counts[bucket_index(value)] += 1
    index = sorted(counts)
    return pb.LogHistogram(
        bucket_index=index,
        bucket_count=[counts[i] for i in index],
        zero_count=zero,
        sum=total,
        min=low if math.isfinite(low) else 0.0,
        max=high if math.isfinite(high) else 0.0,
    )
