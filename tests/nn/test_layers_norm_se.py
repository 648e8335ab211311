"""LayerNorm, GroupNorm, SiLU, SqueezeExcitation, DropPath and Embedding against torch, plus finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from nn.activations import Hardsigmoid, Hardswish, ReLU, Sigmoid, SiLU
from nn.basic import DropPath, Flatten, drop_path_forward, dropout_backward
from nn.containers import Sequential, SqueezeExcitation
from nn.embedding import Embedding
from nn.interop import from_torch, to_torch
from nn.linear import Linear
from nn.norm import GroupNorm, LayerNorm
from tests.helpers import assert_close, check_module_against_torch, finite_difference_check, gradcheck_module
from tests.nn.test_interop import _same_state
from tests.nn.test_layers import one_thread  # noqa: F401 (fixture)

DTYPES = [np.float64, np.float32]


def _x(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _randomise(m, rng):
    """Non-trivial parameters (LayerNorm/GroupNorm start at ones and zeros, which hide weight bugs)."""
    for _, p in m.named_parameters():
        p[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)
    return m


def _against_torch(m, x, rng, train=True, scale=1.0):
    check_module_against_torch(m, to_torch(m), x, rng, scale=scale, train=train)


# ------------------------------------------------------------------------------------------ layer norm

LAYERNORM_CASES = {  # name: (input shape, normalized_shape, options)
    "last-axis": ((4, 6), 6, {}),
    "multi-dim": ((2, 3, 4, 5), (4, 5), {}),
    "three-dims": ((2, 3, 4, 5), (3, 4, 5), {"eps": 1e-3}),
    "no-affine": ((2, 3, 4), (3, 4), {"elementwise_affine": False}),
    "no-bias": ((3, 2, 5), 5, {"bias": False}),
    "unbatched": ((7,), 7, {}),
    "empty-batch": ((0, 4), 4, {}),
    "one-element": ((3, 1), 1, {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(LAYERNORM_CASES))
def test_layernorm_matches_torch(case, dtype, rng, torch):
    shape, ns, opts = LAYERNORM_CASES[case]
    m = _randomise(LayerNorm(ns, dtype=dtype, **opts), rng)
    _against_torch(m, (_x(rng, shape, dtype) * 3 + 1).astype(dtype), rng)


FD_LAYERNORM_CASES = {  # tiny versions: every finite difference runs two forwards
    "last-axis": ((2, 4), 4, {}),
    "multi-dim": ((2, 2, 3), (2, 3), {}),
    "no-affine": ((2, 3, 2), (3, 2), {"elementwise_affine": False}),
    "no-bias": ((3, 4), 4, {"bias": False}),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", list(FD_LAYERNORM_CASES))
def test_layernorm_finite_differences(case, rng):
    shape, ns, opts = FD_LAYERNORM_CASES[case]
    m = _randomise(LayerNorm(ns, dtype=np.float64, **opts), rng)
    gradcheck_module(m, rng.standard_normal(shape), rng)


def test_layernorm_parameters_and_errors():
    m = LayerNorm((3, 4))
    assert m.weight.shape == m.bias.shape == (3, 4) and m.weight.dtype == np.float32
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    assert LayerNorm(4, elementwise_affine=False, bias=True).num_parameters() == 0
    with pytest.raises(ValueError, match=r"expects input \(\.\.\., 3, 4\)"):
        m(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"expects input"):
        m(np.zeros((4,), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        m(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        LayerNorm(4, elementwise_affine=False)(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="positive int"):
        LayerNorm((3, 0))
    with pytest.raises(ValueError, match="non-empty"):
        LayerNorm(())
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((2, 3, 4), np.float32))
    m(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="grad_output shape"):
        m.backward(np.zeros((2, 12), np.float32))
    m.to(np.float64)
    assert m.weight.dtype == m.bias.dtype == dict(m.named_grads())["weight"].dtype == np.float64
    assert m(np.ones((1, 3, 4))).dtype == np.float64


# ------------------------------------------------------------------------------------------ group norm

GROUPNORM_CASES = {  # name: (num_groups, num_channels, input shape, options)
    "groups=1": (1, 6, (2, 6, 3, 4), {}),
    "groups=C": (6, 6, (2, 6, 3, 4), {}),
    "groups-between": (3, 6, (2, 6, 3, 4), {"eps": 1e-3}),
    "batch1": (2, 4, (1, 4, 5, 3), {}),
    "no-affine": (2, 4, (3, 4, 2, 2), {"affine": False}),
    "no-bias": (2, 4, (3, 4, 2, 2), {"bias": False}),
    "1d-input": (2, 4, (3, 4, 5), {}),
    "2d-input": (2, 6, (4, 6), {}),
    "empty-batch": (2, 4, (0, 4, 2, 2), {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(GROUPNORM_CASES))
def test_groupnorm_matches_torch(case, dtype, rng, torch):
    g, c, shape, opts = GROUPNORM_CASES[case]
    m = _randomise(GroupNorm(g, c, dtype=dtype, **opts), rng)
    _against_torch(m, (_x(rng, shape, dtype) * 2 - 1).astype(dtype), rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_groupnorm_finite_differences(groups, rng):
    m = _randomise(GroupNorm(groups, 4, dtype=np.float64), rng)
    gradcheck_module(m, rng.standard_normal((2, 4, 2, 2)), rng)


def test_groupnorm_errors():
    with pytest.raises(ValueError, match="divisible by num_groups=4"):
        GroupNorm(4, 6)
    with pytest.raises(ValueError, match="positive int"):
        GroupNorm(0, 6)
    m = GroupNorm(2, 4)
    with pytest.raises(ValueError, match=r"expects input \(N, 4, \*\)"):
        m(np.zeros((2, 6, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expects input"):
        m(np.zeros((4,), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        m(np.zeros((2, 4, 3, 3)))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        m([[1.0] * 4])
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((2, 4, 3, 3), np.float32))


# ------------------------------------------------------------------------------------------ SiLU

@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_matches_torch_including_large_inputs(dtype, rng, torch):
    extremes = np.array([0.0, -0.0, 1e-30, -40.0, 40.0, -100.0, 100.0, -1000.0, 1000.0, -1e30, 1e30])
    x = np.concatenate([rng.standard_normal(38) * 4, extremes]).reshape(7, 7).astype(dtype)
    m = SiLU()
    with np.errstate(over="raise", invalid="raise"):  # the split sigmoid never overflows (exp may underflow)
        y = m(x)
        dx = m.backward(np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    _against_torch(SiLU(), x, rng)


@pytest.mark.usefixtures("one_thread")
def test_silu_finite_differences(rng):
    gradcheck_module(SiLU(), rng.uniform(-6, 6, (3, 5)), rng)


def test_silu_values():
    x = np.array([-1000.0, 0.0, 1.0, 1000.0])
    np.testing.assert_array_equal(SiLU()(x)[[0, 1, 3]], [-0.0, 0.0, 1000.0])
    assert_close("silu(1)", SiLU()(x)[2], 1 / (1 + np.exp(-1.0)))
    assert SiLU()(x.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------------------------------ squeeze-excitation

SE_CASES = {  # name: (channels, squeeze_channels, activation, scale_activation, input shape)
    "relu-sigmoid": (6, 2, ReLU, Sigmoid, (2, 6, 5, 4)),
    "relu-hardsigmoid": (8, 4, ReLU, Hardsigmoid, (2, 8, 3, 3)),
    "odd-channels": (5, 3, ReLU, Sigmoid, (3, 5, 3, 7)),
    "odd-hardswish-hardsigmoid": (7, 3, Hardswish, Hardsigmoid, (1, 7, 4, 5)),
    "unbatched": (3, 1, ReLU, Sigmoid, (3, 4, 4)),
}


def _se(case, rng, dtype):
    c, s, act, scale_act, shape = SE_CASES[case]
    return SqueezeExcitation(c, s, act, scale_act, rng=rng, dtype=dtype), shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SE_CASES))
def test_squeeze_excitation_matches_torch(case, dtype, rng, torch):
    m, shape = _se(case, rng, dtype)
    for _, p in m.named_parameters():  # gates away from saturation and from Hardsigmoid's flat ends
        p *= 3
    # torch evaluates Hardsigmoid's slope 1/6 in float32 even for float64 tensors (3e-8 relative error).
    scale = 1e5 if (SE_CASES[case][3] is Hardsigmoid and dtype == np.float64) else 1.0
    _against_torch(m, _x(rng, shape, dtype), rng, scale=scale)


def test_squeeze_excitation_structure_is_torchvisions(torch):
    m = SqueezeExcitation(8, 2, ReLU, Hardsigmoid)
    assert [n for n, _ in m.named_children()] == ["avgpool", "fc1", "fc2", "activation", "scale_activation"]
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert m.fc1.weight.shape == (2, 8, 1, 1) and m.fc2.weight.shape == (8, 2, 1, 1)
    assert isinstance(m.scale_activation, Hardsigmoid)
    t = to_torch(m)
    assert list(t.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert type(t.scale_activation) is torch.nn.Hardsigmoid
    shared = ReLU()
    assert SqueezeExcitation(4, 2, activation=shared).activation is shared  # an instance is used as given


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", ["relu-sigmoid", "odd-channels"])
def test_squeeze_excitation_finite_differences(case, rng):
    c, s, act, scale_act, _ = SE_CASES[case]
    m = SqueezeExcitation(c, s, act, scale_act, rng=rng, dtype=np.float64)
    gradcheck_module(m, rng.standard_normal((2, c, 2, 3)), rng)


def test_squeeze_excitation_gate_and_identity_paths(rng):
    """With a constant gate the gradient is g * s; the gate path is the difference, nonzero."""
    m = SqueezeExcitation(3, 2, rng=rng, dtype=np.float64)
    x, g = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    y = m(x)
    s = y[:, :, :1, :1] / x[:, :, :1, :1]
    dx = m.backward(g)
    assert np.abs(dx - g * s).max() > 1e-3


def test_squeeze_excitation_errors():
    m = SqueezeExcitation(4, 2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"expects input \(N, 4, H, W\)"):
        m(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="expects input"):
        m(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="float32 input"):
        m(np.zeros((1, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        m([[1.0]])
    with pytest.raises(TypeError, match="activation must be an lwnn Module"):
        SqueezeExcitation(4, 2, activation=lambda: "relu")
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((1, 4, 2, 2)))


# ------------------------------------------------------------------------------------------ drop path

@pytest.mark.parametrize("dtype", DTYPES)
def test_drop_path_eval_is_identity_like_torch(dtype, rng, torch):
    _against_torch(DropPath(0.5), _x(rng, (4, 3, 2, 2), dtype), rng, train=False)
    _against_torch(DropPath(0.0), _x(rng, (4, 3), dtype), rng, train=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3, 2, 2), (5, 4), (7,)])
def test_drop_path_train_matches_torch_given_the_mask(shape, dtype, rng, torch):
    m = DropPath(0.4, rng=np.random.default_rng(7))
    t = to_torch(m)
    t.keep = torch.tensor(np.random.default_rng(7).random(shape[0]) >= 0.4)  # lwnn's draws, replayed
    assert 0 < int(t.keep.sum()) < shape[0], "pick a seed that keeps some samples and drops others"
    check_module_against_torch(m, t, _x(rng, shape, dtype), rng, train=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_drop_path_drops_whole_samples_at_rate_p(dtype):
    x = np.ones((4000, 3, 2), dtype)
    m = DropPath(0.25, rng=np.random.default_rng(3))
    y = m(x)
    assert y.dtype == dtype
    per_sample = y.reshape(len(y), -1)
    assert (per_sample == per_sample[:, :1]).all(), "a sample is kept or dropped as a whole"
    kept = per_sample[:, 0] != 0
    assert set(np.unique(y)) == {0.0, dtype(1 / 0.75)}
    assert abs(kept.mean() - 0.75) < 0.02
    g = np.arange(x.size, dtype=dtype).reshape(x.shape)
    assert_close("drop path backward", m.backward(g), g * kept[:, None, None] / 0.75, dtype)
    np.testing.assert_array_equal(y, DropPath(0.25, rng=np.random.default_rng(3))(x))
    assert not DropPath(1.0)(x).any()


def test_drop_path_finite_differences(rng):
    x, g = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    _, scale = drop_path_forward(x, 0.5, np.random.default_rng(1))

    def f(xx):  # the same mask on every evaluation: re-seeded generator
        return float(np.sum(drop_path_forward(xx, 0.5, np.random.default_rng(1))[0] * g))

    finite_difference_check(f, x.copy(), dropout_backward(g, scale))


def test_drop_path_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        DropPath(1.5)
    with pytest.raises(ValueError, match="batch axis"):
        DropPath(0.5)(np.zeros((), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        DropPath(0.5)(np.zeros((2, 3), np.int64))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        DropPath(0.5).backward(np.zeros((2, 3)))
    m = DropPath(0.5)
    m(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="grad_output shape"):
        m.backward(np.zeros((3, 2)))


# ------------------------------------------------------------------------------------------ embedding

def _check_integer_input_against_torch(m, t, idx, rng, dtype):
    """check_module_against_torch for an integer input: forward, every parameter gradient by name, dx None."""
    import torch

    y, yt = m(idx), t(torch.tensor(idx))
    assert y.dtype == dtype
    assert_close("forward", y, yt.detach().numpy(), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(g))
    m.zero_grad()
    assert m.backward(g) is None, "integer indices have no input gradient"
    ours = dict(m.named_grads())
    theirs = {n: p.grad for n, p in t.named_parameters()}
    assert set(ours) == set(theirs)
    for name, tg in theirs.items():
        assert_close(f"grad {name}", ours[name], tg.numpy(), dtype)


EMBEDDING_CASES = {  # name: (num_embeddings, embedding_dim, padding_idx, indices)
    "repeated": (6, 4, None, np.array([[0, 2, 2, 5], [2, 0, 1, 2]])),
    "padding": (7, 3, 0, np.array([[0, 1, 0, 6, 6], [3, 0, 0, 1, 2]])),
    "negative-padding": (5, 2, -1, np.array([4, 4, 1, 3, 4])),
    "3d-int32": (4, 5, 2, np.array([[[1, 2], [2, 3]], [[0, 0], [3, 2]]], np.int32)),
    "scalar": (3, 4, None, np.array(1)),
    "empty": (3, 2, None, np.zeros((0, 4), np.int64)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(EMBEDDING_CASES))
def test_embedding_matches_torch(case, dtype, rng, torch):
    v, d, pad, idx = EMBEDDING_CASES[case]
    m = Embedding(v, d, pad, rng=rng, dtype=dtype)
    if pad is not None:
        assert not m.weight[pad].any()
        m.weight[pad] = 1.5  # torch also looks up a non-zero padding row; only its gradient is zero
    _check_integer_input_against_torch(m, to_torch(m), idx, rng, dtype)
    if pad is not None:
        assert not dict(m.named_grads())["weight"][m.padding_idx].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_first_in_sequential_matches_torch(dtype, rng, torch):
    m = Sequential(Embedding(10, 4, padding_idx=9, rng=rng, dtype=dtype), Flatten(),
                   Linear(12, 3, rng=rng, dtype=dtype), SiLU())
    _check_integer_input_against_torch(m, to_torch(m), np.array([[1, 9, 1], [4, 4, 0]]), rng, dtype)


def test_embedding_gradient_accumulates_and_finite_differences(rng):
    idx = np.array([[1, 1, 2], [0, 1, 3]])
    m = Embedding(5, 2, padding_idx=3, rng=rng, dtype=np.float64)
    g = rng.standard_normal((2, 3, 2))
    m(idx)
    m.backward(g)
    m(idx)
    m.backward(g)  # backward adds (+=) into the gradient
    dW = dict(m.named_grads())["weight"]
    assert_close("row 1 (three lookups, twice)", dW[1], 2 * (g[0, 0] + g[0, 1] + g[1, 1]))
    assert not dW[4].any() and not dW[3].any()
    # finite differences without padding: a padding row is looked up, yet torch defines its gradient as 0
    m = Embedding(5, 2, rng=rng, dtype=np.float64)
    m(idx)
    m.backward(g)
    finite_difference_check(lambda _w: float(np.sum(m(idx) * g)), m.weight, dict(m.named_grads())["weight"].copy())


def test_embedding_errors():
    m = Embedding(4, 3)
    with pytest.raises(TypeError, match="integer indices"):
        m(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer indices"):
        m(np.array([True, False]))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        m([0, 1])
    with pytest.raises(IndexError, match="index out of range"):
        m(np.array([0, 4]))
    with pytest.raises(IndexError, match="index out of range"):
        m(np.array([-1, 2]))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(4, 3, padding_idx=4)
    with pytest.raises(ValueError, match="positive int"):
        Embedding(0, 3)
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((2, 3), np.float32))
    m(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"grad_output shape \(2, 4\) != output shape \(2, 3\)"):
        m.backward(np.zeros((2, 4), np.float32))
    assert m.to(np.float64).weight.dtype == np.float64 and m(np.array([3])).dtype == np.float64


# ------------------------------------------------------------------------------------------ interop

def _new_torch_layers(torch):
    tnn = torch.nn
    return [tnn.LayerNorm(4), tnn.LayerNorm((2, 4), eps=1e-3, elementwise_affine=False),
            tnn.LayerNorm(4, bias=False), tnn.GroupNorm(2, 4), tnn.GroupNorm(4, 4, eps=1e-2, affine=False),
            tnn.GroupNorm(1, 4, bias=False),
            tnn.SiLU(), tnn.Embedding(6, 4), tnn.Embedding(6, 4, padding_idx=2)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_torch_layers_convert_both_ways(dtype, rng, torch):
    for t in _new_torch_layers(torch):
        t.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
        with torch.no_grad():
            for p in t.parameters():
                p.uniform_(-1.5, 1.5)
        m = from_torch(t)
        _same_state(m, t, dtype)
        assert m.extra_repr() == t.extra_repr()
        back = to_torch(m)
        assert type(back) is type(t) and back.extra_repr() == t.extra_repr()
        _same_state(m, back, dtype)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_from_torch_to_torch(train, dtype, rng, torch):
    m = Sequential(SqueezeExcitation(5, 3, ReLU, Hardsigmoid, rng=rng, dtype=dtype), GroupNorm(1, 5, dtype=dtype),
                   SiLU(), SqueezeExcitation(5, 2, rng=rng, dtype=dtype), LayerNorm((3, 4), dtype=dtype),
                   DropPath(0.0))
    _randomise(m, rng)
    m.train(train)
    twin = from_torch(to_torch(m))
    _same_state(twin, to_torch(m), dtype)
    assert repr(twin) == repr(m)
    x = _x(rng, (2, 5, 3, 4), dtype)
    assert_close("from_torch(to_torch(m))", twin(x), m(x), dtype)
    for d in (DropPath(0.3), Embedding(5, 2, padding_idx=1, dtype=dtype)):
        back = from_torch(to_torch(d))
        assert type(back) is type(d) and back.extra_repr() == d.extra_repr()
        _same_state(back, to_torch(d), dtype)


def test_unsupported_embedding_options_are_named(torch):
    with pytest.raises(ValueError, match="max_norm"):
        from_torch(torch.nn.Embedding(4, 2, max_norm=1.0))
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        from_torch(torch.nn.Embedding(4, 2, scale_grad_by_freq=True))


def test_new_twins_are_picklable_and_importable(torch):
    import pickle

    from nn.interop import TorchDropPath, TorchSqueezeExcitation

    t = torch.nn.Sequential(TorchSqueezeExcitation(4, 2, torch.nn.ReLU, torch.nn.Hardsigmoid), TorchDropPath(0.5))
    t.eval()
    t2 = pickle.loads(pickle.dumps(t))
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(t(x), t2(x))
    assert type(from_torch(t2)[0].scale_activation) is Hardsigmoid
