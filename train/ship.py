"""The main job (``hashsdk-train demo`` / ``make demo``): the ablation of train/stages.py, then
the stages that ship its with-fakes model. Only this module of train/ imports export/.

    export   ONNX of the with-fakes model, verified on real images   model.onnx, .verify.json
    index    the Encoder encodes the whole database; each image is      db.hidx, index.json,
             written as images/ID.png, so that hashsdk serve shows it   db.hidx.paths.txt
    search   a few queries against the saved index                     search.json
    report   report.md and its pictures (report.py)                    report.md
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.train.config import RunConfig
from hashsdk.train.stages import Pipeline, Stage, run_stages


def main_job(cfg: RunConfig, run_dir: Path, progress: bool = True, queries_to_show: int = 5,
             log: Callable[[str], None] = print) -> dict[str, str]:
    """Every stage on ``cfg``; returns each stage's status ("ran" or "skipped")."""
    p = Pipeline.open(run_dir, cfg, progress)
    return run_stages(p.ablation() + shipping(p, queries_to_show, log), p.run_dir, log)


def shipping(p: Pipeline, queries_to_show: int = 5,
             log: Callable[[str], None] = print) -> list[Stage]:
    """Export, index, search and report, after ``p.ablation()``."""
    return [
        Stage("export", {}, ["hash-fakes"], ["model.onnx", "model.onnx.verify.json"],
              lambda: export(p, log)),
        Stage("index", {}, ["export"], ["db.hidx", "db.hidx.paths.txt", "index.json"],
              lambda: index(p)),
        Stage("search", {"search": {"queries": queries_to_show}}, ["index"], ["search.json"],
              lambda: search(p, queries_to_show)),
        Stage("report", {}, ["comparison", "search"], ["report.md"], lambda: report(p)),
    ]


def export(p: Pipeline, log: Callable[[str], None]) -> None:
    """The with-fakes checkpoint to ONNX, checked against torch on 100 queries and 1,900
    database images."""
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.export.verify import verify, write_report
    from hashsdk.train.model import HashNet

    checkpoint = p.run_dir / "hash-fakes" / "checkpoint.pt"
    export_onnx(checkpoint, p.run_dir / "model.onnx")
    model, _ = HashNet.from_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    db = rng.choice(p.split.database, min(1900, len(p.split.database)), replace=False)
    chosen = np.concatenate([p.split.query[:100], db])
    result = verify(str(p.run_dir / "model.onnx"), model, p.data.images[chosen],
                    p.data.labels[chosen])
    write_report(p.run_dir / "model.onnx", result)
    log(f"[export] {result.summary()}")


def index(p: Pipeline) -> None:
    """The Encoder encodes every database image into db.hidx; ids are the dataset's image
    numbers."""
    from hashsdk import Encoder, HammingIndex

    encoder = Encoder(p.run_dir / "model.onnx", device="cpu")
    t0 = time.perf_counter()
    codes = encoder.encode(p.data.images[p.split.database], batch_size=256,
                           show_progress=p.progress)
    seconds = time.perf_counter() - t0
    idx = HammingIndex(encoder.bits)
    idx.add(codes, ids=p.split.database)
    idx.save(p.run_dir / "db.hidx", paths=write_images(p, np.sort(p.split.database)))
    _write_json(p.run_dir / "index.json", {"images": len(codes), "encode_seconds": seconds,
                                           "images_per_second": len(codes) / seconds})


def write_images(p: Pipeline, ids: np.ndarray) -> list[str]:
    """The images of ``ids`` as lossless PNG files, images/ID.png; their paths, in id order."""
    from PIL import Image

    folder = p.run_dir / "images"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in ids.tolist():
        path = folder / f"{i}.png"
        image = p.data.images[i]
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        paths.append(str(path.resolve()))
    return paths


def search(p: Pipeline, queries: int) -> None:
    """The first ``queries`` protocol queries against the saved index, and the median latency
    of one query at k=10."""
    from hashsdk import Encoder, HammingIndex

    encoder = Encoder(p.run_dir / "model.onnx", device="cpu")
    idx = HammingIndex.load(p.run_dir / "db.hidx", mmap=True)
    q = p.split.query[:queries]
    codes = encoder.encode(p.data.images[q])
    stamps = [time.perf_counter()]
    for _ in range(20):
        for c in codes:
            idx.search(c, 10)
            stamps.append(time.perf_counter())
    dist, ids = idx.search(codes, 10)
    _write_json(p.run_dir / "search.json", {
        "queries": q.tolist(), "ids": ids.tolist(), "distances": dist.tolist(),
        "latency_ms": float(np.median(np.diff(stamps)) * 1e3), "database": idx.ntotal})


def report(p: Pipeline) -> None:
    from hashsdk.train.report import write_report

    write_report(p.run_dir, p.cfg, p.data, p.split)


def _write_json(path: Path, value: dict) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(value).encode())
