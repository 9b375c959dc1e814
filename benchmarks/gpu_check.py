"""The GPU suite: ``make gpu-check`` on a machine with one CUDA GPU, ``--smoke`` on a CPU.

    make gpu-check                 # GPU machine: installs this checkout (no deps), runs it all
    make gpu-check SMOKE=1         # the same code paths on this CPU, on tiny data
    python benchmarks/gpu_check.py [--parts epoch-time gan overfit export extras]
                                   [--budget-s 420] [--device cuda] [--results DIR]

Made for a machine with python3, torch, torchvision, onnx and onnxruntime and no network. Data:
the CIFAR-10 JPEG archive, from ``--data`` or found as ``hashsdk-train`` finds it
($HASHSDK_DATA first). It is decoded once; training keeps it on the GPU as uint8 and
augments it there (train/device.py), so no minute goes to a data loader.

Parts, run in this order; each writes ``<results>/gpu-<part>.json`` (``cpu-`` on a CPU) the
moment it ends, and ``gpu-check.md`` is redrawn from whatever is there, so a suite cut short
keeps what it finished:

    epoch-time  seconds an epoch (5,000 images, batch 128, crop and flip) for ``cnn`` and
                ResNet-18 (32x32 stem), with bf16 AMP and without; the median of epochs 2 on
                (epoch 1 includes cuDNN's autotuning). ``--device cpu`` gives a CPU's rows.
    gan         the DCGAN for ten times the CPU ablation's 2,000 steps; its fakes and losses.
    overfit     the over-fitting regime: ResNet-18 from scratch, 48 bits, no augmentation, 2
                seeds, without fakes and with the GAN's fakes; mAP, the paired difference over
                queries, and each run's seen/unseen gap.
    export      the CUDA-trained with-fakes checkpoint through ``hashsdk-export --verify``,
                with the GPU hidden (CPU export, onnxruntime on the CPU).
    pretrained  the paper's own regime at full resolution: timm's tf_efficientnet_lite0 with
                its offline ImageNet weights (the pretrained extra, or the weight file in
                $HASHSDK_WEIGHTS, default data/weights: the GPU machine has no network)
                fine-tuned at 224 px on the 5,000 training images, 48 bits, 2 seeds, without
                and with the GAN's fakes (fitted to 224 px); mAP and the paired difference.
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
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from _results import write_json  # noqa: E402  (benchmarks/)

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
RESULTS = ROOT / "benchmarks" / "results"
PARTS = ("epoch-time", "gan", "overfit", "export", "pretrained", "extras")
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
    pretrained_size: int = 224      # the pretrained part: input pixels, epochs, batch
    pretrained_epochs: int = 15
    pretrained_batch: int = 64


# the smoke run's regime runs use `cnn`: the epoch-time part already runs ResNet-18 there
SMOKE = Sizes(queries_per_class=3, train_per_class=20, timing_epochs=2, timing_amps=("off",),
              gan_steps=4, gan_width=8, gan_sample_every=2, backbone="cnn", epochs=1,
              batch_size=32, pretrained_size=32, pretrained_epochs=1, pretrained_batch=32)
PRETRAINED = "timm/tf_efficientnet_lite0"


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
                   help="Extras start only while the suite's time is under this.")
    p.add_argument("--epochs", type=int, default=None, help="Epochs of the overfit runs.")
    p.add_argument("--fake-loss", default="entropy", choices=config.CHOICES[("hash", "fake_loss")])
    p.add_argument("--lam", type=float, default=0.3)
    p.add_argument("--fake-ratio", type=float, default=0.5)
    p.add_argument("--fake-bn", default="separate", choices=config.CHOICES[("hash", "fake_bn")])
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
            if self.elapsed() + last > self.args.budget_s:
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

    def part_pretrained(self) -> dict:
        """Fine-tuned from ImageNet weights at full resolution, without and with fakes."""
        s = self.sizes
        os.environ.setdefault("HASHSDK_WEIGHTS", str(ROOT / "data" / "weights"))
        tables = self.cfg.to_dict()
        tables["data"] |= dict(image_size=s.pretrained_size, resize_size=s.pretrained_size)
        tables["hash"] |= dict(backbone=PRETRAINED, pretrained="imagenet", bits=48,
                               epochs=s.pretrained_epochs, batch_size=s.pretrained_batch,
                               freeze_backbone_epochs=1, backbone_lr=1.0, crop="pad")
        cfg = config.from_dict({k: tables[k] for k in ("data", "hash")}, where="gpu-check")
        root = self.run_root / "pretrained"
        data, split = prepare(root, cfg, progress=False)  # the same protocol, at 224 px
        rows = []
        for seed in self.sizes.seeds:
            for fakes in (None, str(self.fakes())):
                changes = dict(seed=seed, fakes=fakes, **(self.fake_settings() if fakes else {}))
                run_cfg = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, **changes))
                name = f"seed{seed}-{'fakes' if fakes else 'nofakes'}"
                result = train_hash(run_cfg, data, split, root / name, resume=False,
                                    progress=False)
                history = read_json(root / name / "history.json")
                rows.append(dict(run=name, seed=seed, fakes=fakes is not None,
                                 map=result["map"], p_r2=result["precision_at_radius"],
                                 epoch_seconds=result["epoch_seconds"],
                                 train_seconds=sum(r["seconds"] for r in history)))
                self.log(f"pretrained {name}: mAP {rows[-1]['map']:.4f}, "
                         f"{rows[-1]['train_seconds']:.0f} s")
        ap = {r["run"]: np.load(root / r["run"] / "ap.npy") for r in rows}
        seeds = [r["seed"] for r in rows if r["fakes"]]
        paired = paired_difference(np.mean([ap[f"seed{s}-fakes"] for s in seeds], axis=0),
                                   np.mean([ap[f"seed{s}-nofakes"] for s in seeds], axis=0))
        return dict(backbone=PRETRAINED, image_size=s.pretrained_size, bits=48,
                    epochs=s.pretrained_epochs, batch_size=s.pretrained_batch,
                    fake_setting=self.fake_settings(), rows=rows, fakes_minus_nofakes=paired)

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
        fakes = "" if self.fake_settings() == dict(fake_loss="entropy", lam=0.3, fake_ratio=0.5,
                                                   fake_bn="separate") else (
            f" --fake-loss {a.fake_loss} --lam {a.lam:g} --fake-ratio {a.fake_ratio:g} "
            f"--fake-bn {a.fake_bn}")
        epochs = "" if a.epochs is None else f" --epochs {a.epochs}"
        device = "" if a.device is None else f" --device {a.device}"
        smoke = " --smoke" if a.smoke else ""
        return (f"python benchmarks/gpu_check.py{smoke}{device}{parts}{epochs}{fakes} "
                f"--budget-s {a.budget_s:g}")


def amp_label(device: str, amp: str) -> str:
    dtype = amp_dtype(torch.device(device), amp)
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")


def read_json(path: Path) -> dict | list:
    return json.loads(path.read_text())


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


# ---- the summary ------------------------------------------------------------------------------


def pretrained_lines(r: dict) -> list[str]:
    d = r["fakes_minus_nofakes"]
    lines = [f"The paper's regime: `{r['backbone']}` from ImageNet weights, fine-tuned at "
             f"{r['image_size']} px on the 5,000 training images, {r['bits']} bits, "
             f"{r['epochs']} epochs of batch {r['batch_size']}; with minus without fakes "
             f"{d['difference']:+.4f} ± {d['standard_error']:.4f} (paired over queries).", "",
             "| run | mAP@all | training s |", "|---|---:|---:|"]
    lines += [f"| {row['run']} | {row['map']:.4f} | {row['train_seconds']:.0f} |"
              for row in r["rows"]]
    return lines + [""]


def render(results: Path, prefix: str) -> str:
    """<prefix>check.md from the part files present in ``results``; it starts with the command
    that reproduces it (scripts/readme_tables.py puts it into the README as it is)."""
    parts = {p: read_json(results / f"{prefix}{p}.json") for p in PARTS
             if (results / f"{prefix}{p}.json").exists()}
    first = next(iter(parts.values()), {})
    lines = [f"Reproduce: `{reproduce(first.get('command', ''))}` on {first.get('device')}, "
             f"torch {first.get('torch')}, CUDA {first.get('cuda')}.", ""]
    if "epoch-time" in parts:
        cpu = cpu_reference(results) if prefix == "gpu-" else None
        lines += epoch_lines(parts["epoch-time"]["rows"], cpu)
    if "gan" in parts:
        g = parts["gan"]
        lines += [f"DCGAN: {g['steps']:,} steps (the CPU ablation ran {g['cpu_ablation_steps']:,})"
                  f" at {g['steps_per_second']:.0f} steps/s, {g['seconds']:.0f} s; last tenth: "
                  f"D(real) {g['last_tenth']['d_real']:.2f}, D(fake) "
                  f"{g['last_tenth']['d_fake']:.2f}.", ""]
    for part in ("overfit", "extras"):
        if part in parts:
            lines += regime_lines(parts[part])
    if "pretrained" in parts:
        lines += pretrained_lines(parts["pretrained"])
    if "export" in parts:
        v = parts["export"]["verify"]
        lines += [f"Export of `{parts['export']['checkpoint']}` (trained on "
                  f"{parts['export']['trained_on']}) to ONNX, verified on the CPU: bits agree "
                  f"{100 * v['bit_agreement']:.3f}%, max |diff| {v['max_abs_diff']:.2e}, mAP "
                  f"torch {v['map_torch']:.4f} / ONNX {v['map_exported']:.4f}.", ""]
    return "\n".join(lines)


def reproduce(command: str) -> str:
    """The make command that reruns ``command``, where one does."""
    args = command.removeprefix("python benchmarks/gpu_check.py").split()
    if "--smoke" in args:
        args.remove("--smoke")
        return "make gpu-check SMOKE=1" + (f' GPU_ARGS="{" ".join(args)}"' if args else "")
    if "--device" in args and args[args.index("--device") + 1] == "cpu":
        return command  # the CPU reference runs in .venv, not through make
    return "make gpu-check" + (f' GPU_ARGS="{" ".join(args)}"' if args else "")


def cpu_reference(results: Path) -> dict | None:
    """This project's CPU rows (``--device cpu --parts epoch-time``), beside the results or
    committed in benchmarks/results."""
    for folder in (results, RESULTS):
        if (folder / "cpu-epoch-time.json").exists():
            return read_json(folder / "cpu-epoch-time.json")
    return None


def epoch_lines(rows: list[dict], cpu: dict | None) -> list[str]:
    head = "Seconds an epoch (5,000 images, batch 128, crop and flip; median of epochs 2 on)"
    cpu_rows = {r["backbone"]: r for r in cpu["rows"]} if cpu else {}
    if not cpu_rows:
        lines = [head + ":", "", "| backbone | precision | first epoch | an epoch |",
                 "|---|---|---:|---:|"]
        return lines + [f"| {r['backbone']} | {r['amp']} | {r['first_epoch_seconds']:.2f} | "
                        f"{r['epoch_seconds']:.2f} |" for r in rows] + [""]
    lines = [f"{head}, beside {cpu['device']} in fp32 (`{cpu['command']}`, another run on "
             "another machine):", "",
             "| backbone | precision | first epoch | an epoch | CPU, an epoch | CPU / GPU |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        c = cpu_rows.get(r["backbone"])
        cells = (f"{c['epoch_seconds']:.2f} | {c['epoch_seconds'] / r['epoch_seconds']:.0f}x"
                 if c else " | ")
        lines.append(f"| {r['backbone']} | {r['amp']} | {r['first_epoch_seconds']:.2f} | "
                     f"{r['epoch_seconds']:.2f} | {cells} |")
    return lines + [""]


def regime_lines(r: dict) -> list[str]:
    fs = r["fake_setting"]
    lines = [f"`{r['backbone']}` from scratch, {r['bits']} bits, {r['epochs']} epochs; fakes: "
             f"{fs['fake_loss']}, λ {fs['lam']:g}, {fs['fake_ratio']:g} per real, BN "
             f"{fs['fake_bn']}, DCGAN {r['gan_steps']:,} steps.", "",
             "| run | mAP@all (unseen) | seen | gap | train s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {x['run']} | {x['map']:.4f} | {x['map_seen']:.4f} | {x['gap']:+.4f} | "
              f"{x['train_seconds']:.0f} |" for x in r["rows"]]
    d = r["fakes_minus_nofakes"]
    if d:
        lines += ["", f"With minus without fakes, paired over queries: {d['difference']:+.4f} "
                      f"± {d['standard_error']:.4f} (mean of the seeds' per-query AP)."]
    return lines + [""]


if __name__ == "__main__":
    main()
