"""Everything that lands raw telemetry in the warehouse: receiver, client, collectors, loader, simulator."""
