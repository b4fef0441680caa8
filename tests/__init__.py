"""The test suite. ``make test`` runs it on two pytest-xdist workers (see ``tests/conftest.py``); this module is
imported before any conftest and gives each worker a state directory of its own (dbt targets and their saved
parse, artefacts, GX), read by :mod:`collectors.config` when it is first imported."""

import os
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("TELEMETRY_STATE_DIR"):
    os.environ["TELEMETRY_STATE_DIR"] = tempfile.mkdtemp(prefix=f"telemetry-state-{os.environ['PYTEST_XDIST_WORKER']}-")
