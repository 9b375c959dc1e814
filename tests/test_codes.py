import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashsdk import HashsdkError, binarize, code_size, pack_bits, unpack_bits
from hashsdk.codes import as_packed, infer_bits


def test_pack_is_msb_first_with_zero_pad():
    bits = np.array([[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1]], np.uint8)  # 12 bits
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8 and packed.shape == (1, 2)
    assert packed.tolist() == [[0b10000001, 0b11010000]]


@pytest.mark.parametrize("values", [
    np.array([[0.3, -0.1, 0.0, 2.0]]),            # float outputs: > 0 is 1, 0.0 is 0
    np.array([[1, -1, -1, 1]]),                    # {-1, +1}
    np.array([[1, 0, 0, 1]], np.uint8),            # {0, 1}
    np.array([[True, False, False, True]]),        # bool
])
def test_binarize_accepts_every_convention(values):
    assert binarize(values).tolist() == [[True, False, False, True]]


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 4096), n=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits, n, seed):
    raw = np.random.default_rng(seed).integers(0, 2, (n, bits), dtype=np.uint8)
    packed = pack_bits(raw)
    assert packed.shape == (n, code_size(bits))
    assert (unpack_bits(packed, bits) == raw).all()


def test_single_code_gives_one_row():
    assert pack_bits(np.ones(9)).shape == (1, 2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3, 4)), "2-D"),
    (np.array([[0.5, np.nan]]), "NaN"),
    (np.array([[0.5, np.inf]]), "NaN or inf"),
    (np.array([[2, 0]]), r"\{-1, \+1\} or \{0, 1\}"),
    (np.array([["a", "b"]]), "dtype"),
])
def test_binarize_rejects_bad_input(bad, message):
    with pytest.raises(HashsdkError, match=message):
        binarize(bad)


@pytest.mark.parametrize("bits", [0, 4097, 2.5, True, "8"])
def test_bad_bit_lengths(bits):
    with pytest.raises(HashsdkError, match="bits"):
        code_size(bits)


def test_unpack_rejects_wrong_width_dtype_and_set_pad_bits():
    with pytest.raises(HashsdkError, match="pack into 2 bytes"):
        unpack_bits(np.zeros((1, 3), np.uint8), 12)
    with pytest.raises(HashsdkError, match="uint8"):
        unpack_bits(np.zeros((1, 2), np.int32), 12)
    with pytest.raises(HashsdkError, match="padding"):
        unpack_bits(np.array([[0, 0b00000001]], np.uint8), 12)


def test_as_packed_takes_packed_or_unpacked():
    raw = np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1, 1]], np.uint8)
    packed = pack_bits(raw)
    assert (as_packed(packed, 10) == packed).all()
    assert (as_packed(raw * 2.0 - 1.0, 10) == packed).all()
    with pytest.raises(HashsdkError, match="width 2 or unpacked codes of width 10"):
        as_packed(np.zeros((1, 7)), 10)


def test_infer_bits():
    assert infer_bits(np.zeros((3, 6), np.uint8)) == 48
    assert infer_bits(np.zeros((3, 12), np.float32)) == 12
