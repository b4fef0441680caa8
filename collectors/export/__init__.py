"""telemetry-export: a period of the marts, or of raw product events, to Parquet, JSON lines or CSV for notebooks,
with an inventory file (rows per table and day, files written, rejects in the period)."""
