"""``make demo [DATASET=fashion-mnist|cifar10] [BITS=32]``: the main job, set up and run.

1. Makes sure the dataset is there. Fashion-MNIST: /usr/share/datasets/fashion-mnist, else
   Debian's dataset-fashion-mnist is installed when apt-get is there and we are root, else
   torchvision's download is used. CIFAR-10: the JPEG archive in ../shared/datasets (or
   HASHSDK_DATA, or --root). Without any of these it stops and says how to get the data.
2. Runs ``hashsdk-train demo``: GAN, hashing with and without fakes, ONNX export with
   verification, Encoder into a HammingIndex on disk, a few searches, and runs/<name>/report.md.
   Finished stages are skipped, so a second run after an interrupt finishes the rest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hashsdk.train.data import FASHION_DEBIAN

ROOT = Path(__file__).resolve().parent.parent


def fashion_mnist_args() -> list[str]:
    if (FASHION_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        return []
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("installing Debian's dataset-fashion-mnist ...", flush=True)
        for cmd in (["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"],
                    ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]):
            done = subprocess.run(cmd, capture_output=True).returncode == 0
            if done and (FASHION_DEBIAN / "train-images-idx3-ubyte.gz").exists():
                return []
    print("Fashion-MNIST is not installed here; trying torchvision's download", flush=True)
    return ["--download"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "cifar10"])
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--run-dir", default=None)
    args, rest = p.parse_known_args()
    extra = fashion_mnist_args() if args.dataset == "fashion-mnist" else []
    run_dir = args.run_dir or str(ROOT / "runs" / f"demo-{args.dataset}-{args.bits}bits")
    cmd = [str(Path(sys.executable).parent / "hashsdk-train"), "demo", "--config",
           str(ROOT / "configs" / f"demo-{args.dataset}.toml"), "--bits", str(args.bits),
           "--run-dir", run_dir, *extra, *rest]
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code == 0:
        hashsdk = Path(sys.executable).parent / "hashsdk"
        print(f"\nsearch it in a browser (http://127.0.0.1:8000/):\n  {hashsdk} serve "
              f"{run_dir}/db.hidx --model {run_dir}/model.onnx", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
