"""The Encoder against hostile and odd images: decompression bombs, EXIF orientation,
animations, odd modes, bytes and URLs; decoding on a thread pool; memory that stays flat."""

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from conftest import structured_images

pytest.importorskip("torch")
pytest.importorskip("onnx")

from PIL import Image, features  # noqa: E402

from hashsdk import Encoder, HashsdkError  # noqa: E402
from hashsdk.encoder.preprocess import UnreadableImage, decode, load_uint8  # noqa: E402


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, followed by almost no data: what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def encoder(exported):
    return Encoder(exported[0] / "model.onnx")


@pytest.mark.parametrize("width, height", [(10_000, 10_000),    # over the limit, under 2x
                                           (30_000, 30_000)])   # Pillow's own bomb error
def test_a_decompression_bomb_is_one_unreadable_image(encoder, tmp_path, width, height):
    images, _ = structured_images(2)
    (tmp_path / "bomb.png").write_bytes(png_header_only(width, height))
    paths = [png_bytes(images[0]), tmp_path / "bomb.png", png_bytes(images[1])]
    with pytest.raises(UnreadableImage, match="bomb.png") as raised:
        encoder.encode(paths)
    # refused on its header: the 300 MB (or 2.7 GB) of pixels are never decoded
    assert f"{width * height:,} pixels" in raised.value.reason or \
        f"{width * height} pixels" in raised.value.reason  # Pillow's own words
    with pytest.warns(UserWarning, match="bomb.png"):
        codes, index = encoder.encode(paths, on_error="skip", return_index=True)
    assert index.tolist() == [0, 2] and (codes == encoder.encode(images)).all()


def test_the_pixel_limit_is_a_setting(exported, tmp_path):
    images, _ = structured_images(1)
    big = np.asarray(Image.fromarray(images[0]).resize((64, 64)))
    Image.fromarray(big).save(tmp_path / "big.png")
    with pytest.raises(UnreadableImage, match="4,096 pixels, more than max_pixels = 4,095"):
        Encoder(exported[0] / "model.onnx", max_pixels=4095).encode(tmp_path / "big.png")
    assert Encoder(exported[0] / "model.onnx", max_pixels=4096).encode(
        tmp_path / "big.png").shape == (3,)
    assert Encoder(exported[0] / "model.onnx", max_pixels=None).encode(
        tmp_path / "big.png").shape == (3,)


def rotated_jpeg(path, upright: np.ndarray) -> None:
    """Stores ``upright`` turned on its side with EXIF orientation 6 ("rotate 90 clockwise to
    view"), as a phone held upright stores a photo."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(
        path, quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_alike_in_training_and_in_the_encoder(encoder, tmp_path):
    from hashsdk.train.data import _decode

    rng = np.random.default_rng(3)
    upright = rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)  # portrait: taller than wide
    upright[:12] = 250                                           # a bright top
    rotated_jpeg(tmp_path / "phone.jpg", upright)
    stored = np.asarray(Image.open(tmp_path / "phone.jpg").convert("RGB"))
    assert stored.shape == (32, 48, 3)  # the file's own pixels lie on their side
    seen = np.asarray(decode(tmp_path / "phone.jpg", "RGB"))
    assert seen.shape == (48, 32, 3) and (seen == np.rot90(stored, -1)).all()
    assert seen[:12].mean() > 200 and seen[-12:].mean() < 160  # the bright part on top
    meta = encoder.metadata
    fitted = load_uint8(tmp_path / "phone.jpg", meta)
    trained_on = _decode((tmp_path / "phone.jpg").read_bytes(), "phone.jpg", meta.contract)
    assert (trained_on == fitted).all()
    assert (encoder.encode(tmp_path / "phone.jpg") == encoder.encode(fitted)).all()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(encoder, tmp_path, fmt):
    if fmt == "WEBP" and not features.check_module("webp"):
        pytest.skip("this Pillow has no animated WebP")
    images, _ = structured_images(2, seed=4)
    frames = [Image.fromarray(im) for im in images]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100,
                   loop=0, **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(path) as anim:
        assert anim.n_frames == 2
        first = np.asarray(anim.convert("RGB"))
        anim.seek(1)
        second = np.asarray(anim.convert("RGB"))
    assert (encoder.encode(path) == encoder.encode(first)).all()
    assert (encoder.encode(first) != encoder.encode(second)).any()


def test_odd_modes_encode_as_their_rgb_conversion(encoder, tmp_path):
    images, _ = structured_images(1, seed=6)
    rgb = Image.fromarray(images[0])
    cases = {
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.png": rgb.convert("P"),
        "la.png": rgb.convert("LA"),
        "grey16.png": Image.fromarray(images[0][..., 0].astype(np.uint16) * 257),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        with Image.open(tmp_path / name) as opened:
            want = encoder.encode(np.asarray(opened.convert("RGB")))
        assert (encoder.encode(tmp_path / name) == want).all(), name


def test_bytes_are_an_in_memory_file_and_a_url_or_missing_path_is_named(encoder, tmp_path):
    images, _ = structured_images(2, seed=7)
    raw = png_bytes(images[0])
    want = encoder.encode(images[0])
    for item in (raw, bytearray(raw), memoryview(raw)):
        assert (encoder.encode(item) == want).all()
    assert (encoder.encode([raw, png_bytes(images[1])]) == encoder.encode(images)).all()
    with pytest.raises(UnreadableImage, match=r"https://example.com/cat.jpg.*a URL"):
        encoder.encode("https://example.com/cat.jpg")
    with pytest.raises(UnreadableImage, match=r"missing\.jpg.*no such file"):
        encoder.encode(str(tmp_path / "missing.jpg"))
    with pytest.raises(UnreadableImage, match=r"<bytes>.*unreadable image"):
        encoder.encode(b"GIF89a but not really")


def test_large_jpegs_decode_in_draft_mode_at_no_less_than_the_resize(tmp_path):
    rng = np.random.default_rng(8)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
                        .resize((640, 480), Image.BICUBIC))
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    full = decode(tmp_path / "big.jpg", "RGB")
    draft = decode(tmp_path / "big.jpg", "RGB", resize_to=64)
    assert full.size == (640, 480)
    assert min(draft.size) >= 64 and draft.size[0] < 640  # libjpeg's reduced scale
    # the same picture: fitted to 64 pixels, the two differ by a few levels at most
    a = np.asarray(full.resize((64, 48), Image.BILINEAR), np.float32)
    b = np.asarray(draft.resize((64, 48), Image.BILINEAR), np.float32)
    assert np.abs(a - b).mean() < 4
    assert decode(tmp_path / "big.jpg", "RGB", resize_to=300).size == (640, 480)  # too close


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_pipelined_decoding_keeps_the_input_order(exported, tmp_path, threads):
    images, _ = structured_images(37, seed=11)
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(im).save(paths[-1])
    encoder = Encoder(exported[0] / "model.onnx", decode_threads=threads)
    batches = list(encoder.encode_iter(paths, batch_size=8))
    assert np.concatenate([b.index for b in batches]).tolist() == list(range(37))
    assert (np.concatenate([b.codes for b in batches]) == encoder.encode(images)).all()


def test_encode_iter_reads_its_input_one_batch_ahead_in_flat_memory(encoder):
    pulled = []

    def generator(n):
        rng = np.random.default_rng(0)
        for i in range(n):
            pulled.append(i)
            yield rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)

    stream = encoder.encode_iter(generator(10_000), batch_size=100)
    next(stream)
    assert len(pulled) == 200  # this batch and the next, nothing more
    tracemalloc.start()
    for _ in stream:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # 10,000 images are 31 MB of uint8 and 123 MB as float32 input; two batches of 100
    # are about 2.5 MB
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB"


def test_the_decoding_pool_takes_the_cores_the_model_leaves(exported, monkeypatch):
    import hashsdk._args

    path = exported[0] / "model.onnx"
    monkeypatch.setattr(hashsdk._args, "default_threads", lambda: 8)

    def plan(**kwargs):
        encoder = Encoder(path, **kwargs)
        return encoder.decode_threads, encoder.decode_ahead
    assert plan(threads=2) == (4, True)       # ahead of the model, at most 4
    assert plan(threads=6) == (2, True)       # the two cores left
    assert plan(threads=8) == (4, False)      # none left: every core, between batches
    assert plan() == (4, False)               # the model takes every core by default
    assert plan(threads=8, decode_threads=3) == (3, False)
    monkeypatch.setattr(hashsdk._args, "default_threads", lambda: 1)
    assert plan() == (0, False)               # one core: in the calling thread


def test_decoding_arguments_are_checked(exported):
    with pytest.raises(HashsdkError, match="decode_threads"):
        Encoder(exported[0] / "model.onnx", decode_threads=-1)
    with pytest.raises(HashsdkError, match="max_pixels"):
        Encoder(exported[0] / "model.onnx", max_pixels=0)


def jpeg(array: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", **options)
    return out.getvalue()


def test_plain_jpegs_take_the_fast_decoder_and_get_pillows_pixels():
    pytest.importorskip("simplejpeg")
    from hashsdk.encoder import preprocess

    rng = np.random.default_rng(12)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8))
                        .resize((45, 37), Image.BICUBIC))  # odd sizes: edge blocks
    plain = {
        "rgb 4:2:0": jpeg(smooth, quality=90),
        "rgb 4:4:4": jpeg(smooth, quality=95, subsampling=0),
        "progressive": jpeg(smooth, quality=80, progressive=True),
        "grey": jpeg(smooth[..., 0]),
    }
    for name, raw in plain.items():
        for mode in ("RGB", "L", None):
            fast = preprocess._plain_jpeg(raw, mode, None, None, name)
            assert fast is not None, name
            pillow = np.asarray(preprocess._pillow(raw, mode, None, None, name))
            assert fast.shape == pillow.shape and (fast == pillow).all(), (name, mode)
    exif = Image.Exif()
    exif[0x0112] = 1
    others = {
        "exif": jpeg(smooth, exif=exif.tobytes()),
        "cmyk": (lambda out: (Image.fromarray(smooth).convert("CMYK").save(out, "JPEG"),
                              out.getvalue())[1])(io.BytesIO()),
        "png": png_bytes(smooth),
    }
    for name, raw in others.items():
        assert preprocess._plain_jpeg(raw, "RGB", None, None, name) is None, name
    # large enough for draft mode: Pillow's reduced-scale decode, not the fast path
    assert preprocess._plain_jpeg(plain["rgb 4:2:0"], "RGB", 16, None, "x") is None
    with pytest.raises(UnreadableImage, match="1,665 pixels, more than max_pixels = 100"):
        preprocess._plain_jpeg(plain["grey"], "RGB", None, 100, "x")
    # a damaged plain JPEG is Pillow's to judge, with Pillow's error
    with pytest.raises(UnreadableImage, match="<bytes>"):
        decode(plain["rgb 4:2:0"][:200], "RGB")
