import gzip
import struct

import numpy as np
import pytest

from hashsdk import _search

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
        "            raise ImportError(f'{name} is blocked')\n"
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
