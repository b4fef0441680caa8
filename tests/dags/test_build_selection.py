"""What each dbt task of the DAGs builds, resolved by dbt itself (``dbt ls`` in-process) over the real project.

A part builds its cadence's models and the views and seeds they read, never another cadence's tables: the
weekly marts read the daily tables, and a weekly run that rebuilt them would redo seven days of daily models
and their tests. Reliability stays apart (built once the lag has passed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from collectors.dev import local_postgres
from collectors.orchestration.builds import PARTS, Selection, selection
from collectors.orchestration.cadences import CADENCES
from collectors.orchestration.dbt_runner import invoke


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "model" or "seed"
    materialized: str
    tags: frozenset[str]
    parents: frozenset[str]  # names of the models and seeds it reads
    children: frozenset[str]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, pg_server: local_postgres.PostgresServer) -> dict[str, Node]:
    """Every model and seed of the project with its graph, from the manifest ``dbt ls`` writes."""
    target = tmp_path_factory.mktemp("dbt_ls")
    invoke(["ls", "--resource-type", "model", "--quiet"], database_url=pg_server.url, target_path=target)
    manifest = json.loads((target / "manifest.json").read_text())
    nodes = {k: v for k, v in manifest["nodes"].items() if v["resource_type"] in ("model", "seed")}

    def names(ids: list[str]) -> frozenset[str]:
        return frozenset(nodes[i]["name"] for i in ids if i in nodes)

    return {
        node["name"]: Node(
            node["name"],
            node["resource_type"],
            node["config"]["materialized"],
            frozenset(node["tags"]),
            names(manifest["parent_map"][key]),
            names(manifest["child_map"][key]),
        )
        for key, node in nodes.items()
    }


@pytest.fixture(scope="module")
def resolve(tmp_path_factory: pytest.TempPathFactory, pg_server: local_postgres.PostgresServer):
    target = tmp_path_factory.mktemp("dbt_ls_select")

    def names(chosen: Selection, capfd: pytest.CaptureFixture[str]) -> set[str]:
        args = ["ls", "--select", chosen.select, "--resource-type", "model", "seed", "--output", "name"]
        if chosen.exclude:
            args += ["--exclude", chosen.exclude]
        capfd.readouterr()
        invoke([*args, "--quiet"], database_url=pg_server.url, target_path=target)
        return set(capfd.readouterr().out.split())

    return names


def view_ancestors(project: dict[str, Node], name: str) -> set[str]:
    """The views and seeds ``name`` reads, directly or through other views (what a build of it needs built)."""
    found: set[str] = set()
    todo = list(project[name].parents)
    while todo:
        parent = project[todo.pop()]
        if parent.materialized in ("view", "seed") and parent.name not in found:
            found.add(parent.name)
            todo.extend(parent.parents)
    return found


@pytest.mark.parametrize(
    ("cadence", "part"), [(name, part) for name in sorted(CADENCES) for part in PARTS if part in CADENCES[name].parts]
)
def test_a_part_builds_its_cadence_and_the_views_it_reads_never_another_cadences_tables(
    project: dict[str, Node], resolve, capfd: pytest.CaptureFixture[str], cadence: str, part: str
) -> None:
    chosen = resolve(selection(CADENCES[cadence], part), capfd)
    tagged = {n.name for n in project.values() if cadence in n.tags}
    wanted = {n for n in tagged if ("reliability" in project[n].tags) == (part == "reliability")}
    assert wanted <= chosen, f"not built: {sorted(wanted - chosen)}"
    tables = {n for n in chosen if project[n].materialized not in ("view", "seed")}
    assert tables <= wanted, f"{cadence} {part} rebuilds other cadences' tables: {sorted(tables - wanted)}"
    if part == "marts":
        needed = set().union(*(view_ancestors(project, n) for n in wanted))
        assert needed <= chosen, f"views or seeds it reads are not built: {sorted(needed - chosen)}"
        # dbt replaces a view by dropping the old one with cascade: every view on top of one it rebuilds must be
        # rebuilt too, or the build would leave it dropped
        on_top = {c for n in chosen if project[n].materialized == "view" for c in project[n].children}
        assert {c for c in on_top if project[c].materialized == "view"} <= chosen
    else:
        assert chosen == wanted
        assert "int_message_presence_hourly" in chosen  # the presence summary every reliability mart reads


def test_the_weekly_marts_read_the_daily_tables_without_rebuilding_them(
    project: dict[str, Node], resolve, capfd: pytest.CaptureFixture[str]
) -> None:
    chosen = resolve(selection(CADENCES["weekly"], "marts"), capfd)
    upstream, todo = set(), ["fct_telemetry_week", "fct_minutes_per_user_weekly", "fct_funnel_weekly"]
    while todo:
        for parent in project[todo.pop()].parents - upstream:
            upstream.add(parent)
            todo.append(parent)
    daily_tables = {"fct_telemetry_day", "fct_minutes_per_user_daily", "int_funnel_attempts"}
    assert daily_tables <= upstream  # what "+tag:weekly" used to rebuild over the whole week
    assert not daily_tables & chosen
    assert {"fct_telemetry_week", "stg_game_servers__minute_snapshots", "int_funnel_weekly_choices"} <= chosen


def test_the_monthly_marts_read_the_daily_tables_and_nothing_tags_monthly_reliability(
    project: dict[str, Node], resolve, capfd: pytest.CaptureFixture[str]
) -> None:
    chosen = resolve(selection(CADENCES["monthly"], "marts"), capfd)
    monthly = {n.name for n in project.values() if "monthly" in n.tags}
    raw_readers = {n for n in monthly if any(p.startswith("stg_") for p in project[n].parents)}
    assert raw_readers == set()  # months come from the daily tables: raw is gone by the time a month ends
    assert {"fct_telemetry_day", "fct_minutes_per_user_daily", "int_host_histograms_daily"} <= {
        p for n in monthly for p in project[n].parents
    }
    assert not {n for n in chosen if "daily" in project[n].tags}
    assert not {n for n in monthly if "reliability" in project[n].tags}
    with pytest.raises(ValueError, match="builds no reliability part"):
        selection(CADENCES["monthly"], "reliability")


@pytest.mark.parametrize("cadence", sorted(CADENCES))
def test_only_the_cadences_that_read_raw_test_the_staging_views(
    pg_server: local_postgres.PostgresServer, tmp_path, capfd: pytest.CaptureFixture[str], cadence: str
) -> None:
    chosen = selection(CADENCES[cadence], "marts")
    args = ["ls", "--select", chosen.select, "--exclude", chosen.exclude, "--resource-type", "test", "--output", "name"]
    capfd.readouterr()
    invoke([*args, "--quiet"], database_url=pg_server.url, target_path=tmp_path)
    tests = set(capfd.readouterr().out.split())
    staging = {t for t in tests if "_stg_" in t}
    assert tests - staging, "the part's own models are tested"
    if CADENCES[cadence].reads:  # the daily builds tested those raw rows day by day
        assert staging == set()
    else:
        assert "unique_combination_of_columns_stg_hosts__host_minutes_host_id__minute" in staging
