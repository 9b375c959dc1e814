"""The GPU suite: ``make gpu-check`` on a machine with one CUDA GPU, ``--smoke`` on a CPU.

    make gpu-check                 # GPU machine: installs this checkout (no deps), runs it all
    make gpu-check SMOKE=1         # the same code paths on this CPU, on tiny data
    python benchmarks/gpu_check.py [--parts epoch-time gan overfit export recipe pretrained
                                   extras] [--budget-s 420] [--gan-steps N] [--device cuda]
                                   [--results DIR]

Made for a machine with python3, torch, torchvision, onnx and onnxruntime and no network. Data:
the CIFAR-10 JPEG archive, from ``--data`` or found as ``hashsdk-train`` finds it
($HASHSDK_DATA first). It is decoded once; training keeps it on the GPU as uint8 and
augments it there (train/device.py), so no minute goes to a data loader.

Parts, run in this order; each writes ``<results>/gpu-<part>.json`` (``cpu-`` on a CPU) the
moment it ends (the pretrained part after each of its runs), and ``gpu-check.md`` is redrawn
from whatever is there, so a suite cut short keeps what it finished. The recipe, pretrained
and extras parts start a run only while it would end inside ``--budget-s``:

    epoch-time  seconds an epoch (5,000 images, batch 128, crop and flip) for ``cnn`` and
                ResNet-18 (32x32 stem), with bf16 AMP and without; the median of epochs 2 on
                (epoch 1 includes cuDNN's autotuning). ``--device cpu`` gives a CPU's rows.
    gan         the DCGAN for ten times the CPU ablation's 2,000 steps; its fakes and losses.
    overfit     the over-fitting regime: ResNet-18 from scratch, 48 bits, no augmentation, 2
                seeds, without fakes and with the GAN's fakes; mAP, the paired difference over
                queries, and each run's seen/unseen gap.
    export      the CUDA-trained with-fakes checkpoint through ``hashsdk-export --verify``,
                with the GPU hidden (CPU export, onnxruntime on the CPU).
    recipe      the fine-tuning recipe at 224 px (timm's tf_efficientnet_lite0 with its offline
                ImageNet weights: the pretrained extra, or the weight file in $HASHSDK_WEIGHTS,
                default data/weights, as the GPU machine has no network), chosen among
                candidates on a validation split carved from the training images.
    pretrained  the CIFAR-10 table under that recipe: 48, 12, 24, 32 bits x 2 seeds (3 at 48),
                without and with the GAN's fakes (fitted to 224 px), while the budget lasts;
                mAP, minutes a model, and the paired difference. benchmarks/gpu_pretrained.py
                holds both parts.
    extras      while ``--budget-s`` lasts: the same runs with augmentation on (the other
                remedy), without and with fakes.

``--smoke`` runs every part on the CPU, on a synthetic CIFAR-shaped archive (unless ``--data``),
with a few steps each, into runs/gpu-check-smoke: the test suite runs it so that the suite
cannot rot before a GPU comes.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

import gpu_pretrained  # noqa: E402  (benchmarks/)
import numpy as np
import torch
from _results import write_json  # noqa: E402
from gpu_render import PARTS, RESULTS, read_json, render  # noqa: E402

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.train import config
from hashsdk.train.comparison import paired_difference
from hashsdk.train.data import CIFAR10_CLASSES, find_source
from hashsdk.train.device import amp_dtype
from hashsdk.train.evaluate import seen_unseen
from hashsdk.train.gan import train_gan
from hashsdk.train.loop import train_hash
from hashsdk.train.model import HashNet
from hashsdk.train.stages import prepare

ROOT = Path(__file__).resolve().parent.parent
CPU_GAN_STEPS = 2000  # the CPU ablation's (benchmarks/results/retrieval-cifar10.json)


@dataclasses.dataclass
class Sizes:
    """How big each part is: the real suite, or the smoke run."""

    queries_per_class: int = 100
    train_per_class: int = 500
    timing_epochs: int = 4
    timing_amps: tuple[str, ...] = ("auto", "off")
    gan_steps: int = 10 * CPU_GAN_STEPS
    gan_width: int = 48
    gan_sample_every: int = 2000
    backbone: str = "resnet18"  # of the overfit and extras runs
    epochs: int = 40
    batch_size: int = 128
    seeds: tuple[int, ...] = (0, 1)
    pretrained_size: int = 224      # the recipe and pretrained parts: input pixels, epochs,
    pretrained_epochs: int = 15     # batch, validation queries a class, the third seed at 48
    pretrained_batch: int = 64
    validation_per_class: int = 100
    third_seed: int | None = 2


# the smoke run's regime runs use `cnn`: the epoch-time part already runs ResNet-18 there
SMOKE = Sizes(queries_per_class=3, train_per_class=20, timing_epochs=2, timing_amps=("off",),
              gan_steps=4, gan_width=8, gan_sample_every=2, backbone="cnn", epochs=1,
              batch_size=32, pretrained_size=32, pretrained_epochs=1, pretrained_batch=32,
              validation_per_class=5, third_seed=None)
FAKE_DEFAULTS = {k: getattr(config.HashConfig(), k)
                 for k in ("fake_loss", "lam", "fake_ratio", "fake_bn")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny data, every code path.")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--device", default=None, help="cuda (default) or cpu (--smoke's default).")
    p.add_argument("--data", type=Path, default=None, help="The CIFAR-10 archive or folder.")
    p.add_argument("--run-root", type=Path, default=None)
    p.add_argument("--results", type=Path, default=None,
                   help="Where the JSON files go (default benchmarks/results; --smoke: "
                        "RUN_ROOT/results).")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="The recipe, pretrained and extras parts start a run only while "
                        "the suite's time plus the last run's is under this.")
    p.add_argument("--gan-steps", type=int, default=None,
                   help=f"DCGAN steps (default {Sizes.gan_steps:,}, ten times the CPU "
                        "ablation's).")
    p.add_argument("--epochs", type=int, default=None, help="Epochs of the overfit runs.")
    p.add_argument("--fake-loss", default=FAKE_DEFAULTS["fake_loss"],
                   choices=config.CHOICES[("hash", "fake_loss")])
    p.add_argument("--lam", type=float, default=FAKE_DEFAULTS["lam"])
    p.add_argument("--fake-ratio", type=float, default=FAKE_DEFAULTS["fake_ratio"])
    p.add_argument("--fake-bn", default=FAKE_DEFAULTS["fake_bn"],
                   choices=config.CHOICES[("hash", "fake_bn")])
    args = p.parse_args()
    try:
        failed = Suite(args).run()
    except HashsdkError as exc:
        sys.exit(f"gpu-check: {exc}")
    if failed:
        sys.exit(f"gpu-check: parts failed: {', '.join(failed)}")


class Suite:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.perf_counter()
        self.sizes = SMOKE if args.smoke else Sizes()
        if args.epochs is not None:
            self.sizes = dataclasses.replace(self.sizes, epochs=args.epochs)
        if args.gan_steps is not None:
            self.sizes = dataclasses.replace(self.sizes, gan_steps=args.gan_steps)
        self.root = ROOT
        self._fine_tuning = None
        self.device = args.device or ("cpu" if args.smoke else "cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HashsdkError("torch sees no CUDA GPU; run `make gpu-check SMOKE=1` (or "
                               "--smoke) to try the suite on the CPU")
        self.run_root = args.run_root or ROOT / "runs" / (
            "gpu-check-smoke" if args.smoke else "gpu-check")
        self.results = args.results or (self.run_root / "results" if args.smoke else RESULTS)
        self.prefix = "gpu-" if self.device.startswith("cuda") else "cpu-"
        self.run_root.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self.cfg = self._base_config(self._data_path())
        self.data, self.split = prepare(self.run_root, self.cfg, progress=False)
        self.log(f"data: {len(self.data.labels):,} images, {len(self.split.train):,} train, "
                 f"{len(self.split.query):,} queries; device {self.device_name()}")

    # ---- setup ------------------------------------------------------------------------------

    def _data_path(self) -> Path:
        if self.args.data is not None:
            if not self.args.data.exists():
                raise HashsdkError(f"--data {self.args.data} does not exist")
            return self.args.data.resolve()
        if self.args.smoke:
            return write_synthetic_cifar(self.run_root / "synthetic-cifar10.tar.gz")
        return find_source(config.DataConfig(dataset="cifar10")).resolve()

    def _base_config(self, data_path: Path) -> config.RunConfig:
        s = self.sizes
        cache = str(self.run_root / "cache") if self.args.smoke else None
        return config.from_dict({
            "data": {"dataset": "cifar10", "root": str(data_path), "cache_dir": cache,
                     "queries_per_class": s.queries_per_class,
                     "train_per_class": s.train_per_class},
            "gan": {"steps": s.gan_steps, "width": s.gan_width, "sample_every": s.gan_sample_every,
                    "device": self.device},
            "hash": {"backbone": s.backbone, "bits": 48, "epochs": s.epochs,
                     "batch_size": s.batch_size, "device": self.device},
        }, where="gpu-check")

    def hash_config(self, **changes) -> config.RunConfig:
        return dataclasses.replace(self.cfg, hash=dataclasses.replace(self.cfg.hash, **changes))

    def device_name(self) -> str:
        if self.device.startswith("cuda"):
            return torch.cuda.get_device_name(torch.device(self.device))
        return f"CPU ({platform.processor() or platform.machine()}, " \
               f"{torch.get_num_threads()} threads)"

    def log(self, line: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.0f} s] {line}", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def affords(self, seconds: float) -> bool:
        """Whether a run as long as ``seconds`` still ends inside ``--budget-s``."""
        return self.elapsed() + seconds <= self.args.budget_s

    # ---- the parts ------------------------------------------------------------------------

    def run(self) -> list[str]:
        """Runs the chosen parts; returns those that failed. A failed part is logged with its
        traceback and the rest still run, since a GPU's minutes are too rare to lose them all
        to one error."""
        failed = []
        for part in PARTS:
            if part not in self.args.parts:
                continue
            self.log(f"== {part}")
            started = time.perf_counter()
            try:
                result = getattr(self, "part_" + part.replace("-", "_"))()
            except Exception:  # noqa: BLE001  (any error: report it, go on)
                traceback.print_exc()
                self.log(f"{part} FAILED")
                failed.append(part)
                continue
            if result is not None:
                result["seconds"] = time.perf_counter() - started
                self.write(part, result)
        self.log(f"done; results in {self.results}" + (f"; failed: {failed}" if failed else ""))
        return failed

    def part_epoch_time(self) -> dict:
        rows = []
        for backbone in ("cnn", "resnet18"):
            for amp in self.sizes.timing_amps:
                if any(r["backbone"] == backbone and r["amp"] == amp_label(self.device, amp)
                       for r in rows):
                    continue  # on a CPU, AMP is off either way
                cfg = self.hash_config(backbone=backbone, amp=amp,
                                       epochs=self.sizes.timing_epochs, augment=True)
                run = self.run_root / "epoch-time" / f"{backbone}-{amp}"
                train_hash(cfg, self.data, self.split, run, resume=False, progress=False,
                           evaluate=False)
                seconds = [r["seconds"] for r in read_json(run / "history.json")]
                rows.append(dict(backbone=backbone, amp=amp_label(self.device, amp),
                                 first_epoch_seconds=seconds[0],
                                 epoch_seconds=float(np.median(seconds[1:] or seconds)),
                                 images=len(self.split.train),
                                 batch_size=cfg.hash.batch_size))
                self.log(f"{backbone} {rows[-1]['amp']}: {rows[-1]['epoch_seconds']:.2f} s "
                         "an epoch")
        return dict(rows=rows, epochs=self.sizes.timing_epochs)

    def part_gan(self) -> dict:
        out = self.run_root / "gan"
        started = time.perf_counter()
        train_gan(self.cfg, self.data, self.split, out, progress=False)
        seconds = time.perf_counter() - started
        shutil.copyfile(out / "fakes.png", self.results / f"{self.prefix}gan-fakes.png")
        losses = np.loadtxt(out / "losses.csv", delimiter=",", skiprows=1, ndmin=2)
        tail = losses[-max(1, len(losses) // 10):]  # the last tenth of training
        self.log(f"GAN: {self.cfg.gan.steps} steps in {seconds:.0f} s")
        return dict(steps=self.cfg.gan.steps, cpu_ablation_steps=CPU_GAN_STEPS,
                    width=self.cfg.gan.width, batch_size=self.cfg.gan.batch_size,
                    steps_per_second=self.cfg.gan.steps / seconds,
                    last_tenth=dict(zip(("loss_d", "loss_g", "d_real", "d_fake"),
                                        tail[:, 1:].mean(axis=0).tolist(), strict=True)),
                    fakes=len(self.split.train))

    def fakes(self) -> Path:
        path = self.run_root / "gan" / "fakes.npz"
        if not path.exists():
            self.part_gan()
        return path

    def fake_settings(self) -> dict:
        a = self.args
        return dict(fake_loss=a.fake_loss, lam=a.lam, fake_ratio=a.fake_ratio, fake_bn=a.fake_bn)

    def regime(self, augment: bool) -> list[tuple[str, dict]]:
        """(run name, hash settings) for one regime: each seed without, then with fakes."""
        tag = "aug" if augment else "noaug"
        out = []
        for seed in self.sizes.seeds:
            out.append((f"{tag}-seed{seed}-nofakes", dict(seed=seed, augment=augment)))
            out.append((f"{tag}-seed{seed}-fakes", dict(seed=seed, augment=augment,
                                                        fakes=str(self.fakes()),
                                                        **self.fake_settings())))
        return out

    def train_and_measure(self, name: str, changes: dict) -> dict:
        run = self.run_root / name
        cfg = self.hash_config(**changes)
        result = train_hash(cfg, self.data, self.split, run, resume=False, progress=False)
        model = HashNet.from_checkpoint(run / "checkpoint.pt")[0].to(torch.device(self.device))
        gap = seen_unseen(model, self.data, self.split, torch.device(self.device))
        history = read_json(run / "history.json")
        row = dict(run=name, seed=cfg.hash.seed, augment=cfg.hash.augment,
                   fakes=cfg.hash.fakes is not None, map=result["map"],
                   p_r2=result["precision_at_radius"], epochs=cfg.hash.epochs,
                   epoch_seconds=result["epoch_seconds"],
                   train_seconds=sum(r["seconds"] for r in history),
                   last_loss_real=history[-1]["loss_real"], **gap)
        self.log(f"{name}: mAP {row['map']:.4f}, seen {row['map_seen']:.4f}, gap "
                 f"{row['gap']:+.4f}, {row['train_seconds']:.0f} s")
        return row

    def part_overfit(self) -> dict:
        rows = [self.train_and_measure(name, ch) for name, ch in self.regime(augment=False)]
        return self.regime_report(rows)

    def part_extras(self) -> dict | None:
        """The same regime with augmentation on, run by run while the budget lasts."""
        rows, last = [], 0.0
        for name, changes in self.regime(augment=True):
            if not self.affords(last):
                self.log(f"budget of {self.args.budget_s:.0f} s reached; {name} and after "
                         "skipped")
                break
            started = time.perf_counter()
            rows.append(self.train_and_measure(name, changes))
            last = time.perf_counter() - started
        return self.regime_report(rows) if rows else None

    def regime_report(self, rows: list[dict]) -> dict:
        """The rows, and with minus without fakes paired over queries: per seed, and over the
        seeds that have both (per-query AP averaged over seeds, as benchmarks/retrieval.py)."""
        hc = self.cfg.hash
        ap = {r["run"]: np.load(self.run_root / r["run"] / "ap.npy") for r in rows}
        pairs = [(n, n[:-len("nofakes")] + "fakes") for n in ap if n.endswith("-nofakes")]
        pairs = [(a, b) for a, b in pairs if b in ap]
        per_seed = {b: paired_difference(ap[b], ap[a]) for a, b in pairs}
        overall = None
        if pairs:
            overall = paired_difference(np.mean([ap[b] for _, b in pairs], axis=0),
                                        np.mean([ap[a] for a, _ in pairs], axis=0))
        return dict(backbone=hc.backbone, bits=hc.bits, epochs=self.sizes.epochs,
                    batch_size=hc.batch_size, fake_setting=self.fake_settings(),
                    gan_steps=self.cfg.gan.steps, rows=rows,
                    fakes_minus_nofakes=overall, fakes_minus_nofakes_per_seed=per_seed)

    def part_export(self) -> dict:
        ckpt = self.run_root / f"noaug-seed{self.sizes.seeds[0]}-fakes" / "checkpoint.pt"
        if not ckpt.exists():
            raise HashsdkError(f"export needs the overfit part's checkpoint {ckpt}; run "
                               "--parts overfit export")
        onnx_path = self.run_root / "model.onnx"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the CPU exports and verifies
        done = subprocess.run([sys.executable, "-m", "hashsdk.export.cli", str(ckpt), "-o",
                               str(onnx_path), "--verify"], capture_output=True, text=True,
                              env=env, cwd=ROOT)
        if done.returncode != 0:
            raise HashsdkError(f"hashsdk-export --verify failed:\n{done.stdout}{done.stderr}")
        self.log(done.stdout.strip().splitlines()[-1])
        report = read_json(Path(str(onnx_path) + ".verify.json"))
        return dict(checkpoint=str(ckpt.relative_to(self.run_root)),
                    trained_on=self.device_name(), onnx_bytes=onnx_path.stat().st_size,
                    verify=report)

    def fine_tuning(self) -> gpu_pretrained.FineTuning:
        if self._fine_tuning is None:
            self._fine_tuning = gpu_pretrained.FineTuning.open(self)
        return self._fine_tuning

    def part_recipe(self) -> dict:
        return gpu_pretrained.part_recipe(self, self.fine_tuning())

    def part_pretrained(self) -> None:
        return gpu_pretrained.part_pretrained(self, self.fine_tuning())

    # ---- output ------------------------------------------------------------------------------

    def write(self, part: str, result: dict) -> None:
        result = dict(part=part, device=self.device_name(), torch=torch.__version__,
                      cuda=torch.version.cuda, command=self.command(), **result)
        write_json(self.results / f"{self.prefix}{part}.json", result)
        with atomic_write(self.results / f"{self.prefix}check.md") as f:
            f.write(render(self.results, self.prefix).encode())

    def command(self) -> str:
        a = self.args
        parts = "" if list(a.parts) == list(PARTS) else " --parts " + " ".join(a.parts)
        fakes = "" if self.fake_settings() == FAKE_DEFAULTS else (
            f" --fake-loss {a.fake_loss} --lam {a.lam:g} --fake-ratio {a.fake_ratio:g} "
            f"--fake-bn {a.fake_bn}")
        epochs = "" if a.epochs is None else f" --epochs {a.epochs}"
        epochs += "" if a.gan_steps is None else f" --gan-steps {a.gan_steps}"
        device = "" if a.device is None else f" --device {a.device}"
        smoke = " --smoke" if a.smoke else ""
        return (f"python benchmarks/gpu_check.py{smoke}{device}{parts}{epochs}{fakes} "
                f"--budget-s {a.budget_s:g}")


def amp_label(device: str, amp: str) -> str:
    dtype = amp_dtype(torch.device(device), amp)
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")


def write_synthetic_cifar(path: Path, train: int = 30, test: int = 10) -> Path:
    """A CIFAR-shaped JPEG archive (``<top>/{train,test}/<class>/<n>.jpg``, 32x32 RGB), each
    class a coloured square at its own place on noise, so a few steps learn something."""
    from PIL import Image

    if path.exists():
        return path.resolve()
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for split, count in (("train", train), ("test", test)):
            for c, name in enumerate(CIFAR10_CLASSES):
                for i in range(count):
                    image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                    image[2 * c:2 * c + 12, 2 * c:2 * c + 12] = (25 * c, 250 - 20 * c, 120)
                    raw = io.BytesIO()
                    Image.fromarray(image).save(raw, "JPEG", quality=90)
                    info = tarfile.TarInfo(f"synthetic/{split}/{name}/{i:04d}.jpg")
                    info.size = raw.tell()
                    raw.seek(0)
                    tar.addfile(info, raw)
    return path.resolve()


if __name__ == "__main__":
    main()
