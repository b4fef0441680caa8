"""The dbt docs catalogue: every mart and every column of its table is described."""

from __future__ import annotations

import json

from tests.dbt.conftest import DbtWarehouse


def test_every_mart_column_is_documented(warehouse: DbtWarehouse) -> None:
    manifest = json.loads((warehouse.first_build.target_path / "manifest.json").read_text())
    marts = {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "marts"
    }
    tables = warehouse.rows(
        "select table_name, array_agg(column_name::text order by ordinal_position) "
        "from information_schema.columns where table_schema = 'marts' group by table_name"
    )
    assert {name for name, _ in tables} == set(marts)
    for name, columns in tables:
        node = marts[name]
        assert node["description"].strip(), name
        documented = {column: spec["description"].strip() for column, spec in node["columns"].items()}
        assert set(columns) == set(documented), name
        assert all(documented.values()), name
