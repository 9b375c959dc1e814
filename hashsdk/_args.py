"""Argument checks that the index, metrics, search and the Encoder share (numpy only), and the
number of cores they may use."""

from __future__ import annotations

import os

import numpy as np

from hashsdk.errors import HashsdkError


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int, or an error naming ``name`` when it is not an integer (bools
    excluded) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise HashsdkError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
