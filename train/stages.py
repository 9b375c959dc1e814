"""The stages of a run directory: built in one place, run in order, skipped when up to date.

Every pipeline is built here: ``hashsdk-train all`` runs ``Pipeline.ablation()``,
``hashsdk-train demo`` runs it and then the shipping stages (train/ship.py), and
benchmarks/retrieval.py runs a GAN and many hashing stages per seed.

    runs/NAME/
        split.npz, split.json       the protocol (made once, shared by every stage)
        stages/<stage>.json         each finished stage's stamp: settings, inputs, time
        gan/                        stage 1, the DCGAN and its fake bank (gan.py)
        hash-fakes/, hash-nofakes/  stage 2 with and without the fake bank (loop.py)
        baselines.json, comparison.json, comparison.md, pr.png   (comparison.py)

A stage is up to date when its outputs exist and its stamp holds the settings it depends on
and the digests of its inputs as they are now. Settings are compared less the retired keys
(config.RETIRED), so a run made before a key was retired is reused; a changed setting reruns
that stage and every stage downstream. A GAN or hashing run with no stamp (made by hand, or
before stamps) is reused when its saved config is the wanted one and nothing upstream reran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.train.config import HashConfig, RunConfig, differences, normalized
from hashsdk.train.data import ImageSet, Split, load_dataset, make_split

# the hashing settings that only matter with fakes; a without-fakes run keeps them at their
# defaults, so that changing one reruns the with-fakes model only
FAKE_SETTINGS = ("fake_loss", "lam", "fake_ratio", "fake_bn")


@dataclass
class Stage:
    """One step of a pipeline.

    settings: what it depends on besides its inputs, as {section: {key: value}};
    inputs: names of earlier stages whose results it uses;
    outputs: files it makes, relative to the run directory;
    reuse: for a stage with no stamp, whether the files already there are this stage's result.
    """

    name: str
    settings: dict
    inputs: list[str]
    outputs: list[str]
    run: Callable[[], None]
    reuse: Callable[[], bool] | None = None


def digest(settings: dict, inputs: list[str]) -> str:
    """A stage's identity: its settings as this version reads them (config.normalized: less
    retired keys, with keys added since at their defaults), and its inputs' digests."""
    raw = json.dumps({"settings": normalized(settings), "inputs": inputs}, sort_keys=True,
                     default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def run_stages(stages: list[Stage], run_dir: Path, log: Callable[[str], None] = print
               ) -> dict[str, str]:
    """Runs or skips each stage in order; returns {stage: "ran" | "skipped"}."""
    digests: dict[str, str] = {}
    status: dict[str, str] = {}
    for stage in stages:
        inputs = [digests[i] for i in stage.inputs]
        wanted = digests[stage.name] = digest(stage.settings, inputs)
        stamp = run_dir / "stages" / f"{stage.name}.json"
        upstream_kept = all(status[i] == "skipped" for i in stage.inputs)
        if _up_to_date(stamp, wanted, run_dir, stage, upstream_kept):
            if not stamp.exists():
                _write_stamp(stamp, stage, inputs, None)  # adopted: stamped from now on
            status[stage.name] = "skipped"
            log(f"[{stage.name}] up to date, skipped")
            continue
        log(f"[{stage.name}] running")
        t0 = time.perf_counter()
        stage.run()
        _write_stamp(stamp, stage, inputs, time.perf_counter() - t0)
        status[stage.name] = "ran"
    return status


def _up_to_date(stamp: Path, wanted: str, run_dir: Path, stage: Stage,
                upstream_kept: bool) -> bool:
    if not all((run_dir / out).exists() for out in stage.outputs):
        return False
    if stamp.exists():
        saved = json.loads(stamp.read_text())
        # recomputed from what the stamp holds, so that retired keys in it do not count
        return "settings" in saved and digest(saved["settings"], saved["inputs"]) == wanted
    return stage.reuse is not None and upstream_kept and stage.reuse()


def _write_stamp(path: Path, stage: Stage, inputs: list[str], seconds: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"settings": stage.settings, "inputs": inputs, "seconds": seconds}
    with atomic_write(path) as f:
        f.write(json.dumps(record, indent=1, default=str).encode())


# ---- the configs of the two hashing runs ------------------------------------------------------


def with_fakes(cfg: RunConfig, fakes: str | Path) -> RunConfig:
    return dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, fakes=str(fakes)))


def without_fakes(cfg: RunConfig) -> RunConfig:
    """No fake bank, and the fake settings at their defaults (they do not act without one)."""
    defaults = HashConfig()
    return dataclasses.replace(cfg, hash=dataclasses.replace(
        cfg.hash, fakes=None, **{k: getattr(defaults, k) for k in FAKE_SETTINGS}))


# ---- one run directory ------------------------------------------------------------------------


def prepare(run_dir: Path, cfg: RunConfig, progress: bool = True) -> tuple[ImageSet, Split]:
    """Loads the dataset and the run's split, making and saving the split the first time."""
    run_dir = Path(run_dir)
    data = load_dataset(cfg.data, progress)
    split_path, meta_path = run_dir / "split.npz", run_dir / "split.json"
    keys = ("dataset", "queries_per_class", "train_per_class", "database", "seed")
    wanted = {k: getattr(cfg.data, k) for k in keys} | {"n_images": len(data.labels)}
    if split_path.exists():
        made = json.loads(meta_path.read_text()) if meta_path.exists() else None
        if made != wanted:
            raise HashsdkError(f"{split_path} was made for {made}, not {wanted}; use another "
                               "run directory")
        return data, Split.load(split_path)
    split = make_split(data, cfg.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    split.save(split_path)
    with atomic_write(meta_path) as f:
        f.write(json.dumps(wanted, indent=1).encode())
    return data, split


@dataclass
class Pipeline:
    """What the stages of one run directory share, and the builders of those stages."""

    cfg: RunConfig
    data: ImageSet
    split: Split
    run_dir: Path
    progress: bool = True

    @classmethod
    def open(cls, run_dir: Path, cfg: RunConfig, progress: bool = True) -> Pipeline:
        data, split = prepare(run_dir, cfg, progress)
        return cls(cfg, data, split, Path(run_dir), progress)

    @property
    def fakes(self) -> Path:
        return self.run_dir / "gan" / "fakes.npz"

    def gan(self) -> Stage:
        from hashsdk.train.gan import train_gan

        def run() -> None:
            train_gan(self.cfg, self.data, self.split, self.run_dir / "gan",
                      progress=self.progress)

        def reuse() -> bool:
            saved = self.run_dir / "gan" / "config.json"
            return saved.exists() and not differences(json.loads(saved.read_text()), self.cfg,
                                                      sections=("data", "gan"))

        settings = self._settings("data", "gan")
        return Stage("gan", settings, [], ["gan/fakes.npz"], run, reuse)

    def hashing(self, name: str, cfg: RunConfig) -> Stage:
        """Stage 2 into ``run_dir/name`` with ``cfg`` (with_fakes or without_fakes)."""
        from hashsdk.train.loop import train_hash

        run_dir = self.run_dir / name

        def same_config() -> bool:
            saved = run_dir / "config.json"
            return saved.exists() and not differences(json.loads(saved.read_text()), cfg)

        def run() -> None:
            # a changed config means new weights: start over rather than resume
            train_hash(cfg, self.data, self.split, run_dir, resume=same_config(),
                       progress=self.progress)

        settings = {"data": cfg.to_dict()["data"], "hash": cfg.to_dict()["hash"]}
        return Stage(name, settings, ["gan"] if cfg.hash.fakes else [],
                     [f"{name}/eval.json", f"{name}/checkpoint.pt"], run, same_config)

    def baselines(self, bits: int | None = None, name: str = "baselines") -> Stage:
        """LSH, ITQ and SH on pixels at ``bits`` (default: the config's) into NAME.json."""
        from hashsdk.train.comparison import run_baselines

        bits = bits or self.cfg.hash.bits

        def run() -> None:
            results = run_baselines(self.data, self.split, bits, self.cfg.data.seed)
            with atomic_write(self.run_dir / f"{name}.json") as f:
                f.write(json.dumps(results).encode())

        settings = {"data": self.cfg.to_dict()["data"], "baselines": {"bits": bits}}
        return Stage(name, settings, [], [f"{name}.json"], run)

    def comparison(self) -> Stage:
        from hashsdk.train.comparison import compare

        def run() -> None:
            results = json.loads((self.run_dir / "baselines.json").read_text())
            compare(self.run_dir, self.cfg.hash.bits, results)

        return Stage("comparison", {}, ["hash-fakes", "hash-nofakes", "baselines"],
                     ["comparison.json", "comparison.md"], run)

    def ablation(self) -> list[Stage]:
        """GAN, hashing with fakes and without, the pixel baselines, and the table."""
        return [self.gan(), self.hashing("hash-fakes", with_fakes(self.cfg, self.fakes)),
                self.hashing("hash-nofakes", without_fakes(self.cfg)), self.baselines(),
                self.comparison()]

    def _settings(self, *sections: str) -> dict:
        full = self.cfg.to_dict()
        return {section: full[section] for section in sections}
