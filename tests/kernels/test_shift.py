"""kernels.shift: code goldens, ShiftCNN encoding, 4-bit packing, bit-exact shift GEMM/GEMV, threads, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import shift as sh
from kernels._config import get_num_threads, set_num_threads

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_decode_golden():
    codes = np.array([0, 1, 2, 3, 7, 8, 9, 10, 15], np.uint8)
    assert sh.decode(codes).tolist() == [0, 1, 2, 4, 64, 0, -1, -2, -64]


def test_nearest_term_golden():
    # linear nearest in {0, 1, 2, 4, ..., 64}, ties to the larger magnitude, saturating at 64
    r = np.array([0.0, 0.49, 0.5, 0.74, 0.75, 1.49, 1.5, 2.9, 3.0, 47.9, 48.0, 1000.0, -0.5, -3.0])
    want = [0, 0, 1, 1, 1, 1, 2, 2, 4, 32, 64, 64, -1, -4]
    codes, scale = sh.encode(r, 1, scale=1.0)
    assert scale == 1.0
    assert sh.decode(codes[0]).tolist() == want


def test_encode_properties(rng):
    W = rng.standard_normal((20, 30))
    errs = []
    for nt in (1, 2, 3, 4):
        codes, scale = sh.encode(W, nt)
        assert codes.shape == (nt, 20, 30) and codes.dtype == np.uint8 and codes.max() <= 15
        assert np.log2(scale).is_integer()
        W_hat = scale * sh.decode(codes).sum(axis=0)
        assert np.abs(W_hat).max() <= 64 * nt * scale
        errs.append(np.abs(W - W_hat).max())
    assert errs == sorted(errs, reverse=True) and errs[3] < errs[0] / 8  # more terms, smaller residual
    codes, scale = sh.encode(W, 1)
    assert np.abs(scale * sh.decode(codes[0])).max() == pytest.approx(64 * scale)  # max |W| at the top level
    # powers of two within range are represented exactly by one term
    P = np.array([[0.25, -0.5, 1.0, 0.0, -(2.0 ** -6) * 0.25 * 16]])
    codes, scale = sh.encode(P, 1)
    np.testing.assert_array_equal(scale * sh.decode(codes[0]), P)


@SETTINGS
@given(nt=st.sampled_from([1, 2, 4]), O=st.integers(1, 40), K=st.integers(1, 70), seed=st.integers(0, 2 ** 32 - 1))
def test_pack_roundtrip_and_storage(nt, O, K, seed):
    codes = np.random.default_rng(seed).integers(0, 16, (nt, O, K)).astype(np.uint8)
    p = sh.pack_codes(codes)
    np.testing.assert_array_equal(sh.unpack_codes(p), codes)
    per = 8 // nt
    assert p.nbytes == -(-O // sh.NR) * sh.NR * -(-K // per) * per * nt // 2  # 4 bits per term, padding included


def _ints(draw, shape, dtype, kind, bound):
    """Integers of ``dtype``; int32 values stay within ``bound`` (the kernel's no-overflow limit)."""
    info = np.iinfo(dtype)
    lo, hi = (info.min, info.max) if dtype != np.int32 else (-bound, bound)
    if kind == "zero":
        return np.zeros(shape, dtype)
    if kind == "extreme":
        return np.random.default_rng(draw(st.integers(0, 99))).choice([lo, hi], shape).astype(dtype)
    return np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))).integers(lo, hi + 1, shape).astype(dtype)


@SETTINGS
@given(data=st.data(), nt=st.sampled_from([1, 2, 4]), M=st.integers(1, 9), O=st.integers(1, 40),
       K=st.integers(1, 70), dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.int32]),
       kind=st.sampled_from(["random", "zero", "extreme"]), ckind=st.sampled_from(["random", "zero", "max"]))
def test_shift_gemm_matches_ref(data, nt, M, O, K, dtype, kind, ckind):
    if ckind == "zero":
        codes = np.zeros((nt, O, K), np.uint8)
    elif ckind == "max":  # every term +-64
        codes = np.random.default_rng(data.draw(st.integers(0, 99))).choice([7, 15], (nt, O, K)).astype(np.uint8)
    else:
        codes = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1))).integers(0, 16, (nt, O, K))
        codes = codes.astype(np.uint8)
    X = _ints(data.draw, (M, K), dtype, kind, sh.INT32_MAX // (sh.MAX_TERM * nt * K))
    p = sh.pack_codes(codes)
    np.testing.assert_array_equal(sh.shift_gemm(p, X), sh.shift_gemm_ref(codes, X))
    np.testing.assert_array_equal(sh.shift_gemv(p, X[0]), sh.shift_gemv_ref(codes, X[0]))


def test_threads_identical(rng):
    codes = rng.integers(0, 16, (2, 50, 77)).astype(np.uint8)
    X = rng.integers(-128, 128, (23, 77)).astype(np.int8)
    p = sh.pack_codes(codes)
    n = get_num_threads()
    try:
        set_num_threads(1)
        one = sh.shift_gemm(p, X)
    finally:
        set_num_threads(n)
    np.testing.assert_array_equal(one, sh.shift_gemm(p, X))


def test_bad_input_raises(rng):
    codes = rng.integers(0, 16, (1, 5, 9)).astype(np.uint8)
    p = sh.pack_codes(codes)
    X = rng.integers(-5, 5, (3, 9)).astype(np.int8)
    with pytest.raises(TypeError, match="codes must be a uint8"):
        sh.pack_codes(codes.astype(np.int32))
    with pytest.raises(ValueError, match="4-bit"):
        sh.pack_codes(codes + 16)
    with pytest.raises(ValueError, match="n_terms"):
        sh.pack_codes(np.zeros((3, 5, 9), np.uint8))
    with pytest.raises(TypeError, match="X must be int8"):
        sh.shift_gemm(p, X.astype(np.float32))
    with pytest.raises(TypeError, match="X must be int8"):
        sh.shift_gemm(p, X.astype(np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        sh.shift_gemm(p, np.asfortranarray(np.zeros((3, 9), np.int8)))
    with pytest.raises(ValueError, match=r"\(M, 9\)"):
        sh.shift_gemm(p, X[:, :8].copy())
    with pytest.raises(ValueError, match="overflow"):
        sh.shift_gemm(p, np.full((1, 9), 1 << 26, np.int32))
    with pytest.raises(TypeError, match="PackedShift"):
        sh.shift_gemm(codes, X)
    with pytest.raises(ValueError, match="1-d"):
        sh.shift_gemv(p, X)
    with pytest.raises(TypeError, match="float32/float64"):
        sh.encode(np.ones(3, np.int32))
    with pytest.raises(ValueError, match="n_terms"):
        sh.encode(np.ones(3), 5)
    with pytest.raises(ValueError, match="non-finite"):
        sh.encode(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="power of two"):
        sh.encode(np.ones(3), 1, scale=0.3)


def test_scalar_i32_shift_intrinsics():
    """kernels._intrinsics.shl32/ashr32/lshr32 compute in int32, as NumPy does on int32 arrays."""
    from kernels._config import njit
    from kernels._intrinsics import ashr32, lshr32, shl32

    @njit
    def run(x, s):
        out = np.empty((3, x.size), np.int32)
        for i in range(x.size):
            out[0, i] = shl32(x[i], s[i])
            out[1, i] = ashr32(x[i], s[i])
            out[2, i] = lshr32(x[i], s[i])
        return out

    x = np.array([1, -1, 5, -5, 2 ** 30, -(2 ** 31), 2 ** 31 - 1, 123456], np.int32)
    s = np.array([0, 1, 3, 2, 1, 31, 4, 17], np.int32)
    got = run(x, s)
    np.testing.assert_array_equal(got[0], np.left_shift(x, s))  # wraps in 32 bits
    np.testing.assert_array_equal(got[1], np.right_shift(x, s))
    np.testing.assert_array_equal(got[2], np.right_shift(x.view(np.uint32), s.astype(np.uint32)).view(np.int32))
