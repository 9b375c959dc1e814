"""Build the optional C extensions: the flat search kernel and multi-index hashing.

Both are marked optional: where no C compiler is at hand, the install still succeeds, hashsdk
falls back to its numpy kernel (``np.bitwise_count``), which gives the same results, and
MultiIndexHammingIndex scans instead.
"""

import sys

from setuptools import Extension, setup

# -O3 lets gcc unroll the per-width specializations; no -march flag, because the wheel must run
# on any x86-64 CPU: popcnt is chosen at run time inside the kernel instead.
extra_compile_args = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-fvisibility=hidden"]
extra_link_args = [] if sys.platform == "win32" else ["-pthread"]

setup(
    ext_modules=[
        Extension(
            "hashsdk._kernel",
            sources=["hashsdk/_kernel.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            optional=True,
        ),
        Extension(
            "hashsdk._mih",
            sources=["hashsdk/_mih.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            optional=True,
        ),
    ]
)
