"""Shape and regularisation layers without parameters: Flatten, Dropout, Identity (as in torch.nn), DropPath."""
from __future__ import annotations

import numpy as np

from nn import init
from nn.module import Module


def flatten_shape(shape: tuple[int, ...], start_dim: int, end_dim: int) -> tuple[int, ...]:
    """torch.flatten's output shape: dims start_dim..end_dim (inclusive, negatives allowed) merged into one."""
    nd = max(len(shape), 1)
    s, e = start_dim, end_dim
    if not (-nd <= s < nd and -nd <= e < nd):
        raise ValueError(f"Flatten(start_dim={s}, end_dim={e}) is out of range for a {len(shape)}-d input")
    s, e = s % nd, e % nd
    if s > e:
        raise ValueError(f"Flatten: start_dim={start_dim} comes after end_dim={end_dim} for a {len(shape)}-d input")
    if len(shape) == 0:
        return (1,)
    return tuple(shape[:s]) + (int(np.prod(shape[s:e + 1])),) + tuple(shape[e + 1:])


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self._save(shape=x.shape)
        return x.reshape(flatten_shape(x.shape, self.start_dim, self.end_dim))

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = self._take()["shape"]
        return grad_output.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout: keep each element with probability 1 - p and scale by 1 / (1 - p).

    Returns ``(y, scale)`` where ``scale`` (x.shape, x.dtype) is 0 or 1/(1-p) per element, so y = x * scale
    and the backward is g * scale. p = 1 drops everything (scale 0), as torch does.
    """
    keep = rng.random(x.shape) >= p
    factor = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    scale = keep.astype(x.dtype) * x.dtype.type(factor)
    return x * scale, scale


def dropout_backward(g: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return g * scale


class Dropout(Module):
    """Inverted dropout (identity in eval). The mask comes from ``rng`` (a Generator or a seed)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None, *, inplace: bool = False) -> None:
        super().__init__()
        if isinstance(rng, bool):
            raise TypeError("Dropout: rng must be a numpy Generator or a seed, got a bool; "
                            "torch's inplace flag is keyword-only here (Dropout(p, inplace=...))")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)  # accepted for torch compatibility; lwnn never writes into its input
        self.rng = init.default_rng(rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save(scale=None)
            return x.copy()
        y, scale = dropout_forward(x, self.p, self.rng)
        self._save(scale=scale)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        scale = self._take()["scale"]
        return grad_output.copy() if scale is None else dropout_backward(grad_output, scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_forward(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic depth (Huang et al. 2016), per sample as torchvision's ``stochastic_depth(mode="row")``.

    Each sample (axis 0) is kept with probability 1 - p and scaled by 1 / (1 - p), so a residual branch is
    dropped for whole samples. Returns ``(y, scale)`` where ``scale`` (N, 1, ..., 1), x.dtype, is 0 or 1/(1-p);
    the backward is ``dropout_backward(g, scale)`` (g * scale, broadcast). p = 1 drops everything.
    """
    keep = rng.random(x.shape[0]) >= p  # (N,)
    factor = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    scale = (keep.astype(x.dtype) * x.dtype.type(factor)).reshape((x.shape[0],) + (1,) * (x.ndim - 1))
    return x * scale, scale


class DropPath(Module):
    """Stochastic depth on a residual branch: per-sample drop in training, identity in eval.

    The keep decisions come from ``rng`` (a Generator or a seed): ``rng.random(N) >= p`` per forward. Input
    (N, ...) of any rank >= 1. Twin of torchvision.ops.StochasticDepth(p, mode="row").
    """

    def __init__(self, p: float = 0.0, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"DropPath probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.rng = init.default_rng(rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 0:
            raise ValueError("DropPath expects an input (N, ...) with a batch axis, got a 0-d array")
        if not self.training or self.p == 0.0:
            self._save(scale=None, shape=x.shape)
            return x.copy()
        y, scale = drop_path_forward(x, self.p, self.rng)
        self._save(scale=scale, shape=x.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if grad_output.shape != c["shape"]:
            raise ValueError(f"DropPath.backward: grad_output shape {grad_output.shape} != output shape {c['shape']}")
        return grad_output.copy() if c["scale"] is None else dropout_backward(grad_output, c["scale"])

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Identity(Module):
    """y = x. Accepts and ignores any constructor arguments, as torch.nn.Identity does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self._save()
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._take()
        return grad_output
