"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d against torch, finite differences, errors."""
from __future__ import annotations

import numpy as np
import pytest

from nn.interop import to_torch
from nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from tests.helpers import check_module_against_torch, gradcheck_module
from tests.nn.test_layers import one_thread  # noqa: F401 (fixture)

DTYPES = [np.float64, np.float32]

POOL_CASES = {  # name: (layer, input shape)
    "max-2x2": (lambda: MaxPool2d(2), (2, 3, 8, 6)),
    "max-batch1-odd": (lambda: MaxPool2d(3, stride=2), (1, 2, 7, 9)),
    "max-ceil-pad": (lambda: MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 6, 7)),
    "max-ceil-nonsquare": (lambda: MaxPool2d((2, 3), stride=(2, 2), ceil_mode=True), (2, 2, 5, 8)),
    "max-dilation": (lambda: MaxPool2d(2, stride=1, dilation=2, padding=1), (2, 2, 6, 5)),
    "max-stride>kernel": (lambda: MaxPool2d(2, stride=3), (2, 2, 8, 7)),
    "max-empty-batch": (lambda: MaxPool2d(2), (0, 2, 4, 4)),
    "max-unbatched": (lambda: MaxPool2d(2), (3, 4, 5)),
    "avg-2x2": (lambda: AvgPool2d(2), (2, 3, 8, 6)),
    "avg-pad-ceil": (lambda: AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 6, 7)),
    "avg-no-count-pad": (lambda: AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                         (2, 2, 6, 7)),
    "avg-divisor": (lambda: AvgPool2d((3, 2), stride=(1, 2), padding=1, divisor_override=4), (1, 2, 5, 6)),
    "avg-empty-batch": (lambda: AvgPool2d(2), (0, 2, 4, 4)),
    "adaptive-1x1": (lambda: AdaptiveAvgPool2d(1), (2, 4, 5, 7)),
    "adaptive-3x2": (lambda: AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    "adaptive-upsample": (lambda: AdaptiveAvgPool2d((5, 4)), (1, 2, 3, 3)),
    "adaptive-none": (lambda: AdaptiveAvgPool2d((None, 3)), (2, 2, 4, 7)),
    "adaptive-unbatched": (lambda: AdaptiveAvgPool2d(2), (2, 5, 5)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling_matches_torch(case, dtype, rng, torch):
    make, shape = POOL_CASES[case]
    m = make()
    x = rng.standard_normal(shape).astype(dtype)
    check_module_against_torch(m, to_torch(m), x, rng)


def test_maxpool_gradient_goes_to_the_first_maximum(torch):
    x = np.zeros((1, 1, 3, 3))  # every window is a tie; overlapping windows (stride 1) accumulate
    m = MaxPool2d(2, stride=1)
    m(x)
    g = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    xt = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.nn.MaxPool2d(2, stride=1)(xt).backward(torch.tensor(g))
    np.testing.assert_array_equal(m.backward(g), xt.grad.numpy())


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["max-ceil-pad", "max-dilation", "avg-no-count-pad", "avg-divisor", "adaptive-3x2"])
def test_pooling_finite_differences(case, rng):
    make, shape = POOL_CASES[case]
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1  # distinct values: no ties in max windows
    gradcheck_module(make(), x.astype(np.float64), rng)


def test_pooling_errors():
    with pytest.raises(ValueError, match="return_indices"):
        MaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="at most half"):
        MaxPool2d(3, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        AvgPool2d(2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        MaxPool2d(3)(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match="4-d input"):
        MaxPool2d(2)(np.zeros((4, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        AvgPool2d(2)(np.zeros((1, 1, 4, 4), np.int64))
    with pytest.raises(TypeError, match="kernel_size"):
        MaxPool2d("2")
    with pytest.raises(ValueError, match="divisor_override"):
        AvgPool2d(2, divisor_override=0)
    with pytest.raises(ValueError, match="output_size"):
        AdaptiveAvgPool2d(0)
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        MaxPool2d(2).backward(np.zeros((1, 1, 2, 2)))
    m = MaxPool2d(2)
    m(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="grad_output shape"):
        m.backward(np.zeros((1, 1, 3, 3)))
