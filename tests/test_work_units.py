"""``make test`` hands each xdist worker whole work units (tests/conftest.py): check that xdist really schedules by
them, since a pytest or pytest-xdist upgrade can make it ignore the groups without a word."""

from __future__ import annotations

import pytest


def test_every_test_is_scheduled_in_its_work_unit(request: pytest.FixtureRequest) -> None:
    """xdist schedules by the ``@group`` suffix of the node ids. Without it each test is a unit of its own: module
    fixtures (a running Airflow, a landed week) are made on both workers, and a module's closing checks run apart
    from the tests they check."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("the work units exist only under --dist loadgroup (make test)")
    ungrouped = [item.nodeid for item in request.session.items if "@" not in item.nodeid]
    assert not ungrouped, (
        f"xdist ignored the xdist_group markers of {len(ungrouped)} tests (first: {ungrouped[0]}); pin a pytest"
        " and pytest-xdist pair that applies them"
    )
