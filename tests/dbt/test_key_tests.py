"""Every staging model and every mart declares its grain: a uniqueness test and not_null on each key column."""

from __future__ import annotations

import json
from collections import defaultdict

from tests.dbt.conftest import DbtWarehouse


def test_every_staging_model_and_mart_tests_its_key(warehouse: DbtWarehouse) -> None:
    manifest = json.loads((warehouse.first_build.target_path / "manifest.json").read_text())
    models = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["fqn"][1] in ("staging", "marts")
    }
    keys: dict[str, list[list[str]]] = defaultdict(list)
    not_null: dict[str, set[str]] = defaultdict(set)
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or not node.get("test_metadata"):
            continue
        kind, kwargs = node["test_metadata"]["name"], node["test_metadata"]["kwargs"]
        model = node.get("attached_node")
        if kind == "unique":
            keys[model].append([node["column_name"]])
        elif kind == "unique_combination_of_columns":
            keys[model].append(list(kwargs["combination_of_columns"]))
        elif kind == "not_null":
            not_null[model].add(node["column_name"])
    assert len(models) > 20
    for uid, node in models.items():
        assert keys[uid], f"{node['name']} has no unique or unique_combination_of_columns test"
        for key in keys[uid]:
            missing = set(key) - not_null[uid]
            assert not missing, f"{node['name']}: key {key} without not_null on {sorted(missing)}"
