"""Generate the Python stubs of every .proto under collectors/proto with grpcio-tools.

``python -m collectors.proto.generate`` writes ``*_pb2.py``, ``*_pb2.pyi`` and
``*_pb2_grpc.py`` beside each .proto; ``--check`` writes them to a temporary
directory instead and exits 1 when any checked-in stub differs (stale stubs).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc into ``out_dir`` (mirroring repo paths); return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = [str(p.relative_to(REPO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    outputs = []
    for proto in protos:
        stem = proto.removesuffix(".proto")
        outputs += [out_dir / f"{stem}_pb2.py", out_dir / f"{stem}_pb2.pyi", out_dir / f"{stem}_pb2_grpc.py"]
    return outputs


def stale_stubs() -> list[str]:
    """Names of checked-in stubs that differ from freshly generated ones (missing ones included)."""
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for fresh in generate(Path(tmp)):
            checked_in = REPO_ROOT / fresh.relative_to(tmp)
            if not checked_in.exists() or not filecmp.cmp(fresh, checked_in, shallow=False):
                stale.append(str(checked_in.relative_to(REPO_ROOT)))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the checked-in stubs are fresh")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_stubs()
        if stale:
            print("stale gRPC stubs (run `make proto`): " + ", ".join(stale), file=sys.stderr)
            return 1
        print("gRPC stubs are fresh")
        return 0
    for path in generate(REPO_ROOT):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
