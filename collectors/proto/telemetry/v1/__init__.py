"""Generated stubs of the telemetry.v1 ingest contract (make proto)."""
