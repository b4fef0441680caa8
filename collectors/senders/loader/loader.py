"""Load JSON Lines files: cut them into chunks, prepare each (in worker processes for large files), land the
results in file order through a sink, and count what happened per file."""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from collectors.senders.loader.prepare import PreparedBatch
from collectors.senders.loader.sinks import Sink
from collectors.senders.loader.source import MAX_LINE_BYTES, Chunk, LineSource

DEFAULT_BATCH_LINES = 2000
PARALLEL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves


class StrictModeStop(Exception):
    """``--strict`` met an invalid line: the file's transaction is rolled back."""

    def __init__(self, line_number: int, reason: str) -> None:
        super().__init__(f"line {line_number}: {reason}")
        self.line_number = line_number
        self.reason = reason


@dataclass
class FileReport:
    path: Path
    lines: int = 0
    blank: int = 0
    accepted: int = 0
    duplicates: int = 0
    sampled_out: int = 0  # lines of users outside the sample (TELEMETRY_SAMPLING_RATES): skipped, not rejects
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), in line order
    stopped: StrictModeStop | None = None  # set when --strict stopped the file: nothing of it landed

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    def reasons(self) -> Counter[str]:
        """Rejects per reason, with line-specific details (JSON error positions) folded together."""
        return Counter(reason.split(":")[0] for _, reason in self.rejects)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes for the prepare stage; forkserver, so no thread state of this process is forked."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def prepared(
    sink: Sink, pieces: Iterator[Chunk], pool: Executor | None, window: int
) -> Iterator[tuple[Chunk, PreparedBatch]]:
    """(chunk, its prepared batch) in file order; with a pool, up to ``window`` chunks are prepared ahead."""
    if pool is None:
        for chunk in pieces:
            yield chunk, sink.prepare(chunk)
        return
    pending: deque[tuple[Chunk, Future[PreparedBatch]]] = deque()
    try:
        for chunk in pieces:
            pending.append((chunk, pool.submit(sink.prepare, chunk)))
            if len(pending) >= window:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        for _, future in pending:
            future.cancel()


def load_file(
    path: Path,
    sink: Sink,
    *,
    strict: bool = False,
    batch_lines: int = DEFAULT_BATCH_LINES,
    progress: bool = False,
    pool: Executor | None = None,
    window: int = 4,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> FileReport:
    """Load one file through ``sink``. With ``strict`` the first invalid line stops the file and nothing of it
    lands (database sink: its transaction rolls back; receiver sink: validate first, see the CLI).
    ``pool`` prepares chunks in other processes (used only for files of at least ``parallel_min_bytes``)."""
    report = FileReport(Path(path))
    source = LineSource(path)
    if source.size < parallel_min_bytes:
        pool = None
    bar = tqdm(total=source.size, unit="B", unit_scale=True, desc=Path(path).name, disable=not progress, leave=False)
    try:
        with sink.file(str(path)):
            for chunk, batch in prepared(sink, source.chunks(batch_lines, max_line_bytes), pool, window):
                report.lines += batch.lines
                report.blank += batch.blank
                report.sampled_out += batch.sampled_out
                if strict and batch.rejects:
                    raise StrictModeStop(*batch.rejects[0][:2])
                outcome = sink.land(chunk, batch)
                if strict and outcome.rejects:
                    raise StrictModeStop(*outcome.rejects[0])
                report.accepted += outcome.accepted
                report.duplicates += outcome.duplicates
                report.rejects += outcome.rejects
                bar.update(source.position - bar.n)
    except StrictModeStop as stop:
        report.stopped = stop
        report.accepted = report.duplicates = report.sampled_out = 0
    finally:
        bar.close()
    report.rejects.sort()
    return report
