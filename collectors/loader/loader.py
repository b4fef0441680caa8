"""Load JSON Lines files: parse each line, land batches through a sink, and count what happened per file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from collectors.loader.lines import LineRefused, parse_line
from collectors.loader.sinks import Line, Sink
from collectors.loader.source import LineSource

DEFAULT_BATCH_LINES = 2000


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
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), in line order
    stopped: StrictModeStop | None = None  # set when --strict stopped the file: nothing of it landed

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    def reasons(self) -> Counter[str]:
        """Rejects per reason, with line-specific details (JSON error positions) folded together."""
        return Counter(reason.split(":")[0] for _, reason in self.rejects)


def parsed_lines(source: LineSource, report: FileReport, default_user_id: str) -> Iterator[Line]:
    for number, raw in source.lines():
        report.lines += 1
        if not raw.strip():
            report.blank += 1
            continue
        try:
            yield Line(number, raw, parse_line(raw, default_user_id=default_user_id))
        except LineRefused as refused:
            yield Line(number, raw, error=str(refused))


def load_file(
    path: Path,
    sink: Sink,
    *,
    strict: bool = False,
    batch_lines: int = DEFAULT_BATCH_LINES,
    default_user_id: str = "",
    progress: bool = False,
) -> FileReport:
    """Load one file through ``sink``. With ``strict`` the first invalid line stops the file and nothing of it
    lands (database sink: its transaction rolls back; receiver sink: validate first, see the CLI)."""
    report = FileReport(Path(path))
    source = LineSource(path)
    bar = tqdm(total=source.size, unit="B", unit_scale=True, desc=Path(path).name, disable=not progress, leave=False)

    def land(batch: list[Line]) -> None:
        if strict:
            for line in batch:
                if line.event is None:
                    raise StrictModeStop(line.number, line.error)
        outcome = sink.land(batch)
        if strict and outcome.rejects:
            raise StrictModeStop(*outcome.rejects[0])
        report.accepted += outcome.accepted
        report.duplicates += outcome.duplicates
        report.rejects += outcome.rejects
        bar.update(source.position - bar.n)

    try:
        with sink.file(str(path)):
            batch: list[Line] = []
            for line in parsed_lines(source, report, default_user_id):
                batch.append(line)
                if len(batch) >= batch_lines:
                    land(batch)
                    batch = []
            if batch:
                land(batch)
    except StrictModeStop as stop:
        report.stopped = stop
        report.accepted = report.duplicates = 0
    finally:
        bar.close()
    report.rejects.sort()
    return report
