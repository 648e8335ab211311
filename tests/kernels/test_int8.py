"""kernels.int8: gemmlowp requantisation golden values, bit-exact GEMM/conv against int64 references,
both instruction paths, thread determinism, bad input, and torch's fbgemm quantized Linear/conv2d."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import _intrinsics
from kernels import int8 as q
from kernels._config import get_num_threads, set_num_threads

HAS_VNNI = _intrinsics.cpu_has("avx512_vnni")
PATHS = [pytest.param("int16"),
         pytest.param("vnni", marks=pytest.mark.skipif(not HAS_VNNI, reason="CPU lacks AVX512_VNNI: "
                                                        "test_vnni_kernel_compiles_to_vpdpbusd covers codegen"))]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32_MIN, INT32_MAX = q.INT32_MIN, q.INT32_MAX


# ---------------------------------------------------------------------------------------------- requantisation
def test_quantize_multiplier_golden():
    # real = M0 * 2**(-31 - shift), M0 in [2**30, 2**31)
    assert q.quantize_multiplier(0.75) == (1610612736, 0)  # 0.75 * 2**31
    assert q.quantize_multiplier(0.375) == (1610612736, 1)
    assert q.quantize_multiplier(0.5) == (1 << 30, 0)
    assert q.quantize_multiplier(2.0 ** -31) == (1 << 30, 30)
    assert q.quantize_multiplier(2.0 ** -32) == (1 << 30, 31)
    # 0.1 = 0.8 * 2**-3; 0.8 * 2**31 = 1717986918.4 -> 1717986918
    assert q.quantize_multiplier(0.1) == (1717986918, 3)


@pytest.mark.parametrize("real", [1e-9, 2.0 ** -20, 0.01, 0.1234567, 0.5, 0.999, 1 - 2.0 ** -30])
def test_quantize_multiplier_accuracy(real):
    m0, shift = q.quantize_multiplier(real)
    assert (1 << 30) <= m0 <= INT32_MAX and 0 <= shift <= 31
    assert abs(m0 * 2.0 ** (-31 - shift) - real) <= 2.0 ** (-32 - shift)  # half a Q31 step


@pytest.mark.parametrize("bad,err", [(0.0, ValueError), (1.0, ValueError), (-0.5, ValueError), (2.0, ValueError),
                                     (float("nan"), ValueError), (2.0 ** -33, ValueError),
                                     (1 - 2.0 ** -40, ValueError), ("0.5", TypeError), (True, TypeError)])
def test_quantize_multiplier_rejects(bad, err):
    with pytest.raises(err):
        q.quantize_multiplier(bad)


# Worked by hand in kernels/README.md ("Int8 requantisation"): M0 = 0.75 * 2**31, shift = 1 (real 0.375).
GOLDEN = [  # acc, zero point, dtype, expected
    (101, 0, np.uint8, 38),        # SRDHM: 101*0.75 = 75.75 -> 76; RDPOT(76, 1) = 38 (exact 37.875)
    (1001, 0, np.int8, 127),       # 751 -> RDPOT 375.5 -> 376, clamped to 127
    (1001, -128, np.int8, 127),    # 376 - 128 = 248 -> 127
    (-1001, 0, np.int8, -128),     # SRDHM -751.25 -> -751 (truncation); RDPOT -375.5 -> -376 -> clamp
    (-1001, 127, np.int8, -128),   # -376 + 127 = -249 -> -128
    (-101, 100, np.uint8, 62),     # -75.75 -> -76 -> -38; + 100 = 62
    (-3, 10, np.uint8, 9),         # -2.25 -> -2 (SRDHM) -> RDPOT(-2, 1) = -1 -> 9
    (3, 10, np.uint8, 11),         # 2.25 -> 2 -> RDPOT(2, 1) = 1 -> 11
    (5, 0, np.uint8, 2),           # 3.75 -> 4 -> 2 (exact 1.875)
    (-5, 0, np.int8, -2),
]


@pytest.mark.parametrize("acc,zp,dtype,want", GOLDEN)
def test_requantize_golden(acc, zp, dtype, want):
    m0, shift = 1610612736, 1
    a = np.array([acc], np.int32)
    assert q.requantize(a, m0, shift, zp, dtype)[0] == want
    assert q.requantize_ref(a, m0, shift, zp, dtype)[0] == want


def test_srdhm_rdpot_golden():
    assert q.srdhm_ref(np.array([101, -101, 1001, -1001]), 1610612736).tolist() == [76, -76, 751, -751]
    assert q.rdpot_ref(np.array([751, -751, 750, -750, 5, -5, 6, -6]), 1).tolist() == \
        [376, -376, 375, -375, 3, -3, 3, -3]
    assert q.rdpot_ref(np.array([13, -13, 12, -12]), 3).tolist() == [2, -2, 2, -2]  # 1.625 -> 2, 1.5 -> 2
    assert q.srdhm_ref(np.array([INT32_MIN]), INT32_MIN)[0] == INT32_MAX  # the one saturating case


EXTREME_MULTIPLIERS = [2.0 ** -32, 1e-7, 0.0005, 0.25, 0.5, 0.999999, 1 - 2.0 ** -31]


@SETTINGS
@given(data=st.data(), real=st.sampled_from(EXTREME_MULTIPLIERS) | st.floats(1e-6, 0.9999),
       dtype=st.sampled_from([np.uint8, np.int8]))
def test_requantize_matches_ref(data, real, dtype):
    n = data.draw(st.integers(1, 50))
    acc = np.array(data.draw(st.lists(st.sampled_from([INT32_MIN, INT32_MAX, 0, 1, -1])
                                      | st.integers(INT32_MIN, INT32_MAX), min_size=n, max_size=n)), np.int32)
    lo, hi = q._RANGE[np.dtype(dtype)]
    zp = data.draw(st.sampled_from([lo, hi, 0]) | st.integers(lo, hi))
    m0, shift = q.quantize_multiplier(real)
    np.testing.assert_array_equal(q.requantize(acc, m0, shift, zp, dtype),
                                  q.requantize_ref(acc, m0, shift, zp, dtype))


# ---------------------------------------------------------------------------------------------- GEMM
def _operand(draw, shape, dtype, kind):
    lo, hi = q._RANGE[np.dtype(dtype)]
    if kind == "zero":
        return np.zeros(shape, dtype)
    if kind == "extreme":
        return np.array(draw(st.lists(st.sampled_from([lo, hi]), min_size=int(np.prod(shape)),
                                      max_size=int(np.prod(shape)))), dtype).reshape(shape)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return np.random.default_rng(seed).integers(lo, hi + 1, shape).astype(dtype)


@st.composite
def gemm_case(draw):
    M, K, N = draw(st.integers(1, 9)), draw(st.integers(1, 130)), draw(st.integers(1, 40))
    adt = draw(st.sampled_from([np.uint8, np.int8]))
    lo, hi = q._RANGE[np.dtype(adt)]
    A = _operand(draw, (M, K), adt, draw(st.sampled_from(["random", "zero", "extreme"])))
    B = _operand(draw, (K, N), np.int8, draw(st.sampled_from(["random", "zero", "extreme"])))
    za = draw(st.sampled_from([lo, hi, 0]) | st.integers(lo, hi))
    zb = draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    return A, B, za, zb


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=gemm_case())
def test_qgemm_matches_ref(path, case):
    A, B, za, zb = case
    np.testing.assert_array_equal(q.qgemm(A, B, za, zb, path=path), q.qgemm_ref(A, B, za, zb))


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=gemm_case(), data=st.data())
def test_qgemm_requant_matches_ref(path, case, data):
    A, B, za, zb = case
    N = B.shape[1]
    bias = np.array(data.draw(st.lists(st.integers(-2 ** 24, 2 ** 24) | st.sampled_from([INT32_MIN, INT32_MAX]),
                                       min_size=N, max_size=N)), np.int32)
    m0, shift = q.quantize_multiplier(data.draw(st.sampled_from(EXTREME_MULTIPLIERS) | st.floats(1e-6, 0.99)))
    d = data.draw(st.sampled_from([np.uint8, np.int8]))
    zo = data.draw(st.integers(*q._RANGE[np.dtype(d)]))
    got = q.qgemm_requant(A, q.pack_weights(B, zb, path), za, zb, bias, m0, shift, zo, d, path=path)
    np.testing.assert_array_equal(got, q.qgemm_requant_ref(A, B, za, zb, bias, m0, shift, zo, d))


@pytest.mark.parametrize("path", PATHS)
def test_qgemm_large_k_bound(path, rng):
    """K at the int32 limit with every product at its maximum 255 * 255: no wrap."""
    K = q.K_MAX
    A = np.full((2, K), 255, np.uint8)
    B = np.full((K, 3), -128, np.int8)
    C = q.qgemm(A, B, 0, 127, path=path)  # (255)(-255) summed K times
    np.testing.assert_array_equal(C, q.qgemm_ref(A, B, 0, 127))
    assert C.dtype == np.int32 and C[0, 0] == -255 * 255 * K


def test_threads_identical(rng):
    A = rng.integers(0, 256, (37, 300)).astype(np.uint8)
    B = rng.integers(-128, 128, (300, 70)).astype(np.int8)
    n = get_num_threads()
    try:
        set_num_threads(1)
        one = q.qgemm_requant(A, B, 3, -2, None, *q.quantize_multiplier(0.001), 5, np.uint8)
        one32 = q.qgemm(A, B, 3, -2)
    finally:
        set_num_threads(n)
    np.testing.assert_array_equal(one, q.qgemm_requant(A, B, 3, -2, None, *q.quantize_multiplier(0.001), 5,
                                                       np.uint8))
    np.testing.assert_array_equal(one32, q.qgemm(A, B, 3, -2))


def test_vnni_kernel_compiles_to_vpdpbusd():
    """Codegen of the VNNI path for an AVX512_VNNI target (runs on any host: compile only, never executed)."""
    code = ("import numpy as np, numba\n"
            "from numba import typeof\n"
            "from kernels import int8 as q\n"
            "assert q._x.cpu_has('avx512_vnni')\n"
            "A = np.zeros((5, 8), np.uint8); P = q.pack_weights(np.zeros((8, 3), np.int8), 0, 'vnni')\n"
            "args = (A, P.data, 2, np.zeros(5, np.int64), P.colsum, 1 << 30, 0, 0, 0, 255, True,\n"
            "        np.empty((0, 0), np.int32), np.empty((5, 3), np.uint8))\n"
            "q._drive_vnni.compile(tuple(typeof(a) for a in args))  # the whole parallel driver compiles\n"
            "def tile(A, B, Ct):\n"
            "    q._VNNI_BIG(A, 0, 8, B, 0, 2, Ct)\n"
            "f = numba.njit(tile)\n"
            "f.compile((typeof(A), typeof(P.data), typeof(np.zeros(256, np.int32))))\n"
            "print('\\n'.join(f.inspect_asm().values()).count('vpdpbusd'))\n")
    env = dict(os.environ, NUMBA_CPU_NAME="znver4", NUMBA_DISABLE_CACHE="1", NUMBA_CACHE_DIR="/tmp/lwnn-vnni",
               NUMBA_CPU_FEATURES="+avx2,+fma,+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512vnni")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) > 0


# ---------------------------------------------------------------------------------------------- conv
@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 0), (2, 1))])
@pytest.mark.parametrize("adt", [np.uint8, np.int8])
def test_qconv2d_matches_ref(rng, stride, padding, dilation, adt):
    lo, hi = q._RANGE[np.dtype(adt)]
    x = rng.integers(lo, hi + 1, (2, 3, 9, 8)).astype(adt)
    w = rng.integers(-128, 128, (5, 3, 3, 2)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 5).astype(np.int32)
    za = hi  # an extreme zero point: padding must still contribute 0
    kw = {"stride": stride, "padding": padding, "dilation": dilation}
    np.testing.assert_array_equal(q.qconv2d(x, w, za, 3, bias, **kw), q.qconv2d_ref(x, w, za, 3, bias, **kw))
    m0, shift = q.quantize_multiplier(0.0007)
    rq = {"multiplier": m0, "shift": shift, "out_zero_point": -7, "out_dtype": np.int8}
    np.testing.assert_array_equal(q.qconv2d(x, w, za, 3, bias, **kw, **rq),
                                  q.qconv2d_ref(x, w, za, 3, bias, **kw, **rq))


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises(rng):
    A = rng.integers(0, 256, (4, 6)).astype(np.uint8)
    B = rng.integers(-128, 128, (6, 5)).astype(np.int8)
    m0, s = q.quantize_multiplier(0.01)
    with pytest.raises(TypeError, match="A must be"):
        q.qgemm(A.astype(np.float32), B, 0)
    with pytest.raises(TypeError, match="B must be int8"):
        q.qgemm(A, B.astype(np.uint8), 0)
    with pytest.raises(TypeError, match="B must be int8"):
        q.qgemm(A, B.astype(np.int16), 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        q.qgemm(np.asfortranarray(A), B, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        q.qgemm(A, B[:, ::2], 0)
    with pytest.raises(ValueError, match="K = 5"):
        q.qgemm(A, B[:5].copy(), 0)
    with pytest.raises(ValueError, match="a_zero_point=256"):
        q.qgemm(A, B, 256)
    with pytest.raises(ValueError, match="a_zero_point=-1"):
        q.qgemm(A, B, -1)
    with pytest.raises(ValueError, match="a_zero_point=128"):
        q.qgemm(A.view(np.int8), B, 128)
    with pytest.raises(ValueError, match="b_zero_point=128"):
        q.qgemm(A, B, 0, 128)
    with pytest.raises(TypeError, match="b_zero_point must be an int"):
        q.qgemm(A, B, 0, 1.0)
    with pytest.raises(ValueError, match="multiplier M0"):
        q.qgemm_requant(A, B, 0, 0, None, 12345, s, 0)
    with pytest.raises(ValueError, match="multiplier M0"):
        q.qgemm_requant(A, B, 0, 0, None, 1 << 31, s, 0)
    with pytest.raises(ValueError, match="shift=32"):
        q.qgemm_requant(A, B, 0, 0, None, m0, 32, 0)
    with pytest.raises(ValueError, match="out_zero_point=300"):
        q.qgemm_requant(A, B, 0, 0, None, m0, s, 300)
    with pytest.raises(TypeError, match="out dtype"):
        q.qgemm_requant(A, B, 0, 0, None, m0, s, 0, np.int16)
    with pytest.raises(TypeError, match="bias must be int32"):
        q.qgemm_requant(A, B, 0, 0, np.zeros(5, np.int64), m0, s, 0)
    with pytest.raises(ValueError, match="bias must have shape"):
        q.qgemm_requant(A, B, 0, 0, np.zeros(4, np.int32), m0, s, 0)
    with pytest.raises(ValueError, match="differs from the packed"):
        q.qgemm(A, q.pack_weights(B, 3), 0, 4)
    with pytest.raises(ValueError, match="path must be"):
        q.qgemm(A, B, 0, path="avx")
    with pytest.raises(ValueError, match="could overflow"):
        q.pack_weights(np.zeros((q.K_MAX + 1, 1), np.int8))
    with pytest.raises(TypeError, match="acc must be int32"):
        q.requantize(np.zeros(3, np.int64), m0, s, 0, np.uint8)
    with pytest.raises(ValueError, match="channels"):
        q.qconv2d(np.zeros((1, 2, 5, 5), np.uint8), np.zeros((3, 4, 3, 3), np.int8), 0)
    if not HAS_VNNI:
        with pytest.raises(RuntimeError, match="avx512_vnni"):
            q.qgemm(A, B, 0, path="vnni")


# ---------------------------------------------------------------------------------------------- torch (fbgemm)
@pytest.fixture
def engine_guard(torch):
    old = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = old


def _torch_fraction_report(name, ours, theirs):
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    frac = float((diff > 0).mean())
    print(f"{name}: max |ours - torch| = {diff.max()} LSB on {100 * frac:.2f}% of {diff.size} outputs")
    return diff, frac


@pytest.mark.parametrize("engine,x_max", [("fbgemm", 127), ("qnnpack", 255)])
def test_linear_vs_torch(torch, rng, engine, x_max, engine_guard):
    """Same integers in, same quantisation parameters. torch requantises with a float32 multiplier and
    round-half-even (README explains), so outputs may differ by 1 LSB on a small fraction. fbgemm's AVX2
    kernel (vpmaddubsw) saturates int16 pair sums for full-range uint8 activations, which is why torch's
    observers use ``reduce_range`` (7-bit activations) with fbgemm; we test it in that regime and the
    full range with qnnpack."""
    M, K, N = 64, 200, 48
    s_in, za, s_w, s_out, zo = 0.02, x_max // 2 + 3, 0.004, 0.05, 100
    x_q = rng.integers(0, x_max + 1, (M, K)).astype(np.uint8)
    W_q = rng.integers(-127, 128, (N, K)).astype(np.int8)
    b_q = rng.integers(-20000, 20000, N).astype(np.int32)
    b_float = (b_q * np.float64(s_in * s_w)).astype(np.float32)  # the bias both sides see
    m0, shift = q.quantize_multiplier(s_in * s_w / s_out)
    ours = q.qgemm_requant(x_q, np.ascontiguousarray(W_q.T), za, 0, b_q, m0, shift, zo, np.uint8)
    torch.backends.quantized.engine = engine
    lin = torch.ao.nn.quantized.Linear(K, N)
    wt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(W_q), s_w, 0)
    lin.set_weight_bias(wt, torch.from_numpy(b_float))
    lin.scale, lin.zero_point = s_out, zo
    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), s_in, za)
    theirs = lin(xt).int_repr().numpy()
    diff, frac = _torch_fraction_report(f"linear/{engine}", ours, theirs)
    assert diff.max() <= 1 and frac < 0.02


def test_conv2d_vs_torch_fbgemm(torch, rng, engine_guard):
    s_in, za, s_w, s_out, zo = 0.03, 7, 0.005, 0.1, 60
    x_q = rng.integers(0, 128, (2, 4, 10, 9)).astype(np.uint8)  # 7-bit: fbgemm's reduce_range regime
    w_q = rng.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)
    b_q = rng.integers(-3000, 3000, 6).astype(np.int32)
    m0, shift = q.quantize_multiplier(s_in * s_w / s_out)
    ours = q.qconv2d(x_q, w_q, za, 0, b_q, stride=2, padding=1, multiplier=m0, shift=shift, out_zero_point=zo)
    torch.backends.quantized.engine = "fbgemm"
    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), s_in, za)
    wt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w_q), s_w, 0)
    bt = torch.from_numpy((b_q * np.float64(s_in * s_w)).astype(np.float32))
    yt = torch.ao.nn.quantized.functional.conv2d(xt, wt, bt, stride=2, padding=1, scale=s_out, zero_point=zo)
    diff, frac = _torch_fraction_report("conv2d/fbgemm", ours, yt.int_repr().numpy())
    assert diff.max() <= 1 and frac < 0.02
