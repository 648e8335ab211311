"""2-D convolution layer as torch.nn.Conv2d (NCHW input, OIHW weight); the arithmetic is ``kernels.conv``.

``padding`` is an int, a pair, ``'valid'`` (0) or ``'same'`` (stride 1 only). ``'same'`` with an even
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
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: padding_mode={padding_mode!r} is not supported; only 'zeros'")
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (1 if name == "groups" else 0):
                raise ValueError(f"Conv2d: {name} must be a {'positive' if name == 'groups' else 'non-negative'} "
                                 f"int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels={in_channels} and out_channels={out_channels} must both be "
                             f"divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair_arg(kernel_size, "Conv2d", "kernel_size", 1)
        self.stride = pair_arg(stride, "Conv2d", "stride", 1)
        self.dilation = pair_arg(dilation, "Conv2d", "dilation", 1)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding == "valid":
                self._pads = ((0, 0), (0, 0))
            elif padding == "same":
                if self.stride != (1, 1):
                    raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions "
                                     f"(stride={self.stride}), as in torch")
                self._pads = same_padding(self.kernel_size, self.dilation)
            else:
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
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
        self._grads["weight"] += dW
        if self.bias is not None:
            self._grads["bias"] += db
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")
