"""The funnel seeds declare the funnels the simulator walks (collectors/simulator/config.py FUNNELS) as they are,
and besides them only funnels that reuse those steps' events with the funnel options (per-step limits,
exclusions, a breakdown), which the simulator does not know of."""

from __future__ import annotations

import csv
from pathlib import Path

from collectors.dev.simulator.config import FUNNELS, Funnel

SEEDS = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds"


def read(name: str) -> list[dict[str, str]]:
    with open(SEEDS / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_seeds_declare_the_simulator_funnels() -> None:
    steps: dict[str, list[tuple[int, str, str]]] = {}
    limited: set[str] = set()
    for row in read("funnel_steps.csv"):
        steps.setdefault(row["funnel"], []).append((int(row["step"]), row["channel"], row["event"]))
        if row["min_seconds_from_previous"] or row["max_seconds_from_previous"]:
            limited.add(row["funnel"])
    funnels = {row["funnel"]: row for row in read("funnels.csv")}
    excluding = {row["funnel"] for row in read("funnel_exclusions.csv")}
    with_options = limited | excluding | {name for name, row in funnels.items() if row["breakdown"]}
    declared = {
        name: Funnel(name, tuple((c, e) for _, c, e in sorted(rows)), int(funnels[name]["window_minutes"]))
        for name, rows in steps.items()
    }
    simulated = {f.name: f for f in FUNNELS}
    assert {name: f for name, f in declared.items() if name in simulated} == simulated
    assert set(declared) - set(simulated) == with_options - set(simulated)
    assert with_options.isdisjoint(simulated)  # the simulator's truth knows no options
    assert with_options and excluding and limited
    kinds = {kind for f in FUNNELS for kind in f.steps}
    assert all(set(declared[name].steps) <= kinds for name in with_options)
    assert all(sorted(s for s, _, _ in rows) == list(range(1, len(rows) + 1)) for rows in steps.values())
    assert {name: row["strict_order"] for name, row in funnels.items()} == {name: "false" for name in declared}
