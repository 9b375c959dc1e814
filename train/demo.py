"""The main job: raw images to a searchable index, with a report people can read.

Stages, on one run directory (``hashsdk-train demo`` / ``make demo``):

    gan            stage 1 on the training split            gan/fakes.npz
    hash-fakes     stage 2 with the fake bank                hash-fakes/eval.json
    hash-nofakes   stage 2 without it (the ablation)         hash-nofakes/eval.json
    baselines      LSH, ITQ and SH on pixels                 baselines.json
    export         ONNX of the with-fakes model, verified    model.onnx, model.onnx.verify.json
    index          the Encoder encodes the whole database    db.hidx, index.json
    search         a few queries against the saved index     search.json
    report         report.md and its pictures                report.md

Each stage records a key: a hash of the settings it depends on and of its inputs' keys. A stage
whose outputs exist and whose key matches is skipped, so a second run after an interrupt
finishes the rest (training itself also resumes from its last epoch), and a changed setting
reruns exactly the stages it affects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.train.config import HashConfig, RunConfig

FAKE_SETTINGS = ("fake_loss", "lam", "fake_ratio", "fake_bn")


@dataclass
class Stage:
    name: str
    settings: dict           # what this stage depends on, besides its inputs
    inputs: list[str]        # stages whose results it uses
    outputs: list[str]       # files it makes, relative to the run directory
    run: Callable[[], None]


def _key(settings: dict, upstream: list[str]) -> str:
    raw = json.dumps({"settings": settings, "inputs": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def run_stages(stages: list[Stage], run_dir: Path, log: Callable[[str], None] = print
               ) -> dict[str, str]:
    """Runs or skips each stage in order; returns {stage: "ran" | "skipped"}."""
    keys: dict[str, str] = {}
    status: dict[str, str] = {}
    for stage in stages:
        key = _key(stage.settings, [keys[i] for i in stage.inputs])
        keys[stage.name] = key
        stamp = run_dir / "stages" / f"{stage.name}.json"
        done = stamp.exists() and json.loads(stamp.read_text()).get("key") == key and all(
            (run_dir / out).exists() for out in stage.outputs)
        if done:
            status[stage.name] = "skipped"
            log(f"[{stage.name}] up to date, skipped")
            continue
        log(f"[{stage.name}] running")
        t0 = time.perf_counter()
        stage.run()
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(stamp) as f:
            f.write(json.dumps({"key": key, "seconds": time.perf_counter() - t0}).encode())
        status[stage.name] = "ran"
    return status


def demo(cfg: RunConfig, run_dir: Path, progress: bool = True, queries_to_show: int = 5,
         log: Callable[[str], None] = print) -> dict[str, str]:
    """The whole pipeline on ``cfg``; returns each stage's status."""
    from hashsdk import Encoder, HammingIndex
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.export.verify import verify
    from hashsdk.train.gan import train_gan
    from hashsdk.train.loop import train_hash
    from hashsdk.train.model import HashNet
    from hashsdk.train.pipeline import compare, prepare, run_baselines
    from hashsdk.train.report import write_report

    run_dir = Path(run_dir)
    data, split = prepare(run_dir, cfg, progress)
    settings = cfg.to_dict()
    data_s, gan_s, hash_s = settings["data"], settings["gan"], settings["hash"]
    fakes = run_dir / "gan" / "fakes.npz"
    with_fakes = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, fakes=str(fakes)))
    # without fakes, the fake settings do not matter: keep them at their defaults, so that
    # changing one reruns the with-fakes model only
    defaults = HashConfig()
    without = dataclasses.replace(cfg, hash=dataclasses.replace(
        cfg.hash, fakes=None, **{k: getattr(defaults, k) for k in FAKE_SETTINGS}))

    def gan() -> None:
        train_gan(cfg, data, split, run_dir / "gan", progress=progress)

    def hash_run(run_cfg: RunConfig, name: str) -> Callable[[], None]:
        def run() -> None:
            # a changed config means new weights: start over rather than resume
            train_hash(run_cfg, data, split, run_dir / name, resume=_same_config(
                run_dir / name, run_cfg), progress=progress)
        return run

    def baselines() -> None:
        results = run_baselines(data, split, cfg.hash.bits, cfg.data.seed)
        with atomic_write(run_dir / "baselines.json") as f:
            f.write(json.dumps(results).encode())

    def export() -> None:
        export_onnx(run_dir / "hash-fakes" / "checkpoint.pt", run_dir / "model.onnx")
        model, _ = HashNet.from_checkpoint(run_dir / "hash-fakes" / "checkpoint.pt")
        rng = np.random.default_rng(0)
        db = rng.choice(split.database, min(1900, len(split.database)), replace=False)
        chosen = np.concatenate([split.query[:100], db])
        report = verify(str(run_dir / "model.onnx"), model, data.images[chosen],
                        data.labels[chosen])
        with atomic_write(run_dir / "model.onnx.verify.json") as f:
            f.write(json.dumps(report.as_dict(), indent=1).encode())
        log(f"[export] {report.summary()}")

    def index() -> None:
        encoder = Encoder(run_dir / "model.onnx", device="cpu")
        t0 = time.perf_counter()
        codes = encoder.encode(data.images[split.database], batch_size=256,
                               show_progress=progress)
        seconds = time.perf_counter() - t0
        idx = HammingIndex(encoder.bits)
        idx.add(codes, ids=split.database)  # ids are image numbers of the dataset
        idx.save(run_dir / "db.hidx")
        with atomic_write(run_dir / "index.json") as f:
            f.write(json.dumps({"images": len(codes), "encode_seconds": seconds,
                                "images_per_second": len(codes) / seconds}).encode())

    def search() -> None:
        encoder = Encoder(run_dir / "model.onnx", device="cpu")
        idx = HammingIndex.load(run_dir / "db.hidx", mmap=True)
        q = split.query[:queries_to_show]
        codes = encoder.encode(data.images[q])
        stamps = [time.perf_counter()]
        for _ in range(20):
            for c in codes:
                idx.search(c, 10)
                stamps.append(time.perf_counter())
        dist, ids = idx.search(codes, 10)
        with atomic_write(run_dir / "search.json") as f:
            f.write(json.dumps({"queries": q.tolist(), "ids": ids.tolist(),
                                "distances": dist.tolist(),
                                "latency_ms": float(np.median(np.diff(stamps)) * 1e3),
                                "database": idx.ntotal}).encode())

    def report() -> None:
        baseline_results = json.loads((run_dir / "baselines.json").read_text())
        compare(run_dir, cfg.hash.bits, baseline_results)
        write_report(run_dir, cfg, data, split)

    stages = [
        Stage("gan", {"data": data_s, "gan": gan_s}, [], ["gan/fakes.npz"], gan),
        Stage("hash-fakes", {"data": data_s, "hash": hash_s}, ["gan"],
              ["hash-fakes/eval.json", "hash-fakes/checkpoint.pt"],
              hash_run(with_fakes, "hash-fakes")),
        Stage("hash-nofakes", {"data": data_s, "hash": without.to_dict()["hash"]}, [],
              ["hash-nofakes/eval.json", "hash-nofakes/checkpoint.pt"],
              hash_run(without, "hash-nofakes")),
        Stage("baselines", {"data": data_s, "bits": cfg.hash.bits}, [], ["baselines.json"],
              baselines),
        Stage("export", {}, ["hash-fakes"], ["model.onnx", "model.onnx.verify.json"], export),
        Stage("index", {}, ["export"], ["db.hidx", "index.json"], index),
        Stage("search", {"queries": queries_to_show}, ["index"], ["search.json"], search),
        Stage("report", {}, ["hash-fakes", "hash-nofakes", "baselines", "search"],
              ["report.md"], report),
    ]
    return run_stages(stages, run_dir, log)


def _same_config(run: Path, cfg: RunConfig) -> bool:
    path = run / "config.json"
    if not path.exists():
        return True
    saved = json.loads(path.read_text())
    return saved.get("hash") == cfg.to_dict()["hash"] and saved.get("data") == cfg.to_dict()["data"]
