"""``make demo``: the main job, until the training pipeline is wired into it.

Encodes real images (CIFAR-10, the JPEG copy in ../shared/datasets) into 48-bit codes with a
data-independent baseline (LSH: sign random projections of the pixels), builds a HammingIndex,
saves it, maps it back, searches it, and scores the retrieval with hashsdk.metrics under the
usual protocol: 1,000 test queries (100 a class) against the other 59,000 images.

The trained network replaces LSH once the demo runs ``hashsdk-train``; the index, search and
metrics stay as they are.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from hashsdk import HammingIndex, HashsdkError, _search, evaluate, pack_bits
from hashsdk.train import baselines
from hashsdk.train.config import DataConfig
from hashsdk.train.data import load_dataset, make_split

ROOT = Path(__file__).resolve().parent.parent
BITS = 48
RUN = ROOT / "runs" / "demo"


def main() -> None:
    try:
        data = load_dataset(DataConfig(dataset="cifar10"))
    except HashsdkError as exc:
        sys.exit(str(exc))
    split = make_split(data, DataConfig(dataset="cifar10"))
    pixels = baselines.pixel_features(data.images)
    lsh = baselines.fit("lsh", pixels[split.train], BITS, seed=0)

    t0 = time.perf_counter()
    db_codes = pack_bits(lsh.encode(pixels[split.database]))
    encode_s = time.perf_counter() - t0
    q_codes = pack_bits(lsh.encode(pixels[split.query]))
    db_y, q_y = data.labels[split.database], data.labels[split.query]

    RUN.mkdir(parents=True, exist_ok=True)
    index = HammingIndex(BITS)
    index.add(db_codes)
    index.save(RUN / "db.hidx")
    index = HammingIndex.load(RUN / "db.hidx", mmap=True)

    stamps = [time.perf_counter()]
    for i in range(50):
        index.search(q_codes[i], 10)
        stamps.append(time.perf_counter())
    latency_ms = float(np.median(np.diff(stamps))) * 1e3
    t0 = time.perf_counter()
    _, ids = index.search(q_codes, 10)
    batch_ms = (time.perf_counter() - t0) * 1e3

    names = data.classes
    for i in range(5):
        print(f"query {i} ({names[q_y[i]]}): top 10 = "
              + " ".join(names[db_y[j]][:5] for j in ids[i]))

    m = evaluate(q_codes, db_codes, q_y, db_y, bits=BITS, ks=(100,), radius=2)
    rows = [
        ("codes", f"LSH on pixels, {BITS} bits (stand-in until the demo trains a network)"),
        ("database / queries", f"{index.ntotal:,} / {len(q_codes):,}"),
        ("mAP@all", f"{m.map:.4f}"),
        ("precision@100", f"{m.precision_at_k[100]:.4f}"),
        ("P@r=2", f"{m.precision_at_radius:.4f}"),
        ("encode (LSH, numpy)", f"{len(db_codes) / encode_s:,.0f} images/s"),
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
