"""The weekly validation gate: Great Expectations 1.x over the raw partitions about to be dropped and the marts.

``validate_week`` builds the suites of ``collectors.orchestration.expectations`` (defined in code), runs them as
one GX Checkpoint in the file context at ``gx_dir`` (one Data Docs update), stores one row per
(suite, asset) in ``quality.validation_runs`` and returns a ``ValidationOutcome``; the weekly DAG's
``validate`` task raises ``AirflowFailException(outcome.message())`` when ``outcome.success`` is
false, so nothing is dropped. An expectation that raised instead of evaluating the data (a missing table,
a query error) fails the run too, but is kept apart from data failures: ``"errored": true`` and its cause in
its failure, counted in ``quality.validation_runs.errored``, "errored: <cause>" in the message.

No Airflow import here, and ``great_expectations`` is imported only when a validation runs (it costs
seconds), so DAG files can import this module cheaply.

Secrets: ``great_expectations.yml`` holds ``${TELEMETRY_GX_WAREHOUSE_URL}``, never the URL. GX
substitutes it from the process environment, where the URL is set only while ``validate_week``
runs (and the previous value put back afterwards).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from collectors.orchestration.process_env import temporary_environment
from collectors.warehouse.db import RAW_TABLES, connect, sqlalchemy_url
from collectors.warehouse.partitions import Partition

log = logging.getLogger(__name__)

URL_VARIABLE = "TELEMETRY_GX_WAREHOUSE_URL"  # the only thing great_expectations.yml knows of the connection
DATASOURCE = "telemetry_warehouse"
CHECKPOINT = "telemetry_weekly_validation"
SITE = "local_site"
SAMPLE_VALUES = 5  # offending values kept per failing expectation
_RUN_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+-]")  # a run name is a directory of the GX stores


@dataclass(frozen=True)
class SuiteResult:
    """One suite run on one asset."""

    suite: str
    asset: str
    success: bool
    evaluated: int
    failed: int
    # one dict per failing expectation: expectation, description, column(s), kwargs, observed, sample; one that
    # raised instead of evaluating the data has "errored": true and the exception ("cause": its first line)
    failures: list[dict[str, Any]] = field(default_factory=list)
    data_docs_page: Path | None = None
    scope: dict[str, Any] = field(default_factory=dict)

    @property
    def errored(self) -> int:
        """Failed expectations that could not be evaluated (a missing table, a query error): not data failures."""
        return sum(bool(f.get("errored")) for f in self.failures)

    def failure_lines(self) -> list[str]:
        """Data failures first, then the errors: a reviewer reads them differently."""
        ordered = sorted(self.failures, key=lambda f: bool(f.get("errored")))
        return [f"{self.suite}/{self.asset}: {describe_failure(f)}" for f in ordered]


@dataclass(frozen=True)
class ValidationOutcome:
    results: list[SuiteResult]
    data_docs_index: Path
    run_name: str = ""
    elapsed_seconds: float = 0.0

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def failing_expectations(self) -> list[str]:
        """Human-readable, one line per failing expectation: ``suite/asset: expect_... (column x): observed ...``."""
        return [line for result in self.results for line in result.failure_lines()]

    def message(self) -> str:
        """What the failed task says: how many expectations failed, each of them, and where Data Docs are."""
        if self.success:
            return (
                f"validation passed: {len(self.results)} suite runs, "
                f"{sum(r.evaluated for r in self.results)} expectations; Data Docs: {self.data_docs_index}"
            )
        lines = self.failing_expectations()
        failed_runs = sum(not r.success for r in self.results)
        errored = sum(r.errored for r in self.results)
        kinds = f" ({len(lines) - errored} on the data, {errored} errored: not evaluated)" if errored else ""
        return (
            f"validation failed: {len(lines)} failing expectations{kinds} in {failed_runs} of {len(self.results)} "
            f"suite runs; nothing may be dropped. Data Docs: {self.data_docs_index}\n" + "\n".join(lines)
        )


def describe_failure(failure: dict[str, Any]) -> str:
    """``expect_... (column x) "description": observed ...; sample [...]``, or ``...: errored: <cause>``."""
    text = failure["expectation"]
    if failure.get("column"):
        text += f" (column {failure['column']})"
    elif failure.get("columns"):
        text += f" (columns {', '.join(failure['columns'])})"
    if failure.get("description"):
        text += f' "{failure["description"]}"'
    if failure.get("errored"):
        return text + f": errored: {failure.get('cause') or failure.get('exception') or 'unknown error'}"
    if failure.get("observed") is not None:
        text += f": observed {failure['observed']}"
    if failure.get("sample"):
        text += f"; sample {json.dumps(failure['sample'], default=str)[:600]}"
    if failure.get("exception"):
        text += f"; error {failure['exception'][:600]}"
    return text


# --------------------------------------------------------------------------- GX plumbing


@contextmanager
def _exclusive(gx_dir: Path) -> Iterator[None]:
    """One validation at a time per GX directory (two runs would rewrite each other's definitions)."""
    gx_dir.mkdir(parents=True, exist_ok=True)
    with open(gx_dir / ".validation.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _gx_url(database_url: str) -> str:
    """The SQLAlchemy URL GX connects with: psycopg2, sessions in UTC (as ``collectors.warehouse.db.connect``)."""
    url = sqlalchemy_url(database_url)
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg2://" + url[len(prefix) :]
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key == "options" for key, _ in query):
        query.append(("options", "-c timezone=UTC"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _context(gx_dir: Path) -> Any:
    """The file context in ``gx_dir``, created on first use.

    Two settings of great_expectations.yml are ours: no progress bars (task logs), and no
    ``config_variables.yml``: the connection comes from the environment only, and GX would otherwise
    re-read and parse that file at every config lookup (hundreds per run, seconds in all).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", context_root_dir=str(gx_dir))
    bars = context.variables.progress_bars
    quiet = (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", True)) is False
    if quiet and context.variables.config_variables_file_path is None:
        return context
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.config_variables_file_path = None
    context.variables.save()
    return gx.get_context(mode="file", context_root_dir=str(gx_dir))  # registered its providers from the old file


def _observed(expectation_type: str, result: dict[str, Any]) -> Any:
    if expectation_type == "expect_query_to_return_no_rows" and "observed_value" in result:
        count = result["observed_value"]
        return f"{count} unexpected row" + ("" if count == 1 else "s")
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        text = f"{result['unexpected_count']} unexpected of {result.get('element_count')}"
        if result.get("unexpected_percent") is not None:
            text += f" ({result['unexpected_percent']:.3g} %)"
        return text
    return None


def _failure(expectation_result: Any) -> dict[str, Any]:
    config = expectation_result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k not in ("batch_id", "result_format")}
    result = dict(expectation_result.result or {})
    failure: dict[str, Any] = {
        "expectation": config.type,
        "description": config.description,
        "column": kwargs.get("column"),
        "columns": kwargs.get("column_list"),
        "kwargs": kwargs,
        "observed": _observed(config.type, result),
    }
    sample = (result.get("details") or {}).get("unexpected_rows_sample") or result.get("partial_unexpected_list")
    if sample:
        failure["sample"] = list(sample)[:SAMPLE_VALUES]
    messages = _exception_messages(expectation_result.exception_info)
    if messages:
        failure["errored"] = True
        failure["exception"] = "\n".join(messages)[:1000]
        failure["cause"] = _cause(messages[0])
    return {k: v for k, v in failure.items() if v is not None}


def _exception_messages(info: Any) -> list[str]:
    """The distinct messages of what an expectation raised.

    GX puts an exception raised while validating at the top of ``exception_info``, but one raised while
    computing a metric (the asset's query failed: a missing table, a bad column) one level down, under the
    metric's id; both count.
    """
    if not isinstance(info, Mapping):
        return []
    found = [info] if info.get("raised_exception") else []
    found += [v for v in info.values() if isinstance(v, Mapping) and v.get("raised_exception")]
    messages = [str(item.get("exception_message") or "exception without a message").strip() for item in found]
    return list(dict.fromkeys(messages))


_SQL_NOISE = re.compile(r"^\((?:psycopg2?|sqlalchemy)[\w.]*\)\s*")


def _cause(message: str) -> str:
    """The first line of an exception message, without the driver's class prefix: what went wrong."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), message.strip())
    first = _SQL_NOISE.sub("", first)
    return first if len(first) <= 300 else first[:299] + "…"


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _docs_page(context: Any, identifier: Any) -> Path | None:
    for site in context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE):
        url = site.get("site_url") or ""
        if url.startswith("file://"):
            return Path(unquote(url[len("file://") :]))
    return None


def _run_checkpoint(
    context: Any, specs: Sequence[Any], run_name: str
) -> tuple[dict[tuple[str, str], tuple[Any, Any]], Path]:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    started = time.monotonic()
    _drop_checkpoint(context)  # while what it refers to still exists; re-added below
    datasource = context.data_sources.add_or_update_postgres(DATASOURCE, connection_string="${" + URL_VARIABLE + "}")
    definitions = []
    for spec in specs:
        if spec.asset in datasource.get_asset_names():
            datasource.delete_asset(spec.asset)
        asset = datasource.add_query_asset(spec.asset, query=spec.query)
        batch = asset.add_batch_definition_whole_table("rows")
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=spec.suite, expectations=list(spec.expectations), meta={"asset": spec.asset})
        )
        definitions.append(
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{spec.suite}@{spec.asset}", data=batch, suite=suite)
            )
        )
    # No UpdateDataDocsAction: it rebuilds the site (index included) once per validation definition,
    # which costs more than all the validations here; one build for the whole run follows instead.
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=[d for d, spec in zip(definitions, specs, strict=True) if spec.active],
            actions=[],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_VALUES},
        )
    )
    defined = time.monotonic()
    result = checkpoint.run(run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)))
    validated = time.monotonic()
    suites = [ExpectationSuiteIdentifier(name=name) for name in sorted({spec.suite for spec in specs if spec.active})]
    context.build_data_docs(site_names=[SITE], resource_identifiers=[*result.run_results, *suites])
    log.info(
        "GX definitions %.1f s, checkpoint %.1f s, Data Docs %.1f s",
        defined - started,
        validated - defined,
        time.monotonic() - validated,
    )
    by_key: dict[tuple[str, str], tuple[Any, Any]] = {}
    for identifier, suite_result in result.run_results.items():
        asset_name = suite_result.asset_name or identifier.batch_identifier
        by_key[(suite_result.suite_name, asset_name)] = (identifier, suite_result)
    index = Path(context.root_directory) / "uncommitted" / "data_docs" / SITE / "index.html"
    return by_key, index


def _drop_checkpoint(context: Any) -> None:
    """Remove the previous run's checkpoint, even one that refers to definitions gone since (a run that
    died half-way through redefining them): loading it would fail, so its file goes then."""
    try:
        context.checkpoints.delete(CHECKPOINT)
        return
    except Exception as error:  # absent, or unloadable
        log.debug("deleting checkpoint %s: %s", CHECKPOINT, error)
    for path in (Path(context.root_directory) / "checkpoints").glob(f"{CHECKPOINT}.*"):
        log.warning("removing unloadable GX checkpoint %s", path)
        path.unlink()


def _close_connections(context: Any) -> None:
    """Dispose of GX's SQLAlchemy engines: an Airflow worker or a test process lives on after the run."""
    try:
        datasource = context.data_sources.get(DATASOURCE)
    except Exception:  # nothing to close
        return
    for close in (lambda: datasource.get_execution_engine().close(), lambda: datasource.get_engine().dispose()):
        try:
            close()
        except Exception as error:  # best effort
            log.debug("closing GX connections: %s", error)


def _store(
    database_url: str,
    results: Sequence[SuiteResult],
    *,
    window_start: dt.datetime,
    window_end: dt.datetime,
    started_at: dt.datetime,
    dag_id: str | None,
    run_id: str | None,
) -> None:
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            """
            insert into quality.validation_runs
                (dag_id, run_id, window_start, window_end, suite, asset, success, evaluated, failed, errored,
                 failures, scope, data_docs_path, started_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)
            """,
            [
                (
                    dag_id,
                    run_id,
                    window_start,
                    window_end,
                    r.suite,
                    r.asset,
                    r.success,
                    r.evaluated,
                    r.failed,
                    r.errored,
                    json.dumps(r.failures, default=str),
                    json.dumps(r.scope, default=str),
                    str(r.data_docs_page) if r.data_docs_page else None,
                    started_at,
                )
                for r in results
            ],
        )
        conn.commit()


# --------------------------------------------------------------------------- entry point


def validate_week(
    database_url: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    partitions: Sequence[Partition],
    *,
    gx_dir: Path,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> ValidationOutcome:
    """Validate the raw ``partitions`` about to be dropped and the marts built from them.

    Raw suites read exactly the rows of ``partitions`` (one query asset per raw table that has
    some). Mart suites read the marts over the days those partitions cover plus the days of the
    weekly window ``[window_start, window_end)``. Every (suite, asset) run is stored in
    ``quality.validation_runs``; Data Docs are updated under
    ``<gx_dir>/uncommitted/data_docs/local_site/``. Never raises for failed expectations: the
    caller decides (``outcome.success``, ``outcome.message()``).
    """
    for bound in (window_start, window_end):
        if bound.tzinfo is None:
            raise ValueError(f"window bound {bound!r} must be timezone-aware")
    if window_start >= window_end:
        raise ValueError(f"empty window [{window_start}, {window_end})")
    unknown = sorted({p.table for p in partitions} - set(RAW_TABLES))
    if unknown:
        raise ValueError(f"partitions of unknown raw tables: {unknown}")

    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    gx_dir = Path(gx_dir).resolve()
    run_name = _RUN_NAME_UNSAFE.sub(
        "_", f"{dag_id or 'validate_week'}__{run_id or started_at.strftime('%Y%m%dT%H%M%SZ')}"
    )
    env = {URL_VARIABLE: _gx_url(database_url), "GX_ANALYTICS_ENABLED": "False"}
    with _exclusive(gx_dir), temporary_environment(env):
        from collectors.orchestration.expectations import Scope, build_suites

        scope = Scope(window_start, window_end, tuple(partitions))
        specs = build_suites(scope)
        context = _context(gx_dir)
        try:
            by_key, index = _run_checkpoint(context, specs, run_name)
        finally:
            _close_connections(context)
        results: list[SuiteResult] = []
        for spec in (s for s in specs if s.active):
            identifier, suite_result = by_key[(spec.suite, spec.asset)]
            failures = [_json_safe(_failure(r)) for r in suite_result.results if not r.success]
            stats = suite_result.statistics
            results.append(
                SuiteResult(
                    suite=spec.suite,
                    asset=spec.asset,
                    success=bool(suite_result.success),
                    evaluated=int(stats["evaluated_expectations"]),
                    failed=int(stats["unsuccessful_expectations"]),
                    failures=failures,
                    data_docs_page=_docs_page(context, identifier),
                    scope=spec.scope,
                )
            )
    _store(
        database_url,
        results,
        window_start=window_start,
        window_end=window_end,
        started_at=started_at,
        dag_id=dag_id,
        run_id=run_id,
    )
    outcome = ValidationOutcome(results, index, run_name, time.monotonic() - started)
    log.info("%s (%.1f s)", outcome.message().splitlines()[0], outcome.elapsed_seconds)
    return outcome
