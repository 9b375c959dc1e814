"""Build hashsdk's distributions into dist/: ``hashsdk`` (sdist and wheel) and, with ``--gpu``,
``hashsdk-gpu``, the same package depending on onnxruntime-gpu instead of onnxruntime.

    python scripts/build_dists.py [--gpu] [--sdist-only] [-o dist]

Why two distributions: onnxruntime and onnxruntime-gpu install into one ``onnxruntime`` folder,
and where both are installed, whichever came last wins, often silently without CUDA. An extra
cannot remove a dependency, so ``hashsdk[gpu]`` could only add the GPU build beside the CPU
one. fastembed solves it with a second distribution, ``fastembed-gpu``, built from the same
source with the other onnxruntime; so does this: the tracked files are copied into a temporary
folder, the name and that one dependency are rewritten in its pyproject.toml, and it is built
there. Both distributions install the same ``hashsdk`` package, so install one of them only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_DEPENDENCY = re.compile(r'^(\s*)"onnxruntime(>=[^"]*)",$', re.M)


def gpu_pyproject(text: str) -> str:
    """pyproject.toml of hashsdk-gpu: the name and the onnxruntime dependency rewritten."""
    renamed, names = re.subn(r'^name = "hashsdk"$', 'name = "hashsdk-gpu"', text, flags=re.M)
    swapped, deps = CPU_DEPENDENCY.subn(r'\1"onnxruntime-gpu\2",', renamed)
    if names != 1 or deps != 1:
        raise SystemExit("pyproject.toml: expected one 'name = \"hashsdk\"' and one "
                         "onnxruntime dependency line to rewrite for hashsdk-gpu")
    return swapped


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def build(source: Path, out: Path, sdist_only: bool) -> None:
    kinds = ["--sdist"] if sdist_only else ["--sdist", "--wheel"]
    subprocess.run([sys.executable, "-m", "build", *kinds, "-o", str(out), str(source)],
                   check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", action="store_true", help="build hashsdk-gpu too")
    p.add_argument("--sdist-only", action="store_true")
    p.add_argument("-o", "--out", type=Path, default=ROOT / "dist")
    args = p.parse_args()
    out = args.out.resolve()
    build(ROOT, out, args.sdist_only)
    if not args.gpu:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for rel in tracked_files():
            target = Path(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / rel).is_file():
                shutil.copy2(ROOT / rel, target)
        pyproject = Path(tmp, "pyproject.toml")
        pyproject.write_text(gpu_pyproject(pyproject.read_text()))
        build(Path(tmp), out, args.sdist_only)


if __name__ == "__main__":
    main()
