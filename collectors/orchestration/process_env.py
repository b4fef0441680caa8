"""Set environment variables for the length of a block (dbt's profile and GX's config read them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def temporary_environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ``; restore (or remove) each key on exit."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
