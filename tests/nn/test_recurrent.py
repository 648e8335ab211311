"""LSTM, GRU and LastStep against torch (output, final state, input, initial-state and every parameter gradient),
finite differences through time, bad inputs, interop, and a Fashion-MNIST smoke run."""
from __future__ import annotations

import numpy as np
import pytest

from nn.containers import Sequential
from nn.data import load_dataset
from nn.interop import from_torch, to_torch
from nn.linear import Linear
from nn.losses import CrossEntropyLoss
from nn.optim import Adam
from nn.recurrent import GRU, LSTM, LastStep
from tests.helpers import assert_close, check_module_against_torch, finite_difference_check, gradcheck_module

DTYPES = [np.float64, np.float32]
CLASSES = [LSTM, GRU]

CONFIGS = {  # name: (constructor options, (N, T))
    "1-layer": ({}, (3, 5)),
    "2-layer": ({"num_layers": 2}, (3, 5)),
    "batch-first": ({"batch_first": True}, (3, 5)),
    "2-layer-batch-first": ({"num_layers": 2, "batch_first": True}, (2, 4)),
    "no-bias": ({"bias": False, "num_layers": 2}, (2, 4)),
    "bidirectional": ({"bidirectional": True}, (3, 5)),
    "2-layer-bidirectional-batch-first": ({"num_layers": 2, "bidirectional": True, "batch_first": True}, (2, 4)),
    "batch-of-1": ({"num_layers": 2}, (1, 6)),
    "T=1": ({"num_layers": 2, "batch_first": True}, (3, 1)),
}
I, S = 3, 4  # input features, hidden size


def _states(m):
    return ("h", "c") if isinstance(m, LSTM) else ("h",)


def _input(m, rng, n, t, dtype):
    return rng.standard_normal((n, t, m.input_size) if m.batch_first else (t, n, m.input_size)).astype(dtype)


def _initial_state(m, rng, n, dtype):
    shape = (m.num_layers * m.num_directions, n, m.hidden_size)
    parts = tuple(rng.standard_normal(shape).astype(dtype) for _ in _states(m))
    return parts if isinstance(m, LSTM) else parts[0]


def _check_rnn(m, t, x, rng, state=None, scale=1.0):
    """Output, final state, input gradient, initial-state gradient and every parameter gradient by name, with
    random upstream gradients on the output *and* on every final state."""
    import torch

    dtype = x.dtype
    t.to({np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)])
    names = _states(m)
    xt = torch.tensor(x, requires_grad=True)
    st = None
    if state is not None:
        parts = state if isinstance(state, tuple) else (state,)
        st = tuple(torch.tensor(a, requires_grad=True) for a in parts)
    yt, fin_t = t(xt, None if st is None else (st if len(st) > 1 else st[0]))
    fin_t = fin_t if isinstance(fin_t, tuple) else (fin_t,)
    y = m(x, state)
    assert y.dtype == dtype, f"forward changed dtype {dtype} -> {y.dtype}"
    assert_close("output", y, yt.detach().numpy(), dtype, scale)
    for s, ft in zip(names, fin_t):
        assert_close(f"{s}_n", getattr(m, f"{s}_n"), ft.detach().numpy(), dtype, scale)
    g = rng.standard_normal(y.shape).astype(dtype)
    g_fin = [rng.standard_normal(getattr(m, f"{s}_n").shape).astype(dtype) for s in names]
    torch.autograd.backward([yt, *fin_t], [torch.tensor(g), *map(torch.tensor, g_fin)])
    m.zero_grad()
    dx = m.backward(g, *g_fin)
    assert dx.dtype == dtype, f"backward changed dtype {dtype} -> {dx.dtype}"
    assert_close("grad input", dx, xt.grad.numpy(), dtype, scale)
    if st is not None:
        for s, a in zip(names, st):
            assert_close(f"grad {s}0", getattr(m, f"grad_{s}0"), a.grad.numpy(), dtype, scale)
    ours = dict(m.named_grads())
    theirs = {n: p.grad for n, p in t.named_parameters()}
    assert list(ours) == list(theirs), f"parameter names differ: ours {list(ours)} torch {list(theirs)}"
    for name, tg in theirs.items():
        assert_close(f"grad {name}", ours[name], tg.numpy(), dtype, scale)


# ------------------------------------------------------------------------------------------ against torch

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONFIGS))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_matches_torch(cls, case, dtype, rng, torch):
    opts, (n, steps) = CONFIGS[case]
    m = cls(I, S, rng=rng, dtype=dtype, **opts)
    _check_rnn(m, to_torch(m), _input(m, rng, n, steps, dtype), rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"num_layers": 2, "batch_first": True, "bidirectional": True}], ids=str)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_given_initial_state_matches_torch(cls, opts, dtype, rng, torch):
    m = cls(I, S, rng=rng, dtype=dtype, **opts)
    state = _initial_state(m, rng, 3, dtype)
    _check_rnn(m, to_torch(m), _input(m, rng, 3, 5, dtype), rng, state)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_unbatched_input_matches_torch(cls, rng, torch):
    m = cls(I, S, num_layers=2, bidirectional=True, rng=rng, dtype=np.float64)
    state = _initial_state(m, rng, 1, np.float64)
    state = tuple(a[:, 0] for a in state) if isinstance(state, tuple) else state[:, 0]  # (L*D, S)
    _check_rnn(m, to_torch(m), rng.standard_normal((5, I)), rng, state)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_long_sequence_float32(cls, rng, torch):
    m = cls(I, 16, num_layers=2, rng=rng)
    _check_rnn(m, to_torch(m), _input(m, rng, 8, 40, np.float32), rng)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_torch_and_to_dtype(cls, rng, torch):
    t = {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls](I, S, num_layers=2, batch_first=True)
    m = from_torch(t).to(np.float64)
    assert m.dtype == np.float64 and all(g.dtype == np.float64 for _, g in m.named_grads())
    _check_rnn(m, t, _input(m, rng, 2, 4, np.float64), rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_classifier_in_sequential_matches_torch(cls, dtype, rng, torch):
    model = Sequential(cls(I, S, num_layers=2, batch_first=True, rng=rng, dtype=dtype), LastStep(batch_first=True),
                       Linear(S, 5, rng=rng, dtype=dtype))
    check_module_against_torch(model, to_torch(model), rng.standard_normal((3, 6, I)).astype(dtype), rng)


@pytest.mark.parametrize("batch_first", [False, True])
def test_last_step_matches_torch(batch_first, rng, torch):
    check_module_against_torch(LastStep(batch_first), to_torch(LastStep(batch_first)),
                               rng.standard_normal((3, 4, 5)), rng)


def test_backward_accumulates(rng, torch):
    m = LSTM(I, S, rng=rng, dtype=np.float64)
    x = _input(m, rng, 2, 3, np.float64)
    g = rng.standard_normal((3, 2, S))
    m(x)
    m.backward(g)
    once = {n: a.copy() for n, a in m.named_grads()}
    m(x)
    m.backward(g)
    for n, a in m.named_grads():
        assert_close(n, a, 2 * once[n])


# ------------------------------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("opts", [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True}], ids=str)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_finite_differences_through_time(cls, opts, rng):
    """d/d(x, initial state, every parameter) of <g, y> + <g_h, h_n> (+ <g_c, c_n>), in float64."""
    m = cls(2, 3, rng=rng, dtype=np.float64, **opts)
    x = _input(m, rng, 2, 3, np.float64)
    state = _initial_state(m, rng, 2, np.float64)
    parts = state if isinstance(state, tuple) else (state,)
    names = _states(m)
    y = m(x, state)
    g = rng.standard_normal(y.shape)
    g_fin = [rng.standard_normal(parts[0].shape) for _ in names]
    m.zero_grad()
    dx = m.backward(g, *g_fin)
    grads = {n: a.copy() for n, a in m.named_grads()}
    d0 = [getattr(m, f"grad_{s}0").copy() for s in names]

    def f(_):
        out = float(np.sum(m(x, state) * g))
        return out + sum(float(np.sum(getattr(m, f"{s}_n") * gf)) for s, gf in zip(names, g_fin))

    finite_difference_check(f, x, dx)
    for a, da in zip(parts, d0):
        finite_difference_check(f, a, da)
    for name, p in m.named_parameters():
        finite_difference_check(f, p, grads[name])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_gradcheck_helper(cls, rng):
    gradcheck_module(cls(2, 3, num_layers=2, rng=rng, dtype=np.float64), rng.standard_normal((3, 2, 2)), rng)


def test_last_step_finite_differences(rng):
    gradcheck_module(LastStep(batch_first=True), rng.standard_normal((2, 3, 2)), rng)


# ------------------------------------------------------------------------------------------ construction, errors

@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_init_names_and_repr_are_torch_like(cls, torch):
    m = cls(5, 8, num_layers=2, bidirectional=True, rng=1)
    t = {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls](5, 8, num_layers=2, bidirectional=True)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    bound = 1 / np.sqrt(8)
    assert all(p.dtype == np.float32 for p in m.parameters())
    flat = np.abs(np.concatenate([p.ravel() for p in m.parameters()]))  # 2,560 draws of U(-bound, bound)
    assert flat.max() <= bound and flat.max() > 0.99 * bound and abs(flat.mean() - bound / 2) < 0.05 * bound
    np.testing.assert_array_equal(cls(5, 8, rng=1).weight_hh_l0, cls(5, 8, rng=1).weight_hh_l0)
    for opts in ({}, {"num_layers": 3, "bias": False, "batch_first": True, "bidirectional": True}):
        assert repr(cls(2, 3, **opts)) == repr({LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls](2, 3, **opts))
    assert repr(LastStep(True)) == "LastStep(batch_first=True)"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bad_inputs_raise(cls):
    m = cls(I, S, num_layers=2)
    x = np.zeros((5, 2, I), np.float32)
    with pytest.raises(ValueError, match="2 or 3-d input"):
        m(np.zeros((1, 5, 2, I), np.float32))
    with pytest.raises(ValueError, match="3 input features"):
        m(np.zeros((5, 2, I + 1), np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        m(x.astype(np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        m(x.astype(np.int64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        m(x.tolist())
    h_bad = np.zeros((1, 2, S), np.float32)  # one layer's worth for a 2-layer net
    h_ok = np.zeros((2, 2, S), np.float32)
    bad_state = (h_bad, h_ok) if cls is LSTM else h_bad
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\)"):
        m(x, bad_state)
    with pytest.raises(TypeError, match="h0 is float64"):
        m(x, (h_ok.astype(np.float64), h_ok) if cls is LSTM else h_ok.astype(np.float64))
    if cls is LSTM:
        with pytest.raises(TypeError, match=r"tuple \(h0, c0\)"):
            m(x, h_ok)
        with pytest.raises(ValueError, match="c0 must have shape"):
            m(x, (h_ok, h_bad))
    with pytest.raises(RuntimeError, match="without a fresh forward"):
        m.backward(np.zeros((5, 2, S), np.float32))
    m(x)
    with pytest.raises(ValueError, match=r"grad_output must be an array of the output's shape \(5, 2, 4\)"):
        m.backward(np.zeros((2, 5, S), np.float32))
    m(x)
    with pytest.raises(ValueError, match=r"grad_h_n must be an array of shape \(2, 2, 4\)"):
        m.backward(np.zeros((5, 2, S), np.float32), h_bad)
    for bad in ({"hidden_size": 0}, {"num_layers": 0}, {"input_size": 2.5}):
        with pytest.raises(ValueError, match="must be a positive int"):
            cls(**{"input_size": I, "hidden_size": S, **bad})
    with pytest.raises(ValueError, match="3-d input"):
        LastStep()(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="sequence is empty"):
        LastStep()(np.zeros((0, 2, 3), np.float32))


# ------------------------------------------------------------------------------------------ interop

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_interop_round_trip(cls, dtype, rng, torch):
    tcls = {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls]
    t = tcls(I, S, num_layers=2, bias=False, batch_first=True, bidirectional=True,
             dtype={np.float64: torch.float64, np.float32: torch.float32}[dtype])
    m = from_torch(t)
    assert type(m) is cls and m.dtype == dtype
    back = to_torch(m)
    assert type(back) is tcls and back.extra_repr() == t.extra_repr()
    for (name, p), (tname, tp), (bname, bp) in zip(m.named_parameters(), t.named_parameters(),
                                                   back.named_parameters()):
        assert name == tname == bname
        np.testing.assert_array_equal(p, tp.detach().numpy(), err_msg=name)
        np.testing.assert_array_equal(p, bp.detach().numpy(), err_msg=name)
    x = rng.standard_normal((2, 4, I)).astype(dtype)
    with torch.no_grad():
        want, _ = back(torch.tensor(x))
    assert_close("to_torch(from_torch(t))", m(x), want.numpy(), dtype)
    model = from_torch(to_torch(Sequential(cls(I, S, batch_first=True, dtype=dtype), LastStep(True))))
    assert [type(c) for c in model] == [cls, LastStep] and model[1].batch_first


def test_from_torch_refuses_dropout_and_projection(torch):
    with pytest.raises(ValueError, match="dropout=0.5"):
        from_torch(torch.nn.GRU(2, 3, num_layers=2, dropout=0.5))
    with pytest.raises(ValueError, match="proj_size=2"):
        from_torch(torch.nn.LSTM(2, 3, proj_size=2))


# ------------------------------------------------------------------------------------------ real data

@pytest.mark.slow
def test_lstm_learns_fashion_mnist_rows():
    """A 1-layer LSTM reads each 28x28 image as 28 steps of 28 pixels; 300 Adam steps on 4000 images."""
    x, y = load_dataset("fashion-mnist", split="train")
    x, y = x[:4000, 0], y[:4000]  # (N, 1, 28, 28) -> (N, 28, 28): rows are time steps
    rng = np.random.default_rng(0)
    model = Sequential(LSTM(28, 48, batch_first=True, rng=rng), LastStep(batch_first=True), Linear(48, 10, rng=rng))
    loss_fn, opt = CrossEntropyLoss(), Adam(model, lr=3e-3)
    losses = []
    for _ in range(300):
        idx = rng.integers(0, len(x), 64)
        opt.zero_grad()
        losses.append(loss_fn(model(x[idx]), y[idx]))
        model.backward(loss_fn.backward())
        opt.step()
    start, end = np.mean(losses[:10]), np.mean(losses[-30:])
    assert start > 2.0 and end < 0.5 * start, (start, end)
