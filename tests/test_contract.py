"""The input contract (hashsdk.encoder.contract): one object from the backbone table to the
Encoder, and the files exported before it still giving the same outputs, bit for bit."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashsdk import Encoder, HashsdkError, InputContract
from hashsdk.encoder.metadata import ModelMetadata

DATA = Path(__file__).parent / "data"


def _legacy_inputs() -> dict:
    spec = importlib.util.spec_from_file_location("make_v0_1", DATA / "make_v0.1_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inputs()


@pytest.mark.parametrize("name", ["v0.1-cnn-rgb-bicubic.onnx", "v0.1-cnn-grey-squash.onnx"])
def test_models_exported_before_the_contract_give_the_outputs_they_gave_then(name):
    # pinned with hashsdk at f8b5e7d (tests/data/make_v0.1_onnx.py): resize-then-crop bicubic
    # RGB with its own mean and std, and a grey model of the squash era (resize_size 0)
    pinned = json.loads((DATA / "v0.1-onnx-codes.json").read_text())[name]
    items = _legacy_inputs()
    encoder = Encoder(DATA / name, decode_threads=0)
    outputs = encoder.encode(list(items.values()), packed=False)
    codes = encoder.encode(list(items.values()))
    for key, out, code in zip(items, outputs, codes, strict=True):
        assert out.astype("<f4").tobytes().hex() == pinned[key]["outputs"], key
        assert code.tobytes().hex() == pinned[key]["code"], key


def test_a_checkpoint_exported_today_gives_the_outputs_its_export_gave_then(tmp_path):
    from hashsdk.export.onnx_export import export_onnx

    meta = export_onnx(DATA / "v0.1-cnn-rgb-bicubic-checkpoint.pt", tmp_path / "m.onnx")
    assert (meta.input_size, meta.resize_size, meta.interpolation) == (24, 28, "bicubic")
    pinned = json.loads((DATA / "v0.1-onnx-codes.json").read_text())["v0.1-cnn-rgb-bicubic.onnx"]
    items = _legacy_inputs()
    outputs = Encoder(tmp_path / "m.onnx", decode_threads=0).encode(list(items.values()),
                                                                    packed=False)
    for key, out in zip(items, outputs, strict=True):
        want = np.frombuffer(bytes.fromhex(pinned[key]["outputs"]), "<f4")
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-6, err_msg=key)


def test_the_metadata_keys_are_the_contracts_fields_under_their_old_names():
    contract = InputContract(96, 3, 109, "bicubic", (0.5, 0.4, 0.3), (0.2, 0.2, 0.25))
    meta = ModelMetadata.of(contract, 48)
    props = meta.to_props()
    # the names the Encoder of the previous release reads
    assert json.loads(props["hashsdk.input_size"]) == 96
    assert json.loads(props["hashsdk.resize_size"]) == 109
    assert props["hashsdk.interpolation"] == "bicubic"
    assert json.loads(props["hashsdk.mean"]) == [0.5, 0.4, 0.3]
    assert "hashsdk.size" not in props
    assert ModelMetadata.from_props(props, "x").contract == contract


def test_defaults_and_checks():
    c = InputContract()
    assert (c.size, c.channels, c.resize_size, c.interpolation) == (32, 3, 32, "bilinear")
    assert c.mean == c.std == (0.5, 0.5, 0.5)
    assert InputContract(8, 1).mean == (0.5,)
    for bad, match in (({"size": 0}, "size"), ({"channels": 2}, "channels"),
                       ({"size": 32, "resize_size": 30}, "resize_size"),
                       ({"interpolation": "nearest"}, "interpolation"),
                       ({"channels": 1, "mean": (0.5, 0.5, 0.5)}, "mean and std"),
                       ({"std": (0.5, 0.0, 0.5)}, "std")):
        with pytest.raises(HashsdkError, match=match):
            InputContract(**bad)


def test_fit_is_torchvisions_resize_then_centre_crop():
    torchvision = pytest.importorskip("torchvision")
    from torchvision import transforms

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (57, 91, 3), np.uint8))
    contract = InputContract(24, 3, 28, "bilinear")
    theirs = transforms.Compose([
        transforms.Resize(28, transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(24)])(image)
    assert torchvision is not None
    assert (contract.fit_array(image) == np.asarray(theirs)).all()
    squash = InputContract(24, 3, 0)
    assert squash.fit(image).size == (24, 24)


def test_at_size_keeps_the_crop_ratio_and_scale_offset_is_the_normalization():
    timm = InputContract(224, 3, 256, "bicubic", (0.5,) * 3, (0.5,) * 3)
    assert timm.at_size(96).resize_size == 109  # floor(96 * 256 / 224)
    assert timm.at_size(224) is timm
    c = InputContract(4, 3, None, "bilinear", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    x = np.arange(256, dtype=np.float32)
    scale, offset = c.scale_offset()
    for ch in range(3):
        direct = (x / 255 - c.mean[ch]) / c.std[ch]
        np.testing.assert_allclose(x * scale[ch] - offset[ch], direct, atol=1e-5)


def test_the_train_side_holds_the_same_object():
    torch = pytest.importorskip("torch")
    from hashsdk.train import config
    from hashsdk.train.backbones import lookup_backbone
    from hashsdk.train.model import contract_of, create_model

    cfg = config.from_dict({"data": {"image_size": 40}, "hash": {"backbone": "cnn"}})
    contract = config.input_contract(cfg.data, 1, [0.3], [0.2])
    assert (contract.size, contract.resize_size, contract.interpolation) == (40, 40, "bilinear")
    model = create_model("cnn", 12, contract=contract)
    assert model.contract == contract
    assert contract_of(model.model_args) == contract
    assert lookup_backbone("cnn").contract(None) is None
    # a checkpoint from before resize_size was recorded: trained on squashed images
    legacy = dict(model.model_args)
    del legacy["resize_size"], legacy["interpolation"]
    assert contract_of(legacy).resize_size == 0
    assert torch is not None


def _textured(h: int, w: int, seed: int, channels: int = 3) -> Image.Image:
    # smooth random texture (no row or column of one colour), as an upsampled photo is
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), channels), np.uint8)
    image = Image.fromarray(small.squeeze(-1) if channels == 1 else small)
    return image.resize((w, h), Image.BICUBIC)


@pytest.mark.parametrize("channels", [3, 1])
def test_trim_cuts_a_frame_of_one_colour_and_nothing_else(channels):
    from hashsdk.edits import pad
    from hashsdk.encoder.contract import TRIM_KEEP, trim_border

    for seed in range(5):
        original = _textured(60 + seed * 7, 80, seed, channels)
        framed = pad(original, np.random.default_rng(seed)).convert(original.mode)
        assert framed.size != original.size
        assert np.array_equal(np.asarray(trim_border(framed)), np.asarray(original))
        assert trim_border(original) is original  # no frame: the image itself
        # a band on one side only, of the top-left pixel's colour: that side alone is cut
        banded = np.asarray(original).copy()
        banded[-12:] = banded[0, 0]
        cut = trim_border(Image.fromarray(banded))
        assert np.array_equal(np.asarray(cut), banded[:-12])
    # a JPEG of a framed photo: the frame's flat part is cut, the ringing beside the photo
    # (a few pixels over the tolerance) stays: most of the 26 px a side goes
    import io

    original = _textured(256, 256, 9)
    raw = io.BytesIO()
    pad(original, np.random.default_rng(1)).save(raw, "JPEG", quality=75)
    assert all(256 <= side <= 256 + 16 for side in trim_border(Image.open(raw)).size)
    # an object on a wide plain background keeps its background: the cut would keep less
    # than TRIM_KEEP of a side
    canvas = np.full((100, 100, 3), 255, np.uint8)
    canvas[40:40 + int(100 * TRIM_KEEP) - 2, 30:80] = 0
    assert trim_border(Image.fromarray(canvas)).size == (100, 100)
    assert trim_border(Image.fromarray(np.full((9, 9, 3), 7, np.uint8))).size == (9, 9)


def test_a_trimming_contract_fits_a_framed_copy_as_its_original_and_says_so():
    from hashsdk.edits import pad

    contract = InputContract(32, 3, 36, "bicubic", trim=True)
    original = _textured(50, 70, 3)
    framed = pad(original, np.random.default_rng(0))
    assert np.array_equal(contract.fit_array(framed), contract.fit_array(original))
    plain = InputContract(32, 3, 36, "bicubic")
    assert not np.array_equal(plain.fit_array(framed), plain.fit_array(original))
    # an image at the input size may still have a frame: never taken as fitted
    assert InputContract(32).is_fitted(32, 32)
    assert not InputContract(32, trim=True).is_fitted(32, 32)
    with pytest.raises(HashsdkError, match="trim: expected true or false"):
        InputContract(32, trim="yes")
    # the metadata: a trimming model is version 2 (a version-1 reader refuses it rather than
    # encode untrimmed); files without the key are untrimmed version 1
    props = ModelMetadata.of(contract, 16).to_props()
    assert json.loads(props["hashsdk.format_version"]) == 2
    assert json.loads(props["hashsdk.trim"]) is True
    assert ModelMetadata.from_props(props, "x").contract == contract
    old = {k: v for k, v in ModelMetadata.of(plain, 16).to_props().items()
           if k != "hashsdk.trim"}
    assert json.loads(old["hashsdk.format_version"]) == 1
    assert ModelMetadata.from_props(old, "x").contract.trim is False
    with pytest.raises(HashsdkError, match="version 3; this hashsdk reads 1 and 2"):
        ModelMetadata.from_props(dict(props, **{"hashsdk.format_version": "3"}), "x")
