"""Build the due windows of a plan, in its order, with the build the DAGs' dbt tasks run.

Consecutive windows of one cadence become one range, as a manual range run of its DAG: every model is
window-incremental on its own period grain, so one build of the range equals one build per window, in one dbt
call. Each range builds its cadence's parts in the DAG's order (marts, then reliability). The first failure
stops the rest: what comes after a window reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collectors.orchestration.cadences import CADENCES, Cadence, Window, parse_instant
from collectors.orchestration.reconcile import Planned

if TYPE_CHECKING:  # the reconcile DAG file imports this module when it is parsed: nothing heavy at import
    from collectors.config import Settings
    from collectors.orchestration.builds import BuildRecord

# what the rebuilds record as their dag_id in quality.dbt_builds: the telemetry-ops CLI and the reconcile DAG
OPS_DAG_ID = "telemetry-ops"
RECONCILE_DAG_ID = "telemetry_reconcile"
REBUILDERS = (OPS_DAG_ID, RECONCILE_DAG_ID)


@dataclass(frozen=True)
class Step:
    """One build: one part of one cadence over a range of its windows."""

    cadence: Cadence
    part: str
    window: Window

    def __str__(self) -> str:
        return f"{self.cadence.name} {self.part} {self.window}"

    def as_dict(self) -> dict[str, str]:
        return {
            "cadence": self.cadence.name,
            "part": self.part,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> Step:
        window = Window(parse_instant(values["window_start"]), parse_instant(values["window_end"]))
        return cls(CADENCES[values["cadence"]], values["part"], window)


def steps(planned: Iterable[Planned]) -> list[Step]:
    """The builds that rebuild ``planned`` (in dependency order), consecutive windows of a cadence merged."""
    ranges: list[tuple[Cadence, Window]] = []
    for item in planned:
        if ranges and ranges[-1][0] is item.cadence and ranges[-1][1].end == item.window.start:
            ranges[-1] = (item.cadence, Window(ranges[-1][1].start, item.window.end))
        else:
            ranges.append((item.cadence, item.window))
    return [Step(cadence, part, window) for cadence, window in ranges for part in cadence.parts]


def build_step(
    step: Step,
    *,
    database_url: str,
    settings: Settings,
    dag_id: str,
    run_id: str,
    family: str | None = None,
    full_refresh: bool = False,
) -> BuildRecord:
    """Build ``step`` (``collectors.orchestration.builds.build_part``): what the cadence DAGs' dbt tasks do for
    their run's window and part, and what the rebuilds do for each of theirs."""
    from collectors.orchestration.builds import build_part

    return build_part(
        step.cadence,
        step.part,
        step.window,
        database_url=database_url,
        artefacts_dir=settings.artefacts_dir,
        dag_id=dag_id,
        run_id=run_id,
        family=family,
        full_refresh=full_refresh,
        settings=settings,
    )


def run(
    planned: Iterable[Step], build: Callable[[Step], object], *, on_step: Callable[[Step], None] | None = None
) -> list[Step]:
    """Build the steps in order with ``build``, which raises on failure (and then nothing after it is built)."""
    done = []
    for step in planned:
        if on_step is not None:
            on_step(step)
        build(step)
        done.append(step)
    return done
