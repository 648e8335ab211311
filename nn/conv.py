"""Convolution layers as torch.nn.Conv2d (NCHW input, OIHW weight), Conv1d and ConvTranspose2d; the arithmetic
is ``kernels.conv`` (Conv1d and ConvTranspose2d compose its two functions; see their docstrings).

Conv2d's ``padding`` is an int, a pair, ``'valid'`` (0) or ``'same'`` (stride 1 only). ``'same'`` with an even
dilated kernel pads one more row/column at the bottom/right than at the top/left, as torch does; the kernel
takes symmetric padding, so the extra row/column is padded here and its gradient dropped. Only
``padding_mode='zeros'`` is supported.
"""
from __future__ import annotations

import numpy as np

from kernels.conv import conv2d, conv2d_backward
from nn import init
from nn.module import Module


def pair_arg(v, layer: str, name: str, minimum: int) -> tuple[int, int]:
    """An int or a 1- or 2-sequence of ints -> (h, w), each >= minimum; errors name the layer and option."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    elif isinstance(v, (tuple, list)) and len(v) == 1:
        v = (v[0], v[0])
    if not (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {v!r}")
    v = (int(v[0]), int(v[1]))
    if min(v) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {v}")
    return v


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """torch's padding='same': total d (k - 1) per axis, split (total // 2 before, the rest after)."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    before = tuple(t // 2 for t in total)
    return before, tuple(t - b for t, b in zip(total, before))


def check_channels(layer: str, in_channels, out_channels, groups, padding_mode: str) -> tuple[int, int, int]:
    """Validate a conv layer's channel counts, groups and padding_mode; return (in, out, groups) as ints."""
    if padding_mode != "zeros":
        raise ValueError(f"{layer}: padding_mode={padding_mode!r} is not supported; only 'zeros'")
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (1 if name == "groups" else 0):
            raise ValueError(f"{layer}: {name} must be a {'positive' if name == 'groups' else 'non-negative'} "
                             f"int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: in_channels={in_channels} and out_channels={out_channels} must both be "
                         f"divisible by groups={groups}")
    return int(in_channels), int(out_channels), int(groups)


def string_padding(layer: str, padding: str, kernel, stride, dilation, numeric: str):
    """padding 'valid' or 'same' -> ((before h, w), (after h, w)); 'same' needs stride 1, as in torch."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{layer}: padding='same' is not supported for strided convolutions "
                             f"(stride={stride}), as in torch")
        return same_padding(kernel, dilation)
    raise ValueError(f"{layer}: padding must be {numeric}, 'valid' or 'same', got {padding!r}")


def add_weight_bias_grads(layer: Module, dW: np.ndarray, db: np.ndarray) -> None:
    """Backward's accumulation (+=) into the gradients of ``weight`` and, when the layer has one, ``bias``."""
    layer._grads["weight"] += dW
    if layer.bias is not None:
        layer._grads["bias"] += db


def conv2d_layer_forward(x, weight, bias, stride, pad_before, pad_after, dilation, groups):
    """Convolution with possibly asymmetric zero padding: x (N, Ci, H, W) -> (N, Co, Ho, Wo)."""
    extra = (pad_after[0] - pad_before[0], pad_after[1] - pad_before[1])
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return conv2d(x, weight, bias, stride, pad_before, dilation, groups)


def conv2d_layer_backward(g, x, weight, stride, pad_before, pad_after, dilation, groups):
    """Gradients (dx (N, Ci, H, W), dW (Co, Ci/G, kH, kW), db (Co,)) of ``conv2d_layer_forward``."""
    extra = (pad_after[0] - pad_before[0], pad_after[1] - pad_before[1])
    H, W = x.shape[2:]
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    dx, dW, db = conv2d_backward(g, x, weight, stride, pad_before, dilation, groups)
    return np.ascontiguousarray(dx[:, :, :H, :W]), dW, db


class Conv2d(Module):
    """torch.nn.Conv2d with its constructor options and torch's default initialisation
    (weight: kaiming_uniform(a=sqrt(5)); bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))).

    Input (N, Ci, H, W) or unbatched (Ci, H, W); output (N, Co, Ho, Wo) in the same dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = check_channels("Conv2d", in_channels, out_channels,
                                                                          groups, padding_mode)
        self.kernel_size = pair_arg(kernel_size, "Conv2d", "kernel_size", 1)
        self.stride = pair_arg(stride, "Conv2d", "stride", 1)
        self.dilation = pair_arg(dilation, "Conv2d", "dilation", 1)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            self._pads = string_padding("Conv2d", padding, self.kernel_size, self.stride, self.dilation,
                                        "an int, a pair")
            self.padding = padding
        else:
            self.padding = pair_arg(padding, "Conv2d", "padding", 0)
            self._pads = (self.padding, self.padding)
        rng = init.default_rng(rng)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)  # (Co, Ci/G, kH, kW)
        self.register_parameter("weight", init.kaiming_uniform(rng, shape, dtype=dtype))
        self.register_parameter("bias", init.bias_uniform(rng, shape, self.out_channels, dtype) if bias else None)

    def _conv_args(self):
        return self.stride, self._pads[0], self._pads[1], self.dilation, self.groups

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}) got {x4.shape[1]} input channels "
                             f"(input shape {x.shape})")
        pb, pa = self._pads
        eff = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation)]
        if any(n + b + a < e for n, b, a, e in zip(x4.shape[2:], pb, pa, eff)):
            raise ValueError(f"Conv2d: input spatial size {x4.shape[2:]} with padding {self.padding} is smaller "
                             f"than the dilated kernel {tuple(eff)}")
        y = conv2d_layer_forward(x4, self.weight, self.bias, *self._conv_args())
        self._save(x=x4, batched=x.ndim == 4)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = grad_output if c["batched"] else grad_output[None]
        dx, dW, db = conv2d_layer_backward(g, c["x"], self.weight, *self._conv_args())
        add_weight_bias_grads(self, dW, db)
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


# ------------------------------------------------------------------------------------------ 1-d convolution

def single_arg(v, layer: str, name: str, minimum: int) -> int:
    """An int or a 1-sequence of ints -> int >= minimum; errors name the layer and option."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{layer}: {name} must be an int or a 1-tuple of ints, got {v!r}")
    if v < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {v}")
    return int(v)


class Conv1d(Module):
    """torch.nn.Conv1d (weight (Co, Ci/G, k), torch's default initialisation), computed by the 2-d path.

    Input (N, Ci, L) or unbatched (Ci, L) is viewed as (N, Ci, 1, L) and the weight as (Co, Ci/G, 1, k), so
    ``conv2d_layer_forward`` / ``conv2d_layer_backward`` (and the ``kernels.conv`` kernels) do the arithmetic.
    ``padding`` is an int, a 1-tuple, ``'valid'`` or ``'same'`` (stride 1 only; an even dilated kernel pads
    one more at the end, as torch). Only ``padding_mode='zeros'``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = check_channels("Conv1d", in_channels, out_channels,
                                                                          groups, padding_mode)
        self.kernel_size = (single_arg(kernel_size, "Conv1d", "kernel_size", 1),)
        self.stride = (single_arg(stride, "Conv1d", "stride", 1),)
        self.dilation = (single_arg(dilation, "Conv1d", "dilation", 1),)
        self.padding_mode = padding_mode
        if isinstance(padding, str):  # the 2-d layer's (before, after) pairs with the H axis unpadded
            self._pads = string_padding("Conv1d", padding, (1,) + self.kernel_size, (1,) + self.stride,
                                        (1,) + self.dilation, "an int, a 1-tuple")
            self.padding = padding
        else:
            self.padding = (single_arg(padding, "Conv1d", "padding", 0),)
            self._pads = ((0, self.padding[0]), (0, self.padding[0]))
        rng = init.default_rng(rng)
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size[0])  # (Co, Ci/G, k)
        self.register_parameter("weight", init.kaiming_uniform(rng, shape, dtype=dtype))
        self.register_parameter("bias", init.bias_uniform(rng, shape, self.out_channels, dtype) if bias else None)

    def _conv_args(self):
        return (1, self.stride[0]), self._pads[0], self._pads[1], (1, self.dilation[0]), self.groups

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (2, 3), "(N, C, L) or (C, L)")
        x3 = x if x.ndim == 3 else x[None]
        if x3.shape[1] != self.in_channels:
            raise ValueError(f"Conv1d({self.in_channels}, {self.out_channels}) got {x3.shape[1]} input channels "
                             f"(input shape {x.shape})")
        eff = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        if x3.shape[2] + self._pads[0][1] + self._pads[1][1] < eff:
            raise ValueError(f"Conv1d: input length {x3.shape[2]} with padding {self.padding} is smaller than the "
                             f"dilated kernel {eff}")
        x4 = x3[:, :, None, :]  # (N, Ci, L) -> (N, Ci, 1, L)
        y = conv2d_layer_forward(x4, self.weight[:, :, None, :], self.bias, *self._conv_args())[:, :, 0]
        self._save(x=x4, batched=x.ndim == 3)
        return y if x.ndim == 3 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = grad_output if c["batched"] else grad_output[None]
        dx, dW, db = conv2d_layer_backward(g[:, :, None, :], c["x"], self.weight[:, :, None, :], *self._conv_args())
        add_weight_bias_grads(self, dW[:, :, 0], db)  # dW (Co, Ci/G, 1, k) -> (Co, Ci/G, k)
        return dx[:, :, 0] if c["batched"] else dx[0, :, 0]

    extra_repr = Conv2d.extra_repr


# ------------------------------------------------------------------------------------------ transposed convolution
#
# A transposed convolution is the data gradient of a convolution: with the torch weight W (Ci, Co/G, kH, kW) read
# as an OIHW conv weight (O = Ci, I/G = Co/G), y_full = conv2d_backward(x, z, W)[0] for any z of the full size
#     Hf = (H - 1) sh + dh (kH - 1) + 1      (no padding: every product of x and W lands in y_full)
# and the output is y_full[ph : ph + Ho] with Ho = Hf - 2 ph + oph (rows past Hf, from output_padding, are 0).
# Its backward is then the convolution itself: dx = conv2d(g_full, W), dW = conv2d_backward(x, g_full, W)[1].

def conv_transpose2d_geometry(in_hw, kernel, stride, padding, output_padding, dilation):
    """(full (Hf, Wf), output (Ho, Wo)) of a transposed convolution of an (H, W) input."""
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(in_hw, kernel, stride, dilation))
    out = tuple(f - 2 * p + op for f, p, op in zip(full, padding, output_padding))
    return full, out


def _crop(a, padding, out_hw):
    """a[:, :, ph : ph + Ho, pw : pw + Wo] of an (N, C, Hf, Wf) array, zero-extended past Hf / Wf."""
    (ph, pw), (Ho, Wo) = padding, out_hw
    y = np.zeros(a.shape[:2] + tuple(out_hw), a.dtype)
    nh, nw = max(0, min(Ho, a.shape[2] - ph)), max(0, min(Wo, a.shape[3] - pw))
    y[:, :, :nh, :nw] = a[:, :, ph:ph + nh, pw:pw + nw]
    return y


def _uncrop(g, padding, full_hw):
    """The adjoint of ``_crop``: g (N, C, Ho, Wo) placed at (ph, pw) in zeros (N, C, Hf, Wf)."""
    (ph, pw), (Hf, Wf) = padding, full_hw
    gf = np.zeros(g.shape[:2] + tuple(full_hw), g.dtype)
    nh, nw = max(0, min(g.shape[2], Hf - ph)), max(0, min(g.shape[3], Wf - pw))
    gf[:, :, ph:ph + nh, pw:pw + nw] = g[:, :, :nh, :nw]
    return gf


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """torch.nn.functional.conv_transpose2d: x (N, Ci, H, W), weight (Ci, Co/G, kH, kW) -> (N, Co, Ho, Wo).

    The full-size output is ``conv2d_backward``'s data gradient (its weight gradient, of a zero input, is
    discarded: kernels.conv has no data-only entry point); bias (Co,) or None.
    """
    full, out = conv_transpose2d_geometry(x.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    N, Co = x.shape[0], weight.shape[1] * groups
    z = np.zeros((N, Co) + full, x.dtype)  # stands for the conv input; only its shape matters
    y_full = conv2d_backward(x, z, weight, stride, 0, dilation, groups)[0]  # (N, Co, Hf, Wf)
    y = _crop(y_full, padding, out)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv_transpose2d_backward(g, x, weight, stride, padding, output_padding, dilation, groups):
    """Gradients (dx (N, Ci, H, W), dW (Ci, Co/G, kH, kW), db (Co,)) of ``conv_transpose2d_forward``.

    dx is a convolution of the (uncropped) upstream gradient; dW is the weight gradient of that convolution
    with x as its upstream gradient (``conv2d_backward`` also returns a data gradient, discarded).
    """
    full, _ = conv_transpose2d_geometry(x.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    g_full = _uncrop(g, padding, full)  # (N, Co, Hf, Wf)
    dx = conv2d(g_full, weight, None, stride, 0, dilation, groups)
    dW = conv2d_backward(x, g_full, weight, stride, 0, dilation, groups)[1]
    return dx, dW, g.sum(axis=(0, 2, 3))


class ConvTranspose2d(Module):
    """torch.nn.ConvTranspose2d with its constructor options (in torch's order) and default initialisation.

    Weight (Ci, Co/G, kH, kW) as torch, kaiming_uniform(a=sqrt(5)) with torch's fan_in = Co/G * kH * kW; bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Input (N, Ci, H, W) or unbatched (Ci, H, W); output (N, Co, Ho, Wo) with
    Ho = (H - 1) sh - 2 ph + dh (kH - 1) + oph + 1. ``output_padding`` must be smaller than the stride or the
    dilation of its axis, as in torch. Not supported: ``forward(x, output_size)``, padding_mode other than
    'zeros'. Cost: forward and backward each run one more conv GEMM than needed (see the functions above).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        name = "ConvTranspose2d"
        self.in_channels, self.out_channels, self.groups = check_channels(name, in_channels, out_channels, groups,
                                                                          padding_mode)
        self.kernel_size = pair_arg(kernel_size, name, "kernel_size", 1)
        self.stride = pair_arg(stride, name, "stride", 1)
        self.padding = pair_arg(padding, name, "padding", 0)
        self.output_padding = pair_arg(output_padding, name, "output_padding", 0)
        self.dilation = pair_arg(dilation, name, "dilation", 1)
        self.padding_mode = padding_mode
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller than either stride "
                             f"{self.stride} or dilation {self.dilation}")
        rng = init.default_rng(rng)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)  # (Ci, Co/G, kH, kW)
        self.register_parameter("weight", init.kaiming_uniform(rng, shape, dtype=dtype))
        self.register_parameter("bias", init.bias_uniform(rng, shape, self.out_channels, dtype) if bias else None)

    def _args(self):
        return self.stride, self.padding, self.output_padding, self.dilation, self.groups

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d({self.in_channels}, {self.out_channels}) got {x4.shape[1]} input "
                             f"channels (input shape {x.shape})")
        _, out = conv_transpose2d_geometry(x4.shape[2:], self.kernel_size, self.stride, self.padding,
                                           self.output_padding, self.dilation)
        if min(x4.shape[2:]) < 1 or min(out) < 1:
            raise ValueError(f"ConvTranspose2d: input spatial size {x4.shape[2:]} with padding {self.padding} "
                             f"gives output size {out}; both must be positive")
        y = conv_transpose2d_forward(x4, self.weight, self.bias, *self._args())
        self._save(x=x4, batched=x.ndim == 4, y_shape=y.shape)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = grad_output if c["batched"] else grad_output[None]
        if g.shape != c["y_shape"]:
            raise ValueError(f"ConvTranspose2d.backward: grad_output shape {grad_output.shape} does not match the "
                             f"forward output {c['y_shape'] if c['batched'] else c['y_shape'][1:]}")
        dx, dW, db = conv_transpose2d_backward(g, c["x"], self.weight, *self._args())
        add_weight_bias_grads(self, dW, db)
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        s = Conv2d.extra_repr(self)
        return s + (f", output_padding={self.output_padding}" if self.output_padding != (0, 0) else "")
