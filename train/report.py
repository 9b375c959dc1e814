"""``report.md`` for a demo run: numbers and pictures.

Sections (each a ``##`` heading, in this order): Results, GAN fakes and real images, Loss
curves, Precision-recall, Query results, Bit activations, Commands and environment.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.metrics import relevant
from hashsdk.train import plots
from hashsdk.train.backbones import describe_weights
from hashsdk.train.config import RunConfig
from hashsdk.train.data import ImageSet, Split

SECTIONS = ("Results", "GAN fakes and real images", "Loss curves", "Precision-recall",
            "Query results", "Bit activations", "Commands and environment",
            "Time, and what next")
RIGHT, WRONG, QUERY = (40, 170, 60), (220, 40, 40), (60, 90, 220)


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 24) -> np.ndarray:
    """Two RGB pictures on a white canvas, top-aligned."""
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1] + gap:] = right
    return canvas


def query_rows(data: ImageSet, queries: list[int], results: list[list[int]],
               distances: list[list[int]]) -> list[list[tuple[int, str, tuple[int, int, int]]]]:
    """What the query grid shows, a row per query: (image index, caption, frame colour) for
    the query (its class, blue), then for each result (its class and Hamming distance; green
    if it shares a label with the query, the metrics' rule, else red)."""
    rows = []
    for q, found, dist in zip(queries, results, distances, strict=True):
        right = relevant(data.labels[[q]], data.labels[found])[0]
        rows.append([(q, f"query\n{_class_name(data, q)}", QUERY)] + [
            (j, f"{_class_name(data, j)}\nd = {d}", RIGHT if ok else WRONG)
            for j, d, ok in zip(found, dist, right, strict=True)])
    return rows


def query_figure(path: Path, data: ImageSet, queries: list[int], results: list[list[int]],
                 distances: list[list[int]]) -> None:
    """The query grid (``query_rows``) as a picture."""
    plt = plots._pyplot()
    rows = query_rows(data, queries, results, distances)
    fig, axes = plt.subplots(len(rows), len(rows[0]), figsize=(1.05 * len(rows[0]),
                                                               1.3 * len(rows)),
                             dpi=110, squeeze=False)
    for ax_row, row in zip(axes, rows, strict=True):
        for ax, (i, caption, colour) in zip(ax_row, row, strict=True):
            _tile(ax, data, i, caption, colour)
    fig.tight_layout(pad=0.3)
    fig.savefig(path)
    plt.close(fig)


def _tile(ax, data: ImageSet, i: int, caption: str, colour: tuple[int, int, int]) -> None:
    ax.imshow(_rgb(data.images[i:i + 1])[0])
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(np.asarray(colour) / 255)
        spine.set_linewidth(3)
    ax.set_title(caption, fontsize=6, pad=2)


def _class_name(data: ImageSet, i: int) -> str:
    label = data.labels[i]
    if np.ndim(label) == 0:
        return str(data.classes[int(label)])
    return "+".join(data.classes[c] for c in np.flatnonzero(label)) or "none"


def bit_figure(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Left: per-bit activation rate (share of 1s). Right: p = (h + 1) / 2 of every bit."""
    plt = plots._pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for name, h in outputs.items():
        left.hist((h > 0).mean(axis=0), bins=20, range=(0, 1), alpha=0.5, label=name)
        right.hist(((h + 1) / 2).ravel(), bins=50, range=(0, 1), alpha=0.5, density=True,
                   label=name)
    left.set_xlabel("share of 1s per bit")
    left.set_ylabel("bits")
    left.set_title("per-bit activation rate")
    right.set_xlabel("p = (h + 1) / 2")
    right.set_ylabel("density")
    right.set_title("bit outputs: max-entropy pushes fakes toward 0.5")
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _outputs(run_dir: Path, name: str, images: np.ndarray) -> np.ndarray:
    import torch

    from hashsdk.train.evaluate import encode
    from hashsdk.train.model import HashNet

    model, _ = HashNet.from_checkpoint(run_dir / name / "checkpoint.pt")
    return encode(model, images, torch.device("cpu"))


def environment() -> list[tuple[str, str]]:
    import onnxruntime
    import torch

    from hashsdk import __version__
    from hashsdk.index import _search

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [("hashsdk", __version__), ("python", sys.version.split()[0]),
            ("torch", torch.__version__), ("numpy", np.__version__),
            ("onnxruntime", onnxruntime.__version__), ("CPU", cpu),
            ("cores", str(os.cpu_count())), ("torch threads", str(torch.get_num_threads())),
            ("search kernel", _search._kernel.dispatch() if _search.has_kernel() else "numpy"),
            ("CUDA", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")]


FROZEN = "frozen-feature mode (the hash layer trained on cached features), "


def write_report(run_dir: Path, cfg: RunConfig, data: ImageSet, split: Split) -> Path:
    """report.md and its pictures, one function per section (SECTIONS, in order)."""
    run_dir = Path(run_dir)
    with np.load(run_dir / "gan" / "fakes.npz") as f:
        fakes = f["images"]
    rng = np.random.default_rng(0)
    lines = [
        f"# hashsdk demo report: {cfg.data.dataset}, {cfg.hash.bits} bits", "",
        f"Protocol: {len(split.query):,} queries, {len(split.train):,} training images, "
        f"{len(split.database):,} database images. Backbone `{cfg.hash.backbone}` "
        f"{describe_weights(cfg.hash.backbone, cfg.hash.pretrained)}, "
        f"{FROZEN if cfg.hash.frozen else ''}{cfg.data.image_size} px, loss "
        f"`{cfg.hash.loss}`, {cfg.hash.epochs or 'data-sized'} epochs; fakes: "
        f"`{cfg.hash.fake_loss}` at lambda {cfg.hash.lam}, {cfg.hash.fake_ratio} per real "
        f"image, BatchNorm `{cfg.hash.fake_bn}`; DCGAN {cfg.gan.steps} steps.", ""]
    lines += _results(run_dir)
    lines += _fakes_and_real(run_dir, fakes, data.images[rng.choice(split.train, 64,
                                                                     replace=False)])
    lines += _loss_curves(run_dir)
    lines += ["## Precision-recall", "", "Precision and recall within Hamming radius r, r = 0 "
              f"to {cfg.hash.bits}.", "", "![precision-recall](pr.png)", ""]
    lines += _query_results(run_dir, data)
    sample = data.images[rng.choice(split.database, min(1000, len(split.database)),
                                    replace=False)]
    lines += _bit_activations(run_dir, sample, fakes[:1000])
    lines += _commands_and_environment(run_dir, cfg)
    lines += _time_and_next(run_dir)
    with atomic_write(run_dir / "report.md") as f:
        f.write("\n".join(lines).encode())
    return run_dir / "report.md"


def _read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


def _results(run_dir: Path) -> list[str]:
    index_info, search_info = _read(run_dir, "index.json"), _read(run_dir, "search.json")
    verify_info = _read(run_dir, "model.onnx.verify.json")
    return [
        "## Results", "", (run_dir / "comparison.md").read_text().strip(), "",
        verdict(_read(run_dir, "comparison.json").get("fakes_minus_nofakes")), "",
        "| the exported model | |", "|---|---:|",
        f"| encode throughput (Encoder, onnxruntime CPU) | "
        f"{index_info['images_per_second']:,.0f} images/s |",
        f"| search latency (1 query, k=10, {search_info['database']:,} codes) | "
        f"{search_info['latency_ms']:.3f} ms |",
        f"| ONNX vs torch bit agreement | {100 * verify_info['bit_agreement']:.3f}% |", ""]


def verdict(paired: dict | None) -> str:
    """One plain sentence on the fake loss in this run, from the paired difference."""
    if not paired:
        return "There is no without-fakes run to compare with."
    d, se = paired["difference"], paired["standard_error"]
    size = f"{100 * abs(d):.1f} mAP points ({abs(d) / se:.1f} standard errors)"
    if abs(d) < 2 * se:
        return (f"In this run the fake-image loss makes no difference that the {paired['queries']}"
                f" queries can tell apart: {d:+.4f} ± {se:.4f}, within two standard errors.")
    word = "gains" if d > 0 else "costs"
    return f"In this run the fake-image loss {word} {size}: {d:+.4f} ± {se:.4f}."


def _fakes_and_real(run_dir: Path, fakes: np.ndarray, real: np.ndarray) -> list[str]:
    plots.save_png(run_dir / "fakes_vs_real.png", side_by_side(
        _rgb(plots.image_grid(fakes[:64])[None])[0], _rgb(plots.image_grid(real)[None])[0]),
        scale=2)
    return ["## GAN fakes and real images", "",
            "Left: 64 fakes from the DCGAN. Right: 64 real training images.", "",
            "![fakes and real images](fakes_vs_real.png)", ""]


def _loss_curves(run_dir: Path) -> list[str]:
    series = {}
    for name in ("hash-fakes", "hash-nofakes"):
        history = json.loads((run_dir / name / "history.json").read_text())
        epochs = [r["epoch"] for r in history]
        series[f"{name}: real loss"] = (epochs, [r["loss_real"] for r in history])
        if name == "hash-fakes":
            series[f"{name}: fake loss"] = (epochs, [r["loss_fake"] for r in history])
    plots.curves(run_dir / "hash_losses.png", series, "epoch", "hashing losses")
    return ["## Loss curves", "", "![GAN losses](gan/losses.png)", "",
            "![hashing losses](hash_losses.png)", ""]


def _query_results(run_dir: Path, data: ImageSet) -> list[str]:
    search_info = _read(run_dir, "search.json")
    query_figure(run_dir / "queries.png", data, search_info["queries"], search_info["ids"],
                 search_info["distances"])
    return ["## Query results", "",
            "Each row: a query (blue) and its 10 nearest database images by Hamming distance "
            "(d), each with its class, green where it shares a label with the query (the "
            "metrics' rule), red where it does not.", "", "![query results](queries.png)", ""]


def _bit_activations(run_dir: Path, real: np.ndarray, fakes: np.ndarray) -> list[str]:
    outputs = {}
    for name, label in (("hash-fakes", "with fakes"), ("hash-nofakes", "without fakes")):
        outputs[f"{label}: real"] = _outputs(run_dir, name, real)
        outputs[f"{label}: fakes"] = _outputs(run_dir, name, fakes)
    bit_figure(run_dir / "bits.png", outputs)
    near_half = {k: float((np.abs(v) < 0.2).mean()) for k, v in outputs.items()}
    return ["## Bit activations", "",
            "Left: the share of 1s of each bit over 1,000 real database images and 1,000 "
            "fakes. Right: every bit's p = (h + 1) / 2. The max-entropy loss pushes the "
            "with-fakes model's outputs on fakes toward p = 0.5. Share of outputs with |h| < "
            "0.2: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in near_half.items()) + ".", "",
            "![bit activations](bits.png)", ""]


def _time_and_next(run_dir: Path) -> list[str]:
    """The stages' wall time (from their stamps; the report's own is not in it) and the
    command that serves the result."""
    stamps = [json.loads(p.read_text()) for p in sorted((run_dir / "stages").glob("*.json"))]
    ran = [s["seconds"] for s in stamps if s.get("seconds") is not None]
    minutes, seconds = divmod(round(sum(ran)), 60)
    return ["## Time, and what next", "",
            f"The stages took {minutes} min {seconds} s of wall time ({len(ran)} ran in this "
            "invocation or an earlier one; a stage that was up to date took none).", "",
            "Search the index in a browser (http://127.0.0.1:8000/):", "", "```sh",
            f"hashsdk serve {run_dir / 'db.hidx'} --model {run_dir / 'model.onnx'}", "```", ""]


def _commands_and_environment(run_dir: Path, cfg: RunConfig) -> list[str]:
    make = "make demo" + (f" DATASET={cfg.data.dataset}" if cfg.data.dataset != "fashion-mnist"
                          else "") + (f" BITS={cfg.hash.bits}" if cfg.hash.bits != 32 else "")
    lines = ["## Commands and environment", "", "```sh", make,
             f"# which runs: hashsdk-train demo --config configs/demo-{cfg.data.dataset}.toml "
             f"--bits {cfg.hash.bits} --run-dir {run_dir}", "```", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in environment()]
    return lines + ["", "Resolved configuration: `hash-fakes/config.json`.", ""]
