"""benchmarks/retrieval.py's options reach the runs' configs and the printed command."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"


@pytest.fixture(scope="module")
def retrieval():
    spec = importlib.util.spec_from_file_location("retrieval_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def parse(retrieval, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["retrieval.py", *argv])
    return retrieval.parse_args()


def test_overfit_regime_options_reach_config_and_command(retrieval, monkeypatch):
    args = parse(retrieval, monkeypatch, "--bits", "48", "--seeds", "0", "--epochs", "100",
                 "--batch-size", "32", "--augment", "off", "--train-per-class", "100",
                 "--setting", "entropy:0.1:0.5:separate")
    cfg = retrieval.seed_config(args, seed=1)
    assert cfg.hash.batch_size == 32 and cfg.hash.seed == 1 and cfg.hash.epochs == 100
    assert cfg.data.train_per_class == 100
    cmd = retrieval.command(args)
    assert "--batch-size 32" in cmd and "--augment off" in cmd
    assert "--train-per-class 100" in cmd and "--setting entropy:0.1:0.5:separate" in cmd
    # the command, parsed again, gives the same configuration
    again = parse(retrieval, monkeypatch, *cmd.split()[2:])
    assert retrieval.seed_config(again, seed=1) == cfg


def test_default_batch_size_is_left_out_of_the_command(retrieval, monkeypatch):
    args = parse(retrieval, monkeypatch, "--bits", "12")
    assert retrieval.seed_config(args, seed=0).hash.batch_size == 128
    assert "--batch-size" not in retrieval.command(args)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--train-per-class", "0"], "--train-per-class must be at least 1"),
    (["--setting", "entropy:0.1:0.5"], "expected LOSS:LAMBDA:RATIO:BN"),
    (["--setting", "entropy:0.1:0.5:both"], "fake_bn must be one of"),
])
def test_bad_options_are_refused_by_name(retrieval, monkeypatch, capsys, argv, message):
    with pytest.raises(SystemExit):
        parse(retrieval, monkeypatch, *argv)
    assert message in capsys.readouterr().err


def test_a_recipe_text_sets_each_named_field_and_refuses_others(monkeypatch):
    """benchmarks/pretrained_protocol.py's recipe grammar, BACKBONE_LR:CROP[:POLICY]
    [:KEY=VALUE...], onto a run's config; and each recipe's own run directory."""
    from hashsdk.train import config

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from pretrained_protocol import recipe, recipe_dir

    cfg = config.from_dict({"hash": {"ema": 0.9, "augment_policy": "trivial"}})
    plain = recipe(cfg, "0.1:pad").hash
    assert (plain.backbone_lr, plain.crop, plain.augment_policy, plain.ema) == (
        0.1, "pad", "none", 0.0)  # what the text leaves out is off, not inherited
    full = recipe(cfg, "1:resized:trivial:ema=0.999:backbone=timm/tf_efficientnet_lite1").hash
    assert (full.backbone_lr, full.crop, full.augment_policy, full.ema, full.backbone) == (
        1.0, "resized", "trivial", 0.999, "timm/tf_efficientnet_lite1")
    assert recipe(cfg, "1:pad").hash.backbone == cfg.hash.backbone
    assert recipe(cfg, "1:pad:loss=csq").hash.loss == "csq"
    assert recipe(cfg, "1:pad").data == cfg.data
    sized = recipe(cfg, "1:pad:size=128").data
    assert (sized.image_size, sized.resize_size) == (128, 128)  # stored and fed at 128
    assert dataclasses.replace(sized, image_size=cfg.data.image_size,
                               resize_size=cfg.data.resize_size) == cfg.data
    with pytest.raises(ValueError, match="KEY one of ema, backbone, loss"):
        recipe(cfg, "1:pad:lr=3")
    names = {recipe_dir(t) for t in ("1:pad", "1:pad:ema=0.999",
                                     "1:pad:backbone=timm/tf_efficientnet_lite1")}
    assert len(names) == 3 and not any("/" in n or ":" in n for n in names)
