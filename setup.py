"""Build the optional C search kernel.

The extension is marked optional: where no C compiler is at hand, the install still succeeds
and hashsdk falls back to its numpy kernel (``np.bitwise_count``), which gives the same results.
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
        )
    ]
)
