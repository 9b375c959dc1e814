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
