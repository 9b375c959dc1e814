"""The with/without-fakes table of a run directory: baselines, paired differences, pictures.

    baselines.json            LSH, ITQ, SH fitted on the training split, scored on the protocol
    comparison.json, .md      mAP@all, P@r=2 and P@100 of each model and baseline, and with
                              minus without fakes paired over the same queries
    pr.png                    precision-recall, with and without fakes
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.train import baselines, plots
from hashsdk.train.data import ImageSet, Split
from hashsdk.train.evaluate import score


def run_baselines(data: ImageSet, split: Split, bits: int, seed: int = 0,
                  features: np.ndarray | None = None) -> dict[str, dict]:
    """Each baseline, fitted on the training split and scored on the protocol.

    features: float (N, D) for every image of ``data``; default: the pixels.
    """
    feats = baselines.pixel_features(data.images) if features is None else features
    out = {}
    for method in baselines.METHODS:
        model = baselines.fit(method, feats[split.train], bits, seed)
        metrics, aps = score(model.encode(feats[split.query]), model.encode(feats[split.database]),
                             data, split)
        out[method] = dict(metrics.as_dict(), ap=aps.tolist())
    return out


def paired_difference(ap_a: np.ndarray, ap_b: np.ndarray, rounds: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """mAP(a) - mAP(b) on the same queries, with its bootstrap standard error over queries."""
    keep = ~(np.isnan(ap_a) | np.isnan(ap_b))
    diff = ap_a[keep] - ap_b[keep]
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return {"difference": float(diff.mean()), "standard_error": float(means.std(ddof=1)),
            "queries": int(keep.sum())}


def compare(run_dir: Path, bits: int, baseline_results: dict[str, dict] | None = None) -> str:
    """Writes comparison.json, comparison.md and pr.png; returns the markdown table."""
    run_dir = Path(run_dir)
    rows, curves = [], {}
    evals = {}
    for name, label in (("hash-fakes", "with fakes"), ("hash-nofakes", "without fakes")):
        path = run_dir / name / "eval.json"
        if path.exists():
            evals[name] = json.loads(path.read_text())
            e = evals[name]
            rows.append((label, e["map"], e["precision_at_radius"], e["precision_at_k"]["100"]))
            curves[label] = (np.array(e["pr_precision"]), np.array(e["pr_recall"]))
    for method, e in (baseline_results or {}).items():
        rows.append((f"{method.upper()} (pixels)", e["map"], e["precision_at_radius"],
                     e["precision_at_k"]["100"]))
    lines = [f"| method ({bits} bits) | mAP@all | P@r=2 | P@100 |", "|---|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} |" for r in rows]
    result: dict = {"bits": bits, "rows": [dict(method=r[0], map=r[1], p_r2=r[2], p_100=r[3])
                                           for r in rows]}
    if len(evals) == 2:
        paired = paired_difference(np.load(run_dir / "hash-fakes" / "ap.npy"),
                                   np.load(run_dir / "hash-nofakes" / "ap.npy"))
        result["fakes_minus_nofakes"] = paired
        lines += ["", f"With minus without fakes: {paired['difference']:+.4f} mAP "
                      f"(paired bootstrap SE {paired['standard_error']:.4f}, "
                      f"{paired['queries']} queries)."]
    with atomic_write(run_dir / "comparison.json") as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())
    table = "\n".join(lines) + "\n"
    with atomic_write(run_dir / "comparison.md") as f:
        f.write(table.encode())
    if curves:
        plots.precision_recall(run_dir / "pr.png", curves, f"precision-recall, {bits} bits")
    return table
