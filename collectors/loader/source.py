"""Read a JSON Lines file (plain or gzip) as chunks of whole lines, reporting how far into the file we are.

A chunk is the bytes of up to N consecutive lines and the number of its first
line. Cutting is done with ``bytes.find`` (no per-line objects), so the main
process stays cheap; workers split a chunk into its numbered lines.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 4 << 20


class UnreadableFile(OSError):
    """The file cannot be read to its end (a gzip file that is truncated or corrupt)."""


@dataclass(frozen=True)
class Chunk:
    first_line: int  # number of the chunk's first line, from 1
    data: bytes  # whole lines, each ending with b"\n" except perhaps the file's last

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line without its line break), blank lines included."""
        pieces = self.data.split(b"\n")
        if pieces and pieces[-1] == b"":
            pieces.pop()  # after the final line break: not a line
        for offset, piece in enumerate(pieces):
            yield self.first_line + offset, piece.removesuffix(b"\r")

    def line(self, number: int) -> bytes:
        """One line by its number (for the rare refused line; splits the chunk again)."""
        return self.data.split(b"\n")[number - self.first_line].removesuffix(b"\r")


class LineSource:
    """Chunks of one file; ``position`` is the offset reached in the file on disk (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._raw: BinaryIO | None = None

    @property
    def position(self) -> int:
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def chunks(self, lines_per_chunk: int) -> Iterator[Chunk]:
        """Chunks of ``lines_per_chunk`` lines (the last may be shorter); gzip is detected by its magic bytes."""
        with open(self.path, "rb") as raw:
            self._raw = raw
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if compressed else raw  # type: ignore[assignment]
            first_line, pending, count, scan = 1, b"", 0, 0
            while True:
                try:
                    block = stream.read(READ_BYTES)
                except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                    raise UnreadableFile(
                        f"{self.path}: not a readable gzip stream after line {first_line + count - 1} "
                        f"(truncated or corrupt: {error})"
                    ) from None
                if block:
                    pending += block
                cut = 0
                while True:
                    end = pending.find(b"\n", scan)
                    if end < 0:
                        break
                    count += 1
                    scan = end + 1
                    if count == lines_per_chunk:
                        yield Chunk(first_line, pending[cut:scan])
                        first_line += count
                        cut, count = scan, 0
                pending, scan = pending[cut:], scan - cut
                if not block:
                    if pending:
                        yield Chunk(first_line, pending)
                    return
