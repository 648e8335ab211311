"""Recurrent layers over whole sequences: LSTM and GRU as torch.nn.LSTM / torch.nn.GRU, with backpropagation
through time, plus ``LastStep`` to hand the last output to a classifier head.

Equations, exactly torch's (gate blocks stacked in this order along the rows of ``weight_ih`` / ``weight_hh``):

LSTM (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000), gates i, f, g, o::

    i = s(W_ii x + b_ii + W_hi h + b_hi)      f = s(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = s(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                        h' = o * tanh(c')

GRU (Cho et al. 2014, arXiv:1406.1078) in torch's variant, where r multiplies the *projected* state, gates r, z, n::

    r = s(W_ir x + b_ir + W_hr h + b_hr)      z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

Layer l > 0 reads the output of layer l - 1 (both directions concatenated when ``bidirectional``); the reverse
direction reads the sequence back to front. Parameters are named as torch's: ``weight_ih_l{k}`` (G*S, I) for
layer 0 and (G*S, dirs*S) above, ``weight_hh_l{k}`` (G*S, S), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*S,), with
``_reverse`` appended for the reverse direction and G = 4 (LSTM) or 3 (GRU); all start as U(-1/sqrt(S), 1/sqrt(S)).

Shapes (letters of ``nn/README.md``; ``S`` is the hidden size): input (T, N, I), or (N, T, I) with
``batch_first``, or unbatched (T, I); output (T, N, dirs*S) likewise; states (layers*dirs, N, S) whatever
``batch_first`` says, as torch, and (layers*dirs, S) for unbatched input.

Deviations from torch's interface (the arithmetic is the same):

* ``forward(x, state=None)`` returns only the output sequence, so the layer composes in a ``Sequential``; the
  final state is kept as ``self.h_n`` (and ``self.c_n`` for the LSTM).
* ``backward(grad_output, grad_h_n=None[, grad_c_n=None])`` returns the input gradient and keeps the gradient
  of the initial state as ``self.grad_h0`` (and ``self.grad_c0``).
* No inter-layer ``dropout`` and no LSTM ``proj_size``; ``from_torch`` refuses both by name.
"""
from __future__ import annotations

import math

import numpy as np

from nn import init
from nn.activations import sigmoid_forward
from nn.module import Module

# ----------------------------------------------------------------------------------- pure functions
# One direction of one layer over a whole sequence, time-major. The input projection of all T steps is one
# matmul before the loop; inside the loop only the (N, S) @ (S, G*S) state projection remains.


def _input_projection(x: np.ndarray, W_ih: np.ndarray, b_ih: np.ndarray | None) -> np.ndarray:
    gx = x @ W_ih.T  # (T, N, I) @ (I, G*S) -> (T, N, G*S)
    if b_ih is not None:
        gx += b_ih
    return gx


def _weight_grads(da_x: np.ndarray, da_h: np.ndarray, x: np.ndarray, h_prev: np.ndarray, has_bias: bool):
    """Sums over all steps: dW_ih = da_x^T x, dW_hh = da_h^T h_prev, biases the sums of da_x and da_h."""
    T, N, GS = da_x.shape
    da_x2, da_h2 = da_x.reshape(T * N, GS), da_h.reshape(T * N, GS)  # (T, N, G*S) -> (T*N, G*S)
    dW_ih = da_x2.T @ x.reshape(T * N, x.shape[2])  # (G*S, T*N) @ (T*N, I)
    dW_hh = da_h2.T @ h_prev.reshape(T * N, h_prev.shape[2])  # (G*S, T*N) @ (T*N, S)
    if not has_bias:
        return dW_ih, dW_hh, None, None
    return dW_ih, dW_hh, da_x2.sum(axis=0), da_h2.sum(axis=0)


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih=None, b_hh=None):
    """LSTM over a sequence.

    Parameters
    ----------
    x : (T, N, I); h0, c0 : (N, S); W_ih : (4S, I); W_hh : (4S, S); b_ih, b_hh : (4S,) or None. One float dtype.

    Returns
    -------
    y : (T, N, S) the hidden state after every step; h_T, c_T : (N, S); cache : dict for ``lstm_backward``.
    """
    T, N, _ = x.shape
    S = W_hh.shape[1]
    gx = _input_projection(x, W_ih, b_ih)
    h = np.empty((T + 1, N, S), x.dtype)
    c = np.empty((T + 1, N, S), x.dtype)
    h[0], c[0] = h0, c0
    gates = np.empty((T, N, 4 * S), x.dtype)  # i, f, g, o after their nonlinearities
    tanh_c = np.empty((T, N, S), x.dtype)
    for t in range(T):
        a = gx[t] + h[t] @ W_hh.T  # (N, S) @ (S, 4S) -> (N, 4S)
        if b_hh is not None:
            a += b_hh
        gt = gates[t]
        gt[...] = sigmoid_forward(a)
        gt[:, 2 * S:3 * S] = np.tanh(a[:, 2 * S:3 * S])
        i, f, g, o = gt[:, :S], gt[:, S:2 * S], gt[:, 2 * S:3 * S], gt[:, 3 * S:]
        # c' = f * c + i * g
        c[t + 1] = f * c[t] + i * g
        tanh_c[t] = np.tanh(c[t + 1])
        # h' = o * tanh(c')
        h[t + 1] = o * tanh_c[t]
    cache = {"x": x, "h": h, "c": c, "gates": gates, "tanh_c": tanh_c, "W_ih": W_ih, "W_hh": W_hh,
             "has_bias": b_ih is not None}
    return h[1:], h[T].copy(), c[T].copy(), cache


def lstm_backward(dy, dh_T, dc_T, cache):
    """Backpropagation through time for ``lstm_forward``.

    dy : (T, N, S) gradient of y; dh_T, dc_T : (N, S) gradients of the final state.
    Returns (dx (T, N, I), dh0 (N, S), dc0 (N, S), dW_ih (4S, I), dW_hh (4S, S), db_ih, db_hh (4S,) or None).
    """
    x, h, c, gates, tanh_c, W_hh = cache["x"], cache["h"], cache["c"], cache["gates"], cache["tanh_c"], cache["W_hh"]
    T = x.shape[0]
    S = W_hh.shape[1]
    da = np.empty_like(gates)  # gradient of the gate pre-activations
    dh, dc = dh_T.copy(), dc_T.copy()
    for t in reversed(range(T)):
        gt, dat = gates[t], da[t]
        i, f, g, o = gt[:, :S], gt[:, S:2 * S], gt[:, 2 * S:3 * S], gt[:, 3 * S:]
        dh += dy[t]
        # h' = o * tanh(c'): d tanh = 1 - tanh^2, d s = s (1 - s)
        dc += dh * o * (1 - tanh_c[t] * tanh_c[t])
        dat[:, 3 * S:] = dh * tanh_c[t] * o * (1 - o)
        # c' = f * c + i * g
        dat[:, :S] = dc * g * i * (1 - i)
        dat[:, S:2 * S] = dc * c[t] * f * (1 - f)
        dat[:, 2 * S:3 * S] = dc * i * (1 - g * g)
        dc = dc * f
        dh = dat @ W_hh  # (N, 4S) @ (4S, S) -> (N, S)
    dx = da @ cache["W_ih"]  # (T, N, 4S) @ (4S, I) -> (T, N, I)
    return (dx, dh, dc) + _weight_grads(da, da, x, h[:-1], cache["has_bias"])


def gru_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None):
    """GRU over a sequence.

    Parameters
    ----------
    x : (T, N, I); h0 : (N, S); W_ih : (3S, I); W_hh : (3S, S); b_ih, b_hh : (3S,) or None. One float dtype.

    Returns
    -------
    y : (T, N, S) the hidden state after every step; h_T : (N, S); cache : dict for ``gru_backward``.
    """
    T, N, _ = x.shape
    S = W_hh.shape[1]
    gx = _input_projection(x, W_ih, b_ih)
    h = np.empty((T + 1, N, S), x.dtype)
    h[0] = h0
    rz = np.empty((T, N, 2 * S), x.dtype)
    n = np.empty((T, N, S), x.dtype)
    gh_n = np.empty((T, N, S), x.dtype)  # W_hn h + b_hn, needed for dr
    for t in range(T):
        gh = h[t] @ W_hh.T  # (N, S) @ (S, 3S) -> (N, 3S)
        if b_hh is not None:
            gh += b_hh
        rz[t] = sigmoid_forward(gx[t, :, :2 * S] + gh[:, :2 * S])
        r, z = rz[t, :, :S], rz[t, :, S:]
        gh_n[t] = gh[:, 2 * S:]
        # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        n[t] = np.tanh(gx[t, :, 2 * S:] + r * gh_n[t])
        # h' = (1 - z) * n + z * h
        h[t + 1] = (1 - z) * n[t] + z * h[t]
    cache = {"x": x, "h": h, "rz": rz, "n": n, "gh_n": gh_n, "W_ih": W_ih, "W_hh": W_hh,
             "has_bias": b_ih is not None}
    return h[1:], h[T].copy(), cache


def gru_backward(dy, dh_T, cache):
    """Backpropagation through time for ``gru_forward``.

    dy : (T, N, S) gradient of y; dh_T : (N, S) gradient of the final state.
    Returns (dx (T, N, I), dh0 (N, S), dW_ih (3S, I), dW_hh (3S, S), db_ih, db_hh (3S,) or None).
    """
    x, h, rz, n, gh_n, W_hh = cache["x"], cache["h"], cache["rz"], cache["n"], cache["gh_n"], cache["W_hh"]
    T, N, _ = x.shape
    S = W_hh.shape[1]
    da_x = np.empty((T, N, 3 * S), x.dtype)  # gradient of W_ih x + b_ih
    da_h = np.empty((T, N, 3 * S), x.dtype)  # gradient of W_hh h + b_hh
    dh = dh_T.copy()
    for t in reversed(range(T)):
        r, z = rz[t, :, :S], rz[t, :, S:]
        dh += dy[t]
        # h' = (1 - z) * n + z * h
        dz = dh * (h[t] - n[t])
        dan = dh * (1 - z) * (1 - n[t] * n[t])  # through n = tanh(...)
        da_x[t, :, 2 * S:] = dan
        da_h[t, :, 2 * S:] = dan * r
        da_x[t, :, :S] = dan * gh_n[t] * r * (1 - r)
        da_x[t, :, S:2 * S] = dz * z * (1 - z)
        da_h[t, :, :2 * S] = da_x[t, :, :2 * S]
        dh = dh * z + da_h[t] @ W_hh  # (N, 3S) @ (3S, S) -> (N, S)
    dx = da_x @ cache["W_ih"]  # (T, N, 3S) @ (3S, I) -> (T, N, I)
    return (dx, dh) + _weight_grads(da_x, da_h, x, h[:-1], cache["has_bias"])


# ----------------------------------------------------------------------------------- layers


def _positive_int(owner: str, name: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {v!r}")
    return int(v)


class _RNNBase(Module):
    """The multi-layer, optionally bidirectional driver shared by LSTM and GRU.

    A subclass names its state arrays (``_states``: ("h", "c") or ("h",)), its gate count and the pure pair
    through ``_run`` / ``_back``, which take and return states as tuples in that order.
    """

    _gates = 0
    _states: tuple[str, ...] = ()

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False,
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _positive_int(name, "num_layers", num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        rng = init.default_rng(rng)
        S, GS = self.hidden_size, self._gates * self.hidden_size
        k = 1.0 / math.sqrt(S)  # torch's default: every parameter U(-1/sqrt(S), 1/sqrt(S))
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else S * self.num_directions
            for d in range(self.num_directions):
                sfx = self._suffix(layer, d)
                self.register_parameter(f"weight_ih{sfx}", init.uniform(rng, (GS, layer_in), k, dtype))
                self.register_parameter(f"weight_hh{sfx}", init.uniform(rng, (GS, S), k, dtype))
                if self.bias:
                    self.register_parameter(f"bias_ih{sfx}", init.uniform(rng, (GS,), k, dtype))
                    self.register_parameter(f"bias_hh{sfx}", init.uniform(rng, (GS,), k, dtype))
        for s in self._states:
            object.__setattr__(self, f"{s}_n", None)
            object.__setattr__(self, f"grad_{s}0", None)

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer: int, direction: int) -> tuple:
        sfx = self._suffix(layer, direction)
        return tuple(self._parameters.get(f"{p}{sfx}") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _run(self, x, states, weights):  # pragma: no cover - abstract
        raise NotImplementedError

    def _back(self, dy, dstates, cache):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _state_shape(self, n: int | None) -> tuple[int, ...]:
        lead = (self.num_layers * self.num_directions,)
        return lead + ((self.hidden_size,) if n is None else (n, self.hidden_size))

    def _check_states(self, state, n: int | None, dtype) -> tuple[np.ndarray, ...]:
        """``state`` as a tuple of batched (layers*dirs, N, S) arrays; zeros when None."""
        name, want = type(self).__name__, self._state_shape(n)
        k = len(self._states)
        if state is None:
            return tuple(np.zeros(self._state_shape(1 if n is None else n), dtype) for _ in range(k))
        parts = (state,) if k == 1 else state
        if k > 1 and (not isinstance(state, tuple) or len(state) != k):
            raise TypeError(f"{name} state must be a tuple ({', '.join(s + '0' for s in self._states)}), "
                            f"got {type(state).__name__}")
        out = []
        for s, a in zip(self._states, parts):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{name} initial state {s}0 must be a numpy.ndarray, got {type(a).__name__}")
            if a.dtype != dtype:
                raise TypeError(f"{name} initial state {s}0 is {a.dtype}, the input and parameters are {dtype}")
            if a.shape != want:
                raise ValueError(f"{name} initial state {s}0 must have shape {want} (layers*directions, "
                                 f"{'' if n is None else 'N, '}hidden_size), got {a.shape}")
            out.append(a if n is not None else a[:, None])  # (layers*dirs, S) -> (layers*dirs, 1, S)
        return tuple(out)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x: np.ndarray, state=None) -> np.ndarray:
        """Run the whole sequence; returns the last layer's output, keeps the final state as ``h_n`` (``c_n``)."""
        name = type(self).__name__
        self._check_input(x, (2, 3), "(T, N, I), (N, T, I) with batch_first, or unbatched (T, I)")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name} expects {self.input_size} input features in the last axis, got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            xt = x[:, None]  # (T, I) -> (T, 1, I)
        else:
            xt = x.transpose(1, 0, 2) if self.batch_first else x  # (N, T, I) -> (T, N, I)
        s0 = self._check_states(state, None if unbatched else xt.shape[1], x.dtype)
        finals = tuple(np.empty_like(s) for s in s0)
        caches, inp = [], xt
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                j = layer * self.num_directions + d
                y, s_T, cache = self._run(inp if d == 0 else inp[::-1], tuple(s[j] for s in s0),
                                          self._weights(layer, d))
                for f, s in zip(finals, s_T):
                    f[j] = s
                outs.append(y if d == 0 else y[::-1])
                caches.append(cache)
            inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)  # (T, N, dirs*S)
        for s, f in zip(self._states, finals):
            object.__setattr__(self, f"{s}_n", f[:, 0] if unbatched else f)
        self._save(caches=caches, unbatched=unbatched, out_shape=inp.shape, state_shape=finals[0].shape)
        if unbatched:
            return inp[:, 0].copy()  # (T, 1, dirs*S) -> (T, dirs*S)
        # a copy: the layer's output must not alias the hidden states its backward reads
        return np.ascontiguousarray(inp.transpose(1, 0, 2)) if self.batch_first else inp.copy()

    def _backward(self, grad_output: np.ndarray, grad_finals: tuple) -> np.ndarray:
        name = type(self).__name__
        c = self._take()
        unbatched, (T, N, DS) = c["unbatched"], c["out_shape"]
        want = (T, DS) if unbatched else ((N, T, DS) if self.batch_first else (T, N, DS))
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != want:
            raise ValueError(f"{name}.backward: grad_output must be an array of the output's shape {want}, got "
                             f"{getattr(grad_output, 'shape', type(grad_output).__name__)}")
        dtype = self.dtype
        if unbatched:
            g = grad_output[:, None]  # (T, DS) -> (T, 1, DS)
        else:
            g = grad_output.transpose(1, 0, 2) if self.batch_first else grad_output  # (N, T, DS) -> (T, N, DS)
        g = g.astype(dtype, copy=False)
        dfin = []
        for s, gf in zip(self._states, grad_finals):
            if gf is None:
                dfin.append(np.zeros(c["state_shape"], dtype))
                continue
            sw = self._state_shape(None if unbatched else N)
            if not isinstance(gf, np.ndarray) or gf.shape != sw:
                raise ValueError(f"{name}.backward: grad_{s}_n must be an array of shape {sw}, got "
                                 f"{getattr(gf, 'shape', type(gf).__name__)}")
            gf = gf.astype(dtype, copy=False)
            dfin.append(gf[:, None] if unbatched else gf)
        d0 = tuple(np.empty(c["state_shape"], dtype) for _ in self._states)
        S, caches = self.hidden_size, c["caches"]
        for layer in reversed(range(self.num_layers)):
            dx = None
            for d in range(self.num_directions):
                j = layer * self.num_directions + d
                gd = g[..., d * S:(d + 1) * S]
                dxd, ds0, pgrads = self._back(gd if d == 0 else gd[::-1], tuple(f[j] for f in dfin), caches[j])
                for a, v in zip(d0, ds0):
                    a[j] = v
                sfx = self._suffix(layer, d)
                for p, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), pgrads):
                    if v is not None:
                        self._grads[p + sfx] += v
                dxd = dxd if d == 0 else dxd[::-1]
                dx = dxd if dx is None else dx + dxd
            g = dx  # the gradient of the layer below's output (T, N, dirs*S), or of the input (T, N, I)
        for s, a in zip(self._states, d0):
            object.__setattr__(self, f"grad_{s}0", a[:, 0] if unbatched else a)
        if unbatched:
            return g[:, 0]
        return np.ascontiguousarray(g.transpose(1, 0, 2)) if self.batch_first else np.ascontiguousarray(g)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for opt, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, opt) != default:
                s += f", {opt}={getattr(self, opt)}"
        return s


class LSTM(_RNNBase):
    """Multi-layer LSTM as torch.nn.LSTM (see the module docstring for the equations, shapes and deviations).

    ``forward(x, state=None)``: ``state`` is ``(h0, c0)``, each (layers*dirs, N, S); returns the output
    (T, N, dirs*S) or (N, T, dirs*S) with ``batch_first``; the final state is kept in ``self.h_n``, ``self.c_n``.
    """

    _gates = 4
    _states = ("h", "c")

    def _run(self, x, states, weights):
        y, h_T, c_T, cache = lstm_forward(x, *states, *weights)
        return y, (h_T, c_T), cache

    def _back(self, dy, dstates, cache):
        dx, dh0, dc0, *pgrads = lstm_backward(dy, *dstates, cache)
        return dx, (dh0, dc0), pgrads

    def backward(self, grad_output: np.ndarray, grad_h_n: np.ndarray | None = None,
                 grad_c_n: np.ndarray | None = None) -> np.ndarray:
        """BPTT through every layer; adds into every parameter gradient, returns the input gradient.

        ``grad_h_n`` / ``grad_c_n`` (layers*dirs, N, S) are upstream gradients of the final state (None: zero).
        The gradients of the initial state are left in ``self.grad_h0`` and ``self.grad_c0``.
        """
        return self._backward(grad_output, (grad_h_n, grad_c_n))


class GRU(_RNNBase):
    """Multi-layer GRU as torch.nn.GRU (see the module docstring for the equations, shapes and deviations).

    ``forward(x, state=None)``: ``state`` is ``h0`` (layers*dirs, N, S); returns the output
    (T, N, dirs*S) or (N, T, dirs*S) with ``batch_first``; the final state is kept in ``self.h_n``.
    """

    _gates = 3
    _states = ("h",)

    def _run(self, x, states, weights):
        y, h_T, cache = gru_forward(x, *states, *weights)
        return y, (h_T,), cache

    def _back(self, dy, dstates, cache):
        dx, dh0, *pgrads = gru_backward(dy, *dstates, cache)
        return dx, (dh0,), pgrads

    def backward(self, grad_output: np.ndarray, grad_h_n: np.ndarray | None = None) -> np.ndarray:
        """BPTT through every layer; adds into every parameter gradient, returns the input gradient.

        ``grad_h_n`` (layers*dirs, N, S) is the upstream gradient of the final state (None: zero). The
        gradient of the initial state is left in ``self.grad_h0``.
        """
        return self._backward(grad_output, (grad_h_n,))


class LastStep(Module):
    """The last time step of a sequence: (N, T, F) -> x[:, -1] with ``batch_first``, (T, N, F) -> x[-1] without.

    Puts a classifier head after a recurrent layer in a ``Sequential``; backward scatters the gradient into the
    last step and zeros elsewhere.
    """

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = bool(batch_first)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3,), "(N, T, F) with batch_first, else (T, N, F)")
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"LastStep: the sequence is empty, input shape {x.shape}")
        self._save(shape=x.shape, dtype=x.dtype)
        return (x[:, -1] if self.batch_first else x[-1]).copy()

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        shape = c["shape"]
        want = (shape[0], shape[2]) if self.batch_first else shape[1:]
        if grad_output.shape != want:
            raise ValueError(f"LastStep.backward: grad_output shape {grad_output.shape} != output shape {want}")
        dx = np.zeros(shape, c["dtype"])
        if self.batch_first:
            dx[:, -1] = grad_output
        else:
            dx[-1] = grad_output
        return dx

    def extra_repr(self) -> str:
        return "batch_first=True" if self.batch_first else ""
