"""The GPU suite's fine-tuning parts (benchmarks/gpu_check.py): the recipe at full resolution,
chosen on a validation split, then the CIFAR-10 table under it.

    recipe      EfficientNet-Lite0 from its offline ImageNet weights at 224 px, 48 bits, seed 0,
                no fakes, trained on 4,000 of the 5,000 training images and scored on the other
                1,000 (100 a class as queries, searched among the 4,000: train/data.py's
                ``validation_split``); the protocol's 1,000 queries are never seen. Candidates
                in order, while the budget lasts: the CPU's best recipe first (OrthoHash with
                label smoothing 0.1, the whole backbone at the head's learning rate: what
                configs/cifar10-lite0-128px-smoothing.toml runs at 128 px), then the losses
                alone (DPSH, CSQ, OrthoHash), then the best so far with the whole backbone at
                the head's learning rate, with twice the epochs, and with test-time flip
                averaging. The best validation mAP is the recipe.
    pretrained  the recipe on all 5,000 training images: 48 bits x seeds 0 and 1, then 12, 24
                and 32 bits x 2 seeds, then a third seed at 48, each without and then with the
                GAN's fakes, while the budget lasts. The result file is rewritten after every
                run, so a suite cut short keeps the runs it finished.

mAP@all ranks ties in Hamming distance by the smaller database row (hashsdk.metrics).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/)
from gpu_render import paired_rows  # noqa: E402

from hashsdk.train import config
from hashsdk.train.data import validation_split
from hashsdk.train.loop import train_hash
from hashsdk.train.stages import prepare

PRETRAINED = "timm/tf_efficientnet_lite0"
FULL_LR = dict(backbone_lr=1.0, freeze_backbone_epochs=1)
# the first candidates, in order: the CPU's best recipe (docs/results.md), then each loss alone
CANDIDATES = {"cpu-best": dict(loss="orthohash", label_smoothing=0.1, **FULL_LR),
              "pairwise": dict(loss="pairwise"), "csq": dict(loss="csq"),
              "orthohash": dict(loss="orthohash")}
# after them, each refinement is tried on the best candidate so far
REFINEMENTS = {"full-lr": FULL_LR, "2x-epochs": "twice the epochs",
               "flip": dict(flip_average=True)}
TABLE_BITS = (48, 12, 24, 32)


@dataclasses.dataclass
class FineTuning:
    """The 224 px setup both parts share: its config, data and split (decoded once)."""

    suite: object  # gpu_check.Suite
    cfg: config.RunConfig
    data: object
    split: object
    root: Path

    @classmethod
    def open(cls, suite) -> FineTuning:
        s = suite.sizes
        os.environ.setdefault("HASHSDK_WEIGHTS", str(suite.root / "data" / "weights"))
        tables = suite.cfg.to_dict()
        # CIFAR-10's 32 px images upsampled whole (no crop of a border they do not have)
        tables["data"] |= dict(image_size=s.pretrained_size, resize_size=s.pretrained_size)
        tables["hash"] |= dict(backbone=PRETRAINED, pretrained="imagenet", bits=48,
                               epochs=s.pretrained_epochs, batch_size=s.pretrained_batch,
                               crop="resized", backbone_lr=None, freeze_backbone_epochs=0)
        cfg = config.from_dict({k: tables[k] for k in ("data", "hash")}, where="gpu-check")
        root = suite.run_root / "pretrained"
        data, split = prepare(root, cfg, progress=False)
        suite.log(f"fine-tuning data at {s.pretrained_size} px: {data.images.shape}")
        return cls(suite, cfg, data, split, root)

    def train(self, name: str, changes: dict, split=None) -> dict:
        """One run of the base recipe with ``changes``; its row (mAP, seconds). A run this
        run root already finished with the same changes is read back, not trained again (a
        second call on a warm machine goes on where the first stopped)."""
        run = self.root / name
        row = self.finished(name, changes)
        if row is not None:
            self.suite.log(f"{name}: mAP {row['map']:.4f} (finished before; read back)")
            return row
        cfg = dataclasses.replace(self.cfg, hash=dataclasses.replace(self.cfg.hash, **changes))
        started = time.perf_counter()
        result = train_hash(cfg, self.data, split or self.split, run, resume=False,
                            progress=False)
        history = json.loads((run / "history.json").read_text())
        row = dict(run=name, changes=changes, map=result["map"],
                   p_r2=result["precision_at_radius"], epochs=len(history),
                   epoch_seconds=result["epoch_seconds"],
                   train_seconds=sum(r["seconds"] for r in history),
                   seconds=time.perf_counter() - started)  # evaluation included
        write_json(run / "row.json", row)
        self.suite.log(f"{name}: mAP {row['map']:.4f}, {row['train_seconds']:.0f} s training")
        return row


    def finished(self, name: str, changes: dict) -> dict | None:
        """The row of run ``name`` if this run root finished it with these changes."""
        path = self.root / name / "row.json"
        row = json.loads(path.read_text()) if path.exists() else None
        return row if row is not None and row["changes"] == changes else None


def part_recipe(suite, ft: FineTuning) -> dict:
    """Candidates on the validation split, in order, while the budget lasts; the best wins."""
    val = validation_split(ft.data, ft.split, suite.sizes.validation_per_class, seed=0)
    rows: list[dict] = []
    skipped: list[str] = []

    trained = 0  # as in part_pretrained: the first run always starts, read-backs are free

    def attempt(name: str, changes: dict) -> None:
        nonlocal trained
        if ft.finished(f"val-{name}", changes) is None:
            if trained and not suite.affords(rows[-1]["seconds"]):
                suite.log(f"budget reached; recipe candidate {name} skipped")
                skipped.append(name)
                return
            trained += 1
        rows.append(dict(ft.train(f"val-{name}", changes, split=val), candidate=name))

    for name, changes in CANDIDATES.items():
        attempt(name, changes)
    for name, extra in REFINEMENTS.items():
        best = max(rows, key=lambda r: r["map"])
        if extra == "twice the epochs":
            extra = dict(epochs=2 * best["epochs"])
        changes = dict(best["changes"], **extra)
        if changes != best["changes"]:  # the CPU's recipe has the full learning rate already
            attempt(f"{best['candidate']}+{name}", changes)
    best = max(rows, key=lambda r: r["map"])
    suite.log(f"recipe: {best['candidate']} (validation mAP {best['map']:.4f})")
    return dict(backbone=PRETRAINED, image_size=ft.cfg.data.image_size, bits=48,
                base=dict(epochs=ft.cfg.hash.epochs, batch_size=ft.cfg.hash.batch_size,
                          crop=ft.cfg.hash.crop, lr=ft.cfg.hash.lr),
                validation=dict(queries=len(val.query), train=len(val.train)),
                rows=rows, skipped=skipped, chosen=best["candidate"],
                chosen_changes=best["changes"])


def chosen_recipe(suite) -> tuple[str, dict]:
    """The recipe part's choice (this run's, or one in the results folder), else DPSH."""
    path = suite.results / f"{suite.prefix}recipe.json"
    if path.exists():
        r = json.loads(path.read_text())
        return r["chosen"], r["chosen_changes"]
    return "pairwise", dict(loss="pairwise")


def table_runs(seeds: tuple[int, ...], third: int | None) -> list[tuple[int, int, bool]]:
    """(bits, seed, fakes) in the order they run: 48 bits first, the third seed at 48 last."""
    out = [(b, s, f) for b in TABLE_BITS for s in seeds for f in (False, True)]
    if third is not None:
        out += [(48, third, False), (48, third, True)]
    return out


def part_pretrained(suite, ft: FineTuning) -> dict | None:
    recipe_name, recipe = chosen_recipe(suite)
    fakes = str(suite.fakes())
    rows: list[dict] = []
    trained = 0  # runs trained in this call: the first always starts, read-backs are free
    started_part = time.perf_counter()
    for bits, seed, with_fakes in table_runs(suite.sizes.seeds, suite.sizes.third_seed):
        changes = dict(recipe, bits=bits, seed=seed)
        if with_fakes:
            changes |= dict(fakes=fakes, **suite.fake_settings())
        name = f"{bits}bits-seed{seed}-{'fakes' if with_fakes else 'nofakes'}"
        if ft.finished(name, changes) is None:
            if trained and not suite.affords(max(r["seconds"] for r in rows[-2:])):
                suite.log(f"budget reached; {bits} bits seed {seed} and after skipped")
                break
            trained += 1
        row = ft.train(name, changes)
        rows.append(dict(row, bits=bits, seed=seed, fakes=with_fakes))
        result = report(suite, ft, recipe_name, recipe, rows)
        result["seconds"] = time.perf_counter() - started_part
        suite.write("pretrained", result)  # after every run: a cut-short suite keeps them
    return None  # written above


def report(suite, ft: FineTuning, name: str, recipe: dict, rows: list[dict]) -> dict:
    ap = {r["run"]: np.load(ft.root / r["run"] / "ap.npy") for r in rows}
    for r in rows:
        r.pop("changes", None)
    protocol = dict(queries=len(ft.split.query), train=len(ft.split.train),
                    database=len(ft.split.database))
    return dict(backbone=PRETRAINED, image_size=ft.cfg.data.image_size, recipe=name,
                protocol=protocol,
                recipe_changes={k: v for k, v in recipe.items()},
                epochs=ft.cfg.hash.epochs, batch_size=ft.cfg.hash.batch_size,
                fake_setting=suite.fake_settings(), gan_steps=suite.cfg.gan.steps,
                rows=rows, by_bits=paired_rows(rows, ap))

