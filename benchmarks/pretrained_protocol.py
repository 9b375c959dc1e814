"""benchmarks/pretrained.py's protocol: each run's config from the command line, the
frozen-feature and code-length variants, the fine-tuning recipes, and the validation split
carved from the training images on which every setting is chosen."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from hashsdk.train import config
from hashsdk.train.data import Split


def seed_config(args: argparse.Namespace, seed: int) -> config.RunConfig:
    return config.from_dict({
        "data": {"dataset": args.dataset, "root": args.root, "seed": 0,
                 "image_size": args.image_size,
                 "resize_size": args.image_size, "train_per_class": args.train_per_class,
                 "queries_per_class": args.queries_per_class},
        "gan": {"steps": args.gan_steps, "width": args.gan_width, "seed": seed,
                "image_size": args.gan_size},
        "hash": {"backbone": args.backbone, "pretrained": args.pretrained, "seed": seed,
                 "loss": args.loss,
                 "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "freeze_backbone_epochs": args.freeze_backbone_epochs,
                 "fake_loss": args.fake_loss, "fake_ratio": args.fake_ratio,
                 "fake_bn": args.fake_bn},
    })


def frozen(cfg: config.RunConfig, args: argparse.Namespace, bits: int) -> config.RunConfig:
    return dataclasses.replace(cfg, hash=dataclasses.replace(
        cfg.hash, bits=bits, frozen=True, epochs=args.frozen_epochs,
        batch_size=args.frozen_batch_size, freeze_backbone_epochs=0))


def at_bits(cfg: config.RunConfig, bits: int, lam: float | None = None) -> config.RunConfig:
    hc = dataclasses.replace(cfg.hash, bits=bits, **({} if lam is None else {"lam": lam}))
    return dataclasses.replace(cfg, hash=hc)


def validation_split(split: Split, labels: np.ndarray, per_class: int, seed: int = 0) -> Split:
    """Queries: ``per_class`` training images of each class; training images and database:
    the other training images. Nothing of the protocol's queries or database is used."""
    rng = np.random.default_rng(seed)
    train = split.train
    queries = np.sort(np.concatenate([
        rng.choice(train[labels[train] == c], per_class, replace=False)
        for c in np.unique(labels[train])]))
    rest = np.setdiff1d(train, queries)
    return Split(query=queries, train=rest, database=rest)


# the KEY=VALUE fields of a recipe: the config section and field each sets, and its type
RECIPE_KEYS = {"ema": ("hash", "ema", float), "backbone": ("hash", "backbone", str),
               "loss": ("hash", "loss", str), "codewords": ("hash", "codewords", str),
               "size": ("data", "image_size", int), "mixup": ("hash", "mixup", float),
               "cutmix": ("hash", "cutmix", float),
               "smoothing": ("hash", "label_smoothing", float)}


def recipe(cfg: config.RunConfig, text: str) -> config.RunConfig:
    """``cfg`` with the recipe BACKBONE_LR:CROP[:POLICY][:KEY=VALUE...] (POLICY: an
    augment_policy; KEY: ema, the weights' moving average's decay; backbone, with the same
    pretrained weights' source; loss, a registered real-image loss; codewords, the rule of
    csq's and orthohash's class codewords; size, the images' side in pixels, both the stored
    and the network's, so a recipe with it reads the dataset at that size; mixup and cutmix,
    their alphas; smoothing, the label smoothing)."""
    backbone_lr, crop, *rest = text.split(":")
    changes = {"hash": dict(backbone_lr=float(backbone_lr), crop=crop, augment_policy="none",
                            ema=0.0), "data": {}}
    for field in rest:
        key, _, value = field.rpartition("=")
        if key and key not in RECIPE_KEYS:
            raise ValueError(f"recipe {text!r}: expected POLICY or KEY=VALUE with KEY one of "
                             f"{', '.join(RECIPE_KEYS)}, got {field!r}")
        if key:
            section, name, kind = RECIPE_KEYS[key]
            changes[section][name] = kind(value)
        else:
            changes["hash"]["augment_policy"] = value
    if "image_size" in changes["data"]:
        changes["data"]["resize_size"] = changes["data"]["image_size"]
    return dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, **changes["hash"]),
                               data=dataclasses.replace(cfg.data, **changes["data"]))


def recipe_dir(text: str) -> str:
    """The run directory's name of a recipe: its text with ':' and '/' as '-'."""
    return text.replace(":", "-").replace("/", "-")
