"""kernels.conv: conv2d / conv2d_backward against torch, against the NumPy references, finite differences,
thread-count independence and argument errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels._config import get_num_threads, set_num_threads
from kernels.conv import conv2d, conv2d_backward, conv2d_backward_ref, conv2d_ref
from tests.helpers import assert_close, finite_difference_check

# id: (N, Ci, H, W, Co, kH, kW, stride, padding, dilation, groups)
CASES = {
    "basic": (2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1),
    "stride2_nonsquare": (2, 4, 9, 7, 6, 3, 2, (2, 1), (1, 0), 1, 1),
    "dilation2": (2, 3, 10, 9, 5, 3, 3, 1, 2, 2, 1),
    "dilation_pairs": (1, 2, 11, 8, 3, 2, 3, (1, 2), (2, 1), (3, 1), 1),
    "groups3": (2, 6, 7, 7, 9, 3, 3, 1, 1, 1, 3),
    "depthwise": (2, 5, 8, 6, 5, 3, 3, 1, 1, 1, 5),
    "depthwise_mult2_stride2": (2, 4, 7, 7, 8, 3, 3, 2, 1, 1, 4),
    "depthwise_dilated_strided": (1, 3, 9, 9, 3, 3, 3, 2, 2, 2, 3),
    "depthwise_unequal_strides": (2, 4, 9, 8, 4, 3, 3, (2, 1), 1, 1, 4),  # GEMM path with one channel per group
    "batch1": (1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1),
    "1x1": (3, 16, 5, 4, 7, 1, 1, 1, 0, 1, 1),
    "stride_gt_kernel": (2, 3, 11, 11, 4, 2, 2, 3, 0, 1, 1),
    "pad_ge_half_kernel": (1, 2, 4, 4, 3, 3, 3, 1, (3, 2), 1, 1),
    "one_input_channel_5x5": (2, 1, 9, 9, 6, 5, 5, 1, 2, 1, 1),
    "kernel_fills_padded_input": (2, 3, 3, 4, 2, 5, 6, 1, 1, 1, 1),
    "reduction_chunks": (2, 20, 7, 9, 140, 3, 3, 1, 1, 1, 1),  # K = 180, M = 140: more than one 128-row chunk
    "empty_batch": (0, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1),
    # wide path with spans longer than a tile: x read in place (stride 1, no padding) with the last tile moved
    # back; phase-split copies for strides, dilation, groups and unequal padding; one image split into tasks
    "wide_in_place_last_tile": (2, 5, 13, 17, 11, 3, 3, 1, 0, 1, 1),
    "wide_1x1_batch1": (1, 7, 9, 10, 5, 1, 1, 1, 0, 1, 1),
    "wide_lenet_conv2": (3, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1),
    "wide_stride3_dilated_groups": (2, 6, 23, 19, 9, 3, 2, (3, 2), (2, 1), (2, 3), 3),
    "wide_stride2_batch1": (1, 4, 30, 26, 10, 3, 3, 2, 1, 1, 1),
    # batched wide positions (images one after another in one run of positions: less tile rounding)
    "wide_batched_stride2": (3, 4, 16, 14, 20, 3, 3, 2, 1, 1, 1),
    "wide_batched_1x1": (4, 6, 7, 7, 9, 1, 1, 1, 0, 1, 1),
    "wide_groups_dilated_pad_pairs": (3, 4, 9, 10, 6, 3, 2, 1, (2, 1), (2, 3), 2),
    # depthwise planes longer than a register block (AVX-512 path), the last block moved back; strided, dilated
    "depthwise_blocks_mult2": (2, 3, 20, 17, 6, 3, 3, 1, 1, 1, 3),
    "depthwise_blocks_strided_dilated": (1, 4, 25, 23, 4, 3, 3, 2, 1, 2, 4),
}
DTYPES = [np.float64, np.float32]


def _arrays(case, dtype, rng):
    N, Ci, H, W, Co, kH, kW, s, p, d, g = case
    x = rng.standard_normal((N, Ci, H, W)).astype(dtype)
    w = rng.standard_normal((Co, Ci // g, kH, kW)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    return x, w, b, {"stride": s, "padding": p, "dilation": d, "groups": g}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_against_torch(name, dtype, rng, torch):
    x, w, b, kw = _arrays(CASES[name], dtype, rng)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    y = conv2d(x, w, b, **kw)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    assert_close("forward", y, yt.detach().numpy(), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    if y.size:
        yt.backward(torch.tensor(g))
    gx, gw, gb = conv2d_backward(g, x, w, **kw)
    assert gx.dtype == gw.dtype == gb.dtype == dtype
    for label, got, param in (("grad x", gx, xt), ("grad weight", gw, wt), ("grad bias", gb, bt)):
        want = np.zeros(param.shape, dtype) if param.grad is None else param.grad.numpy()
        assert_close(label, got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["dilation_pairs", "groups3", "depthwise_mult2_stride2", "depthwise_unequal_strides",
                                  "reduction_chunks", "wide_in_place_last_tile", "wide_stride3_dilated_groups",
                                  "wide_stride2_batch1", "wide_batched_stride2", "depthwise_blocks_mult2", "depthwise_blocks_strided_dilated"])
def test_fast_matches_reference(name, dtype, rng):
    x, w, b, kw = _arrays(CASES[name], dtype, rng)
    assert_close("forward", conv2d(x, w, b, **kw), conv2d_ref(x, w, b, **kw), dtype)
    g = rng.standard_normal(conv2d_ref(x, w, None, **kw).shape).astype(dtype)
    for label, got, want in zip(("grad x", "grad weight", "grad bias"), conv2d_backward(g, x, w, **kw),
                                conv2d_backward_ref(g, x, w, **kw)):
        assert_close(label, got, want, dtype)


@st.composite
def _configs(draw):
    g = draw(st.integers(1, 3))
    cig, m = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    h = draw(st.integers(max(1, d[0] * (kh - 1) + 1 - 2 * p[0]), 9))
    w = draw(st.integers(max(1, d[1] * (kw - 1) + 1 - 2 * p[1]), 9))
    return (draw(st.integers(1, 2)), cig * g, h, w, m * g, kh, kw, s, p, d, g), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=40, deadline=None)
@given(_configs())
def test_property_fast_equals_reference(config):
    case, seed = config
    rng = np.random.default_rng(seed)
    x, w, b, kw = _arrays(case, np.float64, rng)
    y = conv2d(x, w, b, **kw)
    assert_close("forward", y, conv2d_ref(x, w, b, **kw), np.float64)
    g = rng.standard_normal(y.shape)
    for label, got, want in zip(("grad x", "grad weight", "grad bias"), conv2d_backward(g, x, w, **kw),
                                conv2d_backward_ref(g, x, w, **kw)):
        assert_close(label, got, want, np.float64)


@pytest.mark.parametrize("case", [(4, 24, 13, 11, 150, 3, 3, 1, 1, 1, 1),   # dense, reduction chunks
                                  (3, 12, 10, 9, 12, 3, 3, 2, 1, 1, 12)])  # depthwise
def test_one_thread_equals_all_threads(case, rng):
    x, w, b, kw = _arrays(case, np.float32, rng)
    g = rng.standard_normal(conv2d(x, w, b, **kw).shape).astype(np.float32)
    n = get_num_threads()
    try:
        set_num_threads(1)
        one = (conv2d(x, w, b, **kw), *conv2d_backward(g, x, w, **kw))
    finally:
        set_num_threads(n)
    every = (conv2d(x, w, b, **kw), *conv2d_backward(g, x, w, **kw))
    for label, a, c in zip(("forward", "grad x", "grad weight", "grad bias"), one, every):
        assert np.array_equal(a, c), f"{label} differs between 1 and {n} threads"


@pytest.mark.parametrize("case", [(2, 2, 5, 4, 3, 3, 2, (2, 1), 1, (1, 2), 1), (1, 3, 5, 5, 6, 3, 3, 1, 1, 1, 3)])
def test_finite_differences(case, rng):
    x, w, b, kw = _arrays(case, np.float64, rng)
    g = rng.standard_normal(conv2d(x, w, b, **kw).shape)
    gx, gw, gb = conv2d_backward(g, x, w, **kw)
    finite_difference_check(lambda xx: float(np.sum(conv2d(xx, w, b, **kw) * g)), x.copy(), gx)
    finite_difference_check(lambda ww: float(np.sum(conv2d(x, ww, b, **kw) * g)), w.copy(), gw)
    finite_difference_check(lambda bb: float(np.sum(conv2d(x, w, bb, **kw) * g)), b.copy(), gb)


def test_pairs_and_lists_accepted(rng):
    x, w, b, _ = _arrays(CASES["basic"], np.float64, rng)
    assert np.array_equal(conv2d(x, w, b, stride=[1, 1], padding=(1, 1), dilation=(1, 1)), conv2d(x, w, b, 1, 1))


def _bad(**over):
    rng = np.random.default_rng(0)
    args = {"x": rng.standard_normal((2, 4, 6, 6)), "weight": rng.standard_normal((6, 2, 3, 3)), "bias": None,
                "stride": 1, "padding": 1, "dilation": 1, "groups": 2}
    args.update(over)
    return args


@pytest.mark.parametrize("over, exc, match", [
    ({"x": np.zeros((4, 6, 6))}, ValueError, "x must be 4-D"),
    ({"weight": np.zeros((6, 2, 3))}, ValueError, "weight must be 4-D"),
    ({"groups": 3}, ValueError, "not divisible by groups"),
    ({"weight": np.zeros((5, 2, 3, 3))}, ValueError, "output channels 5 not divisible"),
    ({"weight": np.zeros((6, 3, 3, 3))}, ValueError, "expects 6 input channels"),
    ({"groups": 0}, ValueError, "groups must be >= 1"),
    ({"groups": 1.5}, TypeError, "groups must be an int"),
    ({"padding": -1}, ValueError, "padding must be >= 0"),
    ({"stride": 0}, ValueError, "stride must be >= 1"),
    ({"dilation": (1, 0)}, ValueError, "dilation must be >= 1"),
    ({"stride": (1, 2, 3)}, TypeError, "stride must be an int or a pair"),
    ({"weight": np.zeros((6, 2, 9, 3))}, ValueError, "larger than padded input"),
    ({"dilation": 4}, ValueError, "larger than padded input"),
    ({"x": np.zeros((2, 4, 6, 6), np.float32)}, TypeError, "mixed dtypes"),
    ({"x": np.zeros((2, 4, 6, 6), np.int64), "weight": np.zeros((6, 2, 3, 3), np.int64)}, TypeError,
     "must be float32 or float64"),
    ({"bias": np.zeros(5)}, ValueError, "bias must have shape"),
    ({"x": [[1.0]]}, TypeError, "must be a numpy array"),
])
def test_bad_input(over, exc, match):
    args = _bad(**over)
    for fn in (conv2d, conv2d_ref):
        with pytest.raises(exc, match=match):
            fn(**args)


def test_backward_bad_grad_output():
    args = _bad()
    args.pop("bias")
    with pytest.raises(ValueError, match="grad_output must have shape"):
        conv2d_backward(np.zeros((2, 6, 5, 5)), **args)
    with pytest.raises(TypeError, match="mixed dtypes"):
        conv2d_backward(np.zeros((2, 6, 6, 6), np.float32), **args)
