"""How tests/data/v0.1-cnn-*.onnx and v0.1-onnx-codes.json were made: with hashsdk at commit
f8b5e7d, before the input contract and the rooms (run there as
``python tests/data/make_v0.1_onnx.py OUT``). Kept as the record; tests/test_contract.py reads
the same inputs from ``inputs()`` and checks today's Encoder against the outputs pinned then.
"""

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def inputs() -> dict:
    """Arrays of several shapes, grey and RGB, and a JPEG and a PNG, made from a fixed seed."""
    rng = np.random.default_rng(7)
    items = {}
    for i, (h, w) in enumerate([(24, 24), (37, 53), (80, 31), (5, 200), (28, 28)]):
        items[f"rgb{i}"] = rng.integers(0, 256, (h, w, 3), np.uint8)
        items[f"grey{i}"] = rng.integers(0, 256, (h, w), np.uint8)
    for key, shape, fmt in (("jpeg", (64, 48, 3), "JPEG"), ("png", (33, 70, 3), "PNG")):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(buf, fmt, quality=90)
        items[key] = buf.getvalue()
    return items


def main(out: Path) -> None:
    import torch

    from hashsdk import Encoder
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.train import checkpoint
    from hashsdk.train.model import HashNet

    out.mkdir(exist_ok=True)
    torch.manual_seed(0)
    # a cnn with a resize-then-crop contract, bicubic, its own mean and std
    net = HashNet("cnn", 16, in_channels=3, image_size=24, mean=[0.4, 0.45, 0.5],
                  std=[0.2, 0.25, 0.3], resize_size=28, interpolation="bicubic", width=8).eval()
    ckpt = out / "v0.1-cnn-rgb-bicubic-checkpoint.pt"
    checkpoint.save(ckpt, kind="hashsdk.hashnet", model_args=net.model_args,
                    state_dict=net.state_dict(), config={"data": {"dataset": "imagefolder"}})
    export_onnx(ckpt, out / "v0.1-cnn-rgb-bicubic.onnx")
    export_onnx(Path(__file__).parent / "v0.1-cnn-checkpoint.pt", out / "v0.1-cnn-grey-squash.onnx")
    codes = {}
    for name in ("v0.1-cnn-rgb-bicubic.onnx", "v0.1-cnn-grey-squash.onnx"):
        encoder = Encoder(out / name, decode_threads=0)
        items = inputs()
        packed = encoder.encode(list(items.values()))
        outputs = encoder.encode(list(items.values()), packed=False)
        codes[name] = {k: {"code": c.tobytes().hex(), "outputs": o.astype("<f4").tobytes().hex()}
                       for k, c, o in zip(items, packed, outputs, strict=True)}
    (out / "v0.1-onnx-codes.json").write_text(json.dumps(codes, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
