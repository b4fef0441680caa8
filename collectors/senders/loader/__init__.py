"""The telemetry_event_v1 JSON Lines loader: validate every line, land the good ones once, reject the rest."""
