"""kernels.pool: fast kernels equal their NumPy references; 1 thread and all threads give identical results."""
from __future__ import annotations

import numpy as np
import pytest

from kernels import _config
from kernels.pool import (
    adaptive_avgpool2d,
    adaptive_avgpool2d_backward,
    adaptive_avgpool2d_backward_ref,
    adaptive_avgpool2d_ref,
    adaptive_bounds,
    avgpool2d,
    avgpool2d_backward,
    avgpool2d_backward_ref,
    avgpool2d_ref,
    maxpool2d,
    maxpool2d_backward,
    maxpool2d_backward_ref,
    maxpool2d_ref,
    pool_output_size,
)
from tests.helpers import assert_close

DTYPES = [np.float64, np.float32]
# (kernel, stride, padding, dilation, ceil_mode)
GEOMETRIES = [((2, 2), (2, 2), (0, 0), (1, 1), False), ((3, 2), (2, 1), (1, 1), (1, 2), True),
              ((3, 3), (3, 2), (1, 0), (2, 1), False), ((2, 3), (4, 4), (1, 1), (1, 1), True)]


def _out_hw(shape, k, s, p, d, ceil):
    return tuple(pool_output_size(n, *a, ceil) for n, *a in zip(shape[2:], k, s, p, d))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_maxpool_matches_reference(geom, dtype, rng):
    k, s, p, d, ceil = geom
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 0, :2, :2] = 1.0  # ties: the first maximum in scan order wins
    out_hw = _out_hw(x.shape, k, s, p, d, ceil)
    y, idx = maxpool2d(x, k, s, p, d, out_hw)
    y_ref, idx_ref = maxpool2d_ref(x, k, s, p, d, out_hw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(maxpool2d_backward(g, idx, x.shape[2:]), maxpool2d_backward_ref(g, idx, x.shape[2:]))


def test_maxpool_nan_and_inf_follow_torch(rng, torch):
    x = rng.standard_normal((1, 1, 4, 4))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 2:, 2:] = -np.inf
    y, idx = maxpool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
    yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip, divisor", [(True, 0), (False, 0), (True, 3), (False, 5)])
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_avgpool_matches_reference(geom, cip, divisor, dtype, rng):
    k, s, p, _, ceil = geom
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    out_hw = _out_hw(x.shape, k, s, p, (1, 1), ceil)
    y = avgpool2d(x, k, s, p, out_hw, cip, divisor)
    assert_close("avgpool", y, avgpool2d_ref(x, k, s, p, out_hw, cip, divisor), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close("avgpool backward", avgpool2d_backward(g, x.shape[2:], k, s, p, cip, divisor),
                 avgpool2d_backward_ref(g, x.shape[2:], k, s, p, cip, divisor), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_hw, out_hw", [((7, 5), (3, 2)), ((4, 4), (1, 1)), ((3, 5), (5, 7)), ((6, 9), (6, 4))])
def test_adaptive_avgpool_matches_reference(in_hw, out_hw, dtype, rng):
    x = rng.standard_normal((2, 3, *in_hw)).astype(dtype)
    y = adaptive_avgpool2d(x, out_hw)
    assert_close("adaptive", y, adaptive_avgpool2d_ref(x, out_hw), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close("adaptive backward", adaptive_avgpool2d_backward(g, in_hw),
                 adaptive_avgpool2d_backward_ref(g, in_hw), dtype)


def test_adaptive_bounds_are_torchs_formula():
    start, end = adaptive_bounds(10, 3)
    np.testing.assert_array_equal(start, [0, 3, 6])
    np.testing.assert_array_equal(end, [4, 7, 10])


def test_output_size_ceil_mode_rule():
    assert pool_output_size(6, 3, 2, 1, 1, True) == 4  # torch: MaxPool2d(3, 2, 1, ceil_mode=True) on 6 -> 4
    assert pool_output_size(5, 2, 2, 0, 1, True) == 3
    assert pool_output_size(5, 2, 2, 0, 1, False) == 2
    assert pool_output_size(4, 2, 2, 1, 1, True) == 3  # a last window starting in the right padding is dropped


def test_one_thread_and_all_threads_agree(rng):
    x = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    runs = []
    for n in (1, _config.get_num_threads()):
        old = _config.get_num_threads()
        _config.set_num_threads(n)
        try:
            y, idx = maxpool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), (6, 6))
            dxm = maxpool2d_backward(y, idx, (12, 12))
            ya = avgpool2d(x, (3, 3), (2, 2), (1, 1), (6, 6))
            dxa = avgpool2d_backward(ya, (12, 12), (3, 3), (2, 2), (1, 1))
            yd = adaptive_avgpool2d(x, (5, 5))
            dxd = adaptive_avgpool2d_backward(yd, (12, 12))
        finally:
            _config.set_num_threads(old)
        runs.append((y, idx, dxm, ya, dxa, yd, dxd))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_empty_batch_and_bad_input():
    y, idx = maxpool2d(np.zeros((0, 2, 4, 4)), (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
    assert y.shape == idx.shape == (0, 2, 2, 2)
    assert maxpool2d_backward(y, idx, (4, 4)).shape == (0, 2, 4, 4)
    with pytest.raises(TypeError, match="4-d float32/float64"):
        avgpool2d(np.zeros((2, 4, 4)), (2, 2), (2, 2), (0, 0), (2, 2))
    with pytest.raises(TypeError, match="4-d float32/float64"):
        adaptive_avgpool2d(np.zeros((1, 1, 4, 4), np.int32), (2, 2))
