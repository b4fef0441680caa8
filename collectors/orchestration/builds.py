"""One dbt build of one cadence over one window: what the DAGs' dbt tasks do.

The marts of a cadence are built in two parts: ``marts`` (everything tagged with the cadence
except reliability) right after the window ends, and ``reliability`` once the configured lag has
passed (a receiver only counts when it was seen after the window, docs/DESIGN.md item 3). Each part
is one in-process ``dbt build`` under a warehouse-wide advisory lock, its ``run_results.json`` is
kept per DAG run, and a successful build is recorded in ``quality.dbt_builds``, the ledger the
weekly cleanup reads before it drops raw data (only builds of a whole part, not of one model family,
cover a window there).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.config import Settings
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.cadences import MODEL_FAMILIES, Cadence, Window
from collectors.orchestration.test_results import record_build_tests
from collectors.warehouse.db import advisory_lock, connect

log = logging.getLogger(__name__)

PARTS = ("marts", "reliability")
STAGING_TESTS = "resource_type:test,path:models/staging"
DBT_LOCK = "telemetry-dbt-build"


@dataclass(frozen=True)
class Selection:
    select: str
    exclude: str | None


def selection(cadence: Cadence, part: str, family: str | None = None) -> Selection:
    """dbt ``--select``/``--exclude`` for one part of a cadence, optionally one model family only.

    A whole ``marts`` part builds the cadence's models, the views and seeds they read, and never another
    cadence's tables: the weekly marts read the daily tables the daily runs built, and a weekly run that rebuilt
    them would redo seven days of daily models and their tests. The views are rebuilt so that a changed view
    takes effect; dbt replaces a view by dropping it with cascade, so the views built on top of one must be in
    the selection too (they are, being ancestors as well: ``tests/dags/test_build_selection.py``). The
    ``reliability`` part builds what is tagged reliability only; the ``marts`` part before it built its views.
    A cadence that reads another's tables (weekly, monthly: the daily ones) skips the data tests of the staging
    views it rebuilds: they check raw over the run's window, which the daily builds checked day by day, and over
    a month they cost most of the build (a uniqueness test over every user of every minute).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    if part not in cadence.parts:
        raise ValueError(f"the {cadence.name} cadence builds no {part} part (it builds {', '.join(cadence.parts)})")
    if family is not None and family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(MODEL_FAMILIES)}")
    tag = f"tag:{cadence.name}"
    if family is None:
        if part == "marts":
            exclude = "tag:reliability" + (f" {STAGING_TESTS}" if cadence.reads else "")
            return Selection(f"{tag} +{tag},config.materialized:view +{tag},resource_type:seed", exclude)
        return Selection(f"{tag},tag:reliability", None)
    scope = f"{tag},tag:reliability" if part == "reliability" else tag
    select = " ".join(f"{scope},{pattern}" for pattern in MODEL_FAMILIES[family])
    return Selection(select, "tag:reliability" if part == "marts" else None)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "manual"


@dataclass(frozen=True)
class BuildRecord:
    cadence: str
    part: str
    window: Window
    nodes: int
    elapsed_seconds: float
    artefacts_path: Path
    started_at: dt.datetime  # rows that land after this may be missing from the build (the reconcile planner)


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The dbt vars the warehouse's settings decide. The reliability look-back can reach no further back than
    the raw message samples are kept (older hours come from the presence summary, which outlives them, but a
    rebuild of the summary could not)."""
    lookback = min(settings.reliability_lookback_days, settings.retention.message_samples)
    if lookback < settings.reliability_lookback_days:
        log.warning("reliability look-back cut to %d days: message samples are kept only that long", lookback)
    return {"reliability_lookback_days": lookback}


def build_part(
    cadence: Cadence,
    part: str,
    window: Window,
    *,
    database_url: str,
    artefacts_dir: Path,
    dag_id: str | None = None,
    run_id: str | None = None,
    family: str | None = None,
    full_refresh: bool = False,
    settings: Settings | None = None,
) -> BuildRecord:
    """Build one part of ``cadence`` for ``window``; keep its run results; record it in the ledger.

    Raises ``collectors.orchestration.dbt_runner.DbtBuildError`` naming the failed nodes (its run results are kept too).
    A build restricted to one ``family`` is recorded with it, which covers no window: its other models were not built.
    """
    chosen = selection(cadence, part, family)
    target = artefacts_dir / "target" / cadence.name  # shared per cadence: dbt's parse cache lives here
    kept = artefacts_dir / "runs" / _safe(dag_id or "manual") / _safe(run_id or window.start.isoformat()) / part
    log.info("dbt build --select %r --exclude %r for %s", chosen.select, chosen.exclude, window)
    with advisory_lock(database_url, DBT_LOCK):
        (target / "run_results.json").unlink(missing_ok=True)  # never keep a previous run's results
        started_at = _database_clock(database_url)
        try:
            result = dbt.build(
                chosen.select,
                window.start,
                window.end,
                database_url=database_url,
                exclude=chosen.exclude,
                full_refresh=full_refresh,
                target_path=target,
                vars=dbt_vars(settings or Settings()),
            )
        finally:
            _keep_run_results(target, kept)
            record_build_tests(
                database_url,
                target,
                kept,
                cadence=cadence.name,
                part=part,
                window_start=window.start,
                window_end=window.end,
                family=family,
                dag_id=dag_id,
                run_id=run_id,
            )
    record = BuildRecord(cadence.name, part, window, len(result.nodes), result.elapsed_seconds, kept, started_at)
    log.info("built %d nodes in %.1f s; run results in %s", record.nodes, record.elapsed_seconds, kept)
    _record(database_url, record, dag_id=dag_id, run_id=run_id, full_refresh=full_refresh, family=family)
    return record


def project_manifest(cadence: Cadence, *, database_url: str, artefacts_dir: Path, settings: Settings) -> dict:
    """The dbt manifest, parsed in the cadence's target directory (where its builds left their saved parse)."""
    with advisory_lock(database_url, DBT_LOCK):
        return dbt.parse_manifest(
            database_url=database_url, vars=dbt_vars(settings), target_path=artefacts_dir / "target" / cadence.name
        )


def _database_clock(database_url: str) -> dt.datetime:
    """Now by the database's clock, the one that stamps the ingest ledger's arrivals, so the two compare without
    the skew of this machine's clock."""
    with connect(database_url) as conn:
        return conn.execute("select clock_timestamp()").fetchone()[0]


def _keep_run_results(target: Path, kept: Path) -> None:
    source = target / "run_results.json"
    if source.exists():
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, kept / "run_results.json")


def _record(
    database_url: str,
    record: BuildRecord,
    *,
    dag_id: str | None,
    run_id: str | None,
    full_refresh: bool,
    family: str | None,
) -> None:
    with connect(database_url) as conn:
        conn.execute(
            "insert into quality.dbt_builds (cadence, part, window_start, window_end, dag_id, run_id,"
            " full_refresh, nodes, elapsed_seconds, artefacts_path, started_at, family)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.cadence,
                record.part,
                record.window.start,
                record.window.end,
                dag_id,
                run_id,
                full_refresh,
                record.nodes,
                record.elapsed_seconds,
                str(record.artefacts_path),
                record.started_at,
                family,
            ),
        )
