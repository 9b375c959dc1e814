"""Where the 2 cores stall: CIFAR-10 mAP@all at 48 bits against minutes of training, for the
fine-tuning recipe the validation split chose (Lite0, 96 px, ``1:pad``) under each loss, on the
validation split and on the protocol's queries.

    python benchmarks/minutes_curve.py --run runs/cifar10-32epochs/lite0-96px-32epochs-48bits

Reads what earlier runs wrote, trains nothing: the validation points from
results/retrieval-cifar10-recipes-{8,16,32}epochs.json (pairwise) and
results/retrieval-cifar10-recipes-8epochs-losses.json (the codeword losses), the protocol's
8-epoch point (seed 0, no fakes, pairwise) from results/retrieval-cifar10-pretrained.json, and
each ``--run`` directory of
``hashsdk-train hash`` on the protocol (eval.json, history.json, config.json). A run's minutes
are its median epoch's times its epochs, so that a pause of the machine does not count.
Writes results/cifar10-map-minutes.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import RESULTS, run_minutes, write_results

RECIPE = "1:pad"
BITS = 48


def validation_points() -> list[dict]:
    files = [(f"retrieval-cifar10-recipes-{epochs}epochs", epochs, RECIPE, "pairwise")
             for epochs in (8, 16, 32)]
    files += [("retrieval-cifar10-recipes-8epochs-losses", 8, f"{RECIPE}:loss={loss}", loss)
              for loss in ("csq", "orthohash")]
    out = []
    for name, epochs, recipe, loss in files:
        r = json.loads((RESULTS / f"{name}.json").read_text())
        out.append(dict(split="validation", loss=loss, epochs=epochs, seed=r["seed"],
                        minutes=r["training_minutes"][recipe], map=r["map_by_recipe"][recipe],
                        source=r["command"]))
    return out


def protocol_table_point() -> dict:
    r = json.loads((RESULTS / "retrieval-cifar10-pretrained.json").read_text())
    cell = r["table"][str(BITS)]["finetune-nofakes"]
    i = cell["seeds"].index(0)
    return dict(split="protocol", loss="pairwise", epochs=r["config"]["hash"]["epochs"], seed=0,
                minutes=cell["train_minutes"][i], map=cell["map_per_seed"][i],
                source=r["command"])


def run_point(run: Path) -> dict:
    history = json.loads((run / "history.json").read_text())
    hash_cfg = json.loads((run / "config.json").read_text())["hash"]
    if hash_cfg["bits"] != BITS:
        raise SystemExit(f"{run}: {hash_cfg['bits']} bits, expected {BITS}")
    return dict(split="protocol", loss=hash_cfg["loss"], epochs=len(history),
                seed=hash_cfg["seed"], minutes=run_minutes(run),
                map=json.loads((run / "eval.json").read_text())["map"], source=str(run))


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.4))
    curves = sorted({(p["split"], p["loss"], p["seed"]) for p in points})
    for split, loss, seed in curves:
        rows = sorted((p for p in points if (p["split"], p["loss"], p["seed"])
                       == (split, loss, seed)), key=lambda p: p["minutes"])
        ax.plot([p["minutes"] for p in rows], [p["map"] for p in rows],
                marker="o" if split == "validation" else "s",
                linestyle="-" if loss == "pairwise" else "--",
                label=f"{split} queries, {loss}, seed {seed}")
        for p in rows:  # a second seed's labels above its points: the seeds' points meet
            ax.annotate(f"{p['epochs']} ep", (p["minutes"], p["map"]), textcoords="offset points",
                        xytext=(-10, -13) if seed == 0 else (-10, 7), fontsize=8)
    ax.axhline(0.80, color="grey", linestyle="--", linewidth=1)
    ax.text(0.5, 0.803, "target 0.80 (protocol)", fontsize=8, color="grey")
    ax.set_xlabel("minutes of training on 2 CPU cores")
    ax.set_ylabel(f"mAP@all, {BITS} bits")
    ax.set_title("CIFAR-10, EfficientNet-Lite0 at 96 px, recipe 1:pad")
    # below the axes: inside, it would cover the points at the right-hand end
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, action="append", default=[],
                   help="a protocol run directory of hashsdk-train hash (repeatable)")
    args = p.parse_args()
    points = validation_points() + [protocol_table_point()] + [run_point(r) for r in args.run]
    command = "python benchmarks/minutes_curve.py" + "".join(f" --run {r}" for r in args.run)
    lines = ["CIFAR-10 at 48 bits, EfficientNet-Lite0 fine-tuned at 96 px (recipe 1:pad), "
             "without fakes, by loss; mAP@all (ties broken by the smaller database row) "
             "against minutes of training on the 2 cores (a run's median epoch times its "
             "epochs). "
             "Validation: 1,000 queries carved from the 5,000 training images, searching the "
             "other 4,000 (which the network trained on); protocol: the 1,000 test queries "
             "searching 59,000 images, 54,000 of them never trained on.", "",
             "| queries | loss | seed | epochs | training, min | mAP@all |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {p['split']} | {p['loss']} | {p['seed']} | {p['epochs']} | "
              f"{p['minutes']:.1f} | {p['map']:.4f} |"
              for p in sorted(points, key=lambda p: (p["split"] != "validation", p["loss"],
                                                     p["seed"], p["minutes"]))]
    plot(points, RESULTS / "cifar10-map-minutes.png")
    write_results(RESULTS / "cifar10-map-minutes", dict(command=command, points=points), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
