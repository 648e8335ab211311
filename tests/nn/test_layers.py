"""Activations, Flatten/Dropout/Identity, BatchNorm and Conv2d against torch, plus finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from kernels import _config
from nn.activations import Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, Softmax, Tanh
from nn.basic import Dropout, Flatten, Identity, dropout_backward, dropout_forward
from nn.conv import Conv2d
from nn.interop import to_torch
from nn.linear import Linear
from nn.norm import BatchNorm1d, BatchNorm2d
from tests.helpers import assert_close, check_module_against_torch, finite_difference_check, gradcheck_module

DTYPES = [np.float64, np.float32]


@pytest.fixture
def one_thread():
    """Tiny finite-difference shapes run thousands of kernel calls: parallel dispatch would dominate them."""
    old = _config.get_num_threads()
    _config.set_num_threads(1)
    yield
    _config.set_num_threads(old)


def _x(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _against_torch(m, x, rng, train=True, scale=1.0):
    check_module_against_torch(m, to_torch(m), x, rng, scale=scale, train=train)


# ------------------------------------------------------------------------------------------ activations

ACTIVATIONS = [ReLU, ReLU6, lambda: LeakyReLU(0.2), Sigmoid, Tanh, Hardswish, Hardsigmoid]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", ACTIVATIONS, ids=lambda f: getattr(f, "__name__", "LeakyReLU"))
def test_activation_matches_torch_including_kinks(make, dtype, rng, torch):
    kinks = np.array([-3.0, -0.0, 0.0, 3.0, 6.0, -6.0, 1e-30, -40.0, 40.0])
    x = np.concatenate([rng.standard_normal(40) * 4, kinks]).reshape(7, 7).astype(dtype)
    m = make()
    # torch evaluates Hardsigmoid's slope 1/6 in float32 even for float64 tensors (3e-8 relative error).
    scale = 1e5 if (make is Hardsigmoid and dtype == np.float64) else 1.0
    _against_torch(m, x, rng, scale=scale)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # torch warns for dim=None
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_softmax_matches_torch(dim, dtype, rng, torch):
    x = _x(rng, (2, 3, 5), dtype) * 5
    _against_torch(Softmax(dim), x, rng)


@pytest.mark.parametrize("make", ACTIVATIONS + [lambda: Softmax(1)], ids=lambda f: getattr(f, "__name__", "lambda"))
def test_activation_empty_batch(make, rng, torch):
    _against_torch(make(), np.zeros((0, 3), np.float32), rng)


def test_softmax_is_stable_for_large_inputs(rng):
    y = Softmax(1)(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.isfinite(y).all() and abs(y.sum() - 1) < 1e-12


@pytest.mark.parametrize("make", ACTIVATIONS[:2] + [lambda: LeakyReLU(0.2), Sigmoid, Tanh, lambda: Softmax(-1)],
                         ids=["relu", "relu6", "leaky", "sigmoid", "tanh", "softmax"])
@pytest.mark.usefixtures("one_thread")
def test_activation_finite_differences(make, rng):
    # smooth points only: finite differences are meaningless at a kink
    x = rng.uniform(0.2, 2.5, (3, 4)) * rng.choice([-1, 1], (3, 4))
    gradcheck_module(make(), x, rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("make", [Hardswish, Hardsigmoid])
def test_hard_activations_finite_differences(make, rng):
    x = rng.uniform(-5.0, 5.0, (3, 5))
    x[np.abs(np.abs(x) - 3) < 0.1] = 1.0
    gradcheck_module(make(), x, rng)


def test_activation_keeps_float32(rng):
    x = _x(rng, (2, 3), np.float32)
    for m in [ReLU(), ReLU6(), LeakyReLU(), Sigmoid(), Tanh(), Hardswish(), Hardsigmoid(), Softmax(1)]:
        assert m(x).dtype == np.float32 and m.backward(x).dtype == np.float32, type(m).__name__


# ------------------------------------------------------------------------------------------ basic

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [(1, -1), (0, -1), (1, 2), (-3, -2), (2, 2)])
def test_flatten_matches_torch(dims, dtype, rng, torch):
    _against_torch(Flatten(*dims), _x(rng, (2, 3, 4, 5), dtype), rng)


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match="start_dim"):
        Flatten(3, 1)(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="out of range"):
        Flatten(1, 7)(np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_and_eval_dropout_match_torch(dtype, rng, torch):
    x = _x(rng, (0, 3), dtype)  # empty batch too
    _against_torch(Identity(), _x(rng, (2, 3), dtype), rng)
    _against_torch(Identity(), x, rng)
    _against_torch(Dropout(0.3), _x(rng, (4, 5), dtype), rng, train=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_is_inverted_and_uses_the_rng(dtype):
    x = np.ones((200, 50), dtype)
    m = Dropout(0.25, rng=np.random.default_rng(7))
    y = m(x)
    assert y.dtype == dtype
    kept = y != 0
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75) if dtype == np.float32 else 1 / 0.75}
    assert abs(kept.mean() - 0.75) < 0.02
    g = np.arange(x.size, dtype=dtype).reshape(x.shape)
    assert_close("dropout backward", m.backward(g), g * kept / 0.75, dtype)
    again = Dropout(0.25, rng=np.random.default_rng(7))(x)
    np.testing.assert_array_equal(y, again)
    assert not Dropout(1.0)(x).any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)
    with pytest.raises(TypeError, match="inplace"):
        Dropout(0.5, True)


def test_dropout_finite_differences(rng):
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    _, scale = dropout_forward(x, 0.4, np.random.default_rng(3))

    def f(xx):  # the same mask on every evaluation: re-seeded generator
        return float(np.sum(dropout_forward(xx, 0.4, np.random.default_rng(3))[0] * g))

    finite_difference_check(f, x.copy(), dropout_backward(g, scale))


def test_parameterless_layers_reject_bad_input():
    for m in (ReLU(), Softmax(1), Flatten(), Identity(), Dropout()):
        with pytest.raises(TypeError, match="float32 or float64"):
            m(np.zeros((2, 3), np.int64))
        with pytest.raises(TypeError, match="numpy.ndarray"):
            m([[1.0, 2.0]])
        with pytest.raises(RuntimeError, match="without a fresh forward"):
            m.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        Softmax(2)(np.zeros((2, 3)))


@pytest.mark.usefixtures("one_thread")
def test_shape_layers_finite_differences(rng):
    for m in (Flatten(), Flatten(0, 1), Identity(), Linear(3, 2, dtype=np.float64)):
        gradcheck_module(m, rng.standard_normal((2, 2, 3)), rng)


# ------------------------------------------------------------------------------------------ linear on 3-d

@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_on_3d_and_empty_input(dtype, rng, torch):
    m = Linear(5, 3, dtype=dtype)
    _against_torch(m, _x(rng, (2, 4, 5), dtype), rng)
    _against_torch(m, _x(rng, (0, 5), dtype), rng)


# ------------------------------------------------------------------------------------------ batch norm

def _randomise_affine(m, rng):
    if m.affine:
        m.weight[...] = rng.uniform(0.5, 1.5, m.weight.shape)
        m.bias[...] = rng.standard_normal(m.bias.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (5, 3)), (BatchNorm1d, (4, 3, 6)), (BatchNorm2d, (3, 3, 4, 5)),
                                        (BatchNorm2d, (1, 3, 2, 3))])
@pytest.mark.parametrize("opts", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                  {"eps": 1e-2, "momentum": 0.3}], ids=str)
def test_batchnorm_train_steps_then_eval_match_torch(cls, shape, opts, dtype, rng, torch):
    m = cls(3, dtype=dtype, **opts)
    _randomise_affine(m, rng)
    t = to_torch(m)
    for step in range(3):  # several training steps: running statistics must follow torch's
        x = (_x(rng, shape, dtype) * 2 + step).astype(dtype)
        t.zero_grad()  # torch accumulates .grad across steps; the helper zeroes only ours
        check_module_against_torch(m, t, x, rng, train=True)
        for name, b in t.named_buffers():
            assert_close(f"step {step} buffer {name}", dict(m.named_buffers())[name], b.numpy(), dtype)
    if m.track_running_stats:
        assert int(m.num_batches_tracked) == 3 and m.num_batches_tracked.dtype == np.int64
    t.zero_grad()
    check_module_against_torch(m, t, _x(rng, shape, dtype), rng, train=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_empty_batch_matches_torch(dtype, rng, torch):
    m = BatchNorm2d(3, dtype=dtype)
    t = to_torch(m)
    check_module_against_torch(m, t, np.zeros((0, 3, 2, 2), dtype), rng)
    assert int(m.num_batches_tracked) == int(t.num_batches_tracked) == 1
    np.testing.assert_array_equal(m.running_var, np.ones(3, dtype))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (4, 2)), (BatchNorm1d, (3, 2, 3)), (BatchNorm2d, (2, 2, 2, 3))])
def test_batchnorm_finite_differences(cls, shape, train, rng):
    m = cls(2, momentum=0.0, dtype=np.float64)  # momentum 0: repeated forwards leave the state alone
    _randomise_affine(m, rng)
    m.running_mean[...] = rng.standard_normal(2)
    m.running_var[...] = rng.uniform(0.5, 2, 2)
    m.train(train)
    gradcheck_module(m, rng.standard_normal(shape), rng)


def test_batchnorm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(3)(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="got 4 channels"):
        BatchNorm2d(3)(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="4-d input"):
        BatchNorm2d(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="2 or 3-d"):
        BatchNorm1d(3)(np.zeros((2, 3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        BatchNorm2d(3)(np.zeros((2, 3, 2, 2), np.float64))
    with pytest.raises(TypeError, match="running statistics"):
        BatchNorm2d(3, affine=False)(np.zeros((2, 3, 2, 2), np.float64))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        BatchNorm2d(3).backward(np.zeros((2, 3, 2, 2), np.float32))


# ------------------------------------------------------------------------------------------ conv

def _case(shape, ci, co, k, **kw):
    return {"in_channels": ci, "out_channels": co, "kernel_size": k, **kw}, shape


CONV_CASES = {  # name: (constructor kwargs, input shape)
    "basic": _case((2, 3, 6, 7), 3, 4, 3),
    "batch1-nonsquare-kernel": _case((1, 2, 5, 6), 2, 3, (2, 3), padding=(1, 0)),
    "stride>kernel": _case((2, 2, 8, 7), 2, 2, 2, stride=3),
    "dilation": _case((2, 2, 7, 6), 2, 3, 3, dilation=(2, 1), padding=2),
    "depthwise": _case((2, 4, 7, 7), 4, 4, 3, groups=4, padding=1, stride=2),
    "groups2-no-bias": _case((2, 4, 5, 5), 4, 6, 3, groups=2, bias=False),
    "pad>=half-kernel": _case((2, 2, 3, 4), 2, 2, 3, padding=3),
    "1x1": _case((2, 3, 3, 3), 3, 5, 1),
    "odd-stride2": _case((1, 3, 9, 5), 3, 2, 3, stride=2, padding=1),
    "same-even-kernel": _case((2, 2, 5, 6), 2, 3, (4, 3), padding="same"),
    "same-dilated": _case((1, 2, 6, 5), 2, 2, 2, dilation=3, padding="same"),
    "valid": _case((2, 2, 4, 5), 2, 2, 3, padding="valid"),
    "empty-batch": _case((0, 2, 4, 4), 2, 3, 3, padding=1),
    "unbatched": _case((2, 5, 4), 2, 3, 3),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note that it copies the input
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_matches_torch(case, dtype, rng, torch):
    kwargs, shape = CONV_CASES[case]
    m = Conv2d(**kwargs, rng=rng, dtype=dtype)
    _against_torch(m, _x(rng, shape, dtype), rng)


FD_CONV_CASES = {  # tiny versions of CONV_CASES: every finite difference runs two forwards
    "basic": _case((1, 2, 4, 3), 2, 2, 3, padding=1),
    "dilation": _case((1, 1, 5, 4), 1, 2, 2, dilation=(2, 1), padding=1),
    "depthwise": _case((1, 3, 5, 5), 3, 3, 3, groups=3, stride=2, padding=1),
    "same-even-kernel": _case((1, 1, 4, 5), 1, 2, (2, 3), padding="same"),
    "stride>kernel": _case((1, 2, 7, 5), 2, 1, 2, stride=3),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", list(FD_CONV_CASES))
def test_conv2d_finite_differences(case, rng):
    kwargs, shape = FD_CONV_CASES[case]
    m = Conv2d(**kwargs, rng=rng, dtype=np.float64)
    gradcheck_module(m, rng.standard_normal(shape), rng)


def test_conv2d_init_is_torch_like(rng):
    m = Conv2d(8, 16, 3, rng=rng)
    bound = 1 / np.sqrt(8 * 9)  # kaiming_uniform(a=sqrt(5)) and the bias both give 1/sqrt(fan_in)
    assert m.weight.dtype == np.float32 and m.weight.shape == (16, 8, 3, 3)
    assert np.abs(m.weight).max() <= bound and np.abs(m.weight).max() > 0.9 * bound
    assert np.abs(m.bias).max() <= bound
    np.testing.assert_array_equal(Conv2d(8, 16, 3, rng=1).weight, Conv2d(8, 16, 3, rng=1).weight)


def test_conv2d_errors(rng):
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        Conv2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="'same'.*strided"):
        Conv2d(2, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        Conv2d(3, 4, 3, groups=2)
    m = Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match="got 4 input channels"):
        m(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="4-d input"):
        m(np.zeros((5, 5), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        m(np.zeros((1, 2, 5, 5), np.float64))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        m(np.zeros((1, 2, 2, 5), np.float32))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((1, 3, 3, 3), np.float32))
