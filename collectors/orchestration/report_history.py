"""History for the data-quality report: a pass/fail strip per test over its last runs.

dbt: every test node's last ``HISTORY_RUNS`` results, from ``quality.dbt_test_results`` joined to the builds
that ran them (a test belongs to one cadence and part, so its runs are that part's builds). Great
Expectations: ``quality.validation_runs`` keeps one row per suite and asset per run with the expectations that
did not pass, so an asset's strip is exact, and an expectation's strip is exact for the expectations that
failed at least once in the runs shown (in a run where its asset was validated and it is not among the
failures, it passed). No Airflow, dbt or GX import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from collectors.orchestration.report import ValidationRun

HISTORY_RUNS = 30  # cells per strip
HISTORY_DAYS = 400  # builds older than this are not read (a weekly test's 30 runs are 30 weeks)


@dataclass(frozen=True)
class Cell:
    """One run of one test: status is pass, fail, warn, error, skipped (dbt) or passed, failed, errored (GX)."""

    status: str
    at: dt.datetime
    run: str  # the dbt invocation id, or the Airflow run id of a validation
    detail: str | None = None  # failing rows, observed value

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "passed")


@dataclass(frozen=True)
class TestHistory:
    """A test's last runs, oldest first (the strip reads left to right)."""

    __test__ = False

    key: str  # dbt unique_id, or suite/asset[/expectation]
    name: str
    models: list[str] = field(default_factory=list)  # dbt: what it tests; GX: the asset
    column: str | None = None
    kind: str | None = None
    cadence: str | None = None
    cells: list[Cell] = field(default_factory=list)
    data_docs_page: str | None = None  # GX: the asset's newest result page, when there is one

    @property
    def last(self) -> Cell | None:
        return self.cells[-1] if self.cells else None

    @property
    def not_passed(self) -> int:
        return sum(not c.ok and c.status != "skipped" for c in self.cells)

    @property
    def failing_now(self) -> bool:
        return self.last is not None and not self.last.ok and self.last.status != "skipped"

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "models": self.models,
            "column": self.column,
            "kind": self.kind,
            "cadence": self.cadence,
            "not_passed": self.not_passed,
            "runs": [
                {"status": c.status, "at": c.at.isoformat(), "run": c.run, "detail": c.detail} for c in self.cells
            ],
        }


def _order(histories: list[TestHistory]) -> list[TestHistory]:
    """Failing now first, then those that did not pass in the window, then by model and name."""
    return sorted(histories, key=lambda h: (not h.failing_now, h.not_passed == 0, h.models[:1], h.name))


DBT_HISTORY_QUERY = """
with recent as (
    select r.unique_id, r.test_name, r.models, r.column_name, r.test_kind, r.status, r.failures,
           b.invocation_id, b.generated_at, b.cadence, b.part,
           row_number() over (partition by r.unique_id order by b.generated_at desc) as n
    from quality.dbt_test_results as r
    join quality.dbt_test_runs as b using (invocation_id)
    where b.generated_at >= %(since)s
)
select * from recent where n <= %(runs)s order by unique_id, generated_at
"""


def read_dbt_history(
    conn: psycopg.Connection, *, runs: int = HISTORY_RUNS, now: dt.datetime | None = None
) -> list[TestHistory]:
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=HISTORY_DAYS)
    histories: dict[str, TestHistory] = {}
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for row in cur.execute(DBT_HISTORY_QUERY, {"since": since, "runs": runs}):
            history = histories.get(row["unique_id"])
            if history is None:
                history = histories[row["unique_id"]] = TestHistory(
                    key=row["unique_id"],
                    name=row["test_name"],
                    models=list(row["models"] or []),
                    column=row["column_name"],
                    kind=row["test_kind"],
                    cadence=" ".join(p for p in (row["cadence"], row["part"]) if p) or None,
                )
            detail = f"{row['failures']} failing rows" if row["failures"] else None
            history.cells.append(Cell(row["status"], row["generated_at"], row["invocation_id"], detail))
    return _order(list(histories.values()))


def validation_history(runs: Sequence[ValidationRun]) -> list[TestHistory]:
    """A strip per (suite, asset), and per expectation that did not pass in any of ``runs`` (newest first)."""
    assets: dict[tuple[str, str], TestHistory] = {}
    pages: dict[tuple[str, str], str] = {}
    expectations: dict[tuple[str, str, str, str], TestHistory] = {}
    failing = sorted({(f.suite, f.asset, f.expectation, f.column or "") for run in runs for f in run.failures})
    for run in reversed(runs):  # oldest first
        run_name = run.run_id or run.started_at.isoformat()
        for asset in run.assets:
            key = (asset.suite, asset.asset)
            failures = {
                (f.suite, f.asset, f.expectation, f.column or ""): f for f in run.failures if (f.suite, f.asset) == key
            }
            errored_only = bool(failures) and all(f.errored for f in failures.values())
            status = "passed" if asset.success else "errored" if errored_only else "failed"
            history = assets.setdefault(
                key, TestHistory(f"{asset.suite}/{asset.asset}", asset.asset, models=[asset.asset], kind=asset.suite)
            )
            history.cells.append(Cell(status, run.finished_at, run_name, f"{asset.failed} of {asset.evaluated} failed"))
            if asset.data_docs_page:
                pages[key] = asset.data_docs_page
            for fkey in (k for k in failing if k[:2] == key):
                entry = expectations.setdefault(
                    fkey,
                    TestHistory(
                        "/".join(fkey), fkey[2], models=[asset.asset], column=fkey[3] or None, kind=asset.suite
                    ),
                )
                failure = failures.get(fkey)
                if failure is None:
                    entry.cells.append(Cell("passed", run.finished_at, run_name))
                else:
                    detail = failure.error if failure.errored else failure.observed
                    entry.cells.append(
                        Cell("errored" if failure.errored else "failed", run.finished_at, run_name, detail)
                    )
    for key, page in pages.items():
        assets[key] = dataclasses.replace(assets[key], data_docs_page=page)
    for fkey, entry in expectations.items():
        if fkey[:2] in pages:
            expectations[fkey] = dataclasses.replace(entry, data_docs_page=pages[fkey[:2]])
    return _order(list(assets.values())) + _order(list(expectations.values()))
