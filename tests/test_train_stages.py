import dataclasses
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_cifar

torch = pytest.importorskip("torch")

from hashsdk import HashsdkError  # noqa: E402
from hashsdk.train import checkpoint, config  # noqa: E402
from hashsdk.train.data import CIFAR10_CLASSES, ImageSet, Split, make_split  # noqa: E402
from hashsdk.train.gan import load_generator, train_gan  # noqa: E402
from hashsdk.train.loop import train_hash  # noqa: E402

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def images():
    """Generated CIFAR-shaped data: 24 train and 6 test images a class."""
    return synthetic_cifar()


@pytest.fixture(scope="module")
def cifar_subset():
    """A few hundred real CIFAR-10 images: 24 train and 6 test a class, from the archive."""
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} not present")
    from PIL import Image

    want = {"train": 24, "test": 6}
    taken: dict = {}
    images, labels, is_test = [], [], []
    with tarfile.open(ARCHIVE) as tar:
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 4:
                continue
            _, split, cls, _ = parts
            if taken.get((split, cls), 0) >= want[split]:
                continue
            taken[(split, cls)] = taken.get((split, cls), 0) + 1
            images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read()))
                                     .convert("RGB")))
            labels.append(CIFAR10_CLASSES.index(cls))
            is_test.append(split == "test")
            if len(images) == 300:
                break
    return ImageSet(np.stack(images), np.array(labels), np.array(is_test), CIFAR10_CLASSES,
                    "cifar10")


def tiny_cfg(tmp_path, **hash_overrides):
    cfg = config.from_dict({
        "data": {"queries_per_class": 3, "train_per_class": 20, "seed": 0},
        "gan": {"steps": 2, "batch_size": 8, "width": 8, "sample_every": 1, "num_fakes": 40,
                "device": "cpu"},
        "hash": dict({"bits": 12, "epochs": 1, "batch_size": 32, "device": "cpu",
                      "lr": 3e-3}, **hash_overrides),
    })
    return cfg


def test_gan_runs_two_steps_and_writes_its_files(tmp_path, images):
    cfg = tiny_cfg(tmp_path)
    split = make_split(images, cfg.data)
    fakes_path = train_gan(cfg, images, split, tmp_path / "gan", progress=False)
    with np.load(fakes_path) as f:
        fakes = f["images"]
    assert fakes.shape == (40, 32, 32, 3) and fakes.dtype == np.uint8
    for name in ("config.json", "generator.pt", "losses.csv", "losses.png", "fakes.png",
                 "samples/step_000001.png", "samples/step_000002.png"):
        assert (tmp_path / "gan" / name).is_file(), name
    rows = (tmp_path / "gan" / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,loss_d,loss_g,d_real,d_fake" and len(rows) == 3
    g = load_generator(tmp_path / "gan" / "generator.pt")  # rebuilt from model_args alone
    assert g(torch.zeros(1, 100)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("with_fakes", [False, True])
def test_training_learns_what_an_untrained_network_does_not(tmp_path, images, with_fakes):
    from hashsdk.train.evaluate import evaluate_model
    from hashsdk.train.model import HashNet

    overrides = {}
    if with_fakes:
        fakes = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
        np.savez(tmp_path / "fakes.npz", images=fakes)
        overrides = {"fakes": str(tmp_path / "fakes.npz"), "lam": 0.1}
    cfg = tiny_cfg(tmp_path, epochs=4, **overrides)
    split = make_split(images, cfg.data)
    result = train_hash(cfg, images, split, tmp_path / "run", progress=False)
    model, _ = HashNet.from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    torch.manual_seed(cfg.hash.seed)  # the same initial weights, untrained
    untrained = HashNet(**model.model_args)
    before = evaluate_model(untrained, images, split, torch.device("cpu"), progress=False).map
    assert result["map"] > before + 0.2 and result["n_queries"] == 30
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 4 and (history[0]["loss_fake"] > 0) == with_fakes
    assert history[-1]["loss_real"] < history[0]["loss_real"]
    for name in ("config.json", "checkpoint.pt", "loss.png", "eval.json", "pr.png", "ap.npy"):
        assert (tmp_path / "run" / name).is_file(), name
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoint.pt", "hashsdk.hashnet")
    assert set(ckpt) >= {"format_version", "model_args", "state_dict", "optimizer", "step",
                         "config"}


def test_hashing_stage_runs_an_epoch_on_real_cifar10(tmp_path, cifar_subset):
    # the one test on the real CIFAR-10 archive; it skips where the archive is missing
    cfg = tiny_cfg(tmp_path)
    split = make_split(cifar_subset, cfg.data)
    result = train_hash(cfg, cifar_subset, split, tmp_path / "run", progress=False)
    assert result["n_queries"] == 30 and len(np.load(tmp_path / "run" / "ap.npy")) == 30
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1 and history[0]["loss_real"] > 0


def test_resume_refuses_a_changed_config(tmp_path, images):
    import dataclasses

    cfg = tiny_cfg(tmp_path)
    split = make_split(images, cfg.data)
    train_hash(cfg, images, split, tmp_path / "run", progress=False)
    changed = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, lr=1.0))
    with pytest.raises(HashsdkError, match=r"another config \(hash\.lr\)"):
        train_hash(changed, images, split, tmp_path / "run", progress=False)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "augment_policy": "trivial"},
                                   {"loss": "orthohash", "mixup": 0.4, "cutmix": 1.0,
                                    "label_smoothing": 0.1}])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, images, extra):
    # with fakes, so that data order, augmentation and fake sampling must all resume exactly;
    # and with the weights' average and TrivialAugment, or mixup and cutmix, whose draws must
    # resume too
    fakes = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "fakes.npz", images=fakes)
    cfg = tiny_cfg(tmp_path, epochs=2, fakes=str(tmp_path / "fakes.npz"), **extra)
    split = make_split(images, cfg.data)
    train_hash(cfg, images, split, tmp_path / "a", progress=False)
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")

    # interrupt an identical run right after its epoch-1 checkpoint, then resume it
    class Stop(Exception):
        pass

    import hashsdk.train.loop as loop

    real_save = loop.checkpoint.save
    calls = []

    def save_then_die(path, **fields):
        real_save(path, **fields)
        calls.append(1)
        raise Stop()

    loop.checkpoint.save = save_then_die
    try:
        with pytest.raises(Stop):
            train_hash(cfg, images, split, tmp_path / "b", progress=False)
    finally:
        loop.checkpoint.save = real_save
    assert checkpoint.load(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    train_hash(cfg, images, split, tmp_path / "b", progress=False)
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")
    assert b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["extra"]["history"][1]["loss_real"] == b["extra"]["history"][1]["loss_real"]


def test_the_weights_average_is_what_the_run_saves_and_scores(tmp_path, images):
    cfg = tiny_cfg(tmp_path, epochs=2)
    split = make_split(images, cfg.data)
    train_hash(cfg, images, split, tmp_path / "plain", progress=False)
    averaged_cfg = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, ema=0.5))
    averaged = train_hash(averaged_cfg, images, split, tmp_path / "ema", progress=False)
    a = checkpoint.load(tmp_path / "plain" / "checkpoint.pt")
    b = checkpoint.load(tmp_path / "ema" / "checkpoint.pt")
    assert a["extra"]["ema"] is None
    for key, value in b["state_dict"].items():  # the saved weights are the average's
        assert torch.equal(value, b["extra"]["ema"][f"module.{key}"]), key
    # the same steps were taken (the average never feeds back), so the weights differ only
    # because one run saved its last weights and the other their average
    assert [r["loss_real"] for r in a["extra"]["history"]] == [
        r["loss_real"] for r in b["extra"]["history"]]
    assert any(not torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items()
               if v.is_floating_point())
    from hashsdk.train.evaluate import evaluate_model
    from hashsdk.train.model import HashNet

    model, _ = HashNet.from_checkpoint(tmp_path / "ema" / "checkpoint.pt")
    scored = evaluate_model(model, images, split, torch.device("cpu"), progress=False)
    assert scored.map == pytest.approx(averaged["map"])  # the run scored the average


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    checkpoint.save(tmp_path / "g.pt", kind="hashsdk.dcgan", model_args={})
    with pytest.raises(HashsdkError, match="expected 'hashsdk.hashnet'"):
        checkpoint.load(tmp_path / "g.pt", "hashsdk.hashnet")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(HashsdkError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")


def test_every_shipped_config_loads():
    """The configs/ that docs and results name as commands: a retired or misspelt key, or a
    value out of its choices, would fail the command a reader copies."""
    shipped = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert len(shipped) > 10
    for path in shipped:
        cfg = config.load(path)
        assert cfg.hash.bits > 0, path


def test_config_rejects_unknown_keys_and_wrong_types(tmp_path):
    (tmp_path / "a.toml").write_text("[hash]\nbits = 24\nbitz = 3\n")
    with pytest.raises(HashsdkError, match=r"unknown key\(s\) \['bitz'\]"):
        config.load(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text("[hash]\nbits = 'many'\n")
    with pytest.raises(HashsdkError, match="hash].bits: expected int"):
        config.load(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text("[hash]\nfake_loss = 'max'\n")
    with pytest.raises(HashsdkError, match="fake_loss: expected one of"):
        config.load(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text("[hash]\nbits = 24\n[data]\nseed = 5\n")
    cfg = config.load(tmp_path / "d.toml", {"hash": {"epochs": 7}})
    assert (cfg.hash.bits, cfg.hash.epochs, cfg.data.seed) == (24, 7, 5)


@pytest.mark.parametrize("hash_, message", [
    ({"mixup": 0.2}, r"need a loss that scores each image .*\(ce, csq, orthohash\), not "
                     "'pairwise'"),
    ({"loss": "orthohash", "cutmix": -1.0}, "expected an alpha >= 0"),
    ({"loss": "orthohash", "label_smoothing": 1.0}, r"expected a value in \[0, 1\)"),
    ({"loss": "csq", "label_smoothing": 0.1}, r"class logits \(ce, orthohash\), not 'csq'"),
    ({"loss": "orthohash", "frozen": True, "cutmix": 1.0}, "frozen-feature mode"),
])
def test_config_refuses_mixing_and_smoothing_a_run_cannot_take(hash_, message):
    with pytest.raises(HashsdkError, match=message):
        config.from_dict({"hash": dict({"loss": "pairwise"}, **hash_)})


def four_images() -> tuple[ImageSet, Split]:
    """Four blank 32 px images, two to train and two to query: enough to build a model."""
    return (ImageSet(np.zeros((4, 32, 32, 3), np.uint8), np.arange(4), np.zeros(4, bool),
                     ("a", "b", "c", "d"), "test"),
            Split(np.arange(2), np.arange(2, 4), np.arange(4)))


def test_flip_average_reaches_the_model_and_is_refused_in_frozen_mode():
    from hashsdk.train.loop import build_model

    cfg = config.resolve(config.from_dict({"data": {"dataset": "cifar10"},
                                            "hash": {"backbone": "cnn", "bits": 16,
                                                     "flip_average": True}}))
    data, split = four_images()
    assert build_model(cfg.hash, cfg.data, data, split).flip_average
    with pytest.raises(HashsdkError, match="frozen-feature mode .* set hash.frozen = false"):
        config.resolve(config.from_dict({"hash": {"frozen": True, "loss": "itq",
                                                  "flip_average": True}}))


@pytest.mark.parametrize("data, hash_, flip", [
    ({"dataset": "imagefolder", "root": "photos"}, {}, True),  # the photo recipe: on
    ({"dataset": "imagefolder", "root": "photos"}, {"flip_average": False}, False),
    ({"dataset": "imagefolder", "root": "photos"}, {"backbone": "cnn"}, False),  # asked for
    ({"dataset": "imagefolder", "root": "photos", "labels": "none"}, {}, False),  # frozen
    ({"dataset": "imagefolder", "root": "photos", "labels": "none"},
     {"frozen": False, "loss": "contrastive"}, False),  # not measured without labels
    ({"dataset": "cifar10"}, {}, False),  # the cnn's recipe
    ({"dataset": "cifar10"}, {"backbone": "cnn", "flip_average": True}, True),
])
def test_flip_average_defaults_on_for_the_labelled_photo_recipe_only(tmp_path, data, hash_,
                                                                     flip):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    data = dict(data, root=str(tmp_path / data["root"])) if "root" in data else data
    cfg = config.resolve(config.from_dict({"data": data, "hash": hash_}))
    assert cfg.hash.flip_average is flip


def _resolved_on_folders(tmp_path, data: dict, hash_: dict) -> config.RunConfig:
    # a labelled folder (photos/a/) and a flat one (flat/0.jpg); data["root"] names one
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "0.jpg").write_bytes(b"")
    data = dict(data, root=str(tmp_path / data["root"])) if "root" in data else data
    return config.validate(config.from_dict({"data": data, "hash": hash_}))


@pytest.mark.parametrize("data, hash_, mirror, flip", [
    ({"dataset": "imagefolder", "root": "photos", "labels": "none"}, {}, True, False),
    ({"dataset": "imagefolder", "root": "flat"}, {}, True, False),  # a flat folder: no labels
    ({"dataset": "imagefolder", "root": "photos", "labels": "none"},
     {"mirror_invariant": False}, False, False),
    ({"dataset": "imagefolder", "root": "photos", "labels": "none"},
     {"frozen": False, "loss": "contrastive", "flip_average": True}, False, True),
    ({"dataset": "imagefolder", "root": "photos"}, {}, False, True),  # labelled: flip average
    ({"dataset": "imagefolder", "root": "photos"}, {"mirror_invariant": True}, True, False),
    ({"dataset": "cifar10"}, {}, False, False),
])
def test_mirror_invariant_defaults_on_without_labels(tmp_path, data, hash_, mirror, flip):
    cfg = _resolved_on_folders(tmp_path, data, hash_)
    assert (cfg.hash.mirror_invariant, cfg.hash.flip_average) == (mirror, flip)


@pytest.mark.parametrize("data, hash_, sigma, trim, block", [
    ({"dataset": "imagefolder", "root": "flat"}, {}, config.LABEL_FREE_BLUR, True,
     config.LABEL_FREE_BLOCK),
    ({"dataset": "imagefolder", "root": "photos", "labels": "none", "trim": False},
     {"input_blur": 0.0, "feature_block": 3}, 0.0, False, 3),
    ({"dataset": "imagefolder", "root": "photos"}, {}, 0.0, False, -1),  # labelled: off
    ({"dataset": "cifar10", "trim": True}, {"input_blur": 2}, 2.0, True, -1),
    # without labels on another backbone (cifar10's auto is cnn): no block of it was chosen
    ({"dataset": "cifar10", "labels": "none"}, {}, config.LABEL_FREE_BLUR, True, -1),
    ({"dataset": "cifar10", "labels": "none"}, {"backbone": "timm/test_efficientnet"},
     config.LABEL_FREE_BLUR, True, -1),
])
def test_input_blur_trim_and_block_default_on_without_labels(tmp_path, data, hash_, sigma,
                                                             trim, block):
    cfg = _resolved_on_folders(tmp_path, data, hash_)
    assert (cfg.hash.input_blur, cfg.data.trim, cfg.hash.feature_block) == (sigma, trim, block)
    # the median filter, gem pooling and the DCT features did not pay beyond their noise
    # without labels (copydetect-pool.md, copydetect-dct.md): off
    assert (cfg.hash.input_median, cfg.hash.feature_pool, cfg.hash.dct_features) == (0, "avg", 0)
    assert config.input_contract(cfg.data, 3).trim is trim


def test_a_config_saved_before_the_filter_and_the_trim_reads_them_as_off(tmp_path):
    # a label-free run saved before the keys existed was trained without them, whatever
    # today's default without labels
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "0.jpg").write_bytes(b"")
    saved = {"data": {"dataset": "imagefolder", "root": str(tmp_path / "flat")},
             "hash": {"loss": "edit-itq"}}
    old = config.from_saved(saved)
    assert (old.data.trim, old.hash.input_blur) == (False, 0.0)
    assert old.hash.feature_block == -1
    today = config.from_dict(saved)
    assert (today.data.trim, today.hash.input_blur) == (True, config.LABEL_FREE_BLUR)
    assert set(config.differences(saved, today)) >= {"data.trim", "hash.input_blur"}


def test_input_blur_reaches_the_model_and_bad_values_name_the_key(tmp_path):
    from click.testing import CliRunner

    from hashsdk.train import cli
    from hashsdk.train.loop import build_model

    cfg = config.validate(config.from_dict({"data": {"dataset": "cifar10"},
                                             "hash": {"backbone": "cnn", "bits": 16,
                                                      "input_blur": 1.0}}))
    data, split = four_images()
    assert build_model(cfg.hash, cfg.data, data, split).model_args["input_blur"] == 1.0
    cfg = config.validate(config.from_dict({"data": {"dataset": "cifar10"},
                                             "hash": {"backbone": "cnn", "bits": 16,
                                                      "input_median": 5}}))
    assert build_model(cfg.hash, cfg.data, data, split).model_args["input_median"] == 5
    for bad in (-0.5, 100.0):
        with pytest.raises(HashsdkError, match="hash.input_blur: expected a sigma"):
            config.validate(config.from_dict({"data": {"dataset": "cifar10"},
                                              "hash": {"input_blur": bad}}))
    with pytest.raises(HashsdkError, match="hash.feature_block: expected -1"):
        config.from_dict({"hash": {"feature_block": -2}})
    with pytest.raises(HashsdkError, match="hash.dct_features: expected 0 .* from 2 to 16"):
        config.from_dict({"hash": {"dct_features": 1}})
    with pytest.raises(HashsdkError, match=r"hash.input_median: expected one of \(0, 3, 5\)"):
        config.from_dict({"hash": {"input_median": 4}})
    with pytest.raises(HashsdkError, match="hash.feature_pool: expected one of .*'gem'.*'max'"):
        config.from_dict({"hash": {"feature_pool": "max"}})
    result = CliRunner().invoke(cli.main, [
        "hash", "--dataset", "cifar10", "--root", str(tmp_path), "--run-dir", str(tmp_path),
        "--input-blur", "x"])
    assert result.exit_code == 2 and "--input-blur" in result.output


def test_mirror_invariant_reaches_the_model_and_excludes_flip_average(tmp_path):
    from click.testing import CliRunner

    from hashsdk.train import cli
    from hashsdk.train.loop import build_model

    cfg = config.resolve(config.from_dict({"data": {"dataset": "cifar10"},
                                            "hash": {"backbone": "cnn", "bits": 16,
                                                     "mirror_invariant": True}}))
    data, split = four_images()
    assert build_model(cfg.hash, cfg.data, data, split).mirror_invariant
    with pytest.raises(HashsdkError, match="flip_average and hash.mirror_invariant: give one"):
        config.resolve(config.from_dict({"hash": {"flip_average": True,
                                                  "mirror_invariant": True}}))
    result = CliRunner().invoke(cli.main, [
        "hash", "--dataset", "cifar10", "--root", str(tmp_path), "--run-dir", str(tmp_path),
        "--mirror-invariant", "--no-mirror-invariant"])
    assert result.exit_code == 2 and "--mirror-invariant and --no-mirror-invariant: give one" \
        in result.output


def test_cli_flip_average_flags(tmp_path):
    from click.testing import CliRunner

    from hashsdk.train import cli

    result = CliRunner().invoke(cli.main, [
        "hash", "--dataset", "cifar10", "--root", str(tmp_path), "--run-dir", str(tmp_path),
        "--flip-average", "--no-flip-average"])
    assert result.exit_code == 2 and "--flip-average and --no-flip-average: give one" in \
        result.output


def test_retired_keys_load_from_checkpoints_but_not_from_user_configs(tmp_path):
    # a checkpoint written before hash.num_workers was removed still evaluates and resumes
    saved = config.from_dict({"hash": {"bits": 24}}).to_dict()
    saved["hash"]["num_workers"] = 2
    cfg = config.from_saved(saved)
    assert cfg.hash.bits == 24
    assert config.saved_tables(saved)["hash"] == cfg.to_dict()["hash"]
    assert config.differences(saved, cfg) == []  # so the run resumes
    saved["hash"]["epochs"] = 99
    assert config.differences(saved, cfg) == ["hash.epochs"]
    saved["hash"]["epochs"] = cfg.hash.epochs
    with pytest.raises(HashsdkError, match=r"unknown key\(s\) \['num_workers'\]"):
        config.from_dict({"hash": {"num_workers": 2}})
    saved["hash"]["bitz"] = 3  # a key that never existed is still an error
    with pytest.raises(HashsdkError, match=r"unknown key\(s\) \['bitz'\]"):
        config.from_saved(saved)


def test_cli_reports_a_missing_dataset_cleanly(tmp_path):
    exe = Path(sys.executable).parent / "hashsdk-train"
    result = subprocess.run([str(exe), "hash", "--dataset", "imagefolder", "--root",
                             str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_split_file_round_trip_and_corruption(tmp_path):
    split = Split(np.array([1, 2]), np.array([3]), np.array([0, 3, 4]))
    split.save(tmp_path / "s.npz")
    back = Split.load(tmp_path / "s.npz")
    assert back.query.tolist() == [1, 2] and back.database.tolist() == [0, 3, 4]
    (tmp_path / "s.npz").write_bytes(b"junk")
    with pytest.raises(HashsdkError, match="not a split file"):
        Split.load(tmp_path / "s.npz")


def test_baselines_on_trained_backbone_features(tmp_path, images):
    from hashsdk.train.comparison import run_baselines
    from hashsdk.train.evaluate import backbone_features

    cfg = tiny_cfg(tmp_path, epochs=4)
    split = make_split(images, cfg.data)
    train_hash(cfg, images, split, tmp_path / "run", progress=False)
    feats = backbone_features(tmp_path / "run" / "checkpoint.pt", images, "cpu", False)
    assert feats.shape == (len(images.labels), 128) and feats.dtype == np.float32
    learned = run_baselines(images, split, 12, features=feats)
    assert set(learned) == {"lsh", "itq", "sh"}
    assert all(len(r["ap"]) == 30 for r in learned.values())
    # a trained backbone's features separate the classes better than random projections of
    # the same shape do: ITQ on them beats ITQ on noise
    noise = np.random.default_rng(0).standard_normal(feats.shape).astype(np.float32)
    assert learned["itq"]["map"] > run_baselines(images, split, 12, features=noise)["itq"][
        "map"] + 0.2


def test_frozen_mode_trains_the_hash_layer_only_on_cached_features(tmp_path, images):
    """hash.frozen on ImageNet features: the backbone as built, the hash layer trained; the
    scores come from the cached features and equal the saved network's own; the cache serves
    the next run."""
    from hashsdk.train.evaluate import evaluate_model
    from hashsdk.train.model import HashNet
    from hashsdk.train.weights import available

    if not available("tf_efficientnet_lite0"):
        pytest.skip("the pretrained extra is not installed")

    fakes = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "fakes.npz", images=fakes)
    cfg = config.from_dict({**tiny_cfg(tmp_path).to_dict(), "data": {
        **tiny_cfg(tmp_path).to_dict()["data"], "cache_dir": str(tmp_path / "cache")}})
    cfg = dataclasses.replace(cfg, hash=dataclasses.replace(
        cfg.hash, frozen=True, epochs=30, lr=1e-2, fakes=str(tmp_path / "fakes.npz"), lam=0.1,
        backbone="timm/tf_efficientnet_lite0", pretrained="imagenet"))
    split = make_split(images, cfg.data)
    result = train_hash(cfg, images, split, tmp_path / "run", progress=False)
    model, ckpt = HashNet.from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    torch.manual_seed(cfg.hash.seed)
    untrained = HashNet(**model.model_args, pretrained="imagenet")
    for name, tensor in untrained.state_dict().items():
        same = torch.equal(tensor, model.state_dict()[name])
        assert same == name.startswith("features."), name  # only the head moved
    again = evaluate_model(model, images, split, torch.device("cpu"), progress=False)
    assert again.map == pytest.approx(result["map"], abs=1e-9)
    assert result["map"] > evaluate_model(untrained, images, split, torch.device("cpu"),
                                          progress=False).map + 0.1
    cached = sorted(p.name for p in (tmp_path / "cache").glob("features-*.npy"))
    assert [n.split("-")[1] for n in cached] == ["fakes", "images"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 30 and history[0]["loss_fake"] > 0
    assert history[-1]["loss_real"] < 0.9 * history[0]["loss_real"]  # the head learned
    # a second run with another code length finds the features in the cache
    cfg24 = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, bits=24))
    train_hash(cfg24, images, split, tmp_path / "run24", progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").glob("features-*.npy")) == cached


def test_the_feature_cache_tells_backbones_apart_by_their_weights_not_their_heads():
    """Two backbones with the same arguments (ImageNet's weights and a fine-tuned
    checkpoint's) must not share cached features; two heads on one backbone must."""
    from hashsdk.train.frozen import features_key
    from hashsdk.train.model import create_model

    images = np.zeros((4, 32, 32, 3), np.uint8)
    torch.manual_seed(0)
    a = create_model("timm/test_resnet", 12, image_size=32)
    b = create_model("timm/test_resnet", 48, image_size=32)
    b.features.load_state_dict(a.features.state_dict())
    assert features_key(a, images) == features_key(b, images)  # another head only
    with torch.no_grad():
        next(b.features.parameters()).add_(1e-3)
    assert features_key(a, images) != features_key(b, images)
    assert features_key(a, images) != features_key(a, images[:3])


def test_fakes_are_fitted_to_the_runs_image_size(tmp_path):
    from hashsdk.encoder.contract import InputContract
    from hashsdk.train.loop import load_fakes

    fakes = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "fakes.npz", images=fakes)
    real = np.zeros((3, 96, 96, 3), np.uint8)
    data_cfg = config.from_dict({"data": {"image_size": 96, "resize_size": 96}}).data
    fitted = load_fakes(tmp_path / "fakes.npz", real, data_cfg)
    assert fitted.shape == (5, 96, 96, 3)
    assert (fitted == InputContract(96, 3, 96, data_cfg.interpolation).fit_batch(fakes)).all()
    with pytest.raises(HashsdkError, match="expected uint8 fakes"):
        load_fakes(tmp_path / "fakes.npz", np.zeros((3, 96, 96, 1), np.uint8), data_cfg)


def test_gan_at_64_pixels_for_large_images(tmp_path, images):
    from hashsdk.train.gan import gan_size

    big = ImageSet(np.repeat(np.repeat(images.images, 2, axis=1), 2, axis=2), images.labels,
                   images.is_test, images.classes, images.name)
    cfg = tiny_cfg(tmp_path)
    assert gan_size(cfg, 64) == 64 and gan_size(cfg, 48) == 32
    split = make_split(big, cfg.data)
    with np.load(train_gan(cfg, big, split, tmp_path / "gan", progress=False)) as f:
        assert f["images"].shape == (40, 64, 64, 3)
    assert load_generator(tmp_path / "gan" / "generator.pt")(torch.zeros(1, 100)).shape == \
        (1, 3, 64, 64)
    at32 = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, image_size=32))
    with np.load(train_gan(at32, big, split, tmp_path / "gan32", progress=False)) as f:
        assert f["images"].shape == (40, 32, 32, 3)


def test_chance_map_is_the_map_of_random_rankings():
    from hashsdk import mean_average_precision
    from hashsdk.train.data import ImageSet, Split
    from hashsdk.train.evaluate import chance_map

    rng = np.random.default_rng(0)
    labels = rng.choice(3, 600, p=[0.6, 0.3, 0.1]).astype(np.int64)
    data = ImageSet(np.zeros((600, 1, 1, 1), np.uint8), labels, np.zeros(600, bool),
                    ("a", "b", "c"), "x")
    split = Split(np.arange(100), np.arange(100, 600), np.arange(100, 600))
    # random codes rank the database at random: their mAP@all is about the chance level
    codes = rng.integers(0, 256, (600, 8), dtype=np.uint8)
    got = mean_average_precision(codes[:100], codes[100:], labels[:100], labels[100:])
    assert got == pytest.approx(chance_map(data, split), abs=0.03)
    assert chance_map(data, split) == pytest.approx(
        np.mean([(labels[100:] == q).mean() for q in labels[:100]]))


def test_the_recipe_for_a_folder_of_photos_and_a_schedule_sized_by_the_data():
    from hashsdk.train.schedule import fit_schedule

    photos = config.from_dict({"data": {"dataset": "imagefolder"}})
    assert (photos.hash.backbone, photos.hash.pretrained) == ("timm/tf_efficientnet_lite0",
                                                              "imagenet")
    assert (photos.data.image_size, photos.data.resize_size) == (96, 109)  # 224 of 256
    cifar = config.from_dict({})
    assert (cifar.hash.backbone, cifar.hash.pretrained, cifar.data.image_size) == (
        "cnn", None, 32)
    asked = config.from_dict({"data": {"dataset": "imagefolder"}, "hash": {"backbone": "cnn"}})
    assert (asked.hash.backbone, asked.hash.pretrained) == ("cnn", None)
    # a folder of 60 training photos: batches of 8, enough epochs for 300 steps
    small = fit_schedule(photos.hash, 60)
    assert (small.batch_size, small.epochs) == (8, 43)   # 7 steps an epoch
    big = fit_schedule(photos.hash, 5000)
    assert (big.batch_size, big.epochs) == (128, 8)      # 39 steps an epoch
    assert fit_schedule(cifar.hash, 5000).epochs == 60   # from scratch, as before
    given = dataclasses.replace(photos.hash, batch_size=16, epochs=3)
    assert (fit_schedule(given, 60).batch_size, fit_schedule(given, 60).epochs) == (16, 3)


def test_moving_averages_do_not_dip_at_the_ends():
    from hashsdk.train.plots import moving_average

    assert moving_average([2.0] * 7, 5) == [2.0] * 7  # a flat curve stays flat at its ends
    assert moving_average([1.0, 2.0, 3.0], 5) == [1.5, 2.0, 2.5]
