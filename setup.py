"""The packages, found in their three source folders, and the optional C extensions.

Packages: ``hashsdk/`` installs as ``hashsdk``, ``train/`` as ``hashsdk.train`` and ``export/``
as ``hashsdk.export``; every package below them (a folder with an ``__init__.py``) is found, so
that a new module can never be left out of the wheel by a hand-written list.

Extensions: the flat search kernel and multi-index hashing.

Both are marked optional: where no C compiler is at hand, the install still succeeds, hashsdk
falls back to its numpy kernel (``np.bitwise_count``), which gives the same results, and
MultiIndexHammingIndex scans instead.
"""

import sys

from setuptools import Extension, find_packages, setup

SOURCE_FOLDERS = {"hashsdk": "hashsdk", "hashsdk.train": "train", "hashsdk.export": "export"}


def discover_packages() -> list[str]:
    """Each top package and every package found below its folder, under its installed name."""
    return [name for top, folder in SOURCE_FOLDERS.items()
            for name in (top, *(f"{top}.{sub}" for sub in find_packages(folder)))]


# -O3 lets gcc unroll the per-width specializations; no -march flag, because the wheel must run
# on any x86-64 CPU: popcnt is chosen at run time inside the kernel instead.
extra_compile_args = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-fvisibility=hidden"]
extra_link_args = [] if sys.platform == "win32" else ["-pthread"]

setup(
    package_dir=SOURCE_FOLDERS,
    packages=discover_packages(),
    ext_modules=[
        Extension(
            "hashsdk.index._kernel",
            sources=["hashsdk/index/_kernel.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            optional=True,
        ),
        Extension(
            "hashsdk.index._mih",
            sources=["hashsdk/index/_mih.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            optional=True,
        ),
    ]
)
