"""A directory of serialized requests that could not be delivered yet, replayed oldest first.

Each file holds one request, written to a temporary name, fsynced and renamed,
so a crash leaves either a whole file or none (a temporary file left by a
process that died is removed when the spool is next opened). A file is
removed only after the receiver acknowledged its batch; a replay after a crash
between ack and removal is harmless because the receiver deduplicates on
natural keys. A batch the receiver refuses for good (malformed, oversized), or
that failed ``max attempts`` times while the receiver was answering, is moved to
``refused/`` with the reason beside it, so it cannot block the batches behind
it; nothing in the spool is ever deleted unacknowledged.

A batch that failed is retried on its own schedule: the number of attempts is in
its file name and the time of the last one is the file's modification time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 15 * 60.0


class SpoolWriteError(OSError):
    """The spool cannot keep the batch (disk full, read-only, no permission): the caller still holds it.

    Raised by :meth:`IngestClient.push` with ``result`` (what was delivered or spooled of that push) and
    ``unsaved`` (``(offset, count)`` of each batch of the pushed records that is neither): resend those.
    """

    result: object = None
    unsaved: tuple[tuple[int, int], ...] = ()


class SpoolFullError(SpoolWriteError):
    """The spool's disk is full (or over quota)."""


@dataclass(frozen=True)
class SpooledBatch:
    path: Path
    method: str
    attempts: int = 0  # failed deliveries so far

    def read(self) -> bytes:
        return self.path.read_bytes()

    def due(self, now: float | None = None) -> bool:
        """True when the batch may be tried again: never tried, or its back-off since the last try has passed."""
        if not self.attempts:
            return True
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (self.attempts - 1))
        try:
            last = self.path.stat().st_mtime
        except OSError:
            return True
        return (time.time() if now is None else now) >= last + delay


def _parse(path: Path) -> SpooledBatch:
    # <stamp>-<pid>-<seq>.<method>[.<attempts>].pb
    parts = path.name.split(".")
    attempts = int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else 0
    return SpooledBatch(path, parts[1], attempts)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._sequence = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "refused").mkdir(exist_ok=True)  # made now: on a full disk it could not be later
        except OSError as error:
            # a spool that cannot be written must not stop the sender: each put() says so when it is needed
            log.warning("spool %s is not writable (%s); undelivered batches cannot be kept", self.directory, error)
        self._remove_abandoned()

    def _remove_abandoned(self) -> None:
        """Delete temporary files of processes that died while writing (never a whole batch)."""
        for partial in self.directory.glob(".*.partial"):
            try:
                pid = int(partial.name.split("-")[1])
                os.kill(pid, 0)
            except (IndexError, ValueError, ProcessLookupError):
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
            except PermissionError:
                pass  # alive, another user's

    def put(self, method: str, request: bytes) -> SpooledBatch:
        """Store one serialized request for ``method`` durably; raises :class:`SpoolWriteError` when it cannot."""
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
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            kind = SpoolFullError if error.errno in (errno.ENOSPC, errno.EDQUOT) else SpoolWriteError
            what = "is full" if kind is SpoolFullError else f"cannot be written ({error.strerror or error})"
            raise kind(error.errno, f"spool {self.directory} {what}; batch kept in memory") from error
        return SpooledBatch(final, method)

    def batches(self) -> Iterator[SpooledBatch]:
        """Spooled batches, oldest first."""
        for path in sorted(self.directory.glob("*.pb")):
            yield _parse(path)

    def remove(self, batch: SpooledBatch) -> None:
        batch.path.unlink(missing_ok=True)

    def record_attempt(self, batch: SpooledBatch) -> SpooledBatch:
        """Count a failed delivery of ``batch`` (in its name) and start its back-off now (its mtime)."""
        attempts = batch.attempts + 1
        stem = batch.path.name.split(".")[0]
        target = batch.path.with_name(f"{stem}.{batch.method}.{attempts}.pb")
        try:
            os.replace(batch.path, target)
            os.utime(target)
        except OSError as error:
            log.warning("could not record a failed delivery of %s: %s", batch.path.name, error)
            return batch
        return SpooledBatch(target, batch.method, attempts)

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
