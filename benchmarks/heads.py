"""One fine-tuned backbone, every code length: a head of B bits trained in frozen-feature mode
on a fine-tuned run's backbone, as a user does it with
``hashsdk-train hash --pretrained RUN/checkpoint.pt --frozen --bits B``, scored on the run's
own protocol.

    python benchmarks/heads.py runs/cifar10-128px/lite0-128px-20epochs-48bits-orthohash-smoothing \
        [more runs] --bits 12 24 32 48 [--no-mirror-invariant] [--label-smoothing S]

Per run and length: the run's config (data, loss, codewords, fakes and λ) with
hash.pretrained = the run's checkpoint, hash.frozen, hash.bits = B, the schedule's epochs and
batch for frozen mode, the head's label smoothing and quantization weight (by default what
benchmarks/head_selection.py chose on a validation split), and hash.mirror_invariant (on by
default: the backbone's features of each image averaged with its mirror image's, what flip
averaging does for a fine-tuned network), trained by train_hash into RUN/heads/. A run
trained with fakes gives its heads the same fakes at the same λ. Scored: mAP@all with ties
broken by the smaller database row (the tables' rule) and at random (benchmarks/ties.py's
tie_rules, 5 shuffles);
minutes a model: the fine-tune's (its median epoch times its epochs) plus the head's (its
features and its epochs). The paper's claim: for each seed and length with a run with fakes
and one without, with minus without paired over the queries (bootstrap SE); over seeds the
mean, its SE the per-seed SEs combined as independent. Writes results/cifar10-heads.{json,md},
keeping the rows of runs not given again (``--fresh`` drops them).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import RESULTS, commands_with, previous_results, run_minutes, write_results
from ties import tie_rules

from hashsdk.codes import pack_bits

NAME = "cifar10-heads"
AP_DECIMALS = 5  # the per-query APs kept for pairing rows of runs that are gone


def chosen_head() -> dict:
    """The head's label smoothing and quantization weight that benchmarks/head_selection.py
    chose on a validation split (its results file)."""
    path = RESULTS / "head-selection.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run benchmarks/head_selection.py first, or give "
                         "--label-smoothing and --quantization")
    return json.loads(path.read_text())["chosen"]


def head_config(run: Path, bits: int, mirror: bool, smoothing: float,
                quantization: float | None = None):
    """``run``'s config (config.json) made a frozen-feature head of ``bits`` on its
    checkpoint's backbone; ``quantization`` None keeps the run's."""
    from hashsdk.train import config

    cfg = config.from_dict(json.loads((run / "config.json").read_text()))
    hc = cfg.hash
    return dataclasses.replace(cfg, hash=dataclasses.replace(
        hc, pretrained=str(run / "checkpoint.pt"), frozen=True, bits=bits, epochs=None,
        batch_size=None, mirror_invariant=mirror, flip_average=False, ema=0.0,
        freeze_backbone_epochs=0, backbone_lr=None, mixup=0.0, cutmix=0.0,
        label_smoothing=smoothing,
        quantization=hc.quantization if quantization is None else quantization))


def head_dir(run: Path, bits: int, mirror: bool, smoothing: float, quantization: float
             ) -> Path:
    return run / "heads" / (f"{bits}-bits-smoothing{smoothing:g}-q{quantization:g}"
                            + ("" if mirror else "-plain"))


def head_row(run: Path, bits: int, mirror: bool, smoothing: float, quantization: float
             ) -> dict:
    """Trains (or finds) the head of ``bits`` on ``run``'s backbone; its row, with the
    per-query APs (smaller-row rule) for pairing."""
    import torch

    from hashsdk.train.data import cache_dir
    from hashsdk.train.device import resolve_device
    from hashsdk.train.frozen import cached_features
    from hashsdk.train.loop import train_hash
    from hashsdk.train.model import HashNet

    cfg = head_config(run, bits, mirror, smoothing, quantization)
    data, split = _protocol(run.parent, json.dumps(dataclasses.asdict(cfg.data)))
    out = head_dir(run, bits, mirror, smoothing, quantization)
    if not (out / "eval.json").exists():
        train_hash(cfg, data, split, out, progress=True)
    model, _ = HashNet.from_checkpoint(out / "checkpoint.pt")
    device = resolve_device("auto")
    feats = cached_features(model.to(device).eval(), data.images, cache_dir(cfg.data), device,
                            False)
    with torch.inference_mode():
        outputs = torch.tanh(model.hash(torch.from_numpy(feats).to(device))).cpu().numpy()
    q, db = pack_bits(outputs[split.query]), pack_bits(outputs[split.database])
    ql, dl = data.labels[split.query], data.labels[split.database]
    ties = tie_rules(q, db, ql, dl, bits)
    recorded = json.loads((out / "eval.json").read_text())["map"]
    if abs(recorded - ties["map_by_row"]) > 1e-3:
        raise SystemExit(f"{out}: re-scored mAP {ties['map_by_row']:.4f} is not eval.json's "
                         f"{recorded:.4f}")
    head_minutes = _head_minutes(out, len(split.train))
    return dict(run=str(run), bits=bits, seed=cfg.hash.seed, fakes=cfg.hash.fakes is not None,
                mirror_invariant=mirror, label_smoothing=smoothing, quantization=quantization,
                finetune_bits=_finetune_bits(run),
                finetune_minutes=run_minutes(run), head_minutes=head_minutes,
                ap=np.round(np.load(out / "ap.npy"), AP_DECIMALS).tolist(), **ties)


@functools.lru_cache(maxsize=1)
def _protocol(run_dir: Path, data_cfg: str):
    """The dataset and split of ``run_dir`` (decoded once for all the heads of its runs)."""
    from hashsdk.train import config
    from hashsdk.train.stages import prepare

    return prepare(run_dir, config.from_dict({"data": json.loads(data_cfg)}), progress=False)


def _finetune_bits(run: Path) -> int:
    return json.loads((run / "config.json").read_text())["hash"]["bits"]


def _head_minutes(out: Path, n_train: int) -> float:
    """The head's training: its epochs (history.json) and the features of the training images,
    at the rate of the backbone's one feature pass (the features.json of whichever of its
    heads computed them; the others found them cached). The rest of that pass encodes the
    database, which is evaluation."""
    history = json.loads((out / "history.json").read_text())
    passes = [json.loads(f.read_text()) for f in out.parent.glob("*/features.json")]
    rate = max(f["seconds"] / max(1, f["count"]) for f in passes)
    return (rate * n_train + sum(r["seconds"] for r in history)) / 60


def claim_rows(rows: list[dict], head: dict) -> list[dict]:
    """With minus without fakes per seed and length, and per length over its seeds, on the
    mirror-invariant heads of the ``head`` settings."""
    from hashsdk.train.comparison import paired_difference

    out = []
    for bits in sorted({r["bits"] for r in rows}):
        per_seed = []
        for seed in sorted({r["seed"] for r in rows if r["bits"] == bits}):
            pair = {r["fakes"]: r for r in rows if r["bits"] == bits and r["seed"] == seed
                    and r["mirror_invariant"] and _settings(r) == _settings(head)}
            if set(pair) == {True, False}:
                d = paired_difference(np.array(pair[True]["ap"], float),
                                      np.array(pair[False]["ap"], float))
                per_seed.append(d)
                out.append(dict(bits=bits, seed=seed, with_fakes=pair[True]["map_by_row"],
                                without=pair[False]["map_by_row"], **d))
        if len(per_seed) > 1:
            se = np.sqrt(sum(d["standard_error"] ** 2 for d in per_seed)) / len(per_seed)
            out.append(dict(bits=bits, seed=f"mean of {len(per_seed)}",
                            difference=float(np.mean([d["difference"] for d in per_seed])),
                            standard_error=float(se)))
    return out


def _means(rows: list[dict], head: dict) -> list[dict]:
    """Per code length, the mean of the seeds' mirror-invariant heads at ``head``'s settings
    without fakes."""
    out = []
    for bits in sorted({r["bits"] for r in rows}):
        mine = [r for r in rows if r["bits"] == bits and not r["fakes"]
                and r["mirror_invariant"] and _settings(r) == _settings(head)]
        if mine:
            out.append(dict(bits=bits, seeds=len(mine),
                            **{k: float(np.mean([r[k] for r in mine]))
                               for k in ("map_by_row", "map_random")}))
    return out


def _settings(r: dict) -> tuple[float, float]:
    return r["label_smoothing"], r["quantization"]


def markdown(rows: list[dict], claims: list[dict], head: dict) -> list[str]:
    lines = ["CIFAR-10's protocol (1,000 queries / 5,000 train / 59,000 database). Each row: a "
             "head of that length trained in frozen-feature mode (60 epochs on cached "
             "features) on the backbone of a fine-tuned run (EfficientNet-Lite0, 128 px); "
             "mirror-invariant: features of each image averaged with its mirror image's. "
             f"The head's label smoothing and quantization weight: "
             f"{head['label_smoothing']:g} and {head['quantization']:g} as the validation split "
             "chose (results/head-selection.md), unless the row says otherwise. mAP@all with "
             "ties broken by the smaller database row (the tables' rule) and at random (mean "
             "± SD over 5 shuffles). Minutes a model: the fine-tune's plus the head's (its "
             "epochs and the training images' features), on 2 cores.", "",
             "| fine-tuned run | fakes | seed | bits | mirror-invariant | head's label smoothing, "
             "quantization | smaller row | random | minutes (fine-tune + head) |",
             "|---|---|---:|---:|---|---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["bits"], r["fakes"], r["seed"],
                                         not r["mirror_invariant"], r["label_smoothing"])):
        lines.append(f"| {Path(r['run']).name} ({r['finetune_bits']} bits) | "
                     f"{'with' if r['fakes'] else 'without'} | {r['seed']} | {r['bits']} | "
                     f"{'yes' if r['mirror_invariant'] else 'no'} | "
                     f"{r['label_smoothing']:g}, {r['quantization']:g} | "
                     f"{r['map_by_row']:.4f} | "
                     f"{r['map_random']:.4f} ± {r['map_random_sd']:.4f} | "
                     f"{r['finetune_minutes']:.1f} + {r['head_minutes']:.1f} |")
    means = _means(rows, head)
    if means:
        lines += ["", "At the chosen setting without fakes, the mean over seeds:", "",
                  "| bits | seeds | smaller row | random |", "|---:|---:|---:|---:|"]
        lines += [f"| {m['bits']} | {m['seeds']} | {m['map_by_row']:.4f} | "
                  f"{m['map_random']:.4f} |" for m in means]
    if claims:
        lines += ["", "The paper's claim on these heads: with minus without fakes (the fine-tune "
                  "and its heads with the DCGAN's fakes, λ as the run's), paired over the "
                  "queries (bootstrap SE; over seeds, the SEs combined as independent).", "",
                  "| bits | seed | without fakes | with fakes | with minus without |",
                  "|---:|---|---:|---:|---:|"]
        for c in claims:
            maps = (f"{c['without']:.4f} | {c['with_fakes']:.4f}" if "without" in c
                    else " | ")
            lines.append(f"| {c['bits']} | {c['seed']} | {maps} | "
                         f"{c['difference'] * 100:+.2f} ± {c['standard_error'] * 100:.2f} "
                         "points |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+",
                   help="fine-tuned hashing run directories (checkpoint.pt, config.json)")
    p.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    p.add_argument("--no-mirror-invariant", dest="mirror", action="store_false",
                   help="heads on plain features (default: mirror-invariant features)")
    p.add_argument("--label-smoothing", dest="smoothing", type=float,
                   help="the head's label smoothing (default: the validation split's choice)")
    p.add_argument("--quantization", type=float,
                   help="the head's quantization weight (default: the validation split's)")
    p.add_argument("--fresh", action="store_true", help="drop the earlier file's rows")
    p.add_argument("--out", type=Path, default=RESULTS / NAME,
                   help="the results' path, without a suffix")
    args = p.parse_args()
    old = {} if args.fresh else previous_results(args.out.with_suffix(".json"))
    head = chosen_head()
    setting = (head["label_smoothing"] if args.smoothing is None else args.smoothing,
               head["quantization"] if args.quantization is None else args.quantization)
    given = {(str(r), b, args.mirror, *setting) for r in args.runs for b in args.bits}
    rows = [r for r in old.get("rows", [])
            if (r["run"], r["bits"], r["mirror_invariant"], *_settings(r)) not in given]
    rows += [head_row(r, b, args.mirror, *setting) for r in args.runs for b in args.bits]
    claims = claim_rows(rows, head)
    lines = markdown(rows, claims, head)
    command = shlex.join(["python", "benchmarks/heads.py", *sys.argv[1:]])
    write_results(args.out, dict(commands=commands_with(old, command), rows=rows,
                                 means=_means(rows, head), claim=claims), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
