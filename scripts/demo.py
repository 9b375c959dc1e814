"""``make demo``: the main job, until the training pipeline lands.

Encodes real images (CIFAR-10, the JPEG copy in ../shared/datasets) into 48-bit codes with a
data-independent baseline (sign random projections of the pixels, LSH), builds a HammingIndex,
saves it, maps it back, searches it, and scores the retrieval with hashsdk.metrics under the
usual protocol: 1,000 test queries (100 a class) against the other 59,000 images.

The trained network replaces LSH once ``hashsdk-train`` exists; the index, search and metrics
stay as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from hashsdk import HammingIndex, _search, evaluate, pack_bits

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE_CANDIDATES = [
    Path(os.environ["HASHSDK_CIFAR10"]) if "HASHSDK_CIFAR10" in os.environ else None,
    ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz",
    ROOT / "data" / "cifar10-jpeg.tar.gz",
]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
BITS = 48
RUN = ROOT / "runs" / "demo"


def find_archive() -> Path:
    for path in ARCHIVE_CANDIDATES:
        if path is not None and path.is_file():
            return path
    looked = "\n  ".join(str(p) for p in ARCHIVE_CANDIDATES if p is not None)
    sys.exit(f"CIFAR-10 JPEG archive not found. Looked in:\n  {looked}\n"
             "Set HASHSDK_CIFAR10=/path/to/cifar10-jpeg.tar.gz")


def load_cifar10(archive: Path) -> dict[str, np.ndarray]:
    """Decodes the archive once into a uint8 cache keyed by its checksum."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    cache = ROOT / "data" / f"cifar10-{digest}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            return dict(f)
    out: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        members.sort(key=lambda m: m.name)
        for m in tqdm(members, desc="decoding CIFAR-10", unit="img"):
            _, split, label, _ = m.name.split("/")
            image = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
            out[f"{split}_x"].append(np.asarray(image, np.uint8))
            out[f"{split}_y"].append(CLASSES.index(label))
    arrays = {k: np.stack(v) if k.endswith("_x") else np.array(v, np.int64)
              for k, v in out.items()}
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return arrays


def main() -> None:
    data = load_cifar10(find_archive())
    rng = np.random.default_rng(0)
    test_y = data["test_y"]
    queries = np.concatenate([rng.choice(np.flatnonzero(test_y == c), 100, replace=False)
                              for c in range(10)])
    rest = np.setdiff1d(np.arange(len(test_y)), queries)
    db_x = np.concatenate([data["train_x"], data["test_x"][rest]])
    db_y = np.concatenate([data["train_y"], test_y[rest]])
    q_x, q_y = data["test_x"][queries], test_y[queries]

    # LSH: signs of random projections of mean-centred pixels
    mean = data["train_x"].reshape(len(data["train_x"]), -1).mean(axis=0, dtype=np.float64)
    planes = rng.standard_normal((mean.size, BITS)).astype(np.float32)

    def encode(x: np.ndarray) -> np.ndarray:
        return pack_bits((x.reshape(len(x), -1) - mean).astype(np.float32) @ planes)

    t0 = time.perf_counter()
    db_codes = encode(db_x)
    encode_s = time.perf_counter() - t0
    q_codes = encode(q_x)

    RUN.mkdir(parents=True, exist_ok=True)
    index = HammingIndex(BITS)
    index.add(db_codes)
    index.save(RUN / "db.hidx")
    index = HammingIndex.load(RUN / "db.hidx", mmap=True)

    one = [time.perf_counter()]
    for i in range(50):
        index.search(q_codes[i], 10)
        one.append(time.perf_counter())
    latency_ms = float(np.median(np.diff(one))) * 1e3
    t0 = time.perf_counter()
    _, ids = index.search(q_codes, 10)
    batch_ms = (time.perf_counter() - t0) * 1e3

    for i in range(5):
        labels = " ".join(CLASSES[db_y[j]][:5] for j in ids[i])
        print(f"query {i} ({CLASSES[q_y[i]]}): top 10 = {labels}")

    m = evaluate(q_codes, db_codes, q_y, db_y, bits=BITS, ks=(100,), radius=2)
    rows = [
        ("codes", f"LSH on pixels, {BITS} bits (stand-in until training lands)"),
        ("database / queries", f"{index.ntotal:,} / {len(q_codes):,}"),
        ("mAP@all", f"{m.map:.4f}"),
        ("precision@100", f"{m.precision_at_k[100]:.4f}"),
        ("P@r=2", f"{m.precision_at_radius:.4f}"),
        ("encode (LSH, numpy)", f"{len(db_x) / encode_s:,.0f} images/s"),
        ("search, 1 query, k=10", f"{latency_ms:.3f} ms (median of 50)"),
        ("search, 1,000 queries, k=10", f"{batch_ms:.1f} ms"),
        ("kernel path", _search._kernel.dispatch() if _search.has_kernel() else "numpy"),
        ("index file", str((RUN / "db.hidx").relative_to(ROOT))),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
