"""nn.binary: BinaryLinear / BinaryConv2d against the float layers that simulate the same arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.conv import conv2d_ref
from nn.binary import BinaryConv2d, BinaryLinear
from nn.checkpoint import read_checkpoint, save_checkpoint
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear, linear_forward
from tests.helpers import assert_close

DTYPES = [np.float64, np.float32]


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0).astype(a.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10, deadline=None)
@given(I=st.integers(1, 150), O=st.integers(1, 20), lead=st.sampled_from([(1,), (6,), (2, 3)]),
       scale=st.booleans(), act=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_binary_linear_equals_float_simulation(dtype, I, O, lead, scale, act, bias, seed):
    rng = np.random.default_rng(seed)
    lin = Linear(I, O, bias=bias, rng=rng, dtype=dtype)
    x = rng.standard_normal((*lead, I)).astype(dtype)
    x[..., ::7] = 0.0  # sign(0) = +1
    m = BinaryLinear.from_float(lin, scale=scale, act_scale=act)
    y = m(x)
    assert y.dtype == dtype and y.shape == (*lead, O)
    alpha = np.abs(lin.weight).mean(axis=1) if scale else np.ones(O, dtype)
    want = linear_forward(_sign(x), _sign(lin.weight) * alpha[:, None], None)  # float simulation
    if act:
        want = want * np.abs(x).mean(axis=-1, keepdims=True)
    if bias:
        want = want + lin.bias
    assert_close("BinaryLinear", y, want, dtype, scale=I)


def _float_binary_conv(x, conv, alpha, act):
    """sign(x) padded with +1, conv with sign(W) * alpha; K = box-filtered mean |x| if ``act``."""
    (pt, pl), (pb, pr) = conv._pads
    xs = np.pad(_sign(x), ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=1.0)
    y = conv2d_ref(xs, _sign(conv.weight) * alpha[:, None, None, None], None, conv.stride, 0, conv.dilation)
    if act:
        A = np.pad(np.abs(x).mean(axis=1, keepdims=True), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        kH, kW = conv.kernel_size
        box = np.full((1, 1, kH, kW), 1.0 / (kH * kW), x.dtype)
        y = y * conv2d_ref(A, box, None, conv.stride, 0, conv.dilation)
    return y if conv.bias is None else y + conv.bias[:, None, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Ci,k,s,p,d", [(3, 3, 1, 1, 1), (70, (2, 3), 2, (0, 1), (1, 2)), (64, 2, 1, "same", 1),
                                         (5, 1, 1, 0, 1)])
@pytest.mark.parametrize("scale,act", [(True, False), (False, False), (True, True)])
def test_binary_conv2d_equals_float_simulation(dtype, Ci, k, s, p, d, scale, act, rng):
    conv = Conv2d(Ci, 6, k, s, p, d, rng=rng, dtype=dtype)
    m = BinaryConv2d.from_float(conv, scale=scale, act_scale=act)
    x = rng.standard_normal((2, Ci, 7, 8)).astype(dtype)
    x[:, :, ::3] = 0.0
    alpha = np.abs(conv.weight).mean(axis=(1, 2, 3)) if scale else np.ones(6, dtype)
    want = _float_binary_conv(x, conv, alpha, act)
    K = Ci * conv.kernel_size[0] * conv.kernel_size[1]
    y = m(x)
    assert y.dtype == dtype
    assert_close("BinaryConv2d", y, want, dtype, scale=K)
    assert_close("BinaryConv2d unbatched", m(x[0]), want[0], dtype, scale=K)


def test_binary_buffers_storage_and_checkpoint(rng, tmp_path):
    conv = Conv2d(70, 8, 3, padding=1, rng=rng, dtype=np.float32)
    bc = BinaryConv2d.from_float(conv)
    assert [n for n, _ in bc.named_buffers()] == ["weight_bits", "alpha", "bias"]
    assert bc.weight_bits.dtype == np.uint64 and bc.weight_bits.shape == (8, 9 * 2)
    assert bc.storage_bytes() == 8 * 18 * 8 + 8 * 4 + 8 * 4 == sum(b.nbytes for _, b in bc.named_buffers())
    bl = BinaryLinear.from_float(Linear(100, 10, bias=False, rng=rng, dtype=np.float32), scale=False)
    assert [n for n, _ in bl.named_buffers()] == ["weight_bits"] and bl.storage_bytes() == 10 * 2 * 8
    model = Sequential(bc)
    path = save_checkpoint(tmp_path / "binary.h5", model)
    state = read_checkpoint(path).state
    for name, arr in model.state_dict().items():
        assert state[name].dtype == arr.dtype
        np.testing.assert_array_equal(state[name], arr)
    other = Sequential(BinaryConv2d.from_float(Conv2d(70, 8, 3, padding=1, rng=rng, dtype=np.float32)))
    other.load_state_dict(state)
    x = rng.standard_normal((1, 70, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(other(x), model(x))


def test_binary_layers_bad_input(rng):
    bl = BinaryLinear.from_float(Linear(4, 3, rng=rng, dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        bl(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        bl(np.ones((2, 5), np.float32))
    with pytest.raises(RuntimeError, match="inference-only"):
        bl.backward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="groups=1"):
        BinaryConv2d.from_float(Conv2d(4, 4, 3, groups=2, rng=rng))
    bc = BinaryConv2d.from_float(Conv2d(4, 2, 3, rng=rng))
    with pytest.raises(ValueError, match="input channels"):
        bc(np.ones((1, 3, 5, 5), np.float32))
    assert bc.to(np.float64)(np.ones((1, 4, 5, 5))).dtype == np.float64


def test_binary_linear_packs_weight_panels_once_and_follows_a_new_state(rng):
    """The weight bits are re-arranged into the kernel's panels at construction, not on every call; loading a
    new state (a new buffer array) re-arranges them once more, and the output follows the new weights."""
    a = BinaryLinear.from_float(Linear(130, 70, rng=rng, dtype=np.float32))
    b = BinaryLinear.from_float(Linear(130, 70, rng=rng, dtype=np.float32))
    x = rng.standard_normal((5, 130)).astype(np.float32)
    panels = a._panels
    a(x)
    a(x)
    assert a._panels is panels
    a.load_state_dict(b.state_dict())
    assert np.array_equal(a(x), b(x)) and a._panels is not panels
