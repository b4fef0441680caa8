"""Read a JSON Lines file (plain or gzip) as numbered raw lines, reporting how far into the file we are."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class LineSource:
    """Numbered lines of one file; ``position`` is the offset reached in the file on disk (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._raw: BinaryIO | None = None

    @property
    def position(self) -> int:
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number from 1, line without its line break); gzip is detected by its magic bytes."""
        with open(self.path, "rb") as raw:
            self._raw = raw
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if compressed else raw
            with io.BufferedReader(stream, 1 << 20) if compressed else stream as reader:
                for number, line in enumerate(reader, start=1):
                    yield number, line.rstrip(b"\r\n")
