"""The funnel seeds declare exactly the funnels the simulator walks (collectors/simulator/config.py FUNNELS)."""

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
    for row in read("funnel_steps.csv"):
        steps.setdefault(row["funnel"], []).append((int(row["step"]), row["channel"], row["event"]))
    funnels = {row["funnel"]: row for row in read("funnels.csv")}
    declared = {
        name: Funnel(name, tuple((c, e) for _, c, e in sorted(rows)), int(funnels[name]["window_minutes"]))
        for name, rows in steps.items()
    }
    assert declared == {f.name: f for f in FUNNELS}
    assert all(sorted(s for s, _, _ in rows) == list(range(1, len(rows) + 1)) for rows in steps.values())
    assert {name: row["strict_order"] for name, row in funnels.items()} == {f.name: "false" for f in FUNNELS}
