"""``gpu-check.md``: the GPU suite's summary, drawn from the part files in a results folder
(benchmarks/gpu_check.py writes them; scripts/readme_tables.py puts the summary into the
README as it is)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashsdk.train.comparison import paired_difference

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("epoch-time", "gan", "overfit", "export", "recipe", "pretrained", "extras")


def read_json(path: Path) -> dict | list:
    return json.loads(path.read_text())


def paired_rows(rows: list[dict], ap: dict[str, np.ndarray]) -> list[dict]:
    """Per code length: the mean mAP without and with fakes over the seeds that have both, and
    with minus without paired over queries (per-query AP averaged over those seeds first).

    rows: dicts with run, bits, seed, fakes, map, train_seconds; ap: run -> float (queries,)."""
    out = []
    for bits in sorted({r["bits"] for r in rows}):
        runs = {(r["seed"], r["fakes"]): r for r in rows if r["bits"] == bits}
        seeds = sorted(s for s, f in runs if f and (s, False) in runs)
        without = [r for (s, f), r in runs.items() if not f]
        row = dict(bits=bits, seeds_without=len(without),
                   map_without=float(np.mean([r["map"] for r in without])) if without else None,
                   minutes=float(np.mean([r["train_seconds"] for r in runs.values()])) / 60,
                   seeds_paired=len(seeds), map_with=None, fakes_minus_nofakes=None)
        if seeds:
            row["map_with"] = float(np.mean([runs[s, True]["map"] for s in seeds]))
            row["fakes_minus_nofakes"] = paired_difference(
                np.mean([ap[runs[s, True]["run"]] for s in seeds], axis=0),
                np.mean([ap[runs[s, False]["run"]] for s in seeds], axis=0))
        out.append(row)
    return out


def recipe_lines(r: dict) -> list[str]:
    v, b = r["validation"], r["base"]
    lines = [f"Recipe, chosen on a validation split ({v['queries']:,} of the training images as "
             f"queries among the other {v['train']:,}; the protocol's queries unseen): "
             f"`{r['backbone']}` from ImageNet weights at {r['image_size']} px, {r['bits']} "
             f"bits, {b['epochs']} epochs of batch {b['batch_size']}, crop {b['crop']}, seed 0, "
             f"no fakes. Chosen: **{r['chosen']}**.", "",
             "| candidate | validation mAP@all | epochs | training s |", "|---|---:|---:|---:|"]
    lines += [f"| {x['candidate']} | {x['map']:.4f} | {x['epochs']} | {x['train_seconds']:.0f} |"
              for x in r["rows"]]
    if r.get("skipped"):
        lines += ["", "Not reached within the time budget: " + ", ".join(r["skipped"]) + "."]
    return lines + [""]


def table_lines(r: dict) -> list[str]:
    fs = r["fake_setting"]
    n = r["protocol"]
    lines = [f"CIFAR-10 ({n['queries']:,} queries, {n['train']:,} training images, "
             f"{n['database']:,} database), the recipe "
             f"({r['recipe']}) at {r['image_size']} px; fakes: {fs['fake_loss']}, λ "
             f"{fs['lam']:g}, {fs['fake_ratio']:g} per real, BN {fs['fake_bn']}, DCGAN "
             f"{r['gan_steps']:,} steps. mAP@all, ties broken by the smaller database row; "
             "with minus without fakes paired over queries on the seeds that have both (± "
             "bootstrap standard error); minutes: training, evaluation excluded.", "",
             "| bits | seeds | mAP@all | seeds paired | with fakes | with minus without | "
             "minutes a model |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["by_bits"]:
        d = x["fakes_minus_nofakes"]
        diff = f"{d['difference']:+.4f} ± {d['standard_error']:.4f}" if d else "–"
        with_ = f"{x['map_with']:.4f}" if x["map_with"] is not None else "–"
        lines.append(f"| {x['bits']} | {x['seeds_without']} | {x['map_without']:.4f} | "
                     f"{x['seeds_paired']} | {with_} | {diff} | {x['minutes']:.2f} |")
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
    if "recipe" in parts:
        lines += recipe_lines(parts["recipe"])
    if "pretrained" in parts:
        lines += table_lines(parts["pretrained"])
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


