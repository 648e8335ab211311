"""Normalisation layers as torch.nn: BatchNorm1d/2d (Ioffe & Szegedy 2015), LayerNorm, GroupNorm.

Batch normalisation over (N, C), (N, C, L) or (N, C, H, W), as torch.nn.BatchNorm1d/2d.

Training normalises with the batch mean and the *biased* batch variance, and updates the running statistics
with the *unbiased* variance, exactly as torch:

    running_mean = (1 - m) running_mean + m mean
    running_var  = (1 - m) running_var  + m var * n / (n - 1)      (n = values per channel)

where m = momentum, or 1 / num_batches_tracked when momentum is None (a cumulative average). Evaluation uses
the running statistics (batch statistics when ``track_running_stats=False``). An empty batch returns an empty
output, leaves the running statistics alone and still counts in ``num_batches_tracked``, as torch does.
"""
from __future__ import annotations

import numpy as np

from nn.module import Module


def batchnorm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                      mean: np.ndarray | None, var: np.ndarray | None, eps: float):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1) of x (N, C, *).

    ``mean`` and ``var`` (C,) are the running statistics, or ``None`` for the batch's (biased variance).
    Returns ``(y, x_hat, inv_std, mean, var)``: x_hat (x.shape) and inv_std (C,) are what the backward needs,
    mean and var (C,) the statistics used.
    """
    x3 = _ncl(x)  # (N, C, L)
    if mean is None:
        n = x3.shape[0] * x3.shape[2]
        mean = x3.mean(axis=(0, 2)) if n else np.zeros(x.shape[1], x.dtype)
        x_hat = x3 - mean[:, None]  # (N, C, L)
        var = np.einsum("ncl,ncl->c", x_hat, x_hat) / max(n, 1)
    else:
        x_hat = x3 - mean[:, None]
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    x_hat *= inv_std[:, None]
    y = x_hat * weight[:, None] if weight is not None else x_hat.copy()
    if bias is not None:
        y += bias[:, None]
    return y.reshape(x.shape), x_hat.reshape(x.shape), inv_std, mean, var


def batchnorm_backward(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, weight: np.ndarray | None,
                       batch_stats: bool):
    """Gradients (dx (N, C, *), dweight (C,), dbias (C,)) of ``batchnorm_forward``.

    With batch statistics the mean and variance depend on x:
        dx = inv_std / n * (n dxh - sum(dxh) - x_hat * sum(dxh * x_hat)),   dxh = g * weight
    with running statistics they are constants and dx = dxh * inv_std.
    """
    g3, xh3 = _ncl(g), _ncl(x_hat)  # (N, C, L)
    dbias = g3.sum(axis=(0, 2))
    dweight = np.einsum("ncl,ncl->c", g3, xh3)
    scale = inv_std if weight is None else inv_std * weight  # (C,)
    dx = g3 * scale[:, None]
    n = g3.shape[0] * g3.shape[2]
    if batch_stats and n:
        dx -= (dbias * (scale / n))[:, None]
        dx -= xh3 * (dweight * (scale / n))[:, None]
    return dx.reshape(g.shape), dweight, dbias


def _ncl(a: np.ndarray) -> np.ndarray:
    """(N, C, *) -> (N, C, L) view, also for an empty batch."""
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


class _BatchNorm(Module):
    _ndims: tuple[int, ...] = ()
    _what = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=np.float32) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features, self.eps = int(num_features), float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dtype = np.dtype(dtype)
        self.register_parameter("weight", np.ones(num_features, dtype) if affine else None)
        self.register_parameter("bias", np.zeros(num_features, dtype) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                object.__setattr__(self, b, None)

    def _check(self, x: np.ndarray) -> None:
        name = type(self).__name__
        self._check_input(x, self._ndims, self._what)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) got {x.shape[1]} channels (input shape {x.shape})")
        if self.track_running_stats and x.dtype != self.running_mean.dtype:
            raise TypeError(f"{name} got {x.dtype} input but its running statistics are {self.running_mean.dtype}; "
                            f"use .to(np.{x.dtype.name})")

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        batch_stats = self.training or not self.track_running_stats
        n = x.size // x.shape[1]
        if batch_stats and n == 1:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when training, "
                             f"got input shape {x.shape}")
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
        stats = (None, None) if batch_stats else (self.running_mean, self.running_var)
        y, x_hat, inv_std, mean, var = batchnorm_forward(x, self.weight, self.bias, *stats, self.eps)
        if batch_stats and self.training and self.track_running_stats and n > 0:
            # m = momentum, or 1/num_batches_tracked (cumulative moving average) when momentum is None
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean = ((1 - m) * self.running_mean + m * mean).astype(x.dtype)
            # the running variance uses the unbiased estimate var * n / (n - 1)
            self.running_var = ((1 - m) * self.running_var + m * var * (n / (n - 1))).astype(x.dtype)
        self._save(x_hat=x_hat, inv_std=inv_std, batch_stats=batch_stats)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if grad_output.shape != c["x_hat"].shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output shape {grad_output.shape} "
                             f"!= output shape {c['x_hat'].shape}")
        dx, dw, db = batchnorm_backward(grad_output, c["x_hat"], c["inv_std"], self.weight, c["batch_stats"])
        if self.affine:
            self._grads["weight"] += dw
            self._grads["bias"] += db
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Input (N, C) or (N, C, L)."""

    _ndims = (2, 3)
    _what = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Input (N, C, H, W)."""

    _ndims = (4,)
    _what = "(N, C, H, W)"


# ------------------------------------------------------------------------------------------ layer and group norm
#
# Both standardise rows of a 2-d view with the *biased* variance and no running statistics, so they share one
# pair: LayerNorm's rows are the samples (Ba et al. 2016), GroupNorm's rows are (sample, group) (Wu & He 2018).

def standardize_rows(x2: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x_hat = (x - mean) / sqrt(var + eps) along axis 1 of x2 (M, K); returns (x_hat (M, K), inv_std (M,))."""
    x_hat = x2 - x2.mean(axis=1, keepdims=True)  # (M, K)
    var = np.einsum("mk,mk->m", x_hat, x_hat) / x2.shape[1]
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x2.dtype)
    x_hat *= inv_std[:, None]
    return x_hat, inv_std


def standardize_rows_backward(dxh: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """dx (M, K) of ``standardize_rows`` given dxh = dL/dx_hat (M, K):

        dx = inv_std * (dxh - mean(dxh) - x_hat * mean(dxh * x_hat))     (means along K)
    """
    k = dxh.shape[1]
    m1 = dxh.sum(axis=1, keepdims=True) / k
    m2 = np.einsum("mk,mk->m", dxh, x_hat)[:, None] / k
    return inv_std[:, None] * (dxh - m1 - x_hat * m2)


def layernorm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, d: int, eps: float):
    """y = x_hat * weight + bias, x_hat standardised over the last ``d`` axes of x (..., *normalized_shape).

    weight and bias have shape normalized_shape (either may be None). Returns (y (x.shape), x_hat (M, K),
    inv_std (M,)) with K = prod(normalized_shape), M = x.size / K.
    """
    k = int(np.prod(x.shape[x.ndim - d:], dtype=np.int64))
    x_hat, inv_std = standardize_rows(x.reshape(-1, k), eps)  # (M, K)
    y = x_hat * weight.reshape(-1) if weight is not None else x_hat.copy()
    if bias is not None:
        y += bias.reshape(-1)
    return y.reshape(x.shape), x_hat, inv_std


def layernorm_backward(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, weight: np.ndarray | None):
    """(dx (g.shape), dweight (K,), dbias (K,)) of ``layernorm_forward``; reshape dweight/dbias to the params."""
    g2 = g.reshape(x_hat.shape)  # (M, K)
    dweight = np.einsum("mk,mk->k", g2, x_hat)
    dbias = g2.sum(axis=0)
    dxh = g2 * weight.reshape(-1) if weight is not None else g2
    return standardize_rows_backward(dxh, x_hat, inv_std).reshape(g.shape), dweight, dbias


def groupnorm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, groups: int, eps: float):
    """y = x_hat * weight[c] + bias[c], x_hat standardised over each group of C/G channels (and all of *).

    x (N, C, *), weight and bias (C,) or None. Returns (y (x.shape), x_hat (N, C, L), inv_std (N*G,)).
    """
    n, c = x.shape[:2]
    l = int(np.prod(x.shape[2:], dtype=np.int64))
    x_hat, inv_std = standardize_rows(x.reshape(n * groups, c // groups * l), eps)  # (N*G, C/G*L)
    x_hat = x_hat.reshape(n, c, l)  # (N, C, L)
    y = x_hat * weight[:, None] if weight is not None else x_hat.copy()
    if bias is not None:
        y += bias[:, None]
    return y.reshape(x.shape), x_hat, inv_std


def groupnorm_backward(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, weight: np.ndarray | None):
    """(dx (g.shape), dweight (C,), dbias (C,)) of ``groupnorm_forward``; x_hat (N, C, L), inv_std (N*G,)."""
    g3 = g.reshape(x_hat.shape)  # (N, C, L)
    dweight = np.einsum("ncl,ncl->c", g3, x_hat)
    dbias = g3.sum(axis=(0, 2))
    dxh = g3 * weight[:, None] if weight is not None else g3
    rows = (inv_std.shape[0], x_hat.size // max(inv_std.shape[0], 1))  # (N*G, C/G*L)
    dx = standardize_rows_backward(dxh.reshape(rows), x_hat.reshape(rows), inv_std)
    return dx.reshape(g.shape), dweight, dbias


def _positive_int(name: str, what: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
    return int(v)


class _RowNorm(Module):
    """Shared forward/backward of LayerNorm and GroupNorm: subclasses give ``_check`` and the pure pair."""

    def _check(self, x: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pair(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        fwd, _, arg = self._pair()
        y, x_hat, inv_std = fwd(x, self.weight, self.bias, arg, self.eps)
        self._save(x_hat=x_hat, inv_std=inv_std, shape=x.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if grad_output.shape != c["shape"]:
            raise ValueError(f"{type(self).__name__}.backward: grad_output shape {grad_output.shape} "
                             f"!= output shape {c['shape']}")
        _, bwd, _ = self._pair()
        dx, dw, db = bwd(grad_output.astype(c["x_hat"].dtype, copy=False), c["x_hat"], c["inv_std"], self.weight)
        if self.weight is not None:
            self._grads["weight"] += dw.reshape(self.weight.shape)
        if self.bias is not None:
            self._grads["bias"] += db.reshape(self.bias.shape)
        return dx


class LayerNorm(_RowNorm):
    """torch.nn.LayerNorm: standardise over the last len(normalized_shape) axes, then weight * x_hat + bias.

    Input (..., *normalized_shape); weight and bias (normalized_shape), ones and zeros at init.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=np.float32) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise ValueError(f"LayerNorm: normalized_shape must be an int or a non-empty tuple of ints, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(_positive_int("LayerNorm", "normalized_shape", s) for s in normalized_shape)
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        dtype = np.dtype(dtype)
        affine = self.elementwise_affine
        self.register_parameter("weight", np.ones(self.normalized_shape, dtype) if affine else None)
        self.register_parameter("bias", np.zeros(self.normalized_shape, dtype) if affine and bias else None)

    def _check(self, x: np.ndarray) -> None:
        self._check_input(x)
        d = len(self.normalized_shape)
        if x.ndim < d or x.shape[x.ndim - d:] != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} expects input (..., "
                             f"{', '.join(map(str, self.normalized_shape))}), got shape {x.shape}")

    def _pair(self):
        return layernorm_forward, layernorm_backward, len(self.normalized_shape)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(_RowNorm):
    """torch.nn.GroupNorm: standardise each sample over groups of C/G channels, then per-channel weight, bias.

    Input (N, C, *); weight and bias (C,), ones and zeros at init (``bias`` keyword-only, as torch). G = 1 is LayerNorm over (C, *) with a
    per-channel affine, G = C is InstanceNorm with an affine.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float32, *, bias: bool = True) -> None:
        super().__init__()
        self.num_groups = _positive_int("GroupNorm", "num_groups", num_groups)
        self.num_channels = _positive_int("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by num_groups={num_groups}")
        self.eps, self.affine = float(eps), bool(affine)
        dtype = np.dtype(dtype)
        self.register_parameter("weight", np.ones(self.num_channels, dtype) if affine else None)
        self.register_parameter("bias", np.zeros(self.num_channels, dtype) if affine and bias else None)

    def _check(self, x: np.ndarray) -> None:
        self._check_input(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) expects input "
                             f"(N, {self.num_channels}, *), got shape {x.shape}")

    def _pair(self):
        return groupnorm_forward, groupnorm_backward, self.num_groups

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")
