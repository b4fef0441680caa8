"""``make bench``: run every ``tests/bench/bench_*.py`` and write bench-results.json.

Each module has ``run(server_url) -> dict[str, float]`` and measures its ratios
against a baseline taken in the same run (these machines are noisy; ratios
travel, absolute numbers do not). ``python -m tests.bench ingest`` runs only
the modules whose name contains ``ingest``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from collectors.dev import local_postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench-results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("only", nargs="*", help="run only benchmarks whose module name contains one of these")
    args = parser.parse_args(argv)
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(o in m for o in args.only)]
    server = local_postgres.find_server(REPO_ROOT / ".state")
    results: dict[str, float] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    failed = []
    for name in modules:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = importlib.import_module(f"tests.bench.{name}").run(server.url)
        except Exception as error:  # one broken benchmark must not hide the others' figures
            print(f"   FAILED: {type(error).__name__}: {error}", flush=True)
            failed.append(name)
            continue
        results.update(figures)
        for key, value in figures.items():
            print(f"   {key:<40} {value:>14.4f}")
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
        RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
