"""The game server's telemetry document as its documentation shows it, and variants of it: shared by the server
metrics marts' tests and the dashboards' tests."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

# The request body of POST /api/v1/telemetry as the game server's telemetry documentation gives it, verbatim.
EXAMPLE = """
{
  "server_id": "server-001",
  "timestamp": "2025-01-15T10:30:00Z",
  "hardware": {
    "cpu_usage_percent": 45.2,
    "cpu_usage_per_core": [42.1, 48.3, 44.5, 46.0],
    "memory_used_bytes": 2147483648,
    "memory_total_bytes": 8589934592,
    "memory_usage_percent": 25.0
  },
  "network": {
    "packets_per_sec_incoming": 15000,
    "packets_per_sec_outgoing": 12000,
    "avg_player_ping_ms": 45.3,
    "player_ping_percentiles": {
      "p50": 42.0,
      "p95": 58.0,
      "p99": 72.0
    },
    "active_connections": 1250
  },
  "performance": {
    "tick_rate_fps": 59.8,
    "target_fps": 60.0,
    "avg_tick_duration_ms": 16.72,
    "tick_duration_percentiles": {
      "p50": 16.5,
      "p95": 17.2,
      "p99": 18.5
    }
  },
  "game": {
    "active_player_count": 1250,
    "entities_per_map": {
      "map-001": 5000,
      "map-002": 3200
    }
  }
}
"""

DROP = object()  # a value that removes the field


def variant(server_id: str, reported_at: dt.datetime, changes: dict[str, Any]) -> dict[str, Any]:
    """The example document with ``changes`` (dotted path: new value, or DROP) applied."""
    document = copy.deepcopy(json.loads(EXAMPLE))
    document["server_id"] = server_id
    document["timestamp"] = reported_at.isoformat().replace("+00:00", "Z")
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        if value is DROP:
            del node[leaf]
        else:
            node[leaf] = value
    return document
