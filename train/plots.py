"""Pictures people want to see: loss curves, precision-recall curves, image grids; and a run's
history (history.json, with its loss.png)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)


# line styles and markers by series, so that curves that coincide stay visible
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def curves(path: Path, series: dict[str, tuple[list[float], list[float]]], xlabel: str,
           title: str, ylabel: str = "loss") -> None:
    """Line plot of {name: (x, y)}: each series its own line style and markers (about a dozen
    along it), drawn a little transparent, so that equal curves do not hide each other."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=110)
    for i, (name, (x, y)) in enumerate(series.items()):
        style, marker = STYLES[i % len(STYLES)]
        ax.plot(x, y, label=name, linestyle=style, marker=marker, markersize=4, alpha=0.85,
                markevery=max(1, len(x) // 12))
    _save(fig, ax, path, title, xlabel, ylabel)


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value's window, centred; near the ends, of the values there are (no
    zero padding, which would dip the curve at both ends)."""
    v = np.asarray(values, np.float64)
    kernel = np.ones(min(window, len(v)) or 1)
    return (np.convolve(v, kernel, "same") / np.convolve(np.ones_like(v), kernel, "same")
            ).tolist()


def precision_recall(path: Path, runs: dict[str, tuple[np.ndarray, np.ndarray]],
                     title: str) -> None:
    """Precision-recall over Hamming radius: {name: (precision, recall)}."""
    fig, ax = _pyplot().subplots(figsize=(5, 4.5), dpi=110)
    for name, (precision, recall) in runs.items():
        ax.plot(recall, precision, marker=".", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _save(fig, ax, path, title, "recall", "precision")


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 (N, H, W, C) to one uint8 (rows * (H + 2), columns * (W + 2), C) picture."""
    n, h, w, c = images.shape
    rows = (n + columns - 1) // columns
    grid = np.full((rows * (h + 2), columns * (w + 2), c), 255, np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = im
    return grid


def save_png(path: Path, picture: np.ndarray, scale: int = 1) -> None:
    from PIL import Image

    image = Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)


def write_history(run_dir: Path, history: list[dict]) -> None:
    """history.json (a list, a row an epoch) and loss.png."""
    with atomic_write(run_dir / "history.json") as f:
        f.write((json.dumps(history, indent=1) + "\n").encode())
    epochs = [r["epoch"] for r in history]
    series = {"real loss": (epochs, [r["loss_real"] for r in history])}
    if any(r["loss_fake"] for r in history):
        series["fake loss"] = (epochs, [r["loss_fake"] for r in history])
    curves(run_dir / "loss.png", series, "epoch", "hashing losses")
