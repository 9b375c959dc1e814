"""``hashsdk-train``: the GAN stage, the hashing stage, baselines, evaluation, and all of it.

    hashsdk-train gan      [--run-dir runs/NAME] [--config run.toml] [flags]
    hashsdk-train hash     [--fakes runs/NAME/gan/fakes.npz --lambda 1.0] [flags]
    hashsdk-train baseline [--bits 48]
    hashsdk-train eval     CHECKPOINT [--run-dir runs/NAME]
    hashsdk-train all      [flags]   GAN, hashing with fakes, without fakes, baselines, table

Settings come from the defaults, then ``--config`` (TOML with [data], [gan], [hash] tables),
then flags. Each stage writes its resolved config.json into its directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from hashsdk._cli_errors import user_errors
from hashsdk.train.config import CHOICES


def _choice(section: str, key: str) -> click.Choice:
    return click.Choice(CHOICES[(section, key)])


COMMON = [
    click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                 default=Path("runs/default"), show_default=True,
                 help="Run directory: split, GAN, hashing runs and tables."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                 help="TOML file with [data], [gan] and [hash] tables."),
    click.option("--dataset", type=_choice("data", "dataset"), default=None),
    click.option("--root", default=None, help="Dataset archive, folder or file-list folder."),
    click.option("--download", is_flag=True, default=None,
                 help="Let torchvision download cifar10 / fashion-mnist."),
    click.option("--device", default=None, help="auto, cpu or cuda[:N]."),
    click.option("--seed", type=int, default=None),
    click.option("--quiet", is_flag=True, help="No progress bars."),
]
HASH = [
    click.option("--bits", type=int, default=None),
    click.option("--backbone", default=None,
                 help="cnn, timm/<name> or torchvision/<name>; `hashsdk-train backbones` "
                      "lists them."),
    click.option("--loss", type=_choice("hash", "loss"), default=None),
    click.option("--epochs", type=int, default=None),
    click.option("--batch-size", type=int, default=None),
    click.option("--lr", type=float, default=None),
    click.option("--lambda", "lam", type=float, default=None,
                 help="Weight of the fake-image loss."),
    click.option("--fake-loss", type=_choice("hash", "fake_loss"), default=None),
    click.option("--fake-ratio", type=float, default=None, help="Fakes per real image."),
    click.option("--fake-bn", type=_choice("hash", "fake_bn"), default=None),
    click.option("--pretrained", default=None,
                 help="imagenet (the library's default weights, downloaded once) or a local "
                      ".pth, .pt or .safetensors file."),
    click.option("--backbone-lr", type=float, default=None,
                 help="The backbone's learning rate over --lr (default 0.1 when pretrained, "
                      "else 1)."),
    click.option("--freeze-backbone-epochs", type=int, default=None,
                 help="Epochs that train the head only."),
    click.option("--width", type=int, default=None, help="cnn's width (32: 0.3M parameters)."),
    click.option("--no-augment", "augment", flag_value=False, default=None,
                 help="Train without the random crop and flip."),
    click.option("--image-size", type=int, default=None,
                 help="Input side in pixels (default: the pretrained backbone's, else 32)."),
]
GAN = [
    click.option("--gan-steps", type=int, default=None, help="DCGAN training steps."),
    click.option("--num-fakes", type=int, default=None, help="Size of the fake bank."),
]


def _options(options: list) -> Callable:
    def wrap(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


def _config(kw: dict):
    from hashsdk.train import config

    data = {k: kw.get(k) for k in ("dataset", "root", "download", "seed", "image_size")}
    hash_ = {"bits": kw.get("bits"), "backbone": kw.get("backbone"), "loss": kw.get("loss"),
             "epochs": kw.get("epochs"), "batch_size": kw.get("batch_size"), "lr": kw.get("lr"),
             "lam": kw.get("lam"), "fake_loss": kw.get("fake_loss"),
             "fake_ratio": kw.get("fake_ratio"), "fake_bn": kw.get("fake_bn"),
             "pretrained": kw.get("pretrained"), "device": kw.get("device"),
             "backbone_lr": kw.get("backbone_lr"), "width": kw.get("width"),
             "augment": kw.get("augment"),
             "freeze_backbone_epochs": kw.get("freeze_backbone_epochs"),
             "seed": kw.get("seed"), "fakes": kw.get("fakes")}
    gan = {"steps": kw.get("gan_steps"), "num_fakes": kw.get("num_fakes"),
           "device": kw.get("device"), "seed": kw.get("seed")}
    return config.load(kw.get("config_path"), {"data": data, "hash": hash_, "gan": gan})


@click.group()
def main() -> None:
    """Train GAN-regularized deep hashing networks."""


@main.command()
@click.argument("pattern", default="*")
@user_errors('train')
def backbones(pattern: str) -> None:
    """List the backbone names that match PATTERN (shell-style, e.g. 'timm/resnet*' or
    '*convnext*'): cnn, the names of earlier versions, timm/<name> and torchvision/<name>."""
    from hashsdk.train.backbones import ALIASES, list_backbones

    names = list_backbones(pattern)
    if not names:
        raise click.ClickException(f"no backbone matches {pattern!r}")
    for name in names:
        click.echo(f"{name}  (as {ALIASES[name]})" if name in ALIASES else name)


@main.command()
@_options(COMMON + GAN)
@user_errors('train')
def gan(**kw) -> None:
    """Stage 1: train the DCGAN on the training split and write the fake bank."""
    from hashsdk.train.gan import train_gan
    from hashsdk.train.stages import prepare

    cfg = _config(kw)
    data, split = prepare(kw["run_dir"], cfg, not kw["quiet"])
    path = train_gan(cfg, data, split, kw["run_dir"] / "gan", progress=not kw["quiet"])
    click.echo(f"fake bank: {path}")


@main.command("hash")
@_options(COMMON + HASH)
@click.option("--fakes", type=click.Path(dir_okay=False), default=None,
              help="fakes.npz from the GAN stage; without it, no fake-image loss.")
@click.option("--name", default=None, help="Subdirectory (default hash-fakes / hash-nofakes).")
@click.option("--no-resume", is_flag=True, help="Start over even if a checkpoint exists.")
@user_errors('train')
def hash_cmd(**kw) -> None:
    """Stage 2: train the hashing network, with or without the fake bank."""
    from hashsdk.train.loop import train_hash
    from hashsdk.train.stages import prepare

    cfg = _config(kw)
    data, split = prepare(kw["run_dir"], cfg, not kw["quiet"])
    name = kw["name"] or ("hash-fakes" if cfg.hash.fakes else "hash-nofakes")
    result = train_hash(cfg, data, split, kw["run_dir"] / name, resume=not kw["no_resume"],
                        progress=not kw["quiet"])
    if result:  # under torchrun only rank 0 evaluates; the other ranks return nothing
        click.echo(f"mAP@all {result['map']:.4f}  P@r=2 {result['precision_at_radius']:.4f}")


@main.command()
@_options(COMMON)
@click.option("--bits", type=int, default=None)
@click.option("--features", "features_from", type=click.Path(dir_okay=False), default=None,
              help="A hashing checkpoint whose backbone features replace the pixels.")
@user_errors('train')
def baseline(**kw) -> None:
    """LSH, ITQ and SH on pixels (or a trained backbone's features), fitted on the training
    split."""
    from hashsdk._atomic import atomic_write
    from hashsdk.train.comparison import run_baselines
    from hashsdk.train.evaluate import backbone_features
    from hashsdk.train.stages import prepare

    cfg = _config(kw)
    data, split = prepare(kw["run_dir"], cfg, not kw["quiet"])
    features = None
    if kw["features_from"]:
        features = backbone_features(kw["features_from"], data, kw["device"] or "auto",
                                     not kw["quiet"])
    results = run_baselines(data, split, cfg.hash.bits, cfg.data.seed, features)
    name = "baselines.json" if features is None else "baselines-features.json"
    with atomic_write(kw["run_dir"] / name) as f:
        f.write(json.dumps(results).encode())
    for method, r in results.items():
        click.echo(f"{method}: mAP@all {r['map']:.4f}  P@r=2 {r['precision_at_radius']:.4f}")


@main.command("eval")
@click.argument("checkpoint_path", type=click.Path(dir_okay=False))
@_options(COMMON)
@user_errors('train')
def eval_cmd(checkpoint_path: str, **kw) -> None:
    """Evaluate a hashing checkpoint on the run's split."""
    from hashsdk.train.device import resolve_device
    from hashsdk.train.evaluate import evaluate_model
    from hashsdk.train.model import HashNet
    from hashsdk.train.stages import prepare

    model, ckpt = HashNet.from_checkpoint(checkpoint_path)
    cfg = _config(kw) if kw.get("config_path") or kw.get("dataset") else None
    if cfg is None:
        from hashsdk.train.config import from_saved

        cfg = from_saved(ckpt["config"])
    data, split = prepare(kw["run_dir"], cfg, not kw["quiet"])
    device = resolve_device(kw["device"] or "auto")
    metrics = evaluate_model(model.to(device), data, split, device, progress=not kw["quiet"])
    click.echo(json.dumps({k: v for k, v in metrics.as_dict().items()
                           if not k.startswith("pr_")}, indent=1))


@main.command("all")
@_options(COMMON + HASH + GAN)
@user_errors('train')
def all_cmd(**kw) -> None:
    """GAN, hashing with fakes, hashing without fakes, baselines, then the comparison.
    Finished stages are skipped, and a changed setting reruns what it affects."""
    from hashsdk.train.stages import Pipeline, run_stages

    p = Pipeline.open(kw["run_dir"], _config(kw), progress=not kw["quiet"])
    _report_status(run_stages(p.ablation(), p.run_dir, _log(kw)))
    click.echo((p.run_dir / "comparison.md").read_text())


@main.command("demo")
@_options(COMMON + HASH + GAN)
@user_errors('train')
def demo_cmd(**kw) -> None:
    """The main job: GAN, hashing with and without fakes, export, index, search, report."""
    from hashsdk.train.ship import main_job

    status = main_job(_config(kw), kw["run_dir"], progress=not kw["quiet"], log=_log(kw))
    _print_summary(kw["run_dir"])
    _report_status(status)
    click.echo(f"report: {kw['run_dir'] / 'report.md'}")


def _log(kw: dict) -> Callable[[str], None]:
    return (lambda _: None) if kw["quiet"] else click.echo


def _report_status(status: dict[str, str]) -> None:
    skipped = [name for name, s in status.items() if s == "skipped"]
    if skipped:
        click.echo(f"skipped (up to date): {', '.join(skipped)}")


def _print_summary(run_dir: Path) -> None:
    read = lambda name: json.loads((run_dir / name).read_text())  # noqa: E731
    fakes, nofakes = read("hash-fakes/eval.json"), read("hash-nofakes/eval.json")
    rows = [("mAP@all, with fakes", f"{fakes['map']:.4f}"),
            ("mAP@all, without fakes", f"{nofakes['map']:.4f}"),
            ("P@r=2, with / without fakes",
             f"{fakes['precision_at_radius']:.4f} / {nofakes['precision_at_radius']:.4f}")]
    paired = read("comparison.json").get("fakes_minus_nofakes")
    if paired:
        rows.append(("with minus without (paired SE)",
                     f"{paired['difference']:+.4f} ({paired['standard_error']:.4f})"))
    rows += [("encode throughput", f"{read('index.json')['images_per_second']:,.0f} images/s"),
             ("search latency, 1 query k=10", f"{read('search.json')['latency_ms']:.3f} ms")]
    width = max(len(k) for k, _ in rows)
    click.echo("")
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
