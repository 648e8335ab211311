"""nn.quant: QuantLinear/QuantConv2d against the float layer that simulates the same arithmetic, the
kernel's int64 reference (bit-exact), storage, state dicts and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from kernels.conv import conv2d_ref
from kernels.int8 import qconv2d_ref, qgemm_requant_ref
from nn.conv import Conv2d
from nn.linear import Linear
from nn.quant import QuantConv2d, QuantLinear, dequantize, quantize

# A fixed-point requantisation rounds twice (SRDHM, then the shift) with a Q31 multiplier; the float
# simulation rounds once. Documented bound: 1 LSB on a small fraction of outputs (kernels/README.md).
MAX_LSB, MAX_FRACTION = 1, 0.02


def _compare(ours, sim):
    diff = np.abs(ours.astype(np.int64) - sim.astype(np.int64))
    assert diff.max() <= MAX_LSB, f"max diff {diff.max()} LSB"
    assert (diff > 0).mean() <= MAX_FRACTION, f"{100 * (diff > 0).mean():.2f}% of outputs differ"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [np.uint8, np.int8])
def test_quant_linear_matches_float_simulation(rng, dtype, act):
    lin = Linear(70, 33, rng=rng, dtype=dtype)
    x = rng.standard_normal((2, 9, 70)).astype(dtype)
    s_in, za = 0.03, (120 if act == np.uint8 else -5)
    s_out, zo = 0.02, (128 if act == np.uint8 else 3)
    ql = QuantLinear.from_float(lin, s_in, za, s_out, zo, act)
    x_q = quantize(x, s_in, za, act)
    y_q = ql(x_q)
    assert y_q.dtype == act and y_q.shape == (2, 9, 33)
    # float layer with the fake-quantised weights and bias, on the dequantised input
    fake = Linear(70, 33, dtype=np.float64)
    fake.weight[...] = ql.weight.astype(np.float64) * ql.weight_scale
    fake.bias[...] = ql.bias.astype(np.float64) * (s_in * ql.weight_scale)
    _compare(y_q, quantize(fake(dequantize(x_q, s_in, za)), s_out, zo, act))
    # bit-exact against the kernel's int64 reference
    want = qgemm_requant_ref(x_q.reshape(-1, 70), ql.weight.T, za, 0, ql.bias, ql.multiplier, ql.shift, zo, act)
    np.testing.assert_array_equal(y_q.reshape(-1, 33), want)
    # the quantised layer approximates the float one within a few output steps
    assert np.abs(dequantize(y_q, s_out, zo) - lin(dequantize(x_q, s_in, za).astype(dtype))).max() < 5 * s_out


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_quant_conv2d_matches_float_simulation(rng, stride, padding, dilation):
    conv = Conv2d(3, 8, 3, stride=stride, padding=padding, dilation=dilation, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 11, 10))
    s_in, za, s_out, zo = 0.04, 100, 0.05, 90
    qc = QuantConv2d.from_float(conv, s_in, za, s_out, zo)
    x_q = quantize(x, s_in, za)
    y_q = qc(x_q)
    W = qc.weight.astype(np.float64) * qc.weight_scale
    b = qc.bias.astype(np.float64) * (s_in * qc.weight_scale)
    sim = conv2d_ref(dequantize(x_q, s_in, za), W, b, stride, padding, dilation, 1)  # zero padding in float
    _compare(y_q, quantize(sim, s_out, zo))
    np.testing.assert_array_equal(y_q, qconv2d_ref(x_q, qc.weight, za, 0, qc.bias, stride, padding, dilation,
                                                   qc.multiplier, qc.shift, zo, np.uint8))
    np.testing.assert_array_equal(qc(x_q[0]), y_q[0])  # unbatched input


def test_storage_state_dict_and_inference_only(rng):
    lin = Linear(50, 20, rng=rng)
    ql = QuantLinear.from_float(lin, 0.05, 128, 0.1, 128)
    assert ql.storage_bytes() == 50 * 20 * 1 + 20 * 4 + 7 * 8  # int8 weights, int32 bias, 7 scalars
    assert ql.weight.dtype == np.int8 and ql.bias.dtype == np.int32
    conv = Conv2d(4, 6, 3, bias=False, rng=rng)
    assert QuantConv2d.from_float(conv, 0.05, 0, 0.1, 0).storage_bytes() == 6 * 4 * 9 + 7 * 8
    x_q = rng.integers(0, 256, (5, 50)).astype(np.uint8)
    y = ql(x_q)
    other = QuantLinear.from_float(Linear(50, 20, rng=rng), 0.05, 128, 0.1, 128)
    other.load_state_dict(ql.state_dict())
    np.testing.assert_array_equal(other(x_q), y)  # the packed-weight cache follows the loaded buffers
    assert list(ql.state_dict())[:2] == ["weight", "bias"] and ql.state_dict()["multiplier"] == ql.multiplier
    with pytest.raises(RuntimeError, match="inference-only"):
        ql.backward(np.zeros((5, 20)))


def test_bad_input(rng):
    lin = Linear(8, 4, rng=rng)
    ql = QuantLinear.from_float(lin, 0.05, 128, 0.1, 128)
    with pytest.raises(TypeError, match="expects uint8 activations"):
        ql(rng.standard_normal((2, 8)))
    with pytest.raises(TypeError, match="expects uint8 activations"):
        ql(np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        ql(np.zeros((2, 7), np.uint8))
    with pytest.raises(ValueError, match="must lie in"):
        QuantLinear.from_float(lin, 0.05, 128, 1e-6, 128)  # S_in S_w / S_out >= 1
    with pytest.raises(ValueError, match="input_zero_point"):
        QuantLinear.from_float(lin, 0.05, 300, 0.1, 128)
    with pytest.raises(ValueError, match="output_zero_point"):
        QuantLinear.from_float(lin, 0.05, 0, 0.1, 200, np.int8)
    with pytest.raises(ValueError, match="input_scale"):
        QuantLinear.from_float(lin, -1.0, 0, 0.1, 0)
    with pytest.raises(ValueError, match="groups"):
        QuantConv2d.from_float(Conv2d(4, 4, 3, groups=2, rng=rng), 0.05, 0, 0.1, 0)
    qc = QuantConv2d.from_float(Conv2d(2, 3, 3, rng=rng), 0.05, 0, 0.1, 0)
    with pytest.raises(ValueError, match="input channels"):
        qc(np.zeros((1, 3, 5, 5), np.uint8))
