"""``hashsdk-train``: the GAN stage, the hashing stage, baselines, evaluation, and all of it.

    hashsdk-train gan      [--run-dir runs/NAME] [--config run.toml] [flags]
    hashsdk-train hash     [--fakes runs/NAME/gan/fakes.npz --lam 0.03] [flags]
    hashsdk-train baseline [--bits 48]
    hashsdk-train eval     CHECKPOINT [--run-dir runs/NAME]
    hashsdk-train all      [flags]   GAN, hashing with fakes, without fakes, baselines, table
    hashsdk-train demo     [flags]   all of it, then export, index, search and report.md
    hashsdk-train backbones [PATTERN]  the backbone names, and which have weights offline

Settings come from the defaults (train/config.py), then ``--config`` (TOML with [data], [gan],
[hash] tables), then flags. Each flag is one config key and its help shows that key's default,
read from the config dataclasses, so that help and behaviour cannot drift. Each stage writes
its resolved config.json into its directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from hashsdk._cli_errors import CONTEXT, user_errors, version_option
from hashsdk.train import schedule
from hashsdk.train.config import (
    CHOICES,
    LABEL_FREE_BLOCK,
    LABEL_FREE_BLUR,
    LABEL_FREE_KOLEO,
    PHOTO_BACKBONE,
    RunConfig,
)
from hashsdk.train.losses import loss_help

DEFAULTS = RunConfig().to_dict()
# flag parameter -> the config keys it sets, as (section, key); filled by _setting
TARGETS: dict[str, tuple[tuple[str, str], ...]] = {}


class _SettingOption(click.Option):
    """A flag whose help shows the config's default as it is, not in click's parentheses."""

    def __init__(self, *args, shown: str, **kw):
        super().__init__(*args, **kw)
        self.shown = shown

    def get_help_extra(self, ctx: click.Context):
        extra = super().get_help_extra(ctx)
        if self.shown:
            extra["default"] = self.shown
        return extra


def _setting(targets: str | tuple[str, ...], *decls: str, shown: str | None = None,
             **kw) -> Callable:
    """A flag for config key(s) "section.key": its default stays None, so that a --config
    file's value stands unless the flag is given, and its help shows the dataclass default (or
    ``shown``, for keys that the backbone or the data decide)."""
    keys = tuple(tuple(t.split(".")) for t in ((targets,) if isinstance(targets, str)
                                               else targets))
    section, key = keys[0]
    if (section, key) in CHOICES and "type" not in kw and not kw.get("is_flag"):
        kw["type"] = click.Choice(CHOICES[(section, key)])
    default = DEFAULTS[section][key]
    name = kw.pop("name", key)
    TARGETS[name] = keys
    return click.option(*decls, name, cls=_SettingOption, default=None, show_default=False,
                        shown=_show(default) if shown is None else shown, **kw)


def _show(value: object) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


COMMON = [
    click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                 default=Path("runs/default"), show_default=True,
                 help="Run directory: split, GAN, hashing runs and tables."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                 help="TOML file with [data], [gan] and [hash] tables."),
    _setting("data.dataset", "--dataset"),
    _setting("data.root", "--root", shown="the usual places",
             help="Dataset archive, folder or file-list folder."),
    _setting("data.queries_per_class", "--queries-per-class", type=int,
             help="The protocol's queries a class, from the test split (or from all images)."),
    _setting("data.train_per_class", "--train-per-class", type=int,
             help="The protocol's training images a class."),
    _setting("data.labels", "--labels",
             help="auto: a folder of images without class folders trains without labels; "
                  "none: train without labels on any data (where it has them, they only score "
                  "the model); folders: require class folders."),
    _setting("data.trim", "--trim", is_flag=True, shown="on for a run without labels",
             help="Cut a border of one colour off each image before fitting it, in training "
                  "and in the Encoder: a copy with a frame added gets its original's code."),
    _setting("data.trim", "--no-trim", flag_value=False, name="no_trim", shown="",
             help="Fit each image whole."),
    _setting("data.download", "--download", is_flag=True,
             help="Let torchvision download cifar10 / fashion-mnist."),
    _setting(("hash.device", "gan.device"), "--device", help="auto, cpu or cuda[:N]."),
    _setting(("data.seed", "hash.seed", "gan.seed"), "--seed", type=int),
    click.option("--quiet", is_flag=True, help="No progress bars."),
]
HASH = [
    _setting("hash.bits", "--bits", type=int),
    _setting("hash.backbone", "--backbone",
             help="cnn, timm/<name> or torchvision/<name>; `hashsdk-train backbones` lists "
                  "them."),
    _setting("hash.loss", "--loss", help=f"The real-image loss: {loss_help()}"),
    _setting("hash.epochs", "--epochs", type=int,
             shown=f"by the training images' count ({schedule.SCRATCH_EPOCHS} from scratch, "
                   f"{schedule.FINETUNE_EPOCHS[0]} to {schedule.FINETUNE_EPOCHS[1]} "
                   "fine-tuning)"),
    _setting("hash.batch_size", "--batch-size", type=int,
             shown=f"by the training images' count ({schedule.MIN_BATCH} to "
                   f"{schedule.MAX_BATCH})"),
    _setting("hash.lr", "--lr", type=float),
    _setting("hash.lam", "--lam", type=float, help="Weight of the fake-image loss."),
    click.option("--lambda", "lambda_", type=float, default=None, hidden=True),  # was --lam
    _setting("hash.fake_loss", "--fake-loss",
             help=f"The fake-image loss: {loss_help(fake=True)}"),
    _setting("hash.fake_ratio", "--fake-ratio", type=float, help="Fakes per real image."),
    _setting("hash.fake_bn", "--fake-bn",
             help="shared: reals and fakes in one pass; separate: fakes in a pass of their "
                  "own."),
    _setting("hash.pretrained", "--pretrained",
             help="imagenet (the library's default weights: offline where a weights package "
                  "is installed, else downloaded once) or a local .pth, .pt or .safetensors "
                  "file."),
    _setting("hash.backbone_lr", "--backbone-lr", type=float,
             shown="0.1 when pretrained, else 1",
             help="The backbone's learning rate over --lr."),
    _setting("hash.freeze_backbone_epochs", "--freeze-backbone-epochs", type=int,
             help="Epochs that train the head only."),
    _setting("hash.frozen", "--frozen", is_flag=True, shown="without labels",
             help="Frozen-feature mode: the backbone's features are computed once and cached "
                  "(fakes too), and only the hash layer trains, in seconds."),
    _setting("hash.frozen", "--finetune", flag_value=False, name="finetune",
             shown="with labels",
             help="Fine-tune the backbone; without labels, for --loss contrastive."),
    _setting("hash.width", "--width", type=int, help="cnn's width (32: 0.3M parameters)."),
    _setting("hash.augment", "--no-augment", flag_value=False, name="augment", shown="",
             help="Train without the random crop and flip (by default, with them)."),
    _setting("data.image_size", "--image-size", type=int,
             shown="the pretrained backbone's, else 32", help="Input side in pixels."),
    _setting("hash.label_smoothing", "--label-smoothing", type=float,
             help="Label smoothing of the losses over class logits (ce, orthohash)."),
    _setting("hash.koleo", "--koleo", type=float,
             shown=f"{LABEL_FREE_KOLEO:g} for --loss contrastive on frozen features, else 0",
             help="Weight of a KoLeo term beside --loss contrastive, spreading the codes."),
    _setting("hash.flip_average", "--flip-average", is_flag=True,
             shown="on for a labelled photo folder with the default backbone",
             help="Encode each image as the mean of its outputs and its mirror image's "
                  "(evaluation, export, the Encoder): twice the encoding's cost."),
    _setting("hash.flip_average", "--no-flip-average", flag_value=False,
             name="no_flip_average", shown="",
             help="Encode each image once (half the cost of --flip-average)."),
    _setting("hash.mirror_invariant", "--mirror-invariant", is_flag=True,
             shown="on for a run without labels",
             help="Features of each image averaged with its mirror image's, in training and "
                  "encoding: a mirrored copy gets its original's code."),
    _setting("hash.mirror_invariant", "--no-mirror-invariant", flag_value=False,
             name="no_mirror_invariant", shown="",
             help="Features of the image alone (half the backbone's cost)."),
    _setting("hash.input_blur", "--input-blur", type=float, metavar="SIGMA",
             shown=f"{LABEL_FREE_BLUR:g} without labels, else 0",
             help="A Gaussian low-pass filter of SIGMA pixels before the backbone, in training "
                  "and encoding: added noise and text fade before the features see them."),
    _setting("hash.feature_block", "--feature-block", type=int, metavar="N",
             shown=f"{LABEL_FREE_BLOCK} without labels on {PHOTO_BACKBONE}, else -1 (the "
                   "whole backbone)",
             help="Features of block N of a timm backbone built of blocks (EfficientNet), "
                  "average-pooled, instead of its head's: they tell one picture from another "
                  "better than classes apart."),
    _setting("hash.input_median", "--input-median", type=int, metavar="K",
             help="A K x K median filter before the low-pass filter, in training and "
                  "encoding: thin strokes such as a text overlay's go (slower to encode)."),
    _setting("hash.feature_pool", "--feature-pool",
             help="How a timm backbone's features are pooled over positions: the average, or "
                  "a generalized mean (gem) that a few edited positions move less."),
    _setting("hash.training_edits", "--training-edits",
             help="How the edits of a label-free run's training copies are drawn: uniform, "
                  "or weighted toward noise, gamma and captions."),
    _setting("hash.dct_features", "--dct-features", type=int, metavar="N",
             help="Append pHash's look to the features: the N x N lowest frequencies of the "
                  "image's DCT, which noise, JPEG, gamma and text barely move (0: none)."),
]
GAN = [
    _setting("gan.steps", "--gan-steps", type=int, help="DCGAN training steps."),
    _setting("gan.num_fakes", "--num-fakes", type=int, shown="the training split's size",
             help="Size of the fake bank."),
]


def _options(options: list) -> Callable:
    def wrap(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


def _config(kw: dict) -> RunConfig:
    """Defaults, then --config, then the flags given (each to its config keys)."""
    from hashsdk.train import config

    if kw.get("lambda_") is not None:
        if kw.get("lam") is not None:
            raise click.UsageError("--lambda is the old name of --lam; give one of them")
        click.echo("warning: --lambda is deprecated, use --lam (the TOML key hash.lam and the "
                   "benchmarks' flag)", err=True)
        kw = {**kw, "lam": kw["lambda_"]}
    overrides: dict[str, dict] = {"data": {}, "gan": {}, "hash": {}}
    given: dict[tuple[str, str], str] = {}  # a key two flags set (--frozen, --finetune)
    for name, keys in TARGETS.items():
        for section, key in keys:
            if kw.get(name) is None:
                overrides[section].setdefault(key, None)
                continue
            if (section, key) in given:
                flags = (f"--{n.replace('_', '-')}" for n in (given[section, key], name))
                raise click.UsageError(" and ".join(flags) + ": give one")
            given[section, key] = name
            overrides[section][key] = kw.get(name)
    overrides["hash"]["fakes"] = kw.get("fakes")
    return config.load(kw.get("config_path"), overrides)


@click.group(context_settings=CONTEXT)
@version_option()
def main() -> None:
    """Train GAN-regularized deep hashing networks: the DCGAN and its fake bank, the hashing
    network with and without fakes, baselines, evaluation, and the whole demo.

    Export a trained checkpoint with hashsdk-export; index and search with hashsdk."""


@main.command()
@click.argument("pattern", default="*")
@user_errors('train')
def backbones(pattern: str) -> None:
    """List the backbone names that match PATTERN: cnn, the names of earlier versions,
    timm/<name> and torchvision/<name>. A pattern without wildcards matches anywhere in the
    name ('vit', 'resnet'); with them, shell-style ('timm/resnet*'). Names whose ImageNet
    weights are installed (the pretrained extra) say "ImageNet weights offline"."""
    from hashsdk.train.backbones import ALIASES, list_backbones
    from hashsdk.train.weights import available

    names = list_backbones(pattern)
    if not names:
        raise click.ClickException(f"no backbone matches {pattern!r}")
    for name in names:
        notes = [f"as {ALIASES[name]}"] if name in ALIASES else []
        if name.startswith("timm/") and available(name[len("timm/"):]):
            notes.append("ImageNet weights offline")
        click.echo(name + (f"  ({'; '.join(notes)})" if notes else ""))


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
    if not data.labeled or cfg.data.labels == "none":
        how = "on the frozen features of" if cfg.hash.frozen else "fine-tuning"
        click.echo(f"training without labels: {cfg.hash.loss} {how} {cfg.hash.backbone}",
                   err=True)
    result = train_hash(cfg, data, split, kw["run_dir"] / name, resume=not kw["no_resume"],
                        progress=not kw["quiet"])
    if result:  # under torchrun only rank 0 evaluates; the other ranks return nothing
        from hashsdk.train.evaluate import chance_map

        checkpoint = kw["run_dir"] / name / "checkpoint.pt"
        what = "mAP@all" if data.labeled else (
            f"copy detection ({len(split.query)} edited copies searching their originals): mAP")
        click.echo(f"{what} {result['map']:.4f} (a random ranking: about "
                   f"{chance_map(data, split):.4f})  P@r=2 {result['precision_at_radius']:.4f}")
        click.echo(f"next: hashsdk-export {checkpoint} -o model.onnx --verify")


@main.command()
@_options(COMMON)
@_setting("hash.bits", "--bits", type=int)
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
