"""Protocol buffers of the ingest contract and the stub generator."""
