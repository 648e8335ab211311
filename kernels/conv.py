"""2-D convolution (torch.nn.functional.conv2d semantics): forward and backward, NCHW / OIHW.

Public: ``conv2d``, ``conv2d_backward`` (fast) and their plain NumPy twins ``conv2d_ref``,
``conv2d_backward_ref``. Zero padding; ``stride``, ``padding``, ``dilation`` are ints or (h, w) pairs.
"""
from __future__ import annotations

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _pair(v, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif (isinstance(v, (tuple, list)) and len(v) == 2
          and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"conv2d: {name} must be >= {minimum}, got {v}")
    return v


def _check(x, weight, bias, stride, padding, dilation, groups, grad_output=None):
    """Validate arguments; return (stride, padding, dilation, groups, (Ho, Wo))."""
    arrays = {"x": x, "weight": weight}
    if bias is not None:
        arrays["bias"] = bias
    if grad_output is not None:
        arrays["grad_output"] = grad_output
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"conv2d: {name} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in _FLOATS:
            raise TypeError(f"conv2d: {name} must be float32 or float64, got {a.dtype}")
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) != 1:
        raise TypeError(f"conv2d: mixed dtypes {dtypes}; convert all arrays to one float dtype")
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, Ci, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (Co, Ci/G, kH, kW), got shape {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"conv2d: groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"conv2d: groups must be >= 1, got {groups}")
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    N, Ci, H, W = x.shape
    Co, Cig, kH, kW = weight.shape
    if Ci % groups:
        raise ValueError(f"conv2d: input channels {Ci} not divisible by groups={groups}")
    if Co % groups:
        raise ValueError(f"conv2d: output channels {Co} not divisible by groups={groups}")
    if Cig * groups != Ci:
        raise ValueError(f"conv2d: weight {weight.shape} expects {Cig * groups} input channels "
                         f"(Ci/G={Cig}, groups={groups}), but x has {Ci}")
    if bias is not None and bias.shape != (Co,):
        raise ValueError(f"conv2d: bias must have shape ({Co},), got {bias.shape}")
    ekH, ekW = dilation[0] * (kH - 1) + 1, dilation[1] * (kW - 1) + 1
    Hp, Wp = H + 2 * padding[0], W + 2 * padding[1]
    if kH < 1 or kW < 1 or ekH > Hp or ekW > Wp:
        raise ValueError(f"conv2d: dilated kernel ({ekH}, {ekW}) larger than padded input ({Hp}, {Wp})")
    out_hw = ((Hp - ekH) // stride[0] + 1, (Wp - ekW) // stride[1] + 1)
    if grad_output is not None and grad_output.shape != (N, Co) + out_hw:
        raise ValueError(f"conv2d_backward: grad_output must have shape {(N, Co) + out_hw}, "
                         f"got {grad_output.shape}")
    return stride, padding, dilation, groups, out_hw


def _windows(xp, i, j, stride, dilation, out_hw):
    """View of padded input xp (N, C, Hp, Wp) seen by kernel tap (i, j): (N, C, Ho, Wo)."""
    (sh, sw), (dh, dw), (Ho, Wo) = stride, dilation, out_hw
    return xp[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]


def conv2d_ref(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Plain NumPy conv2d: one einsum per kernel tap and group over the zero-padded input.

    x (N, Ci, H, W), weight (Co, Ci/G, kH, kW), bias (Co,) or None -> (N, Co, Ho, Wo), dtype of x.
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, bias, stride, padding, dilation, groups)
    N = x.shape[0]
    Co, Cig, kH, kW = weight.shape
    Cog = Co // G
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))  # (N, Ci, Hp, Wp)
    y = np.zeros((N, Co) + out_hw, x.dtype)
    for g in range(G):
        ci, co = slice(g * Cig, (g + 1) * Cig), slice(g * Cog, (g + 1) * Cog)
        for i in range(kH):
            for j in range(kW):
                patch = _windows(xp[:, ci], i, j, stride, dilation, out_hw)  # (N, Ci/G, Ho, Wo)
                # y[n, o, h, w] += sum_c W[o, c, i, j] x_pad[n, c, h*sh + i*dh, w*sw + j*dw]
                y[:, co] += np.einsum("nchw,oc->nohw", patch, weight[co, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_backward_ref(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """Plain NumPy conv2d backward: the transpose of each tap's einsum in ``conv2d_ref``.

    grad_output (N, Co, Ho, Wo) -> (grad_x (N, Ci, H, W), grad_weight (Co, Ci/G, kH, kW), grad_bias (Co,)).
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, None, stride, padding, dilation, groups,
                                                  grad_output)
    H, W = x.shape[2:]
    Co, Cig, kH, kW = weight.shape
    Cog = Co // G
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, Ci, Hp, Wp)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(weight)
    for g in range(G):
        ci, co = slice(g * Cig, (g + 1) * Cig), slice(g * Cog, (g + 1) * Cog)
        go = grad_output[:, co]  # (N, Co/G, Ho, Wo)
        for i in range(kH):
            for j in range(kW):
                patch = _windows(xp[:, ci], i, j, stride, dilation, out_hw)  # (N, Ci/G, Ho, Wo)
                gw[co, :, i, j] = np.einsum("nohw,nchw->oc", go, patch)
                _windows(gxp[:, ci], i, j, stride, dilation, out_hw)[...] += np.einsum(
                    "nohw,oc->nchw", go, weight[co, :, i, j])
    gx = gxp[:, :, ph: ph + H, pw: pw + W]
    gb = grad_output.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(gx), gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d as torch.nn.functional.conv2d. x (N, Ci, H, W), weight (Co, Ci/G, kH, kW) -> (N, Co, Ho, Wo)."""
    return conv2d_ref(x, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of conv2d: (grad_x (N, Ci, H, W), grad_weight (Co, Ci/G, kH, kW), grad_bias (Co,))."""
    return conv2d_backward_ref(grad_output, x, weight, stride, padding, dilation, groups)
