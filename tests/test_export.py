import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import blocking_imports

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from hashsdk import Encoder, HammingIndex, HashsdkError  # noqa: E402
from hashsdk.export.onnx_export import export_onnx, metadata_for, read_metadata  # noqa: E402
from hashsdk.export.verify import compare, verify  # noqa: E402
from hashsdk.train import checkpoint  # noqa: E402
from hashsdk.train.evaluate import encode as torch_encode  # noqa: E402
from hashsdk.train.losses import RealLoss  # noqa: E402
from hashsdk.train.model import create_model  # noqa: E402

BIN = Path(sys.executable).parent


def structured_images(n, seed=0, channels=3):
    """Images whose class is a bright patch at a class-specific place, labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    x = rng.integers(0, 60, (n, 32, 32, channels), dtype=np.uint8)
    for i, c in enumerate(labels):
        x[i, 4 + 6 * c:12 + 6 * c, 4 + 6 * c:12 + 6 * c] = 230
    return x, labels


def trained_checkpoint(path, channels=3, bits=24, steps=30):
    """A small network trained for a few steps, saved as a training checkpoint."""
    torch.manual_seed(0)
    images, labels = structured_images(256, channels=channels)
    mean = (images.reshape(-1, channels) / 255).mean(0).tolist()
    std = (images.reshape(-1, channels) / 255).std(0).tolist()
    model = create_model("cnn", bits, in_channels=channels, mean=mean, std=std)
    loss_fn = RealLoss("pairwise", 0.1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
         - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    y = torch.from_numpy(labels)
    for step in range(steps):
        b = slice(step * 32 % 256, step * 32 % 256 + 32)
        loss = loss_fn(model(x[b]), y[b], None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    checkpoint.save(path, kind="hashsdk.hashnet", model_args=model.model_args,
                    state_dict=model.state_dict(), config={"data": {"dataset": "synthetic"}})
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = trained_checkpoint(root / "ckpt.pt")
    meta = export_onnx(root / "ckpt.pt", root / "model.onnx")
    return root, model, meta


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


def test_unreadable_image_is_named_and_the_batch_goes_on(exported, tmp_path):
    from PIL import Image

    root, _, _ = exported
    images, _ = structured_images(2)
    Image.fromarray(images[0]).save(tmp_path / "good0.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(images[1]).save(tmp_path / "good1.png")
    encoder = Encoder(root / "model.onnx")
    paths = [tmp_path / "good0.png", tmp_path / "broken.jpg", tmp_path / "good1.png"]
    with pytest.warns(UserWarning, match="broken.jpg"):
        codes = encoder.encode(paths)
    assert (codes == encoder.encode(images)).all()
    batch = next(encoder.encode_iter(paths))
    assert batch.index.tolist() == [0, 2] and batch.skipped == [str(tmp_path / "broken.jpg")]


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
    from hashsdk.model_metadata import ModelMetadata

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
    (tmp_path / "photos" / "zz-broken.png").write_bytes(b"junk")
    run = subprocess.run([str(BIN / "hashsdk"), "index", "build", "--model",
                          str(tmp_path / "model.onnx"), str(tmp_path / "photos"), "-o",
                          str(tmp_path / "db.hidx")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "12 images, 24 bits" in run.stdout and "zz-broken.png" in run.stderr
    paths = (tmp_path / "db.hidx.paths.txt").read_text().split()
    assert len(paths) == 12 and len(set(paths)) == 12
    run = subprocess.run([str(BIN / "hashsdk"), "encode", str(tmp_path / "model.onnx"),
                          paths[3], "-o", str(tmp_path / "q.npy")], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([str(BIN / "hashsdk"), "search", str(tmp_path / "db.hidx"),
                          str(tmp_path / "q.npy"), "-k", "3", "--json"], capture_output=True,
                         text=True)
    found = json.loads(run.stdout)
    assert found["distances"][0][0] == 0 and paths[found["ids"][0][0]] == paths[3]
    assert HammingIndex.load(tmp_path / "db.hidx").ntotal == 12
    # --bits that disagrees with the model is refused, before anything is encoded
    run = subprocess.run([str(BIN / "hashsdk"), "index", "build", "--model",
                          str(tmp_path / "model.onnx"), "--bits", "48", str(tmp_path / "photos"),
                          "-o", str(tmp_path / "other.hidx")], capture_output=True, text=True)
    assert run.returncode != 0 and not (tmp_path / "other.hidx").exists()
    assert "--bits 48 disagrees with" in run.stderr and "24-bit codes" in run.stderr


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
    report = build_engine(root / "model.onnx", tmp_path / "m.engine", fp16=True,
                          max_batch=64)
    assert report.bit_agreement_vs_fp32 is not None and report.bit_agreement_vs_fp32 > 0.95
    encoder = Encoder(tmp_path / "m.engine")
    images, _ = structured_images(40)
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
