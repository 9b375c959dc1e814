import gzip
import struct

import numpy as np
import pytest

from hashsdk.index import _search

# every search path this machine can run: the numpy fallback, and each CPU dispatch of the
# C kernel (AVX-512, popcnt, generic) where it built
PATHS = ["numpy"] + ([f"c:{d}" for d in _search._kernel.dispatches()]
                     if _search.has_kernel() else [])


@pytest.fixture(params=PATHS)
def search_path(request):
    """Yields the backend name, with the kernel's dispatch set for the test's duration."""
    backend, _, dispatch = request.param.partition(":")
    if dispatch:
        _search._kernel.set_dispatch(dispatch)
    yield backend
    if dispatch:
        _search._kernel.set_dispatch("auto")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_packed(rng, n: int, bits: int, distinct: int | None = None) -> np.ndarray:
    """Random packed codes; with ``distinct``, drawn from that many codes, so ties abound."""
    raw = rng.integers(0, 2, (distinct or n, bits), dtype=np.uint8)
    if distinct:
        raw = raw[rng.integers(0, distinct, n)]
    return np.packbits(raw, axis=1)


def write_idx(path, array: np.ndarray) -> None:
    """A gzipped unsigned-byte IDX file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_like(folder, n_train: int = 200, n_test: int = 60) -> None:
    """Fashion-MNIST-format IDX files: class c is a bright square at a class-specific place."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 8, 2 * c:2 * c + 8] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)


def blocking_imports(*names: str) -> str:
    """Python source that makes importing these top-level packages fail, as if uninstalled."""
    return (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {names!r} or name in {names!r}:\n"
        "            raise ModuleNotFoundError(f'{name} is blocked', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )


def synthetic_cifar(train_per_class: int = 24, test_per_class: int = 6):
    """A CIFAR-10-shaped ImageSet (32x32 RGB, 10 classes) generated here, so that training
    tests need no dataset: class c is a coloured square at its own place on noise, which a
    few epochs learn."""
    from hashsdk.train.data import CIFAR10_CLASSES, ImageSet

    rng = np.random.default_rng(0)
    per_class = train_per_class + test_per_class
    labels = np.repeat(np.arange(10), per_class)
    images = rng.integers(0, 60, (len(labels), 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c:2 * c + 12, 2 * c:2 * c + 12] = (25 * c, 250 - 20 * c, 120)
    is_test = np.tile(np.arange(per_class) >= train_per_class, 10)
    return ImageSet(images, labels.astype(np.int64), is_test, CIFAR10_CLASSES, "cifar10")


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
    import torch

    from hashsdk.train import checkpoint
    from hashsdk.train.losses import RealLoss
    from hashsdk.train.model import create_model

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
    """(folder, the torch model, its metadata): a trained 24-bit cnn on 32x32 RGB, exported to
    folder/model.onnx from folder/ckpt.pt."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from hashsdk.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("export")
    model = trained_checkpoint(root / "ckpt.pt")
    meta = export_onnx(root / "ckpt.pt", root / "model.onnx")
    return root, model, meta


def load_benchmark(name: str, module_name: str | None = None):
    """benchmarks/NAME.py as a module (its folder on sys.path, as a script has it), for tests
    that send what a benchmark sends."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(module_name or f"{name}_benchmark",
                                                  folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    spec.loader.exec_module(module)
    return module
