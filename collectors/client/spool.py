"""A directory of serialized requests that could not be delivered yet, replayed oldest first.

Each file holds one request, written to a temporary name, fsynced and renamed,
so a crash leaves either a whole file or none (a temporary file left by a
process that died is removed when the spool is next opened). A file is
removed only after the receiver acknowledged its batch; a replay after a crash
between ack and removal is harmless because the receiver deduplicates on
natural keys. A batch the receiver refuses for good (malformed, oversized) is
moved to ``refused/`` with the reason beside it, so it cannot block the
batches behind it; nothing in the spool is ever deleted unacknowledged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class SpoolFullError(OSError):
    """The spool's disk is full (or over quota): the batch could not be kept. The caller still holds it.

    Raised by :meth:`IngestClient.push` with ``result`` (what was delivered or spooled of that push) and
    ``unsaved`` (``(offset, count)`` of each batch of the pushed records that is neither): resend those.
    """

    result: object = None
    unsaved: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SpooledBatch:
    path: Path
    method: str

    def read(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence = 0
        (self.directory / "refused").mkdir(exist_ok=True)  # made now: on a full disk it could not be later
        self._remove_abandoned()

    def _remove_abandoned(self) -> None:
        """Delete temporary files of processes that died while writing (never a whole batch)."""
        for partial in self.directory.glob(".*.partial"):
            try:
                pid = int(partial.name.split("-")[1])
                os.kill(pid, 0)
            except (IndexError, ValueError, ProcessLookupError):
                partial.unlink(missing_ok=True)
            except PermissionError:
                pass  # alive, another user's

    def put(self, method: str, request: bytes) -> SpooledBatch:
        """Store one serialized request for ``method`` durably."""
        self._sequence += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._sequence:06d}.{method}.pb"
        final = self.directory / name
        partial = self.directory / f".{name}.partial"
        try:
            with open(partial, "wb") as handle:
                handle.write(request)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            partial.unlink(missing_ok=True)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError(error.errno, f"spool {self.directory} is full; batch kept in memory") from error
            raise
        return SpooledBatch(final, method)

    def batches(self) -> Iterator[SpooledBatch]:
        """Spooled batches, oldest first."""
        for path in sorted(self.directory.glob("*.pb")):
            yield SpooledBatch(path, path.name.split(".")[-2])

    def remove(self, batch: SpooledBatch) -> None:
        batch.path.unlink(missing_ok=True)

    def set_aside(self, batch: SpooledBatch, reason: str) -> Path:
        """Move a batch the receiver refused for good to ``refused/`` (with ``<name>.reason``); returns its path."""
        target = self.directory / "refused" / batch.path.name
        os.replace(batch.path, target)
        with contextlib.suppress(OSError):  # a full disk: the batch is kept all the same, only the note is lost
            target.with_name(target.name + ".reason").write_text(reason + "\n", encoding="utf-8")
        return target

    def refused(self) -> list[Path]:
        """Batches set aside, oldest first."""
        return sorted((self.directory / "refused").glob("*.pb"))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.pb"))
