"""Conv1d, ConvTranspose2d, Upsample and AdaptiveMaxPool2d against torch, finite differences, errors, interop."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kernels import _config
from kernels.conv import conv2d
from kernels.pool import adaptive_maxpool2d, adaptive_maxpool2d_ref
from nn.containers import Sequential
from nn.conv import Conv1d, Conv2d, ConvTranspose2d, conv_transpose2d_forward
from nn.interop import from_torch, to_torch
from nn.pooling import AdaptiveMaxPool2d
from nn.upsample import Upsample
from tests.helpers import assert_close, check_module_against_torch, gradcheck_module
from tests.nn.test_interop import _same_state
from tests.nn.test_layers import one_thread  # noqa: F401 (fixture)

DTYPES = [np.float64, np.float32]


def _x(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _against_torch(m, x, rng, scale=1.0):
    check_module_against_torch(m, to_torch(m), x, rng, scale=scale)


# ------------------------------------------------------------------------------------------ Conv1d

CONV1D_CASES = {  # name: ((in_channels, out_channels, kernel_size), other options, input shape)
    "basic": ((3, 4, 3), {}, (2, 3, 9)),
    "stride-padding": ((3, 5, 4), {"stride": 3, "padding": 2}, (2, 3, 11)),
    "dilation": ((2, 3, 3), {"dilation": 3, "padding": 1}, (3, 2, 10)),
    "groups": ((4, 6, 3), {"groups": 2, "stride": 2}, (2, 4, 8)),
    "depthwise": ((5, 5, 5), {"groups": 5, "padding": 2}, (2, 5, 7)),
    "same-even": ((2, 3, 4), {"padding": "same"}, (2, 2, 7)),
    "valid-no-bias": ((3, 2, 2), {"padding": "valid", "bias": False}, (2, 3, 5)),
    "batch1-kernel-is-length": ((2, 4, (6,)), {}, (1, 2, 6)),
    "unbatched": ((3, 2, 3), {"padding": 1}, (3, 5)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own copy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV1D_CASES))
def test_conv1d_matches_torch(case, dtype, rng, torch):
    args, kwargs, shape = CONV1D_CASES[case]
    _against_torch(Conv1d(*args, **kwargs, rng=rng, dtype=dtype), _x(rng, shape, dtype), rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["stride-padding", "groups", "same-even", "unbatched"])
def test_conv1d_finite_differences(case, rng):
    args, kwargs, shape = CONV1D_CASES[case]
    m = Conv1d(*args, **kwargs, rng=rng, dtype=np.float64)
    gradcheck_module(m, rng.standard_normal(shape[:-1] + (min(shape[-1], 7),)), rng)


def test_conv1d_is_the_2d_layer_on_height_one(rng):
    """One implementation: Conv1d equals Conv2d with a (1, k) kernel on (N, C, 1, L), bit for bit."""
    m1 = Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, rng=rng, dtype=np.float64)
    m2 = Conv2d(4, 6, (1, 3), stride=(1, 2), padding=(0, 1), dilation=(1, 2), groups=2, dtype=np.float64)
    m2.weight[...] = m1.weight[:, :, None, :]
    m2.bias[...] = m1.bias
    x, g = rng.standard_normal((2, 4, 13)), rng.standard_normal((2, 6, 6))
    np.testing.assert_array_equal(m1(x), m2(x[:, :, None])[:, :, 0])
    np.testing.assert_array_equal(m1.backward(g), m2.backward(g[:, :, None])[:, :, 0])
    np.testing.assert_array_equal(dict(m1.named_grads())["weight"], dict(m2.named_grads())["weight"][:, :, 0])


def test_conv1d_parameters_and_init(rng, torch):
    m = Conv1d(6, 4, 5, groups=2, rng=rng)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (4, 3, 5) and m.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 5)  # kaiming_uniform(a=sqrt(5)) and the bias both give 1/sqrt(fan_in)
    assert np.abs(m.weight).max() <= bound and np.abs(m.bias).max() <= bound
    assert m.kernel_size == (5,) and m.stride == (1,) and m.padding == (0,)
    assert repr(to_torch(m)) == "Conv1d(6, 4, kernel_size=(5,), stride=(1,), groups=2)"


def test_conv1d_errors():
    m = Conv1d(3, 4, 3)
    with pytest.raises(ValueError, match=r"expects a .*input \(N, C, L\) or \(C, L\)"):
        m(np.zeros((2, 3, 1, 9), np.float32))
    with pytest.raises(ValueError, match="got 2 input channels"):
        m(np.zeros((2, 2, 9), np.float32))
    with pytest.raises(ValueError, match="input length 2 .* smaller than the dilated kernel 3"):
        m(np.zeros((2, 3, 2), np.float32))
    with pytest.raises(TypeError, match="float64 input but its parameters are float32"):
        m(np.zeros((2, 3, 9)))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        Conv1d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be an int, a 1-tuple, 'valid' or 'same'"):
        Conv1d(3, 4, 3, padding="full")
    with pytest.raises(TypeError, match="kernel_size must be an int or a 1-tuple"):
        Conv1d(3, 4, (3, 3))
    with pytest.raises(ValueError, match="divisible by groups=2"):
        Conv1d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode='reflect' is not supported"):
        Conv1d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((2, 4, 7), np.float32))


# ------------------------------------------------------------------------------------------ ConvTranspose2d

TRANSPOSE_CASES = {  # name: ((in_channels, out_channels, kernel_size), other options, input shape)
    "basic": ((3, 4, 3), {}, (2, 3, 4, 5)),
    "stride2-padding": ((3, 2, 3), {"stride": 2, "padding": 1}, (2, 3, 4, 4)),
    "output-padding": ((2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 2, 3, 5)),
    "non-square": ((2, 4, (2, 3)), {"stride": (3, 2), "padding": (1, 0), "output_padding": (2, 1)}, (1, 2, 3, 4)),
    # output_padding >= stride is allowed while it is below the dilation
    "dilation-output-padding": ((2, 2, 2), {"dilation": 3, "padding": 1, "output_padding": 2}, (2, 2, 3, 3)),
    "groups": ((4, 6, 3), {"stride": 2, "groups": 2}, (2, 4, 3, 3)),
    "depthwise": ((3, 3, 4), {"stride": 2, "padding": 1, "groups": 3}, (2, 3, 5, 4)),
    "large-padding": ((2, 2, 3), {"stride": 2, "padding": 2}, (2, 2, 4, 5)),
    "no-bias-odd": ((3, 5, 5), {"stride": 3, "bias": False}, (3, 3, 3, 1)),
    "unbatched": ((2, 3, 3), {"stride": 2, "output_padding": 1}, (2, 3, 4)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRANSPOSE_CASES))
def test_conv_transpose2d_matches_torch(case, dtype, rng, torch):
    args, kwargs, shape = TRANSPOSE_CASES[case]
    _against_torch(ConvTranspose2d(*args, **kwargs, rng=rng, dtype=dtype), _x(rng, shape, dtype), rng)


@settings(max_examples=12, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), op=st.integers(0, 2),
       g=st.sampled_from([1, 2]), H=st.integers(1, 5), W=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_conv_transpose2d_random_geometry_matches_torch(k, s, p, d, op, g, H, W, seed):
    op = min(op, max(s, d) - 1)  # the largest output_padding torch allows
    assume((min(H, W) - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)  # non-positive output sizes: errors, below
    rng = np.random.default_rng(seed)
    m = ConvTranspose2d(2 * g, 3 * g, k, s, p, op, g, dilation=d, rng=rng, dtype=np.float64)
    check_module_against_torch(m, to_torch(m), rng.standard_normal((2, 2 * g, H, W)), rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["output-padding", "dilation-output-padding", "groups", "large-padding"])
def test_conv_transpose2d_finite_differences(case, rng):
    args, kwargs, shape = TRANSPOSE_CASES[case]
    m = ConvTranspose2d(*args, **kwargs, rng=rng, dtype=np.float64)
    gradcheck_module(m, rng.standard_normal((1,) + shape[1:]), rng)


def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng):
    """<conv_transpose(x, W), z> = <x, conv2d(z, W)> for the same weight read as OIHW."""
    W = rng.standard_normal((4, 3, 3, 2))  # (Ci, Co/G, kH, kW) with G = 2: a conv (4 <- 6 channels)
    x = rng.standard_normal((2, 4, 3, 4))
    y = conv_transpose2d_forward(x, W, None, (2, 1), (1, 0), (0, 0), (1, 2), 2)
    z = rng.standard_normal(y.shape)
    lhs = float(np.sum(y * z))
    rhs = float(np.sum(x * conv2d(z, W, None, (2, 1), (1, 0), (1, 2), 2)))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_conv_transpose2d_parameters_and_init(rng, torch):
    m = ConvTranspose2d(4, 6, (3, 2), groups=2, rng=rng)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (4, 3, 3, 2) == tuple(torch.nn.ConvTranspose2d(4, 6, (3, 2), groups=2).weight.shape)
    bound = 1 / np.sqrt(3 * 6)  # torch's fan_in of (Ci, Co/G, kH, kW) is Co/G * kH * kW
    assert np.abs(m.weight).max() <= bound and np.abs(m.bias).max() <= bound
    assert np.abs(m.weight).max() > 0.8 * bound


def test_conv_transpose2d_errors():
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than either stride"):
        ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(TypeError, match="padding must be an int or a pair"):
        ConvTranspose2d(2, 2, 3, padding="same")
    with pytest.raises(ValueError, match="divisible by groups=3"):
        ConvTranspose2d(3, 4, 3, groups=3)
    m = ConvTranspose2d(2, 3, 3, padding=2)
    with pytest.raises(ValueError, match=r"expects a .*input \(N, C, H, W\) or \(C, H, W\)"):
        m(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="got 3 input channels"):
        m(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"gives output size \(-1, 2\)"):
        m(np.zeros((1, 2, 1, 4), np.float32))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((1, 3, 2, 2), np.float32))
    m(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="grad_output shape .* does not match the forward output"):
        m.backward(np.zeros((1, 3, 3, 3), np.float32))


# ------------------------------------------------------------------------------------------ Upsample

UPSAMPLE_CASES = {  # name: (constructor kwargs, input shape)
    "nearest-x2": ({"scale_factor": 2}, (2, 3, 4, 5)),
    "nearest-x3-odd": ({"scale_factor": 3}, (1, 2, 3, 1)),
    "nearest-1.5": ({"scale_factor": 1.5}, (2, 2, 5, 3)),
    "nearest-pair-non-integer": ({"scale_factor": (2.3, 0.7)}, (2, 1, 4, 7)),
    "nearest-size": ({"size": (7, 3)}, (2, 2, 3, 5)),
    "nearest-recompute": ({"scale_factor": 1.7, "recompute_scale_factor": True}, (1, 2, 5, 6)),
    "bilinear-x2": ({"scale_factor": 2, "mode": "bilinear"}, (2, 3, 4, 5)),
    "bilinear-x2-corners": ({"scale_factor": 2, "mode": "bilinear", "align_corners": True}, (2, 3, 4, 5)),
    "bilinear-1.7": ({"scale_factor": 1.7, "mode": "bilinear", "align_corners": False}, (1, 2, 5, 3)),
    "bilinear-1.7-corners": ({"scale_factor": (1.7, 2.6), "mode": "bilinear", "align_corners": True}, (1, 2, 5, 3)),
    "bilinear-down-size": ({"size": (3, 2), "mode": "bilinear"}, (2, 2, 7, 5)),
    "bilinear-size-one-corners": ({"size": (1, 6), "mode": "bilinear", "align_corners": True}, (2, 2, 4, 3)),
    "bilinear-same-height": ({"size": (4, 9), "mode": "bilinear"}, (2, 1, 4, 4)),
    "bilinear-recompute": ({"scale_factor": 2.5, "mode": "bilinear", "recompute_scale_factor": True}, (1, 1, 3, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(UPSAMPLE_CASES))
def test_upsample_matches_torch(case, dtype, rng, torch):
    kwargs, shape = UPSAMPLE_CASES[case]
    m = Upsample(**kwargs)
    x = _x(rng, shape, dtype)
    _against_torch(m, x, rng)
    if m.mode == "nearest":  # a gather: bit for bit
        np.testing.assert_array_equal(m(x), to_torch(m)(torch.tensor(x)).numpy())


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_large_non_integer_scales_pick_torchs_indices(mode, rng, torch):
    """float32 index arithmetic, as ATen: positions where float64 would round the other way agree with torch."""
    x = rng.standard_normal((1, 1, 37, 23))
    for kwargs in ({"scale_factor": 0.37}, {"scale_factor": (1 / 3, 3.0001)}, {"size": (100, 57)}):
        _against_torch(Upsample(**kwargs, mode=mode), x, rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["nearest-1.5", "bilinear-1.7", "bilinear-1.7-corners", "bilinear-down-size"])
def test_upsample_finite_differences(case, rng):
    kwargs, shape = UPSAMPLE_CASES[case]
    gradcheck_module(Upsample(**kwargs), rng.standard_normal((1,) + shape[1:]), rng)


def test_upsample_values_by_hand():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    np.testing.assert_array_equal(Upsample(scale_factor=2)(x)[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2],
                                                                       [3, 3, 4, 4], [3, 3, 4, 4]])
    corners = Upsample(size=(3, 3), mode="bilinear", align_corners=True)(x)[0, 0]
    np.testing.assert_allclose(corners, [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])
    # align_corners=False, x2: rows at source 0 (clamped), 0.25, 0.75, 1 (clamped to the last row)
    half = Upsample(scale_factor=2, mode="bilinear")(x)[0, 0, :, 0]
    np.testing.assert_allclose(half, [1, 1.5, 2.5, 3])


def test_upsample_errors():
    with pytest.raises(ValueError, match=r"mode='bicubic' is not supported; lwnn has 'nearest' and 'bilinear'"):
        Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners can only be set with mode='bilinear'"):
        Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        Upsample(size=4, scale_factor=2)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        Upsample()
    with pytest.raises(ValueError, match="scale_factor must be a positive float"):
        Upsample(scale_factor=-2)
    with pytest.raises(ValueError, match="size must be a positive int"):
        Upsample(size=(2, 2.5))
    m = Upsample(scale_factor=0.2)
    with pytest.raises(ValueError, match=r"expects a .*input \(N, C, H, W\) \(lwnn has no 1-d or 3-d"):
        m(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"gives output size \(0, 1\)"):
        m(np.zeros((1, 1, 4, 5)))
    with pytest.raises(TypeError, match="float32 or float64"):
        m(np.zeros((1, 1, 10, 10), np.int64))
    m = Upsample(size=3, mode="bilinear")
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((1, 1, 3, 3)))
    m(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"grad_output shape \(1, 1, 2, 2\) != output shape \(1, 1, 3, 3\)"):
        m.backward(np.zeros((1, 1, 2, 2)))


# ------------------------------------------------------------------------------------------ AdaptiveMaxPool2d

ADAPTIVE_MAX_CASES = {  # name: (output_size, input shape)
    "global": (1, (2, 3, 5, 4)),
    "bins": ((3, 2), (2, 2, 7, 5)),
    "keep-width": ((2, None), (1, 3, 5, 3)),
    "larger-than-input": ((6, 4), (2, 1, 4, 3)),
    "batch1-odd": (3, (1, 2, 7, 7)),
    "unbatched": (2, (3, 5, 5)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ADAPTIVE_MAX_CASES))
def test_adaptive_maxpool2d_matches_torch(case, dtype, rng, torch):
    out, shape = ADAPTIVE_MAX_CASES[case]
    _against_torch(AdaptiveMaxPool2d(out), _x(rng, shape, dtype), rng)


def test_adaptive_maxpool2d_ties_go_to_the_first_maximum_as_torch(rng, torch):
    x = np.round(rng.standard_normal((2, 2, 6, 5))).clip(-1, 1)  # many ties
    _against_torch(AdaptiveMaxPool2d((2, 3)), x, rng)
    _against_torch(AdaptiveMaxPool2d(1), np.ones((1, 2, 3, 3)), rng)


def test_adaptive_maxpool2d_kernel_equals_reference(rng):
    x = rng.standard_normal((2, 3, 9, 7))
    x[0, 0, 1, 1] = x[0, 1, 4, 2] = x[1, 2, 8, 6] = np.nan
    x[1, 0] = -np.inf
    for out in [(1, 1), (4, 3), (9, 7), (11, 2)]:
        y, idx = adaptive_maxpool2d(x, out)
        y_ref, idx_ref = adaptive_maxpool2d_ref(x, out)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
    assert np.isnan(adaptive_maxpool2d(x, (1, 1))[0][0, 0, 0, 0])


def test_adaptive_maxpool2d_one_thread_and_all_threads_agree(rng):
    x = rng.standard_normal((4, 8, 12, 11)).astype(np.float32)
    runs = []
    for n in (1, _config.get_num_threads()):
        old = _config.get_num_threads()
        _config.set_num_threads(n)
        try:
            runs.append(adaptive_maxpool2d(x, (5, 3)))
        finally:
            _config.set_num_threads(old)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("one_thread")
def test_adaptive_maxpool2d_finite_differences(rng):
    x = rng.permutation(60).reshape(1, 3, 4, 5) / 10.0  # distinct values: max is differentiable
    gradcheck_module(AdaptiveMaxPool2d((3, 2)), x, rng)


def test_adaptive_maxpool2d_errors():
    with pytest.raises(ValueError, match="return_indices=True is not supported"):
        AdaptiveMaxPool2d(1, return_indices=True)
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        AdaptiveMaxPool2d(0)
    m = AdaptiveMaxPool2d(1)
    with pytest.raises(ValueError, match=r"expects a .*input \(N, C, H, W\) or \(C, H, W\)"):
        m(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="spatial size must be non-empty"):
        m(np.zeros((1, 2, 0, 3)))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((1, 1, 1, 1)))
    m(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="does not match the forward output"):
        m.backward(np.zeros((1, 2, 2, 2)))


# ------------------------------------------------------------------------------------------ interop

def _torch_layers(torch):
    tnn = torch.nn
    return [tnn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), tnn.Conv1d(3, 3, 2, padding="same",
                                                                                       bias=False),
            tnn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dilation=(1, 2)),
            tnn.ConvTranspose2d(2, 3, 3, bias=False),
            tnn.Upsample(scale_factor=2.5), tnn.Upsample(size=(4, 5), mode="bilinear", align_corners=True),
            tnn.UpsamplingBilinear2d(scale_factor=2), tnn.UpsamplingNearest2d(size=3),
            tnn.AdaptiveMaxPool2d(1), tnn.AdaptiveMaxPool2d((2, None))]


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_layers_convert_both_ways(dtype, rng, torch):
    for t in _torch_layers(torch):
        t.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
        m = from_torch(t)
        _same_state(m, t, dtype)
        back = to_torch(m)
        _same_state(m, back, dtype)
        name = type(t).__name__
        assert type(back).__name__ == ("Upsample" if name.startswith("Upsampling") else name)
        shape = (2, t.in_channels, 9) if name == "Conv1d" else (2, getattr(t, "in_channels", 3), 5, 4)
        x = _x(rng, shape, dtype)
        want = t(torch.tensor(x)).detach().numpy()
        assert_close(f"{name} from_torch", m(x), want, dtype)
        assert_close(f"{name} to_torch", back(torch.tensor(x)).detach().numpy(), want, dtype)


def test_new_layers_in_a_sequential_match_torch(rng, torch):
    m = Sequential(ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype=np.float64),
                   Upsample(scale_factor=1.5, mode="bilinear"), AdaptiveMaxPool2d((2, 3)))
    _against_torch(m, rng.standard_normal((2, 3, 3, 4)), rng)
