"""Backbones by name (cnn, timm/<name>, torchvision/<name>, earlier versions' names), their
pretrained weights, and the same pixels in training, export and the Encoder.

Nothing is downloaded: timm's ``test_*`` models and small torchvision models are built at
random, and the by-name paths run with the library's download function replaced."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("onnx")

import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

from hashsdk import Encoder, HashsdkError  # noqa: E402
from hashsdk.train import checkpoint, config  # noqa: E402
from hashsdk.train.backbones import list_backbones, lookup_backbone  # noqa: E402
from hashsdk.train.model import KIND, HashNet, create_model  # noqa: E402

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parent / "data"


# ---- names --------------------------------------------------------------------------------------


def test_names_resolve_and_unknown_names_say_how_to_list_them():
    assert lookup_backbone("timm/test_resnet").name == "timm/test_resnet"
    assert lookup_backbone("torchvision/alexnet").min_size == 63  # torchvision's own meta
    assert "torchvision/resnet18" in lookup_backbone("resnet18").about
    for bad in ("vit", "timm/no_such_model", "torchvision/no_such_model", "timm/"):
        with pytest.raises(HashsdkError, match=r"hashsdk-train backbones \[PATTERN\]"):
            lookup_backbone(bad)
    assert {"timm/test_resnet", "timm/test_vit"} <= set(list_backbones("timm/test_*"))
    assert "torchvision/resnet18" in list_backbones("*resnet18")
    done = subprocess.run([str(BIN / "hashsdk-train"), "backbones", "timm/test_res*"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["timm/test_resnet"]
    done = subprocess.run([str(BIN / "hashsdk-train"), "hash", "--backbone", "vit"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "hashsdk-train backbones" in done.stderr


@pytest.mark.parametrize("name, size, channels", [
    ("timm/test_resnet", 32, 3), ("timm/test_resnet", 48, 1), ("timm/test_efficientnet", 64, 3),
    ("torchvision/mobilenet_v3_small", 64, 3), ("torchvision/resnet18", 32, 1)])
def test_family_backbones_batch_matches_one_at_a_time_and_rebuild(name, size, channels):
    torch.manual_seed(0)
    model = create_model(name, 16, in_channels=channels, image_size=size).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(3)])
    assert batch.shape == (3, 16) and torch.allclose(batch, single, atol=1e-5)
    rebuilt = HashNet(**model.model_args)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), batch)


def test_earlier_names_build_the_networks_they_built():
    # the oracle: resnet18 as earlier versions made it (32x32 stem, no fc)
    old = torchvision.models.resnet18()
    old.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    old.maxpool = torch.nn.Identity()
    old.fc = torch.nn.Identity()
    new = create_model("resnet18", 12).features
    assert {k: v.shape for k, v in new.state_dict().items()} == \
        {k: v.shape for k, v in old.state_dict().items()}
    # the new name keeps the ImageNet stem above 64 pixels, and takes the 32x32 one below
    assert create_model("torchvision/resnet18", 12, image_size=96).features.conv1.stride == (2, 2)
    assert create_model("torchvision/resnet18", 12, image_size=32).features.conv1.stride == (1, 1)


# ---- weights ------------------------------------------------------------------------------------


def test_local_weights_files_load_in_full_in_part_or_not_at_all(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    model = create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "w.safetensors"))
    for key, value in state.items():
        assert torch.equal(model.features.state_dict()[key], value), key
    # a .pt file of only some tensors: loaded, with a warning naming what was missing
    part = {k: v for k, v in state.items() if not k.startswith("layer2.")}
    torch.save({"state_dict": part}, tmp_path / "part.pt")
    with pytest.warns(UserWarning, match=r"loaded \d+ of the backbone's \d+ tensors; "
                                         r"missing: layer2\."):
        create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "part.pt"))
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(HashsdkError, match="none of its 1 tensors fit"):
        create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "other.pth"))
    with pytest.raises(HashsdkError, match="not found"):
        create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(HashsdkError, match="not a loadable weights file"):
        create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "junk.pth"))


def test_a_hashnet_checkpoint_gives_its_fine_tuned_backbone_to_a_head_of_another_length(
        tmp_path):
    from hashsdk.train import checkpoint

    torch.manual_seed(4)
    tuned = create_model("timm/test_resnet", 48)
    with torch.no_grad():  # a backbone unlike a fresh one's, as fine-tuning leaves it
        for p in tuned.features.parameters():
            p.add_(torch.randn_like(p))
    checkpoint.save(tmp_path / "ckpt.pt", kind="hashsdk.hashnet", model_args=tuned.model_args,
                    state_dict=tuned.state_dict())
    model = create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "ckpt.pt"))
    own = model.features.state_dict()
    for key, value in tuned.features.state_dict().items():
        assert torch.equal(own[key], value), key
    assert model.hash.weight.shape == (12, tuned.hash.weight.shape[1])
    # another backbone's checkpoint fits nothing: an error, not a silent fresh backbone
    other = create_model("cnn", 16, image_size=32)
    checkpoint.save(tmp_path / "cnn.pt", kind="hashsdk.hashnet", model_args=other.model_args,
                    state_dict=other.state_dict())
    with pytest.raises(HashsdkError, match="none of its .* tensors fit"):
        create_model("timm/test_resnet", 12, pretrained=str(tmp_path / "cnn.pt"))


def test_pretrained_by_name_goes_through_the_libraries_download(monkeypatch):
    import timm.models._builder as builder
    import torchvision.models._api as api

    asked = []
    torch.manual_seed(2)
    timm_state = timm.create_model("test_resnet").state_dict()  # with its 1000-class head

    def from_hf(model_id, *args, **kwargs):
        asked.append(model_id)
        return timm_state

    monkeypatch.setattr(builder, "load_state_dict_from_hf", from_hf)
    model = create_model("timm/test_resnet", 12, pretrained="imagenet")
    assert asked == ["timm/test_resnet.r160_in1k"]
    key = "conv1.0.weight"
    assert torch.equal(model.features.state_dict()[key], timm_state[key])

    tv_state = torchvision.models.mobilenet_v3_small().state_dict()

    def from_url(url, *args, **kwargs):
        asked.append(url)
        return tv_state

    monkeypatch.setattr(api, "load_state_dict_from_url", from_url)
    model = create_model("torchvision/mobilenet_v3_small", 12, image_size=64,
                         pretrained="imagenet")
    weights = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT
    assert asked[-1] == weights.url
    key = "features.0.0.weight"
    assert torch.equal(model.features.state_dict()[key], tv_state[key])


def test_no_network_and_no_cache_is_one_line_that_names_the_ways_out(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    with pytest.raises(HashsdkError) as err:
        create_model("timm/test_resnet", 12, pretrained="imagenet")
    message = str(err.value)
    assert "\n" not in message and "couldn't connect" in message
    assert "--pretrained PATH" in message and "machine with network" in message
    assert "huggingface" in message  # where the cache is
    with pytest.raises(HashsdkError, match="no ImageNet weights"):
        create_model("cnn", 12, pretrained="imagenet")


# ---- settings -----------------------------------------------------------------------------------


def test_config_takes_the_pretrained_input_contract_unless_told_otherwise():
    cfg = config.from_dict({"hash": {"backbone": "timm/test_resnet", "pretrained": "imagenet"}})
    assert (cfg.data.image_size, cfg.data.resize_size, cfg.data.interpolation) == \
        (160, 168, "bilinear")  # timm: floor(160 / 0.95)
    assert cfg.hash.backbone_lr == 0.1 and cfg.hash.crop == "resized"
    cfg = config.from_dict({"data": {"image_size": 224},
                            "hash": {"backbone": "torchvision/resnet18", "pretrained": "imagenet"}})
    assert (cfg.data.image_size, cfg.data.resize_size) == (224, 256)
    cfg = config.from_dict({"data": {"image_size": 112},
                            "hash": {"backbone": "torchvision/resnet18", "pretrained": "imagenet"}})
    assert cfg.data.resize_size == 128  # the same crop ratio at another size
    scratch = config.from_dict({"hash": {"backbone": "timm/test_resnet"}})
    assert (scratch.data.image_size, scratch.data.resize_size, scratch.hash.backbone_lr,
            scratch.hash.crop) == (32, 32, 1.0, "pad")
    with pytest.raises(HashsdkError, match="resize_size .* must be at least"):
        config.from_dict({"data": {"image_size": 64, "resize_size": 32}})
    # a config saved before these keys existed compares equal to today's
    saved = torch.load(DATA / "v0.1-cnn-checkpoint.pt", weights_only=True)["config"]
    assert config.differences(saved, config.from_saved(saved)) == []


def test_a_frozen_backbone_stays_put_and_the_head_learns(tmp_path):
    from conftest import synthetic_cifar

    from hashsdk.train.data import make_split
    from hashsdk.train.loop import train_hash

    images = synthetic_cifar()
    cfg = config.from_dict({
        "data": {"queries_per_class": 3, "train_per_class": 20},
        "hash": {"backbone": "timm/test_resnet", "bits": 12, "epochs": 2, "batch_size": 40,
                 "device": "cpu", "freeze_backbone_epochs": 1, "backbone_lr": 0.5}})
    split = make_split(images, cfg.data)
    saves = []
    import hashsdk.train.loop as loop

    real_save = loop.checkpoint.save

    def save(path, **fields):  # a copy: state_dict() holds the live tensors
        saves.append(dict(fields, state_dict={k: v.clone()
                                              for k, v in fields["state_dict"].items()}))
        real_save(path, **fields)

    loop.checkpoint.save = save
    try:
        train_hash(cfg, images, split, tmp_path / "run", progress=False)
    finally:
        loop.checkpoint.save = real_save
    torch.manual_seed(cfg.hash.seed)
    start = HashNet(**saves[0]["model_args"]).state_dict()
    after1, after2 = (s["state_dict"] for s in saves)
    def moved(a, b, prefix):  # weights, not BatchNorm's running statistics
        return any(not torch.equal(a[k], b[k]) for k in a
                   if k.startswith(prefix) and a[k].is_floating_point() and "running" not in k)

    assert not moved(start, after1, "features.") and moved(start, after1, "hash.")
    assert moved(after1, after2, "features.")
    groups = saves[-1]["optimizer"]["param_groups"]
    assert len(groups) == 2 and [g["lr"] for g in groups] == [0.0, 0.0]  # cosine ends at 0
    assert saves[-1]["scheduler"]["base_lrs"] == [cfg.hash.lr, cfg.hash.lr]


# ---- the same pixels ----------------------------------------------------------------------------


def odd_images(folder: Path) -> list[Path]:
    """Non-square JPEG and PNG files: portrait and landscape, grey, RGB and RGBA, small and
    large, with structure (gradients and blocks) so that resampling matters."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h, mode, ext) in enumerate([(300, 200, "RGB", "jpg"), (200, 300, "RGB", "png"),
                                           (97, 150, "L", "png"), (640, 480, "RGBA", "png"),
                                           (224, 224, "RGB", "jpg"), (50, 40, "RGB", "jpg"),
                                           (181, 333, "L", "jpg"), (400, 120, "RGBA", "png")]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)
        base[rng.integers(0, h):, rng.integers(0, w):] //= 2
        image = Image.fromarray(base).convert(mode)
        paths.append(folder / f"{i}.{ext}")
        image.save(paths[-1])
    return paths


def export_contract_model(tmp_path: Path, backbone: str, size: int) -> tuple[HashNet, Path]:
    """A network with the pretrained input contract of ``backbone`` at ``size`` pixels, saved
    and exported to ONNX."""
    from hashsdk.export.onnx_export import export_onnx

    cfg = config.from_dict({"data": {"image_size": size},
                            "hash": {"backbone": backbone, "pretrained": "imagenet"}})
    spec = lookup_backbone(backbone).contract("imagenet")
    torch.manual_seed(0)
    model = create_model(backbone, 32, image_size=size, mean=list(spec.mean),
                         std=list(spec.std), resize_size=cfg.data.resize_size,
                         interpolation=cfg.data.interpolation).eval()
    checkpoint.save(tmp_path / "ckpt.pt", kind=KIND, model_args=model.model_args,
                    state_dict=model.state_dict(), config=cfg.to_dict())
    export_onnx(tmp_path / "ckpt.pt", tmp_path / "model.onnx")
    return model, tmp_path / "model.onnx"


def torch_codes(model: HashNet, transform, paths: list[Path]) -> np.ndarray:
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return model(x).numpy()


def test_encoder_matches_timm_s_own_evaluation_transform_at_224(tmp_path):
    from timm.data import create_transform, resolve_data_config

    paths = odd_images(tmp_path / "images")
    model, onnx_path = export_contract_model(tmp_path, "timm/test_resnet", 224)
    data_cfg = resolve_data_config({"input_size": (3, 224, 224)},
                                   model=timm.create_model("test_resnet"))
    transform = create_transform(**data_cfg)  # timm's eval transform: Resize(235), crop 224
    assert Encoder(onnx_path).metadata.resize_size == 235
    ours = Encoder(onnx_path).encode(paths, packed=False)
    reference = torch_codes(model, transform, paths)
    assert ((ours > 0) == (reference > 0)).mean() >= 0.999
    assert np.abs(ours - reference).max() < 1e-3


def test_encoder_matches_torchvision_s_transform_at_a_non_default_size(tmp_path):
    from torchvision.transforms._presets import ImageClassification

    paths = odd_images(tmp_path / "images")
    model, onnx_path = export_contract_model(tmp_path, "torchvision/mobilenet_v3_small", 160)
    meta = Encoder(onnx_path).metadata
    assert (meta.input_size, meta.resize_size) == (160, 182)  # 256 / 224 of 160, rounded down
    transform = ImageClassification(crop_size=160, resize_size=182)
    ours = Encoder(onnx_path).encode(paths, packed=False)
    reference = torch_codes(model, lambda im: transform(im), paths)
    assert ((ours > 0) == (reference > 0)).mean() >= 0.999


def write_photo_folder(root: Path, per_class: int = 8) -> None:
    """An ImageFolder (train/ and test/) of non-square photos-like JPEGs, 4 classes."""
    rng = np.random.default_rng(3)
    for split, count in (("train", per_class), ("test", 3)):
        for c in range(4):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
                image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
                image[h // 4:h // 2, c * w // 4:(c + 1) * w // 4] = (220, 40 * c, 90)
                Image.fromarray(image).save(folder / f"{i}.jpg", quality=90)


def test_timm_backbone_from_a_local_file_trains_exports_and_encodes_its_files(tmp_path):
    from safetensors.torch import save_file

    write_photo_folder(tmp_path / "photos")
    torch.manual_seed(3)
    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}
    save_file(state, tmp_path / "weights.safetensors")
    (tmp_path / "run.toml").write_text(
        "[data]\nqueries_per_class = 2\ntrain_per_class = 6\n"
        f"cache_dir = '{tmp_path / 'cache'}'\n"
        "[hash]\nbits = 16\nepochs = 1\nbatch_size = 12\ndevice = 'cpu'\n")
    run = tmp_path / "run"
    done = subprocess.run(
        [str(BIN / "hashsdk-train"), "hash", "--config", str(tmp_path / "run.toml"),
         "--dataset", "imagefolder", "--root", str(tmp_path / "photos"), "--run-dir", str(run),
         "--backbone", "timm/test_resnet", "--pretrained", str(tmp_path / "weights.safetensors"),
         "--image-size", "64", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ckpt = run / "hash-nofakes" / "checkpoint.pt"
    # --quiet: the result against chance, and what to do next; no per-epoch lines
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("mAP@all ") and \
        "(a random ranking: about 0." in lines[0], done.stdout
    assert lines[1] == f"next: hashsdk-export {ckpt} -o model.onnx --verify"
    saved = json.loads((run / "hash-nofakes" / "config.json").read_text())
    assert (saved["data"]["image_size"], saved["data"]["resize_size"]) == (64, 67)
    assert saved["hash"]["backbone_lr"] == 0.1
    ckpt = run / "hash-nofakes" / "checkpoint.pt"
    done = subprocess.run([str(BIN / "hashsdk-export"), str(ckpt), "-o",
                           str(tmp_path / "model.onnx"), "--verify"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "model.onnx.verify.json").read_text())["passed"]
    # the Encoder on the files themselves against torch's evaluation transform of them
    from torchvision import transforms

    model, _ = HashNet.from_checkpoint(ckpt)
    args = model.model_args
    transform = transforms.Compose([
        transforms.Resize(args["resize_size"]), transforms.CenterCrop(args["image_size"]),
        transforms.ToTensor(), transforms.Normalize(args["mean"], args["std"])])
    paths = sorted((tmp_path / "photos").rglob("*.jpg"))
    ours = Encoder(tmp_path / "model.onnx").encode(paths, packed=False)
    assert ((ours > 0) == (torch_codes(model, transform, paths) > 0)).mean() >= 0.999


# ---- checkpoints of earlier versions ------------------------------------------------------------


def test_a_checkpoint_written_before_the_backbone_table_loads_exports_and_evaluates(tmp_path):
    from conftest import write_fashion_like

    from hashsdk.export.onnx_export import export_onnx

    path = DATA / "v0.1-cnn-checkpoint.pt"
    model, ckpt = HashNet.from_checkpoint(path)
    assert "resize_size" not in ckpt["model_args"]
    meta = export_onnx(path, tmp_path / "old.onnx")
    assert meta.resize_size == 0  # trained on squashed images: the Encoder squashes too
    codes = Encoder(tmp_path / "old.onnx").encode(np.zeros((2, 32, 32, 1), np.uint8))
    assert codes.shape == (2, 2)
    # evaluated today on the data it was trained on: the mAP it had then
    (tmp_path / "data").mkdir()
    write_fashion_like(tmp_path / "data")
    done = subprocess.run([str(BIN / "hashsdk-train"), "eval", str(path), "--dataset",
                           "fashion-mnist", "--root", str(tmp_path / "data"), "--config",
                           str(write_protocol(tmp_path)), "--run-dir", str(tmp_path / "run"),
                           "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    then = json.loads((DATA / "v0.1-cnn-eval.json").read_text())["map"]
    assert json.loads(done.stdout)["map"] == pytest.approx(then, abs=1e-12)


def write_protocol(tmp_path: Path) -> Path:
    path = tmp_path / "protocol.toml"
    path.write_text(f"[data]\nqueries_per_class = 3\ntrain_per_class = 10\n"
                    f"cache_dir = '{tmp_path / 'cache'}'\n[hash]\ndevice = 'cpu'\n")
    return path


def test_resuming_a_checkpoint_with_one_optimizer_group(tmp_path):
    # checkpoints from before the backbone had a parameter group of its own resume as they were
    from conftest import synthetic_cifar

    from hashsdk.train.data import make_split
    from hashsdk.train.loop import train_hash

    images = synthetic_cifar()
    cfg = config.from_dict({"data": {"queries_per_class": 3, "train_per_class": 20},
                            "hash": {"bits": 12, "epochs": 2, "batch_size": 40,
                                     "device": "cpu"}})
    split = make_split(images, cfg.data)
    before = train_hash(cfg, images, split, tmp_path / "run", progress=False)["map"]
    saved = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    groups = saved["optimizer"]["param_groups"]
    one = dict(groups[0], params=groups[0]["params"] + groups[1]["params"])
    saved["optimizer"]["param_groups"] = [one]
    saved["scheduler"]["base_lrs"] = saved["scheduler"]["base_lrs"][:1]
    saved["scheduler"]["_last_lr"] = saved["scheduler"]["_last_lr"][:1]
    saved["scheduler"]["lr_lambdas"] = [None]
    saved.pop("format_version")
    checkpoint.save(tmp_path / "run" / "checkpoint.pt", **saved)
    # the run is complete: it restores every state (no error) and evaluates the same weights
    assert train_hash(cfg, images, split, tmp_path / "run", progress=False)["map"] == before
