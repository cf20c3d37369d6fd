"""Regenerate the Python stubs (and mypy stubs) for every .proto under proto/.

Run from anywhere: ``python scripts/gen_proto.py``. ``--check`` regenerates into a temporary
directory and exits non-zero if the committed stubs differ (CI's drift check).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_root: Path) -> list[Path]:
    sources = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    plugin_dir = Path(sys.executable).parent
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *(str(s.relative_to(ROOT)) for s in sources),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protoc failed:\n{result.stdout}{result.stderr}")
    out_dir = out_root / "proto" / "v1"
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs drift")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        committed = sorted(p for p in PROTO_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES))
        if opts.check:
            names = {p.name for p in generated}
            drift = sorted(names ^ {p.name for p in committed})
            drift += [
                p.name
                for p in generated
                if (PROTO_DIR / p.name).exists() and not filecmp.cmp(p, PROTO_DIR / p.name, False)
            ]
            if drift:
                print("generated stubs drift from proto/: " + ", ".join(sorted(set(drift))))
                print("run: python scripts/gen_proto.py")
                return 1
            print(f"proto stubs up to date ({len(generated)} files)")
            return 0
        for stale in committed:
            stale.unlink()
        for path in generated:
            shutil.copy(path, PROTO_DIR / path.name)
        print(f"wrote {len(generated)} files to {PROTO_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
