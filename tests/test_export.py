import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import blocking_imports, structured_images, trained_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from hashsdk import Encoder, HammingIndex, HashsdkError  # noqa: E402
from hashsdk.export.onnx_export import export_onnx, metadata_for, read_metadata  # noqa: E402
from hashsdk.export.verify import compare, verify  # noqa: E402
from hashsdk.train import checkpoint  # noqa: E402
from hashsdk.train.evaluate import encode as torch_encode  # noqa: E402

BIN = Path(sys.executable).parent


def test_plain_onnxruntime_matches_torch(exported):
    import onnxruntime as ort

    root, model, _ = exported
    session = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # the named dynamic batch
    for n in (1, 7, 64):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        (out,) = session.run(None, {"images": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert out.shape == (n, 24)
        assert np.abs(out - ref).max() < 1e-4
        assert ((out > 0) == (ref > 0)).mean() >= 0.999


@pytest.mark.parametrize("features", [False, True])
def test_evaluation_through_onnxruntime_matches_eager_torch(exported, monkeypatch, features):
    """Large CPU encodes in training's evaluation run through onnxruntime; forced here on 300
    images, they give torch's outputs (and features), and the path is taken (not a silent
    fallback to torch)."""
    from hashsdk.train import evaluate

    _, model, _ = exported
    images, _ = structured_images(300, seed=6)
    ref = torch_encode(model, images, torch.device("cpu"), features=features)
    taken = []
    runner = evaluate._onnx_runner
    monkeypatch.setattr(evaluate, "ORT_MIN_IMAGES", 1)
    monkeypatch.setattr(evaluate, "_onnx_runner",
                        lambda *a: taken.append(runner(*a)) or taken[-1])
    out = torch_encode(model, images, torch.device("cpu"), batch_size=128, features=features)
    assert taken and taken[0] is not None and out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-4
    assert ((out > 0) == (ref > 0)).mean() >= 0.999


def test_evaluation_through_onnxruntime_of_a_flip_averaged_model_at_any_batch(exported,
                                                                            monkeypatch):
    """The traced export's example batch is 2; encodes of other batch sizes through it average
    each image with its own mirror image (the oracle: two plain encodes)."""
    from hashsdk.train import evaluate
    from hashsdk.train.model import HashNet

    root, _, _ = exported
    model, _ = HashNet.from_checkpoint(root / "ckpt.pt")
    model.flip_average = True
    images, _ = structured_images(300, seed=7)
    ref = torch_encode(model, images, torch.device("cpu"))
    model.flip_average = False
    plain = torch_encode(model, images, torch.device("cpu"))
    mirror = torch_encode(model, np.ascontiguousarray(images[:, :, ::-1]), torch.device("cpu"))
    assert np.abs(ref - (plain + mirror) / 2).max() < 1e-5
    model.flip_average = True
    monkeypatch.setattr(evaluate, "ORT_MIN_IMAGES", 1)
    for batch in (7, 128):
        out = torch_encode(model, images, torch.device("cpu"), batch_size=batch)
        assert np.abs(out - ref).max() < 1e-4


def test_a_flip_averaged_model_exports_its_average_and_says_so(exported, tmp_path):
    """The graph itself averages each image's outputs with its mirror image's: onnxruntime
    and the Encoder give the flip-averaged torch outputs, and the metadata records it."""
    import onnxruntime as ort

    from hashsdk.train.model import HashNet

    root, _, _ = exported
    ckpt = checkpoint.load(root / "ckpt.pt", "hashsdk.hashnet")
    args = dict(ckpt["model_args"], flip_average=True)
    checkpoint.save(tmp_path / "flip.pt", kind="hashsdk.hashnet", model_args=args,
                    state_dict=ckpt["state_dict"],
                    config={"data": {"dataset": "synthetic"},
                            "hash": {"loss": "pairwise", "flip_average": True}})
    export_onnx(tmp_path / "flip.pt", tmp_path / "flip.onnx")
    model, _ = HashNet.from_checkpoint(tmp_path / "flip.pt")
    x = np.random.default_rng(3).standard_normal((6, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        t = torch.from_numpy(x)
        ref = model(t).numpy()
        model.flip_average = False
        mean = ((model(t) + model(torch.flip(t, dims=[3]))) / 2).numpy()
    assert np.abs(ref - mean).max() < 1e-6
    session = ort.InferenceSession(str(tmp_path / "flip.onnx"),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x})
    assert np.abs(out - ref).max() < 1e-4
    encoder = Encoder(str(tmp_path / "flip.onnx"))
    assert encoder.metadata.extra["training"]["flip_average"] is True
    images, _ = structured_images(8, seed=4)
    codes = encoder.encode(images)
    mirrored = encoder.encode(np.ascontiguousarray(images[:, :, ::-1]))
    assert np.array_equal(codes, mirrored)  # an image and its mirror image: one code


def test_export_turns_flip_averaging_on_for_a_run_trained_without_it(exported, tmp_path):
    """hashsdk-export --flip-average: the graph of a checkpoint trained without flip averaging
    averages each image's outputs with its mirror image's (the oracle: two plain passes of the
    torch network), the metadata says so, and the checkpoint itself is left as it was. Refused
    from an ONNX file (its graph is fixed) and for mirror-invariant features."""
    import onnxruntime as ort
    from click.testing import CliRunner

    from hashsdk.export.cli import main
    from hashsdk.train.model import HashNet

    root, plain, _ = exported
    before = (root / "ckpt.pt").read_bytes()
    result = CliRunner().invoke(main, [str(root / "ckpt.pt"), "--flip-average", "-o",
                                       str(tmp_path / "flip.onnx")])
    assert result.exit_code == 0, result.output
    assert "flip-averaged" in result.output
    assert (root / "ckpt.pt").read_bytes() == before
    x = np.random.default_rng(8).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        t = torch.from_numpy(x)
        want = ((plain.eval()(t) + plain(torch.flip(t, dims=[3]))) / 2).numpy()
    session = ort.InferenceSession(str(tmp_path / "flip.onnx"),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x})
    assert np.abs(out - want).max() < 1e-4
    assert np.abs(out - plain(torch.from_numpy(x)).detach().numpy()).max() > 1e-3
    training = Encoder(str(tmp_path / "flip.onnx")).metadata.extra["training"]
    assert training["flip_average"] is True and training["training_edits"] is None

    refused = CliRunner().invoke(main, [str(root / "model.onnx"), "--flip-average", "--int8",
                                        "-o", str(tmp_path / "x.onnx")])
    assert refused.exit_code != 0 and "--flip-average needs a checkpoint" in refused.output
    mirror = HashNet(**dict(plain.model_args, mirror_invariant=True))
    checkpoint.save(tmp_path / "mirror.pt", kind="hashsdk.hashnet",
                    model_args=mirror.model_args, state_dict=mirror.state_dict(),
                    config={"data": {"dataset": "synthetic"}, "hash": {"loss": "pairwise"}})
    refused = CliRunner().invoke(main, [str(tmp_path / "mirror.pt"), "--flip-average", "-o",
                                        str(tmp_path / "y.onnx")])
    assert refused.exit_code != 0 and "already mirror-invariant" in refused.output
    assert not (tmp_path / "y.onnx").exists()


def test_a_low_passed_model_exports_its_filter_and_says_so(exported, tmp_path):
    """input_blur's filter is part of the graph: onnxruntime gives the torch outputs (which
    differ from the unfiltered network's), and the metadata records the sigma."""
    import onnxruntime as ort

    from hashsdk.train.model import HashNet

    root, plain, _ = exported
    ckpt = checkpoint.load(root / "ckpt.pt", "hashsdk.hashnet")
    checkpoint.save(tmp_path / "blur.pt", kind="hashsdk.hashnet",
                    model_args=dict(ckpt["model_args"], input_blur=2.0),
                    state_dict=ckpt["state_dict"],
                    config={"data": {"dataset": "synthetic"},
                            "hash": {"loss": "pairwise", "input_blur": 2.0}})
    export_onnx(tmp_path / "blur.pt", tmp_path / "blur.onnx")
    model, _ = HashNet.from_checkpoint(tmp_path / "blur.pt")
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
        unfiltered = plain.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(ref - unfiltered).max() > 1e-2
    session = ort.InferenceSession(str(tmp_path / "blur.onnx"),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x})
    assert np.abs(out - ref).max() < 1e-4
    assert Encoder(str(tmp_path / "blur.onnx")).metadata.extra["training"]["input_blur"] == 2.0


def test_the_median_filter_gem_pooling_and_dct_features_export_and_say_so(tmp_path):
    """input_median's filter (slices and a TopK: ONNX has no median), gem pooling and the DCT
    features are part of the graph: onnxruntime gives the torch outputs, which differ from the
    network's without the filter and the pooling, and the metadata records all three."""
    import onnxruntime as ort

    from hashsdk.train.model import HashNet, create_model

    torch.manual_seed(0)
    model = create_model("timm/test_efficientnet", 16, image_size=32, feature_block=2,
                         input_blur=1.0, input_median=3, feature_pool="gem",
                         dct_features=4, mirror_invariant=True).eval()
    checkpoint.save(tmp_path / "m.pt", kind="hashsdk.hashnet", model_args=model.model_args,
                    state_dict=model.state_dict(),
                    config={"data": {"dataset": "synthetic"},
                            "hash": {"loss": "contrastive", "input_blur": 1.0,
                                     "feature_block": 2, "input_median": 3,
                                     "feature_pool": "gem", "dct_features": 4}})
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    plain = HashNet(**dict(model.model_args, input_median=0, feature_pool="avg")).eval()
    plain.load_state_dict(model.state_dict())
    x = np.random.default_rng(6).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(ref - plain(torch.from_numpy(x)).numpy()).max() > 1e-2
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x})
    assert np.abs(out - ref).max() < 1e-4
    training = Encoder(str(tmp_path / "m.onnx")).metadata.extra["training"]
    assert (training["input_median"], training["feature_pool"], training["dct_features"]) == (
        3, "gem", 4)


def test_a_trimming_model_gives_a_framed_copy_its_originals_outputs(exported, tmp_path):
    """A checkpoint whose contract trims exports it (metadata version 2); the Encoder then
    cuts the frame off a padded copy (a file, a PIL image), and its outputs are the
    original's; the untrimmed model's are not."""
    from PIL import Image

    from hashsdk.edits import pad

    root, _, _ = exported
    ckpt = checkpoint.load(root / "ckpt.pt", "hashsdk.hashnet")
    checkpoint.save(tmp_path / "trim.pt", kind="hashsdk.hashnet",
                    model_args=dict(ckpt["model_args"], trim=True),
                    state_dict=ckpt["state_dict"],
                    config={"data": {"dataset": "synthetic", "trim": True},
                            "hash": {"loss": "pairwise"}})
    meta = export_onnx(tmp_path / "trim.pt", tmp_path / "trim.onnx")
    assert meta.trim and meta.format_version == 2
    trimming, plain = Encoder(str(tmp_path / "trim.onnx")), Encoder(str(root / "model.onnx"))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (12, 12, 3), np.uint8)
    original = Image.fromarray(small).resize((96, 96), Image.BICUBIC)
    framed = pad(original, rng)
    framed.save(tmp_path / "framed.png")
    want = trimming.encode([original], packed=False)
    for copy in (framed, str(tmp_path / "framed.png")):
        assert np.allclose(trimming.encode([copy], packed=False), want, atol=1e-6)
    assert not np.allclose(plain.encode([framed], packed=False),
                           plain.encode([original], packed=False), atol=1e-3)


def test_metadata_round_trip(exported):
    root, model, meta = exported
    ckpt = checkpoint.load(root / "ckpt.pt")
    assert read_metadata(root / "model.onnx") == meta == metadata_for(ckpt, root / "ckpt.pt")
    encoder = Encoder(root / "model.onnx")
    assert encoder.metadata == meta and encoder.bits == 24 and encoder.input_size == 32
    assert meta.mean == tuple(model.model_args["mean"]) and meta.backbone == "cnn"
    assert len(meta.checkpoint_sha256) == 64 and "MSB-first" in meta.bit_convention


def test_encoder_matches_torch_on_the_same_images(exported):
    root, model, _ = exported
    images, _ = structured_images(300, seed=5)
    ref = torch_encode(model, images, torch.device("cpu"))
    out = Encoder(root / "model.onnx").encode(images, packed=False)
    assert ((ref > 0) == (out > 0)).mean() >= 0.999
    assert np.abs(ref - out).max() < 1e-4


def test_every_input_type_gives_the_same_codes(exported, tmp_path):
    from PIL import Image

    root, _, meta = exported
    encoder = Encoder(root / "model.onnx")
    images, _ = structured_images(3, seed=9)
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    want = encoder.encode(images)                          # uint8 batch (N, H, W, C)
    assert want.shape == (3, 3) and want.dtype == np.uint8
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    assert (encoder.encode(paths) == want).all()                             # Path objects
    assert (encoder.encode([str(p) for p in paths]) == want).all()           # str paths
    assert (encoder.encode([Image.open(p) for p in paths]) == want).all()    # PIL images
    assert (encoder.encode(list(images)) == want).all()                      # list of HWC
    single = encoder.encode(images[1])                                       # one item: a row
    assert single.shape == (3,) and (single == want[1]).all()
    assert (encoder.encode(str(paths[1])) == want[1]).all()
    normalized = ((images.transpose(0, 3, 1, 2) / 255.0 - np.array(meta.mean)[:, None, None])
                  / np.array(meta.std)[:, None, None]).astype(np.float32)
    assert (encoder.encode(normalized) == want).all()                        # float NCHW
    outputs = encoder.encode(images, packed=False)
    assert outputs.dtype == np.float32 and outputs.shape == (3, 24)
    # a larger image is resized to the model's input size
    big = np.asarray(Image.fromarray(images[0]).resize((64, 64), Image.BILINEAR))
    assert encoder.encode(big).shape == (3,)


def test_encode_iter_streams_in_batches(exported):
    root, _, _ = exported
    encoder = Encoder(root / "model.onnx")
    images, _ = structured_images(50)
    batches = list(encoder.encode_iter(iter(list(images)), batch_size=16))
    assert [len(b.codes) for b in batches] == [16, 16, 16, 2]
    assert np.concatenate([b.index for b in batches]).tolist() == list(range(50))
    assert (np.concatenate([b.codes for b in batches]) == encoder.encode(images)).all()


def test_an_unreadable_image_raises_by_default_and_skip_keeps_the_positions(exported, tmp_path):
    from PIL import Image

    from hashsdk.encoder.preprocess import UnreadableImage

    root, _, _ = exported
    images, _ = structured_images(2)
    Image.fromarray(images[0]).save(tmp_path / "good0.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(images[1]).save(tmp_path / "good1.png")
    encoder = Encoder(root / "model.onnx")
    paths = [tmp_path / "good0.png", tmp_path / "broken.jpg", tmp_path / "good1.png"]
    with pytest.raises(UnreadableImage, match="broken.jpg") as raised:
        encoder.encode(paths)
    assert raised.value.path == str(tmp_path / "broken.jpg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        codes, index = encoder.encode(paths, on_error="skip", return_index=True)
    assert index.tolist() == [0, 2] and (codes == encoder.encode(images)).all()
    # without a bad file, return_index is every position
    assert encoder.encode(images, return_index=True)[1].tolist() == [0, 1]
    batch = next(encoder.encode_iter(paths))
    assert batch.index.tolist() == [0, 2] and batch.skipped == [str(tmp_path / "broken.jpg")]
    with pytest.raises(HashsdkError, match="on_error must be 'raise' or 'skip'"):
        encoder.encode(paths, on_error="ignore")


@pytest.mark.parametrize("bad, message", [
    ([], "empty collection"),
    (np.zeros((2, 1, 32, 32), np.float32), r"normalized NCHW rows of shape \(3, 32, 32\)"),
    (np.full((3, 32, 32), np.nan, np.float32), "NaN or inf"),
    (np.zeros((32, 32, 5), np.uint8), "C = 1 or 3"),
    (np.zeros((2, 32, 32, 3), np.int16), "dtype int16"),
    (12, "got int"),
])
def test_bad_input_names_what_was_expected(exported, bad, message):
    root, _, _ = exported
    with pytest.raises(HashsdkError, match=message):
        Encoder(root / "model.onnx").encode(bad)


def test_bad_model_files(tmp_path, exported):
    import onnx

    root, _, _ = exported
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(HashsdkError, match="not a loadable ONNX model"):
        Encoder(tmp_path / "corrupt.onnx")
    with pytest.raises(HashsdkError, match="model file not found"):
        Encoder(tmp_path / "missing.onnx")
    proto = onnx.load(root / "model.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "plain.onnx")
    with pytest.raises(HashsdkError, match="no hashsdk metadata"):
        Encoder(tmp_path / "plain.onnx")
    with pytest.raises(HashsdkError, match="no hashsdk metadata"):
        read_metadata(tmp_path / "plain.onnx")
    with pytest.raises(HashsdkError, match="backend must be one of"):
        Encoder(root / "model.onnx", backend="openvino")


def test_export_refuses_another_kind_of_checkpoint(tmp_path):
    checkpoint.save(tmp_path / "gan.pt", kind="hashsdk.dcgan", model_args={})
    with pytest.raises(HashsdkError, match="expected 'hashsdk.hashnet'"):
        export_onnx(tmp_path / "gan.pt", tmp_path / "m.onnx")
    with pytest.raises(HashsdkError, match="checkpoint not found"):
        export_onnx(tmp_path / "none.pt", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_grey_model(tmp_path):
    trained_checkpoint(tmp_path / "g.pt", channels=1, bits=12, steps=2)
    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx")
    encoder = Encoder(tmp_path / "g.onnx")
    rgb, _ = structured_images(4)
    grey = (rgb.mean(axis=3, keepdims=True)).astype(np.uint8)
    assert encoder.metadata.channels == 1
    assert encoder.encode(rgb).shape == (4, 2)  # RGB converted to grey
    assert encoder.encode(grey).shape == (4, 2)


def test_encoder_is_safe_to_share_between_threads(exported):
    root, _, _ = exported
    encoder = Encoder(root / "model.onnx", threads=1)
    batches = [structured_images(40, seed=s)[0] for s in range(8)]
    alone = [encoder.encode(b) for b in batches]
    together = [None] * 8

    def work(i):
        together[i] = encoder.encode(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((a == b).all() for a, b in zip(alone, together, strict=True))


def test_metadata_keeps_keys_it_has_no_field_for():
    from hashsdk.encoder.metadata import ModelMetadata

    meta = ModelMetadata(bits=48, input_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    props = meta.to_props()
    # what the TensorRT builder writes into an engine's sidecar beside the model's keys
    props["hashsdk.engine"] = json.dumps({"precision": "fp16", "batch": [1, 64, 256]})
    props["hashsdk.note"] = "not json"
    read = ModelMetadata.from_props(props, "engine.json")
    assert read.extra == {"engine": {"precision": "fp16", "batch": [1, 64, 256]},
                          "note": "not json"}
    assert ModelMetadata.from_props(read.to_props(), "again") == read
    # files of earlier versions kept extras in one "hashsdk.extra" key
    old = meta.to_props() | {"hashsdk.extra": json.dumps({"engine": {"precision": "fp32"}})}
    assert ModelMetadata.from_props(old, "old").extra == {"engine": {"precision": "fp32"}}
    with pytest.raises(HashsdkError, match="bits must be from 1 to 4096"):
        ModelMetadata.from_props(meta.to_props() | {"hashsdk.bits": "5000"}, "big")


def test_verify_reports_and_detects_disagreement(exported):
    root, model, _ = exported
    images, labels = structured_images(220, seed=3)
    report = verify(str(root / "model.onnx"), model, images, labels, queries=20)
    assert report.passed and report.bit_agreement >= 0.999 and report.images == 220
    assert report.map_exported == pytest.approx(report.map_torch, abs=0.01)
    ref = np.random.default_rng(0).standard_normal((120, 16))
    broken = ref.copy()
    broken[:, :2] *= -1  # two of sixteen bits flipped everywhere
    bad = compare(ref, broken, np.arange(120) % 3, 20)
    assert not bad.passed and bad.bit_agreement == pytest.approx(14 / 16)


def test_encoder_works_where_torch_cannot_be_imported(exported):
    root, _, _ = exported
    code = blocking_imports("torch", "torchvision", "onnx") + (
        "import numpy as np\n"
        "from hashsdk import Encoder, HammingIndex\n"
        f"enc = Encoder({str(root / 'model.onnx')!r})\n"
        "codes = enc.encode(np.zeros((3, 32, 32, 3), np.uint8))\n"
        "index = HammingIndex(enc.bits); index.add(codes)\n"
        "print(index.search(codes[:1], 1)[1][0][0], codes.shape)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "0"


def hashsdk(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hashsdk"), *map(str, args)], capture_output=True,
                          text=True)


def test_cli_export_then_folder_to_index_to_search(tmp_path):
    from PIL import Image

    trained_checkpoint(tmp_path / "ckpt.pt")
    run = subprocess.run([str(BIN / "hashsdk-export"), str(tmp_path / "ckpt.pt"), "-o",
                          str(tmp_path / "model.onnx")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    images, _ = structured_images(12)
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for i, im in enumerate(images):
        folder = tmp_path / "photos" / ("sub" if i % 2 else "")
        Image.fromarray(im).save(folder / f"{i:02d}.png")
    (tmp_path / "photos" / "05-broken.png").write_bytes(b"junk")  # in the middle of the list
    db, model = tmp_path / "db.hidx", tmp_path / "model.onnx"
    run = hashsdk("index", "build", "--model", model, tmp_path / "photos", "-o", db)
    assert run.returncode == 0, run.stderr
    assert "12 images, 24 bits" in run.stdout and "05-broken.png" in run.stderr
    stored = (tmp_path / "db.hidx.paths.txt").read_text().splitlines()
    assert len(stored) == 12 and len(set(stored)) == 12 and "05-broken.png" not in str(stored)
    assert all(p.startswith("photos/") for p in stored)  # relative to the index's folder
    paths = [str(tmp_path / p) for p in stored]
    # id i is the image on line i, after the skipped file as before it
    index, encoder = HammingIndex.load(db), Encoder(model)
    assert index.ids.tolist() == list(range(12))
    assert (index.codes == encoder.encode(paths)).all()
    run = hashsdk("encode", model, paths[3], "-o", tmp_path / "q.npy")
    assert run.returncode == 0, run.stderr
    run = hashsdk("search", db, tmp_path / "q.npy", "-k", "12", "--json")
    (found,) = json.loads(run.stdout)
    assert found["query"] == 0 and found["results"][0]["distance"] == 0
    assert all(r["path"] == paths[r["id"]] for r in found["results"])
    # image 3 itself among the hits at distance 0 (another image may share its code)
    assert paths[3] in [r["path"] for r in found["results"] if r["distance"] == 0]
    # --bits that disagrees with the model is refused, before anything is encoded
    run = hashsdk("index", "build", "--model", model, "--bits", "48", tmp_path / "photos",
                  "-o", tmp_path / "other.hidx")
    assert run.returncode != 0 and not (tmp_path / "other.hidx").exists()
    assert "--bits 48 disagrees with" in run.stderr and "24-bit codes" in run.stderr
    search_by_image(tmp_path, db, model, paths)


def search_by_image(tmp_path, db, model, paths):
    """``hashsdk search INDEX --model M QUERY...``: the nearest images by path."""
    run = hashsdk("search", db, "--model", model, paths[3], paths[8], "-k", "2")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 6 and lines[0] == paths[3] and lines[3] == paths[8]
    for hit in lines[1:3] + lines[4:6]:
        assert hit.split()[1] in paths  # distance, then the image's path
    assert lines[1].split()[0] == lines[4].split()[0] == "0"
    run = hashsdk("search", db, "--model", model, paths[5], "-k", "12", "--json")
    (record,) = json.loads(run.stdout)
    assert record["query"] == paths[5] and len(record["results"]) == 12
    assert {"id": 5, "distance": 0, "path": paths[5]} in record["results"]
    assert all(r["path"] == paths[r["id"]] for r in record["results"])
    distances = [r["distance"] for r in record["results"]]
    assert distances == sorted(distances) and distances[0] == 0
    # a paths file that is not the index's pair is refused
    (tmp_path / "db.hidx.paths.txt").write_text("\n".join(paths[:-1]) + "\n")
    run = hashsdk("search", db, "--model", model, paths[3])
    assert run.returncode == 1 and "lists 11 images but" in run.stderr
    assert "holds 12 codes" in run.stderr and "Traceback" not in run.stderr
    run = hashsdk("search", db, paths[3], paths[4])
    assert run.returncode == 1 and "expected one QUERIES.npy, or --model" in run.stderr


def test_cli_export_errors(tmp_path, exported):
    root, _, _ = exported
    run = subprocess.run([str(BIN / "hashsdk-export"), str(root / "model.onnx"), "-o",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert run.returncode != 0 and "pass --trt" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([str(BIN / "hashsdk-export"), str(tmp_path / "nothing.pt"), "-o",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert run.returncode != 0 and "file not found" in run.stderr


def test_tensorrt_engine_build_and_encode(exported, tmp_path):
    pytest.importorskip("tensorrt")
    from hashsdk.export.tensorrt_build import build_engine

    root, model, _ = exported
    images, _ = structured_images(40)
    report = build_engine(root / "model.onnx", tmp_path / "m.engine", fp16=True,
                          max_batch=64, check=(images, "structured images"))
    assert report.bit_agreement_vs_fp32 is not None and report.passed
    encoder = Encoder(tmp_path / "m.engine")
    ref = Encoder(root / "model.onnx", device="cpu").encode(images, packed=False)
    out = encoder.encode(images, packed=False, batch_size=64)
    assert ((ref > 0) == (out > 0)).mean() > 0.95


def test_tensorrt_missing_gives_a_clear_error(exported, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from hashsdk.export.tensorrt_build import build_engine

    root, _, _ = exported
    with pytest.raises(HashsdkError, match=r"pip install 'hashsdk\[trt\]'"):
        build_engine(root / "model.onnx", tmp_path / "m.engine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(HashsdkError, match="tensorrt and cuda-python"):
            Encoder(tmp_path / "m.engine")


def test_engine_from_onnx_needs_no_torch_and_verify_needs_real_images(exported, tmp_path):
    # --trt from an ONNX file with only the trt extra: torch blocked, the one thing missing
    # here is TensorRT itself, and the error says so
    root, _, _ = exported
    export = [str(BIN / "hashsdk-export"), str(root / "model.onnx"), "--trt", "--fp16", "-o",
              str(tmp_path / "m.engine")]
    code = blocking_imports("torch", "tensorrt") + (
        "import sys; from hashsdk.export.cli import main\n"
        f"sys.argv = {export!r}\n"
        "try:\n    main()\nexcept SystemExit as e:\n    sys.exit(e.code)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1 and "--trt needs TensorRT" in run.stderr, run.stderr
    assert "torch" not in run.stderr.replace("--trt", "")
    # --verify from an ONNX file says why it cannot without real images, before any build
    run = subprocess.run(export + ["--verify"], capture_output=True, text=True)
    assert run.returncode == 1 and "needs --images FOLDER" in run.stderr
    run = subprocess.run(export + ["--images", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1 and "--images applies to --trt --verify" in run.stderr


def test_bit_agreement_counts_the_bits_two_models_share(exported):
    from hashsdk.encoder.backends.onnxruntime import OnnxRuntimeBackend
    from hashsdk.export.tensorrt_build import bit_agreement

    root, _, _ = exported
    reference = OnnxRuntimeBackend(root / "model.onnx", "cpu")
    images, _ = structured_images(20)

    class Flipped:  # the reference with its first bit inverted: 1 of `bits` bits disagrees
        metadata = reference.metadata

        def run(self, x):
            out = reference.run(x)
            out[:, 0] = -out[:, 0]
            return out

    assert bit_agreement(reference, reference, images, batch=7) == 1.0
    share = bit_agreement(Flipped(), reference, images, batch=7)
    assert share == pytest.approx(1 - 1 / reference.metadata.bits)
    with pytest.raises(HashsdkError, match="at least one image"):
        bit_agreement(reference, reference, images[:0])


def test_int8_model_quantizes_the_body_and_keeps_the_hash_layer_in_fp32(exported, tmp_path):
    import onnx

    from hashsdk.export.quantize import quantize_int8

    root, _, meta = exported
    calibration, _ = structured_images(64, seed=21)
    out = quantize_int8(root / "model.onnx", tmp_path / "m.int8.onnx", calibration, "test set")
    assert out.precision == "int8" and out.extra["calibration"]["images"] == 64
    assert read_metadata(tmp_path / "m.int8.onnx") == out
    proto = onnx.load(tmp_path / "m.int8.onnx")
    ops = [n.op_type for n in proto.graph.node]
    weights = {i.name: i.data_type for i in proto.graph.initializer}
    assert ops.count("QuantizeLinear") >= 9 and ops[-2:] == ["Gemm", "Tanh"]
    assert sum(t == onnx.TensorProto.INT8 for t in weights.values()) >= 9  # conv weights
    assert weights["net.hash.weight"] == onnx.TensorProto.FLOAT
    images, _ = structured_images(300, seed=22)
    fp32 = Encoder(root / "model.onnx").encode(images, packed=False)
    int8 = Encoder(tmp_path / "m.int8.onnx").encode(images, packed=False)
    assert ((fp32 > 0) == (int8 > 0)).mean() > 0.95
    assert 0 < np.abs(fp32 - int8).max() < 0.5  # quantized, not the same model
    with pytest.raises(HashsdkError, match=r"calibration images: expected uint8 \(N, 32, 32, 3\)"):
        quantize_int8(root / "model.onnx", tmp_path / "x.onnx", calibration[:, :16], "bad")
    with pytest.raises(HashsdkError, match="already int8"):
        quantize_int8(tmp_path / "m.int8.onnx", tmp_path / "x.onnx", calibration, "again")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_int8_from_an_onnx_model_and_a_folder(exported, tmp_path):
    from PIL import Image

    root, _, _ = exported
    images, _ = structured_images(20, seed=23)
    (tmp_path / "calib").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / "calib" / f"{i}.png")
    export = BIN / "hashsdk-export"
    run = subprocess.run([str(export), str(root / "model.onnx"), "--target", "int8",
                          "--calibration", "8", "--calibration-dir", str(tmp_path / "calib"),
                          "-o", str(tmp_path / "m.int8.onnx")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "INT8, calibrated on 8 images of the folder" in run.stdout
    assert read_metadata(tmp_path / "m.int8.onnx").extra["calibration"]["images"] == 8
    for args, message in [
        (["--int8"], "needs --calibration-dir"),
        (["--int8", "--trt"], "TensorRT engines take --fp16, not --int8"),
        (["--int8", "--verify", "--calibration-dir", str(tmp_path / "calib")],
         "needs the checkpoint"),
        (["--int8", "--calibration-dir", str(tmp_path / "none")], "calibration folder not found"),
        ([], "already ONNX"),
        (["--target", "onnx"], "already ONNX"),
        (["--target", "int8", "--trt"], "--target int8 and --trt disagree"),
        (["--target", "int8", "--fp16"], "--fp16 applies to --trt"),
        (["--trt", "--calibration-dir", str(tmp_path / "calib")],
         "--calibration-dir applies to --int8"),
    ]:
        run = subprocess.run([str(export), str(root / "model.onnx"), *args, "-o",
                              str(tmp_path / "y.onnx")], capture_output=True, text=True)
        assert run.returncode != 0 and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr and not (tmp_path / "y.onnx").exists()
