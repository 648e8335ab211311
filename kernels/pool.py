"""2-D pooling kernels (torch semantics), forward and backward, NCHW.

Public: ``pool_output_size``, ``adaptive_bounds``, ``maxpool2d`` / ``maxpool2d_backward``, ``avgpool2d`` /
``avgpool2d_backward``, ``adaptive_avgpool2d`` / ``adaptive_avgpool2d_backward``, ``adaptive_maxpool2d`` (its
backward is ``maxpool2d_backward``: the same flat indices); each fast kernel has a plain
NumPy ``*_ref`` twin. The fast kernels run one (n, c) plane per parallel iteration, so every thread writes a
disjoint slice and results do not depend on the thread count.

Conventions, as torch's CPU kernels:

* max pooling treats padding as -inf, scans a window row by row and keeps the *first* maximum (``v > best``)
  unless a NaN appears (a NaN always wins); ``indices`` are flat ``h * W + w`` positions inside the plane,
  like ``return_indices=True`` in torch. The backward routes each output gradient to that position.
* average pooling: the window [h0, h0 + kH) is first clipped to the padded input (that size is the divisor
  when ``count_include_pad``), then to the input (the divisor otherwise); ``divisor`` > 0 overrides both.
* adaptive average pooling: output o averages input [floor(o I / O), ceil((o + 1) I / O)); adaptive max
  pooling takes the maximum of the same window, with max pooling's first-maximum and NaN rules.
"""
from __future__ import annotations

import numba
import numpy as np

from kernels._config import njit, pjit

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: floor or ceil of the window count; with ceil_mode the last window must
    start inside the input or its left padding, else it is dropped."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1  # floor division rounds to -inf, like div_rtn
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start (floor(o I / O)) and end (ceil((o + 1) I / O)) of each adaptive window, int64 (out,)."""
    o = np.arange(out, dtype=np.int64)
    return (o * size) // out, ((o + 1) * size + out - 1) // out


def _check(name: str, **arrays) -> None:
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: {k} must be a numpy array, got {type(a).__name__}")
        if k in ("x", "grad_output") and (a.dtype not in _FLOATS or a.ndim != 4):
            raise TypeError(f"{name}: {k} must be a 4-d float32/float64 array (N, C, H, W), "
                            f"got {a.ndim}-d {a.dtype}")


# --------------------------------------------------------------------------------------- max pooling


@njit(inline="always")
def _beats(v, best):
    """torch's max pooling update: a larger value or a NaN (so a NaN always wins) replaces the running maximum."""
    return v > best or np.isnan(v)


@pjit
def _maxpool_fwd(x, kH, kW, sH, sW, pH, pW, dH, dW, y, idx):
    P, H, W = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            h0 = oh * sH - pH
            hs = h0
            while hs < 0:
                hs += dH
            for ow in range(Wo):
                w0 = ow * sW - pW
                ws = w0
                while ws < 0:
                    ws += dW
                best = -np.inf
                bi = hs * W + ws
                for i in range(kH):
                    h = h0 + i * dH
                    if h < 0 or h >= H:
                        continue
                    for j in range(kW):
                        w = w0 + j * dW
                        if w < 0 or w >= W:
                            continue
                        v = x[p, h, w]
                        if _beats(v, best):
                            best = v
                            bi = h * W + w
                y[p, oh, ow] = best
                idx[p, oh, ow] = bi


@pjit
def _maxpool_bwd(g, idx, dx):
    P, L = g.shape
    for p in numba.prange(P):
        for o in range(L):
            dx[p, idx[p, o]] += g[p, o]


def maxpool2d(x, kernel, stride, padding, dilation, out_hw):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo) x.dtype, indices (N, C, Ho, Wo) int64 flat in the H*W plane)."""
    _check("maxpool2d", x=x)
    N, C, H, W = x.shape
    Ho, Wo = out_hw
    y = np.empty((N * C, Ho, Wo), x.dtype)
    idx = np.empty((N * C, Ho, Wo), np.int64)
    if y.size:
        _maxpool_fwd(np.ascontiguousarray(x).reshape(N * C, H, W), *kernel, *stride, *padding, *dilation, y, idx)
    return y.reshape(N, C, Ho, Wo), idx.reshape(N, C, Ho, Wo)


def maxpool2d_backward(grad_output, indices, in_hw):
    """Scatter-add grad_output (N, C, Ho, Wo) to the arg-max positions -> dx (N, C, H, W)."""
    _check("maxpool2d_backward", grad_output=grad_output, indices=indices)
    N, C, Ho, Wo = grad_output.shape
    H, W = in_hw
    dx = np.zeros((N * C, H * W), grad_output.dtype)
    if grad_output.size:
        _maxpool_bwd(np.ascontiguousarray(grad_output).reshape(N * C, Ho * Wo),
                     np.ascontiguousarray(indices).reshape(N * C, Ho * Wo), dx)
    return dx.reshape(N, C, H, W)


def maxpool2d_ref(x, kernel, stride, padding, dilation, out_hw):
    """Plain NumPy max pooling: a loop over output positions and taps, vectorised over the N*C planes."""
    N, C, H, W = x.shape
    (kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo) = kernel, stride, padding, dilation, out_hw
    xp = x.reshape(N * C, H, W)
    y = np.full((N * C, Ho, Wo), -np.inf, x.dtype)
    idx = np.zeros((N * C, Ho, Wo), np.int64)
    for oh in range(Ho):
        for ow in range(Wo):
            hv = [oh * sH - pH + i * dH for i in range(kH) if 0 <= oh * sH - pH + i * dH < H]
            wv = [ow * sW - pW + j * dW for j in range(kW) if 0 <= ow * sW - pW + j * dW < W]
            idx[:, oh, ow] = hv[0] * W + wv[0]
            for h in hv:
                for w in wv:
                    v = xp[:, h, w]
                    take = (v > y[:, oh, ow]) | np.isnan(v)
                    y[take, oh, ow] = v[take]
                    idx[take, oh, ow] = h * W + w
    return y.reshape(N, C, Ho, Wo), idx.reshape(N, C, Ho, Wo)


def maxpool2d_backward_ref(grad_output, indices, in_hw):
    N, C, Ho, Wo = grad_output.shape
    H, W = in_hw
    dx = np.zeros((N * C, H * W), grad_output.dtype)
    rows = np.repeat(np.arange(N * C), Ho * Wo)
    np.add.at(dx, (rows, indices.reshape(-1)), grad_output.reshape(-1))
    return dx.reshape(N, C, H, W)


# --------------------------------------------------------------------------------------- average pooling


@njit(inline="always")
def _avg_window(o, s, p, k, size):
    """(start, end, padded_count) of one axis of a torch average-pool window."""
    a = o * s - p
    b = min(a + k, size + p)
    n = b - a
    return max(a, 0), min(b, size), n


@njit(inline="always")
def _avg_divisor(divisor, count_include_pad, padded_count, count):
    if divisor > 0:
        return divisor
    return padded_count if count_include_pad else count


@pjit
def _avgpool_fwd(x, kH, kW, sH, sW, pH, pW, count_include_pad, divisor, y):
    P, H, W = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            h0, h1, nh = _avg_window(oh, sH, pH, kH, H)
            for ow in range(Wo):
                w0, w1, nw = _avg_window(ow, sW, pW, kW, W)
                if h0 >= h1 or w0 >= w1:
                    y[p, oh, ow] = 0
                    continue
                acc = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        acc += x[p, h, w]
                d = _avg_divisor(divisor, count_include_pad, nh * nw, (h1 - h0) * (w1 - w0))
                y[p, oh, ow] = acc / d


@pjit
def _avgpool_bwd(g, kH, kW, sH, sW, pH, pW, count_include_pad, divisor, dx):
    P, H, W = dx.shape
    Ho, Wo = g.shape[1], g.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            h0, h1, nh = _avg_window(oh, sH, pH, kH, H)
            for ow in range(Wo):
                w0, w1, nw = _avg_window(ow, sW, pW, kW, W)
                d = _avg_divisor(divisor, count_include_pad, nh * nw, (h1 - h0) * (w1 - w0))
                if d <= 0:
                    continue
                v = g[p, oh, ow] / d
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        dx[p, h, w] += v


def avgpool2d(x, kernel, stride, padding, out_hw, count_include_pad=True, divisor=0):
    """x (N, C, H, W) -> y (N, C, Ho, Wo); ``divisor`` > 0 is torch's divisor_override."""
    _check("avgpool2d", x=x)
    N, C, H, W = x.shape
    y = np.empty((N * C, *out_hw), x.dtype)
    if y.size:
        _avgpool_fwd(np.ascontiguousarray(x).reshape(N * C, H, W), *kernel, *stride, *padding,
                     bool(count_include_pad), int(divisor), y)
    return y.reshape(N, C, *out_hw)


def avgpool2d_backward(grad_output, in_hw, kernel, stride, padding, count_include_pad=True, divisor=0):
    """grad_output (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    _check("avgpool2d_backward", grad_output=grad_output)
    N, C, Ho, Wo = grad_output.shape
    dx = np.zeros((N * C, *in_hw), grad_output.dtype)
    if grad_output.size:
        _avgpool_bwd(np.ascontiguousarray(grad_output).reshape(N * C, Ho, Wo), *kernel, *stride, *padding,
                     bool(count_include_pad), int(divisor), dx)
    return dx.reshape(N, C, *in_hw)


def _avg_windows_ref(out_hw, in_hw, kernel, stride, padding, count_include_pad, divisor):
    """Yield (oh, ow, h-slice, w-slice, divisor) for every output position, straight from torch's rules."""
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            bounds = []
            for o, s, p, k, n in zip((oh, ow), stride, padding, kernel, in_hw):
                a, b = o * s - p, min(o * s - p + k, n + p)
                bounds.append((max(a, 0), min(b, n), b - a))
            (h0, h1, nh), (w0, w1, nw) = bounds
            d = divisor if divisor > 0 else (nh * nw if count_include_pad else (h1 - h0) * (w1 - w0))
            yield oh, ow, slice(h0, max(h0, h1)), slice(w0, max(w0, w1)), d


def avgpool2d_ref(x, kernel, stride, padding, out_hw, count_include_pad=True, divisor=0):
    y = np.zeros(x.shape[:2] + tuple(out_hw), x.dtype)
    for oh, ow, hs, ws, d in _avg_windows_ref(out_hw, x.shape[2:], kernel, stride, padding,
                                              count_include_pad, divisor):
        win = x[:, :, hs, ws]
        if win.size:
            y[:, :, oh, ow] = win.sum(axis=(2, 3)) / d
    return y


def avgpool2d_backward_ref(grad_output, in_hw, kernel, stride, padding, count_include_pad=True, divisor=0):
    dx = np.zeros(grad_output.shape[:2] + tuple(in_hw), grad_output.dtype)
    for oh, ow, hs, ws, d in _avg_windows_ref(grad_output.shape[2:], in_hw, kernel, stride, padding,
                                              count_include_pad, divisor):
        if d > 0:
            dx[:, :, hs, ws] += (grad_output[:, :, oh, ow] / d)[:, :, None, None]
    return dx


# --------------------------------------------------------------------------------------- adaptive average


@pjit
def _adaptive_fwd(x, hs, he, ws, we, y):
    P = x.shape[0]
    Ho, Wo = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            for ow in range(Wo):
                acc = 0.0
                for h in range(hs[oh], he[oh]):
                    for w in range(ws[ow], we[ow]):
                        acc += x[p, h, w]
                y[p, oh, ow] = acc / ((he[oh] - hs[oh]) * (we[ow] - ws[ow]))


@pjit
def _adaptive_bwd(g, hs, he, ws, we, dx):
    P = dx.shape[0]
    Ho, Wo = g.shape[1], g.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            for ow in range(Wo):
                v = g[p, oh, ow] / ((he[oh] - hs[oh]) * (we[ow] - ws[ow]))
                for h in range(hs[oh], he[oh]):
                    for w in range(ws[ow], we[ow]):
                        dx[p, h, w] += v


def adaptive_avgpool2d(x, out_hw):
    """x (N, C, H, W) -> y (N, C, Ho, Wo), windows from ``adaptive_bounds``."""
    _check("adaptive_avgpool2d", x=x)
    N, C, H, W = x.shape
    y = np.empty((N * C, *out_hw), x.dtype)
    if y.size:
        _adaptive_fwd(np.ascontiguousarray(x).reshape(N * C, H, W), *adaptive_bounds(H, out_hw[0]),
                      *adaptive_bounds(W, out_hw[1]), y)
    return y.reshape(N, C, *out_hw)


def adaptive_avgpool2d_backward(grad_output, in_hw):
    """grad_output (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    _check("adaptive_avgpool2d_backward", grad_output=grad_output)
    N, C, Ho, Wo = grad_output.shape
    dx = np.zeros((N * C, *in_hw), grad_output.dtype)
    if grad_output.size:
        _adaptive_bwd(np.ascontiguousarray(grad_output).reshape(N * C, Ho, Wo), *adaptive_bounds(in_hw[0], Ho),
                      *adaptive_bounds(in_hw[1], Wo), dx)
    return dx.reshape(N, C, *in_hw)


def adaptive_avgpool2d_ref(x, out_hw):
    (hs, he), (ws, we) = adaptive_bounds(x.shape[2], out_hw[0]), adaptive_bounds(x.shape[3], out_hw[1])
    y = np.zeros(x.shape[:2] + tuple(out_hw), x.dtype)
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            y[:, :, oh, ow] = x[:, :, hs[oh]:he[oh], ws[ow]:we[ow]].mean(axis=(2, 3))
    return y


def adaptive_avgpool2d_backward_ref(grad_output, in_hw):
    Ho, Wo = grad_output.shape[2:]
    (hs, he), (ws, we) = adaptive_bounds(in_hw[0], Ho), adaptive_bounds(in_hw[1], Wo)
    dx = np.zeros(grad_output.shape[:2] + tuple(in_hw), grad_output.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            n = (he[oh] - hs[oh]) * (we[ow] - ws[ow])
            dx[:, :, hs[oh]:he[oh], ws[ow]:we[ow]] += (grad_output[:, :, oh, ow] / n)[:, :, None, None]
    return dx



# --------------------------------------------------------------------------------------- adaptive max


@pjit
def _adaptive_max_fwd(x, hs, he, ws, we, y, idx):
    P, W = x.shape[0], x.shape[2]
    Ho, Wo = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for oh in range(Ho):
            for ow in range(Wo):
                best = -np.inf
                bi = hs[oh] * W + ws[ow]
                for h in range(hs[oh], he[oh]):
                    for w in range(ws[ow], we[ow]):
                        v = x[p, h, w]
                        if _beats(v, best):
                            best = v
                            bi = h * W + w
                y[p, oh, ow] = best
                idx[p, oh, ow] = bi


def adaptive_maxpool2d(x, out_hw):
    """x (N, C, H, W) -> (y (N, C, Ho, Wo) x.dtype, indices (N, C, Ho, Wo) int64 flat in the H*W plane), windows
    from ``adaptive_bounds``; ``maxpool2d_backward(g, indices, (H, W))`` is the backward."""
    _check("adaptive_maxpool2d", x=x)
    N, C, H, W = x.shape
    y = np.empty((N * C, *out_hw), x.dtype)
    idx = np.empty((N * C, *out_hw), np.int64)
    if y.size:
        _adaptive_max_fwd(np.ascontiguousarray(x).reshape(N * C, H, W), *adaptive_bounds(H, out_hw[0]),
                          *adaptive_bounds(W, out_hw[1]), y, idx)
    return y.reshape(N, C, *out_hw), idx.reshape(N, C, *out_hw)


def adaptive_maxpool2d_ref(x, out_hw):
    """Plain NumPy: per output window, the first arg-max of the flattened window (NaN wins, the last one)."""
    N, C, H, W = x.shape
    (hs, he), (ws, we) = adaptive_bounds(H, out_hw[0]), adaptive_bounds(W, out_hw[1])
    y = np.zeros((N, C) + tuple(out_hw), x.dtype)
    idx = np.zeros((N, C) + tuple(out_hw), np.int64)
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            win = x[:, :, hs[oh]:he[oh], ws[ow]:we[ow]].reshape(N, C, -1)  # (N, C, window) row by row
            nan = np.isnan(win)
            last_nan = win.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
            k = np.where(nan.any(axis=2), last_nan, np.argmax(np.where(nan, -np.inf, win), axis=2))
            ww = we[ow] - ws[ow]
            idx[:, :, oh, ow] = (hs[oh] + k // ww) * W + ws[ow] + k % ww
            y[:, :, oh, ow] = np.take_along_axis(win, k[:, :, None], axis=2)[:, :, 0]
    return y, idx
