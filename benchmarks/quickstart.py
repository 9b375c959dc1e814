"""The README quickstart's training command with every default, on a small folder of photos.

    python benchmarks/quickstart.py [--archive ../shared/datasets/cifar10-jpeg.tar.gz]

The folder: 3 CIFAR-10 test classes (airplane, cat, ship), the first 25 JPEGs of each in the
archive; the protocol of the quickstart (5 queries and 20 training images a class, 32 bits);
seeds 0 to 2. Rows: the default recipe (EfficientNet-Lite0 from its offline ImageNet
weights, at 96 px), the same at 128 px, and the cnn from scratch. With ``--validation``, the
next 25 JPEGs of each class (images no reported row sees), Lite0 at both sizes only: the
default's resolution is the better mean there. Each run is the whole
``hashsdk-train hash`` command (decoding, training, evaluation), timed on its wall clock;
mAP@all breaks ties by id. ``--rows`` runs named rows instead (the losses compared on the
validation folder: ``--validation --rows "Lite0, pairwise loss" ...``), ``--out`` names the file.
Writes benchmarks/results/quickstart.json and .md.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("airplane", "cat", "ship")
RECIPES = {"default (Lite0, 96 px)": [], "Lite0 at 128 px": ["--image-size", "128"],
           "cnn from scratch": ["--backbone", "cnn"],
           "Lite0, pairwise loss": ["--loss", "pairwise"],
           "Lite0, orthohash loss": ["--loss", "orthohash"],
           "Lite0, csq loss": ["--loss", "csq"],
           "Lite0, flip average": ["--flip-average"],
           "Lite0, no flip average": ["--no-flip-average"]}
# Rows a plain run reports; the others are asked for by name (--rows), on the validation
# folder where a default is chosen.
REPORTED = ("default (Lite0, 96 px)", "Lite0 at 128 px", "cnn from scratch")


def make_folder(archive: Path, folder: Path, per_class: int = 25, skip: int = 0) -> None:
    with tarfile.open(archive) as tar:
        for c in CLASSES:
            names = sorted(m.name for m in tar.getmembers()
                           if m.name.startswith(f"cifar10-jpeg/test/{c}/"))[skip:skip + per_class]
            (folder / c).mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / c / Path(name).name).write_bytes(tar.extractfile(name).read())


def run(folder: Path, run_dir: Path, seed: int, extra: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hashsdk-train"), "hash", "--dataset", "imagefolder",
         "--root", str(folder), "--run-dir", str(run_dir), "--queries-per-class", "5",
         "--train-per-class", "20", "--bits", "32", "--seed", str(seed), "--quiet", *extra],
        capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return float(re.search(r"mAP@all ([0-9.]+)", done.stdout).group(1)), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archive", type=Path,
                   default=ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "quickstart-bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--validation", action="store_true",
                   help="the next 25 JPEGs of each class instead (no image of the reported "
                        "folder): where the default's resolution is chosen; Lite0 rows only")
    p.add_argument("--rows", nargs="+", choices=sorted(RECIPES), metavar="ROW",
                   help="these rows only (default: the reported rows): " + "; ".join(RECIPES))
    p.add_argument("--out", help="results name under benchmarks/results/ (default: quickstart "
                                 "or quickstart-validation)")
    args = p.parse_args()
    name = args.out or ("quickstart-validation" if args.validation else "quickstart")
    work = args.work / name
    make_folder(args.archive, work / "photos", skip=25 if args.validation else 0)
    chosen = args.rows or [k for k in REPORTED if not (args.validation and "cnn" in k)]
    recipes = {k: RECIPES[k] for k in chosen}
    rows = {}
    for i, (recipe, extra) in enumerate(recipes.items()):
        runs = [run(work / "photos", work / f"recipe{i}-seed{seed}", seed, extra)
                for seed in args.seeds]
        rows[recipe] = {"map": [m for m, _ in runs], "seconds": [s for _, s in runs]}
        print(recipe, rows[recipe], flush=True)
    report = {"command": shlex.join(["python", "benchmarks/quickstart.py", *sys.argv[1:]]),
              "classes": CLASSES,
              "images": f"{25 if args.validation else 0} to {49 if args.validation else 24}",
              "seeds": args.seeds, "rows": rows}
    lines = ["| recipe | mAP@all, mean of seeds (each seed) | seconds a run, median |",
             "|---|---|---:|"]
    for recipe, r in rows.items():
        each = ", ".join(f"{m:.4f}" for m in r["map"])
        lines.append(f"| {recipe} | {np.mean(r['map']):.4f} ({each}) | "
                     f"{np.median(r['seconds']):.0f} |")
    write_results(RESULTS / name, report, lines)


if __name__ == "__main__":
    main()
