"""The dbt models page of the data-quality report, rendered from the newest build's ``manifest.json``.

``dbt docs generate`` output is not served by the api-server (the demo writes it to a file), so a failing
dbt test links to the section of this page about the model it tests: the model's description, its columns,
its tests with their last status. The manifest is the one every build leaves in
``<artefacts_dir>/target/<cadence>/`` (``collectors.orchestration.builds``); the newest of them is read, and
kept in memory while its file does not change.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DESCRIPTION_LIMIT = 2000


@dataclass(frozen=True)
class Column:
    name: str
    description: str


@dataclass(frozen=True)
class ModelDoc:
    """A model, seed or source as the manifest describes it; ``name`` is how test results name it."""

    name: str
    kind: str  # model, seed, snapshot, source
    relation: str  # schema.table
    description: str
    path: str | None
    tags: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)  # test unique ids

    @property
    def anchor(self) -> str:
        return model_anchor(self.name)


def model_anchor(name: str) -> str:
    return "node-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


@dataclass(frozen=True)
class ModelDocs:
    manifest: Path
    generated_at: str | None
    models: list[ModelDoc]


def newest_manifest(artefacts_dir: Path) -> Path | None:
    candidates = [p for p in (artefacts_dir / "target").glob("*/manifest.json") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def _text(value: Any) -> str:
    text = str(value or "").strip()
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def parse_manifest(path: Path) -> ModelDocs:
    manifest = json.loads(path.read_text())
    tests_of: dict[str, list[str]] = {}
    for uid, node in (manifest.get("nodes") or {}).items():
        if node.get("resource_type") == "test":
            for dep in (node.get("depends_on") or {}).get("nodes") or []:
                tests_of.setdefault(dep, []).append(uid)
    for uid, node in (manifest.get("unit_tests") or {}).items():
        for dep in (node.get("depends_on") or {}).get("nodes") or []:
            tests_of.setdefault(dep, []).append(uid)
    docs: list[ModelDoc] = []
    for uid, node in (manifest.get("nodes") or {}).items():
        kind = node.get("resource_type")
        if kind not in ("model", "seed", "snapshot"):
            continue
        docs.append(_doc(uid, node, str(node.get("name") or uid.split(".")[-1]), kind, tests_of))
    for uid, node in (manifest.get("sources") or {}).items():
        name = f"{node.get('source_name')}.{node.get('name')}"
        docs.append(_doc(uid, node, name, "source", tests_of))
    docs.sort(key=lambda d: (d.kind != "model", d.name))
    return ModelDocs(path, (manifest.get("metadata") or {}).get("generated_at"), docs)


def _doc(uid: str, node: dict[str, Any], name: str, kind: str, tests_of: dict[str, list[str]]) -> ModelDoc:
    relation = ".".join(str(p) for p in (node.get("schema"), node.get("alias") or node.get("identifier")) if p)
    columns = [
        Column(str(c.get("name") or key), _text(c.get("description"))) for key, c in (node.get("columns") or {}).items()
    ]
    return ModelDoc(
        name=name,
        kind=kind,
        relation=relation or name,
        description=_text(node.get("description")),
        path=node.get("original_file_path"),
        tags=[str(t) for t in node.get("tags") or []],
        columns=columns,
        tests=sorted(tests_of.get(uid, [])),
    )


_cache: dict[Path, tuple[float, ModelDocs]] = {}
_lock = threading.Lock()


def read_model_docs(artefacts_dir: Path) -> ModelDocs | None:
    """The newest manifest's models, or None when no build has left one."""
    path = newest_manifest(artefacts_dir)
    if path is None:
        return None
    mtime = path.stat().st_mtime
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    docs = parse_manifest(path)
    with _lock:
        _cache.clear()
        _cache[path] = (mtime, docs)
    return docs
