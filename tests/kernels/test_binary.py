"""kernels.binary: packing, XNOR GEMM and binary conv bit-for-bit against their NumPy twins and +-1 float maths."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels._config import get_num_threads, set_num_threads
from kernels.binary import (
    SERIAL_WORK,
    binary_conv2d,
    binary_conv2d_ref,
    n_words,
    pack_conv_weight,
    pack_signs,
    pack_signs_ref,
    unpack_signs,
    xnor_gemm,
    xnor_gemm_ref,
)
from kernels.conv import conv2d_ref

DTYPES = [np.float64, np.float32]


def _sign(a):
    return np.where(a >= 0, 1, -1)


def _values(rng, shape, kind, dtype):
    """Random normals, or the edge cases: all zero (sign +1), all negative, many exact zeros and -0.0."""
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "negative":
        return -np.abs(rng.standard_normal(shape)).astype(dtype) - 1
    a = rng.standard_normal(shape).astype(dtype)
    if kind == "mixed":
        a[rng.random(shape) < 0.3] = 0.0
        a[rng.random(shape) < 0.2] = -0.0
    return a


KINDS = st.sampled_from(["normal", "zeros", "negative", "mixed"])


def test_bit_order_golden():
    # element k -> word k // 64, bit k % 64 (LSB first); sign(0) = +1; padding bits 0
    A = -np.ones((1, 70))
    A[0, [0, 3, 63, 64, 69]] = [0.0, 2.0, 1.0, -0.0, 5.0]
    bits = pack_signs(A)
    assert bits.dtype == np.uint64 and bits.shape == (1, 2)
    assert int(bits[0, 0]) == (1 << 0) | (1 << 3) | (1 << 63)
    assert int(bits[0, 1]) == (1 << 0) | (1 << 5)
    assert np.isnan(np.float64("nan")) and pack_signs(np.array([[np.nan, 1.0]]))[0, 0] == 2  # NaN packs as -1


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(M=st.integers(0, 9), K=st.integers(0, 200), kind=KINDS, seed=st.integers(0, 2**31))
def test_pack_signs_matches_ref(dtype, M, K, kind, seed):
    A = _values(np.random.default_rng(seed), (M, K), kind, dtype)
    bits = pack_signs(A)
    assert bits.shape == (M, n_words(K))
    np.testing.assert_array_equal(bits, pack_signs_ref(A))
    np.testing.assert_array_equal(unpack_signs(bits, K), _sign(A))


@settings(max_examples=30, deadline=None)
@given(M=st.integers(1, 11), N=st.integers(1, 40), K=st.integers(1, 300), kind_a=KINDS, kind_b=KINDS,
       seed=st.integers(0, 2**31))
def test_xnor_gemm_exact(M, N, K, kind_a, kind_b, seed):
    rng = np.random.default_rng(seed)
    A, B = _values(rng, (M, K), kind_a, np.float32), _values(rng, (N, K), kind_b, np.float64)
    a, b = pack_signs(A), pack_signs(B)
    got = xnor_gemm(a, b, K)
    assert got.dtype == np.int32 and got.shape == (M, N)
    np.testing.assert_array_equal(got, xnor_gemm_ref(a, b, K))
    np.testing.assert_array_equal(got, _sign(A) @ _sign(B).T)


def test_xnor_gemm_empty_and_one_thread(rng):
    assert xnor_gemm(np.zeros((3, 0), np.uint64), np.zeros((2, 0), np.uint64), 0).tolist() == [[0, 0]] * 3
    assert xnor_gemm(np.zeros((0, 2), np.uint64), np.zeros((5, 2), np.uint64), 100).shape == (0, 5)
    # large enough for the parallel driver (M * N * words >= SERIAL_WORK); the hypothesis cases run serially
    big = rng.standard_normal((300, 1000))
    assert big.size >= SERIAL_WORK  # the parallel packing driver
    np.testing.assert_array_equal(pack_signs(big), pack_signs_ref(big))
    a = pack_signs(rng.standard_normal((130, 1000)))
    b = pack_signs(rng.standard_normal((141, 1000)))
    assert 130 * 141 * a.shape[1] >= SERIAL_WORK
    n = get_num_threads()
    try:
        many = xnor_gemm(a, b, 1000)
        set_num_threads(1)
        one = xnor_gemm(a, b, 1000)
    finally:
        set_num_threads(n)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(many, xnor_gemm_ref(a, b, 1000))


def test_binary_conv2d_parallel_path(rng):
    x = rng.standard_normal((2, 64, 16, 16)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    wb = pack_conv_weight(w)
    assert 64 * 2 * 16 * 16 * wb.shape[1] >= SERIAL_WORK
    alpha = np.abs(w).mean(axis=(1, 2, 3))
    np.testing.assert_array_equal(binary_conv2d(x, wb, 3, 1, 1, 1, alpha, True),
                                  binary_conv2d_ref(x, wb, 3, 1, 1, 1, alpha, True))


def test_xnor_gemm_bad_input(rng):
    a = pack_signs(rng.standard_normal((3, 70)))
    with pytest.raises(TypeError, match="uint64"):
        xnor_gemm(a.astype(np.int64), a, 70)
    with pytest.raises(ValueError, match=r"ceil\(K/64\) = 1"):
        xnor_gemm(a, a, 64)
    with pytest.raises(ValueError, match="padding bits"):
        xnor_gemm(a | np.uint64(1 << 63), a, 70)
    with pytest.raises(ValueError, match="C-contiguous"):
        xnor_gemm(np.asfortranarray(a), a, 70)
    with pytest.raises(ValueError, match="non-negative int"):
        xnor_gemm(a, a, 70.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        pack_signs(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        pack_signs(np.ones((4, 3))[::2])
    with pytest.raises(ValueError, match="2-d"):
        pack_signs(np.ones(3))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 2), Ci=st.sampled_from([1, 3, 64, 70]), Co=st.integers(1, 9), H=st.integers(3, 7),
       W=st.integers(3, 7), k=st.sampled_from([(1, 1), (3, 3), (2, 3)]), s=st.integers(1, 2), p=st.integers(0, 2),
       d=st.integers(1, 2), act=st.booleans(), kind=KINDS, seed=st.integers(0, 2**31))
def test_binary_conv2d_exact(dtype, N, Ci, Co, H, W, k, s, p, d, act, kind, seed):
    if H + 2 * p < d * (k[0] - 1) + 1 or W + 2 * p < d * (k[1] - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = _values(rng, (N, Ci, H, W), kind, dtype)
    w = rng.standard_normal((Co, Ci, *k)).astype(dtype)
    alpha = np.abs(w).mean(axis=(1, 2, 3)).astype(dtype)
    wb = pack_conv_weight(w)
    got = binary_conv2d(x, wb, k, s, p, d, alpha, act)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, binary_conv2d_ref(x, wb, k, s, p, d, alpha, act))
    # the padding rule: +1 everywhere outside the input, i.e. sign() of a zero-padded input
    xs = np.pad(_sign(x).astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)), constant_values=1.0)
    dot = conv2d_ref(xs, _sign(w).astype(np.float64), None, s, 0, d)
    np.testing.assert_array_equal(binary_conv2d(x, wb, k, s, p, d), dot.astype(dtype))


def test_binary_conv2d_bad_input(rng):
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    wb = pack_conv_weight(rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="words per output channel"):
        binary_conv2d(x, wb, 2)
    with pytest.raises(TypeError, match="alpha"):
        binary_conv2d(x, wb, 3, alpha=np.ones(2))
    with pytest.raises(TypeError, match="4-d float32/float64"):
        binary_conv2d(x.astype(np.int32), wb, 3)
    with pytest.raises(TypeError, match="uint64"):
        binary_conv2d(x, wb.astype(np.int64), 3)
    with pytest.raises(ValueError, match="larger than the padded input"):
        binary_conv2d(x, pack_conv_weight(rng.standard_normal((2, 3, 7, 7))), 7)
