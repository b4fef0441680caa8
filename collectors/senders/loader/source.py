"""Read a JSON Lines file (plain or gzip) as chunks of whole lines, reporting how far into the file we are.

A chunk is the bytes of up to N consecutive lines and the number of its first
line. Cutting is done with ``bytes.find`` (no per-line objects), so the main
process stays cheap; workers split a chunk into its numbered lines.

Memory stays bounded whatever the file holds: a line longer than ``max_line_bytes``
is never held whole. Only its start is kept (with its size and SHA-256, in
``Chunk.oversized``) and the rest is skipped as it streams by, so a small gzip that
expands to one huge line costs what its first bytes cost. A UTF-8 byte order mark
at the start of the file is not part of the first line.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
READ_BYTES = 4 << 20
MAX_LINE_BYTES = 1 << 20


class UnreadableFile(OSError):
    """The file cannot be read to its end (a gzip file that is truncated or corrupt)."""


@dataclass(frozen=True)
class OversizedLine:
    """A line longer than the limit: in the chunk only its start stands; its whole size and hash are here."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Chunk:
    first_line: int  # number of the chunk's first line, from 1
    data: bytes  # whole lines, each ending with b"\n" except perhaps the file's last
    oversized: dict[int, OversizedLine] = field(default_factory=dict)  # by line number
    origin: str = ""  # the file it comes from

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

    def chunks(self, lines_per_chunk: int, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Chunk]:
        """Chunks of ``lines_per_chunk`` lines (the last may be shorter); gzip is detected by its magic bytes.

        A line longer than ``max_line_bytes`` stands in its chunk as its first ``max_line_bytes`` bytes and is
        listed in ``Chunk.oversized``.
        """
        origin = str(self.path)
        with open(self.path, "rb") as raw:
            self._raw = raw
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if compressed else raw  # type: ignore[assignment]
            # pending: the current chunk's whole lines up to `scan`, then the start of the next line
            first_line, pending, count, scan, cut = 1, b"", 0, 0, 0
            oversized: dict[int, OversizedLine] = {}
            skipped: hashlib._Hash | None = None  # hash of the oversized line whose rest is being skipped
            skipped_bytes = 0
            at_start = True
            while True:
                try:
                    block = stream.read(READ_BYTES)
                except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                    raise UnreadableFile(
                        f"{self.path}: not a readable gzip stream after line {first_line + count - 1} "
                        f"(truncated or corrupt: {error})"
                    ) from None
                if at_start and block:
                    block, at_start = block.removeprefix(UTF8_BOM), False
                if skipped is not None:
                    end = block.find(b"\n")
                    skipped.update(block if end < 0 else block[:end])
                    skipped_bytes += len(block) if end < 0 else end
                    if end < 0 and block:
                        continue
                    oversized[first_line + count] = OversizedLine(skipped_bytes, skipped.hexdigest())
                    skipped = None
                    if end < 0:  # the file ends inside the line
                        count += 1
                    else:
                        pending += b"\n"
                        block = block[end + 1 :]
                pending += block
                while True:
                    end = pending.find(b"\n", scan)
                    if end < 0:
                        break
                    if end - scan > max_line_bytes:
                        line = pending[scan:end]
                        oversized[first_line + count] = OversizedLine(len(line), hashlib.sha256(line).hexdigest())
                        pending = pending[: scan + max_line_bytes] + pending[end:]
                        end = scan + max_line_bytes
                    count += 1
                    scan = end + 1
                    if count == lines_per_chunk:
                        yield Chunk(first_line, pending[cut:scan], oversized, origin)
                        first_line += count
                        cut, count, oversized = scan, 0, {}
                pending, scan, cut = pending[cut:], scan - cut, 0
                if len(pending) - scan > max_line_bytes:
                    # a line longer than the limit and no end in sight: keep its start, hash the rest as it passes
                    skipped, skipped_bytes = hashlib.sha256(pending[scan:]), len(pending) - scan
                    pending = pending[: scan + max_line_bytes]
                    continue
                if not block:
                    if pending:
                        yield Chunk(first_line, pending, oversized, origin)
                    return
