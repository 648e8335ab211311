"""Upsampling as torch.nn.Upsample (modes 'nearest' and 'bilinear'), with torch's index and weight arithmetic.

Output size: ``size``, or floor(H * scale_factor) per axis (computed in float64, as torch). The source position of
output row o follows ATen's ``UpSample.h`` exactly, including its float32 arithmetic:

* nearest: o when Ho == H; o >> 1 when Ho == 2 H; else min(floor(float32(o) * s), H - 1) with the float32 scale
  s = 1 / scale_factor when a scale factor is given (and ``recompute_scale_factor`` is not True), else H / Ho.
  Non-integer scale factors follow the same rule (torch's legacy 'nearest', not 'nearest-exact').
* bilinear, in the input's float type: identity when Ho == H; else scale r = (H - 1) / (Ho - 1) (0 when Ho = 1)
  with ``align_corners``, or as nearest's s without; source h = r o with align_corners, else
  max(r (o + 0.5) - 0.5, 0); h0 = min(floor(h), H - 1), h1 = h0 + 1 (h0 at the last row), lambda = clip(h - h0)
  and y = (1 - lambda) x[h0] + lambda x[h1], first along W then along H, as torch.

Both modes are separable: y = A_h x A_w^T with A (Ho, H) holding one weight (nearest) or two (bilinear) per row.
The forward gathers rows and columns; the backward is dx = A_h^T g A_w with the dense A (fine at the sizes lwnn
runs; O(H Ho + W Wo) memory).
"""
from __future__ import annotations

import math

import numpy as np

from nn.module import Module

MODES = ("nearest", "bilinear")


def output_size(in_hw, size, scale_factor) -> tuple[int, int]:
    """(Ho, Wo) from ``size`` (pair) or ``scale_factor`` (pair of floats): floor(H * scale) in float64."""
    if size is not None:
        return tuple(size)
    return tuple(math.floor(float(n) * s) for n, s in zip(in_hw, scale_factor))


def _scale(in_size: int, out_size: int, scale: float | None, dtype) -> np.floating:
    """ATen's compute_scales_value: 1 / scale (cast to dtype) when given, else in / out in dtype."""
    dtype = np.dtype(dtype).type
    return dtype(1.0 / scale) if scale is not None and scale > 0 else dtype(in_size) / dtype(out_size)


def nearest_index(in_size: int, out_size: int, scale: float | None) -> np.ndarray:
    """Source row of each output row, int64 (out_size,) (ATen's nearest_idx, float32 arithmetic)."""
    o = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return o
    if out_size == 2 * in_size:
        return o >> 1
    s = _scale(in_size, out_size, scale, np.float32)
    return np.minimum(np.floor(o.astype(np.float32) * s).astype(np.int64), in_size - 1)


def linear_index(in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype):
    """(i0, i1 int64 (out,), l0, l1 (out,) dtype): y[o] = l0[o] x[i0[o]] + l1[o] x[i1[o]] (ATen's linear rule)."""
    T = np.dtype(dtype).type
    o = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return o, o, np.ones(out_size, T), np.zeros(out_size, T)
    if align_corners:
        r = T(in_size - 1) / T(out_size - 1) if out_size > 1 else T(0)
        src = r * o.astype(T)
    else:
        r = _scale(in_size, out_size, scale, T)
        src = np.maximum(r * (o.astype(T) + T(0.5)) - T(0.5), T(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(T), T(0), T(1)).astype(T)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (T(1) - l1).astype(T), l1


def interpolation_matrix(in_size: int, out_size: int, mode: str, align_corners: bool, scale: float | None,
                         dtype) -> np.ndarray:
    """A (out, in) in dtype with y = A x along one axis (the backward's transpose)."""
    A = np.zeros((out_size, in_size), dtype)
    rows = np.arange(out_size)
    if mode == "nearest":
        A[rows, nearest_index(in_size, out_size, scale)] = 1
    else:
        i0, i1, l0, l1 = linear_index(in_size, out_size, scale, align_corners, dtype)
        np.add.at(A, (rows, i0), l0)
        np.add.at(A, (rows, i1), l1)
    return A


def upsample_forward(x: np.ndarray, out_hw, mode: str, align_corners: bool, scales) -> np.ndarray:
    """x (N, C, H, W) -> (N, C, Ho, Wo); ``scales`` (sh, sw) are the scale factors torch passes (or None)."""
    (H, W), (Ho, Wo) = x.shape[2:], out_hw
    sh, sw = scales
    if mode == "nearest":
        return np.ascontiguousarray(x[:, :, nearest_index(H, Ho, sh)][:, :, :, nearest_index(W, Wo, sw)])
    j0, j1, m0, m1 = linear_index(W, Wo, sw, align_corners, x.dtype)
    i0, i1, l0, l1 = linear_index(H, Ho, sh, align_corners, x.dtype)
    t = x[:, :, :, j0] * m0 + x[:, :, :, j1] * m1  # (N, C, H, Wo)
    return t[:, :, i0] * l0[:, None] + t[:, :, i1] * l1[:, None]  # (N, C, Ho, Wo)


def upsample_backward(g: np.ndarray, in_hw, mode: str, align_corners: bool, scales) -> np.ndarray:
    """dx (N, C, H, W) = A_h^T g A_w for g (N, C, Ho, Wo)."""
    (H, W), (Ho, Wo) = in_hw, g.shape[2:]
    A_h = interpolation_matrix(H, Ho, mode, align_corners, scales[0], g.dtype)  # (Ho, H)
    A_w = interpolation_matrix(W, Wo, mode, align_corners, scales[1], g.dtype)  # (Wo, W)
    return np.ascontiguousarray(A_h.T @ g @ A_w)  # (H, Ho) @ (N, C, Ho, Wo) @ (Wo, W) -> (N, C, H, W)


def _positive_pair(v, name: str, kind: type):
    ok = (float, int, np.floating, np.integer) if kind is float else (int, np.integer)
    vv = (v, v) if isinstance(v, ok) and not isinstance(v, bool) else v
    if not (isinstance(vv, (tuple, list)) and len(vv) == 2
            and all(isinstance(e, ok) and not isinstance(e, bool) and e > 0 for e in vv)):
        raise ValueError(f"Upsample: {name} must be a positive {kind.__name__} or a pair of them, got {v!r}")
    return tuple(kind(e) for e in vv)


class Upsample(Module):
    """torch.nn.Upsample(size, scale_factor, mode, align_corners, recompute_scale_factor) for (N, C, H, W) input.

    Exactly one of ``size`` and ``scale_factor``; ``mode`` 'nearest' or 'bilinear'; ``align_corners`` only for
    'bilinear' (None means False, as torch). 1-d and 3-d interpolation (3-d or 5-d input) are not supported.
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Upsample: mode={mode!r} is not supported; lwnn has {' and '.join(map(repr, MODES))}")
        if mode == "nearest" and align_corners is not None:
            raise ValueError("Upsample: align_corners can only be set with mode='bilinear', not 'nearest'")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"Upsample: give exactly one of size and scale_factor, got size={size!r}, "
                             f"scale_factor={scale_factor!r}")
        self.size = size if size is None or isinstance(size, (int, np.integer)) else tuple(size)
        self._size = None if size is None else _positive_pair(size, "size", int)
        if scale_factor is None:
            self.scale_factor, self._scales = None, None
        else:
            self._scales = _positive_pair(scale_factor, "scale_factor", float)
            self.scale_factor = (float(scale_factor) if isinstance(scale_factor, (int, float, np.number))
                                 else self._scales)
        self.mode = mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = recompute_scale_factor

    def _geometry(self, x: np.ndarray):
        """(out_hw, scales passed to the index rules) for input x."""
        out = output_size(x.shape[2:], self._size, self._scales)
        use_scales = self._scales is not None and not self.recompute_scale_factor
        return out, (self._scales if use_scales else (None, None))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (4,), "(N, C, H, W) (lwnn has no 1-d or 3-d interpolation)")
        out, scales = self._geometry(x)
        if min(x.shape[2:]) < 1 or min(out) < 1:
            raise ValueError(f"Upsample: input spatial size {x.shape[2:]} gives output size {out}; both must be "
                             f"positive")
        y = upsample_forward(x, out, self.mode, bool(self.align_corners), scales)
        self._save(in_hw=x.shape[2:], scales=scales, y_shape=y.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if grad_output.shape != c["y_shape"]:
            raise ValueError(f"Upsample.backward: grad_output shape {grad_output.shape} != output shape "
                             f"{c['y_shape']}")
        return upsample_backward(grad_output, c["in_hw"], self.mode, bool(self.align_corners), c["scales"])

    def extra_repr(self) -> str:
        s = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        s += f", mode={self.mode!r}"
        return s + (f", align_corners={self.align_corners}" if self.align_corners is not None else "")
