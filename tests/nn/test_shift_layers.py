"""nn.shift: ShiftLinear/ShiftConv2d equal a float layer with the decoded power-of-two weights on the
fake-quantised input (exactly in float64), integer core bit-exact, storage, state dicts, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from kernels.conv import conv2d_ref
from kernels.shift import shift_gemm_ref, unpack_codes
from nn.conv import Conv2d
from nn.linear import Linear
from nn.shift import ShiftConv2d, ShiftLinear
from tests.helpers import assert_close


def _check(name, got, want, dtype):
    if dtype == np.float64:  # every product and partial sum is an integer times one power of two: exact
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        assert_close(name, got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_terms", [1, 2, 4])
def test_shift_linear_equals_decoded_float_layer(rng, dtype, n_terms):
    lin = Linear(45, 21, rng=rng, dtype=dtype)
    sl = ShiftLinear.from_float(lin, n_terms=n_terms, act_scale=2.0 ** -5)
    x = rng.standard_normal((3, 4, 45)).astype(dtype)
    y = sl(x)
    assert y.dtype == dtype and y.shape == (3, 4, 21)
    fake = Linear(45, 21, dtype=dtype)
    fake.weight[...] = sl.decoded_weight()
    fake.bias[...] = lin.bias
    x_fq = (sl.quantize_input(x).astype(np.float64) * sl.act_scale).astype(dtype)
    _check("ShiftLinear vs decoded float Linear", y, fake(x_fq), dtype)
    x_int = sl.quantize_input(x.reshape(-1, 45))
    np.testing.assert_array_equal(sl.forward_int(x_int), shift_gemm_ref(unpack_codes(sl._packed()), x_int))
    # more terms approximate the float weights better (ShiftCNN)
    assert np.abs(sl.decoded_weight() - lin.weight).max() <= 0.34 * np.abs(lin.weight).max()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shift_conv2d_equals_decoded_float_conv(rng, dtype):
    conv = Conv2d(3, 5, 3, stride=2, padding=1, rng=rng, dtype=dtype)
    sc = ShiftConv2d.from_float(conv, n_terms=2)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    y = sc(x)
    x_fq = (sc.quantize_input(x).astype(np.float64) * sc.act_scale).astype(dtype)
    want = conv2d_ref(x_fq, sc.decoded_weight().astype(dtype), conv.bias, 2, 1, 1, 1)
    _check("ShiftConv2d vs decoded float conv", y, want, dtype)
    _check("unbatched", sc(x[0]), y[0], dtype)


def test_storage_and_state_dict(rng):
    lin = Linear(64, 32, rng=rng)
    for n_terms in (1, 2):
        sl = ShiftLinear.from_float(lin, n_terms=n_terms)
        # 4 bits per term, padded to 16 outputs and 8 / n_terms inputs, plus the float64 bias
        assert sl.storage_bytes() == 32 * 64 * n_terms // 2 + 32 * 8
        assert sl.codes.dtype == np.int32
    x = rng.standard_normal((5, 64)).astype(np.float32)
    other = ShiftLinear.from_float(Linear(64, 32, rng=rng), n_terms=2)
    other.load_state_dict(sl.state_dict())
    np.testing.assert_array_equal(other(x), sl(x))
    with pytest.raises(RuntimeError, match="inference-only"):
        sl.backward(np.zeros((5, 32), np.float32))


def test_bad_input(rng):
    sl = ShiftLinear.from_float(Linear(8, 4, rng=rng))
    with pytest.raises(TypeError, match="float32 or float64"):
        sl(np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        sl(np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="power of two"):
        ShiftLinear.from_float(Linear(8, 4, rng=rng), act_scale=0.1)
    with pytest.raises(ValueError, match="act_bits"):
        ShiftLinear.from_float(Linear(8, 4, rng=rng), act_bits=12)
    with pytest.raises(ValueError, match="n_terms"):
        ShiftLinear.from_float(Linear(8, 4, rng=rng), n_terms=3)
    with pytest.raises(ValueError, match="groups"):
        ShiftConv2d.from_float(Conv2d(4, 4, 3, groups=2, rng=rng))
