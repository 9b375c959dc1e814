"""Argument checks that the index, metrics, search and the Encoder share (numpy only)."""

from __future__ import annotations

import numpy as np

from hashsdk.errors import HashsdkError


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int, or an error naming ``name`` when it is not an integer (bools
    excluded) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise HashsdkError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
