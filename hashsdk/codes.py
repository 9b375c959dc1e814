"""Binary codes: binarizing network outputs and bit-packing them.

Conventions, shared by the index, the metrics, the Encoder and the exported models:

* bit i of a code is 1 where network output i is > 0 (so tanh outputs, {-1, +1} and {0, 1}
  all binarize the same way);
* codes are packed most-significant bit first, 8 bits a byte, as ``np.packbits`` does, which is
  also what faiss's binary indexes and sentence-transformers' ``ubinary`` expect;
* a ``bits``-bit code packs into ``ceil(bits / 8)`` bytes, and the pad bits of the last byte are
  zero, so the Hamming distance of two packed codes is the popcount of their XOR.

Any length from 1 to 4096 bits works (12, 24 and 48 are the paper's lengths; faiss cannot take
12).
"""

from __future__ import annotations

import numpy as np

from hashsdk.errors import HashsdkError

MAX_BITS = 4096


def check_bits(bits: object) -> int:
    """Returns ``bits`` as an int, or raises if it is not a whole number in [1, 4096]."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise HashsdkError(f"bits must be an integer from 1 to {MAX_BITS}, got {bits!r}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise HashsdkError(f"bits must be from 1 to {MAX_BITS}, got {bits}")
    return int(bits)


def code_size(bits: int) -> int:
    """Bytes in one packed code of ``bits`` bits: ceil(bits / 8)."""
    return (check_bits(bits) + 7) // 8


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 1:
        return array[None, :]
    if array.ndim != 2:
        raise HashsdkError(f"{what}: expected a 1-D code or a 2-D batch (n, width), "
                           f"got an array of shape {array.shape}")
    return array


def binarize(outputs: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Turns network outputs into bits: 1 where the output is > 0.

    Args:
        outputs: shape (n, bits) or (bits,); float outputs (any sign), integers in {-1, +1} or
            {0, 1}, or bool.
        bits: the expected code length; checked against the width when given.

    Returns:
        bool array of shape (n, bits); a 1-D input gives one row.
    """
    outputs = _as_2d(np.asarray(outputs), "binarize")
    if bits is not None and outputs.shape[1] != check_bits(bits):
        raise HashsdkError(f"binarize: expected {bits} outputs per code, got {outputs.shape[1]}")
    check_bits(max(outputs.shape[1], 1))
    kind = outputs.dtype.kind
    if kind == "b":
        return outputs.astype(bool, copy=False)
    if kind in "iu":
        if outputs.size and (outputs.min() < -1 or outputs.max() > 1):
            raise HashsdkError("binarize: integer outputs must be in {-1, +1} or {0, 1}, "
                               f"got values from {outputs.min()} to {outputs.max()}")
        return outputs > 0
    if kind == "f":
        if not np.isfinite(outputs).all():
            raise HashsdkError("binarize: outputs contain NaN or inf; expected finite values")
        return outputs > 0
    raise HashsdkError(f"binarize: expected float, integer or bool outputs, got dtype "
                       f"{outputs.dtype}")


def pack_bits(outputs: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Binarizes and packs codes, MSB first.

    Args:
        outputs: (n, bits) or (bits,) outputs, anything ``binarize`` accepts.
        bits: the expected code length, checked when given.

    Returns:
        uint8 array of shape (n, ceil(bits / 8)), C-contiguous, pad bits zero.
    """
    return np.ascontiguousarray(np.packbits(binarize(outputs, bits), axis=1))


def unpack_bits(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``pack_bits``.

    Args:
        packed: uint8 array of shape (n, ceil(bits / 8)) or (ceil(bits / 8),).
        bits: the code length.

    Returns:
        uint8 array of shape (n, bits) holding 0 and 1.
    """
    packed = check_packed(packed, bits, "unpack_bits")
    return np.unpackbits(packed, axis=1, count=bits)


def check_packed(packed: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Validates packed codes and returns them as a C-contiguous uint8 (n, code_size) array.

    Raises when the dtype is not uint8, the width is not ceil(bits / 8), or a pad bit is set
    (a set pad bit would add to every distance).
    """
    packed = _as_2d(np.asarray(packed), what)
    width = code_size(bits)
    if packed.dtype != np.uint8:
        raise HashsdkError(f"{what}: packed codes must be uint8, got {packed.dtype}")
    if packed.shape[1] != width:
        raise HashsdkError(f"{what}: {bits}-bit codes pack into {width} bytes a row, "
                           f"got rows of {packed.shape[1]} bytes")
    pad = 8 * width - bits
    if pad and packed.size and (packed[:, -1] & np.uint8((1 << pad) - 1)).any():
        raise HashsdkError(f"{what}: the last {pad} bits of each {bits}-bit code are padding "
                           "and must be zero (pack with hashsdk.pack_bits)")
    return np.ascontiguousarray(packed)


def as_packed(codes: np.ndarray, bits: int, what: str = "codes") -> np.ndarray:
    """Accepts codes packed or not, and returns them packed.

    A uint8 array whose width is ceil(bits / 8) is taken as packed. Anything else must have
    ``bits`` columns and is binarized (outputs > 0) and packed.

    Returns:
        uint8 array of shape (n, ceil(bits / 8)), C-contiguous.
    """
    bits = check_bits(bits)
    codes = _as_2d(np.asarray(codes), what)
    if codes.dtype == np.uint8 and codes.shape[1] == code_size(bits):
        return check_packed(codes, bits, what)
    if codes.shape[1] != bits:
        raise HashsdkError(f"{what}: expected packed uint8 codes of width {code_size(bits)} "
                           f"or unpacked codes of width {bits}, got shape {codes.shape} and "
                           f"dtype {codes.dtype}")
    return pack_bits(codes, bits)


def infer_bits(codes: np.ndarray) -> int:
    """The code length a bare array implies: 8 x width for uint8 (packed), else the width."""
    codes = _as_2d(np.asarray(codes), "codes")
    return check_bits(codes.shape[1] * (8 if codes.dtype == np.uint8 else 1))
