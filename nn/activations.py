"""Element-wise activations and Softmax, each a pure forward/backward pair plus a thin layer, as in torch.nn.

Gradients at the kinks follow torch exactly (checked against torch 2.13):

======================  =====================================================================
ReLU                    relu'(0) = 0
ReLU6                   1 on the open interval (0, 6), so 0 at both 0 and 6
LeakyReLU(a)            1 for x > 0, ``a`` for x <= 0 (so ``a`` at 0)
Hardswish               0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3
Hardsigmoid             1/6 on the open interval (-3, 3), 0 at -3 and 3
SiLU (Swish)            smooth: s(x) (1 + x (1 - s(x))), with the overflow-free sigmoid
======================  =====================================================================

torch computes Hardsigmoid's 1/6 in float32 even for float64 tensors; we use the exact 1/6 (see the test).
``inplace=True`` is accepted for constructor compatibility with torch and has no effect: lwnn layers return
new arrays.
"""
from __future__ import annotations

import numpy as np

from nn.module import Module

# ----------------------------------------------------------------------------------- pure functions


def relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, dtype=x.dtype)


def relu_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    return g * (x > 0)


def relu6_forward(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6).astype(x.dtype, copy=False)


def relu6_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    return g * ((x > 0) & (x < 6))


def leaky_relu_forward(x: np.ndarray, negative_slope: float) -> np.ndarray:
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(g: np.ndarray, x: np.ndarray, negative_slope: float) -> np.ndarray:
    return np.where(x > 0, g, g * g.dtype.type(negative_slope))


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) for x < 0.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    # s'(x) = s (1 - s), written with the saved output
    return g * y * (1 - y)


def silu_forward(x: np.ndarray) -> np.ndarray:
    # SiLU / Swish (Elfwing et al. 2018; Ramachandran et al. 2017): x * s(x)
    return x * sigmoid_forward(x)


def silu_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    # d/dx x s(x) = s + x s (1 - s) = s (1 + x (1 - s)), as torch's silu_backward
    s = sigmoid_forward(x)
    return g * (s * (1 + x * (1 - s)))


def tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    return g * (1 - y * y)


def hardsigmoid_forward(x: np.ndarray) -> np.ndarray:
    # relu6(x + 3) / 6
    return (np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)


def hardsigmoid_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where((x > -3) & (x < 3), g / 6, 0).astype(g.dtype, copy=False)


def hardswish_forward(x: np.ndarray) -> np.ndarray:
    # x * relu6(x + 3) / 6
    return (x * np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)


def hardswish_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    d = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1))
    return (g * d).astype(g.dtype, copy=False)


def softmax_forward(x: np.ndarray, dim: int) -> np.ndarray:
    z = x - x.max(axis=dim, keepdims=True) if x.size else x
    e = np.exp(z)
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(g: np.ndarray, y: np.ndarray, dim: int) -> np.ndarray:
    # dx = y * (g - <g, y>) along dim
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


# ----------------------------------------------------------------------------------- layers


class _Elementwise(Module):
    """Activation that saves its input (``_saves_output`` False) or its output and calls a pure pair."""

    _saves_output = False

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)

    def _f(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _df(self, g, saved):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        y = self._f(x)
        self._save(saved=y if self._saves_output else x)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._take()["saved"]
        if grad_output.shape != saved.shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output shape {grad_output.shape} "
                             f"!= forward output shape {saved.shape}")
        return self._df(grad_output.astype(saved.dtype, copy=False), saved)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Elementwise):
    def _f(self, x):
        return relu_forward(x)

    def _df(self, g, x):
        return relu_backward(g, x)


class ReLU6(_Elementwise):
    def _f(self, x):
        return relu6_forward(x)

    def _df(self, g, x):
        return relu6_backward(g, x)


class LeakyReLU(_Elementwise):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = float(negative_slope)

    def _f(self, x):
        return leaky_relu_forward(x, self.negative_slope)

    def _df(self, g, x):
        return leaky_relu_backward(g, x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Elementwise):
    _saves_output = True

    def _f(self, x):
        return sigmoid_forward(x)

    def _df(self, g, y):
        return sigmoid_backward(g, y)


class SiLU(_Elementwise):
    """x * sigmoid(x) (Swish with beta = 1); saves the input and recomputes the sigmoid in backward."""

    def _f(self, x):
        return silu_forward(x)

    def _df(self, g, x):
        return silu_backward(g, x)


class Tanh(_Elementwise):
    _saves_output = True

    def _f(self, x):
        return tanh_forward(x)

    def _df(self, g, y):
        return tanh_backward(g, y)


class Hardsigmoid(_Elementwise):
    def _f(self, x):
        return hardsigmoid_forward(x)

    def _df(self, g, x):
        return hardsigmoid_backward(g, x)


class Hardswish(_Elementwise):
    def _f(self, x):
        return hardswish_forward(x)

    def _df(self, g, x):
        return hardswish_backward(g, x)


class Softmax(_Elementwise):
    """Softmax along ``dim``; ``dim=None`` picks torch's legacy implicit dim (0 for 0/1/3-d input, else 1)."""

    _saves_output = True

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Softmax dim must be an int or None, got {dim!r}")
        self.dim = None if dim is None else int(dim)

    def _axis(self, ndim: int) -> int:
        dim = self.dim
        if dim is None:
            dim = 0 if ndim in (0, 1, 3) else 1
        if not -max(ndim, 1) <= dim < max(ndim, 1):
            raise ValueError(f"Softmax dim={self.dim} is out of range for a {ndim}-d input")
        return dim % max(ndim, 1)

    def _f(self, x):
        axis = self._axis(x.ndim)
        self._axis_used = axis
        return softmax_forward(x, axis if x.ndim else None)

    def _df(self, g, y):
        return softmax_backward(g, y, self._axis_used if y.ndim else None)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
