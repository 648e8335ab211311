"""2-D pooling layers with torch's options and output-size rules; the arithmetic is in ``kernels.pool``.

Every layer accepts (N, C, H, W) or unbatched (C, H, W) input, like torch.
"""
from __future__ import annotations

import numpy as np

from kernels.pool import (
    adaptive_avgpool2d,
    adaptive_avgpool2d_backward,
    adaptive_maxpool2d,
    avgpool2d,
    avgpool2d_backward,
    maxpool2d,
    maxpool2d_backward,
    pool_output_size,
)
from nn.conv import pair_arg
from nn.module import Module


def _batched(layer: Module, x: np.ndarray) -> np.ndarray:
    """Check x and return it as (N, C, H, W) (an unbatched (C, H, W) input gets N = 1)."""
    layer._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
    return x[None] if x.ndim == 3 else x


class _Pool2d(Module):
    """Shared bookkeeping: window geometry, output size, unbatched inputs."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair_arg(kernel_size, name, "kernel_size", 1)
        empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)  # torch: default
        self.stride = self.kernel_size if empty else pair_arg(stride, name, "stride", 1)
        self.padding = pair_arg(padding, name, "padding", 0)
        self.dilation = pair_arg(dilation, name, "dilation", 1)
        self.ceil_mode = bool(ceil_mode)
        for k, p, d in zip(self.kernel_size, self.padding, self.dilation):
            half = ((k - 1) * d + 1) // 2 if name == "MaxPool2d" else k // 2
            if p > half:
                raise ValueError(f"{name}: padding {self.padding} should be at most half of the "
                                 f"{'effective ' if name == 'MaxPool2d' else ''}kernel size "
                                 f"{self.kernel_size} (dilation {self.dilation})")

    def _out_hw(self, x: np.ndarray) -> tuple[int, int]:
        out = tuple(pool_output_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                    zip(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation))
        if min(out) < 1:
            raise ValueError(f"{type(self).__name__}: input {x.shape} is too small for kernel_size "
                             f"{self.kernel_size}, padding {self.padding}, dilation {self.dilation}: "
                             f"output size would be {out}")
        return out

    def _grad(self, grad_output: np.ndarray, batched: bool, out_shape) -> np.ndarray:
        g = grad_output if batched else grad_output[None]
        if g.shape != out_shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output shape {grad_output.shape} does not "
                             f"match the forward output {out_shape if batched else out_shape[1:]}")
        return g

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


class MaxPool2d(_Pool2d):
    """torch.nn.MaxPool2d; padding counts as -inf; the gradient goes to the first maximum of each window."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False) -> None:
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported (lwnn layers return one array)")
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x4 = _batched(self, x)
        y, idx = maxpool2d(x4, self.kernel_size, self.stride, self.padding, self.dilation, self._out_hw(x4))
        self._save(idx=idx, in_hw=x4.shape[2:], batched=x.ndim == 4, y_shape=y.shape)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        dx = maxpool2d_backward(self._grad(grad_output, c["batched"], c["y_shape"]), c["idx"], c["in_hw"])
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dilation={self.dilation}"


class AvgPool2d(_Pool2d):
    """torch.nn.AvgPool2d, including count_include_pad and divisor_override."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                             or divisor_override <= 0):
            raise ValueError(f"AvgPool2d: divisor_override must be a positive int or None, got {divisor_override!r}")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.count_include_pad, int(self.divisor_override or 0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x4 = _batched(self, x)
        k, s, p, cip, div = self._args()
        y = avgpool2d(x4, k, s, p, self._out_hw(x4), cip, div)
        self._save(in_hw=x4.shape[2:], batched=x.ndim == 4, y_shape=y.shape)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = self._grad(grad_output, c["batched"], c["y_shape"])
        dx = avgpool2d_backward(g, c["in_hw"], *self._args())
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", count_include_pad={self.count_include_pad}"
                + (f", divisor_override={self.divisor_override}" if self.divisor_override else ""))


def _adaptive_output_size(name: str, output_size) -> tuple:
    """An int, a pair, or a pair with ``None`` (keep that input size) -> a pair."""
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        output_size = (int(output_size), int(output_size))
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2
            and all(o is None or (isinstance(o, (int, np.integer)) and o >= 1) for o in output_size)):
        raise ValueError(f"{name}: output_size must be a positive int or a pair of positive ints "
                         f"or None, got {output_size!r}")
    return tuple(None if o is None else int(o) for o in output_size)


def _adaptive_out_hw(layer: Module, x4: np.ndarray, x: np.ndarray) -> tuple[int, int]:
    if min(x4.shape[2:]) < 1:
        raise ValueError(f"{type(layer).__name__}: input spatial size must be non-empty, got shape {x.shape}")
    return tuple(n if o is None else o for o, n in zip(layer.output_size, x4.shape[2:]))


class AdaptiveAvgPool2d(Module):
    """torch.nn.AdaptiveAvgPool2d(output_size); an int, a pair, or a pair with ``None`` (keep that input size)."""

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = _adaptive_output_size("AdaptiveAvgPool2d", output_size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x4 = _batched(self, x)
        out_hw = _adaptive_out_hw(self, x4, x)
        y = adaptive_avgpool2d(x4, out_hw)
        self._save(in_hw=x4.shape[2:], batched=x.ndim == 4, y_shape=y.shape)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = _Pool2d._grad(self, grad_output, c["batched"], c["y_shape"])
        dx = adaptive_avgpool2d_backward(g, c["in_hw"])
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """torch.nn.AdaptiveMaxPool2d(output_size): the maximum of each adaptive window (the windows of
    AdaptiveAvgPool2d); output_size 1 is global max pooling. The gradient goes to the first maximum of each
    window (a NaN wins), as torch. ``return_indices=True`` is not supported."""

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        if return_indices:
            raise ValueError("AdaptiveMaxPool2d: return_indices=True is not supported (lwnn layers return one array)")
        self.output_size = _adaptive_output_size("AdaptiveMaxPool2d", output_size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x4 = _batched(self, x)
        y, idx = adaptive_maxpool2d(x4, _adaptive_out_hw(self, x4, x))
        self._save(idx=idx, in_hw=x4.shape[2:], batched=x.ndim == 4, y_shape=y.shape)
        return y if x.ndim == 4 else y[0]

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        g = _Pool2d._grad(self, grad_output, c["batched"], c["y_shape"])
        dx = maxpool2d_backward(g, c["idx"], c["in_hw"])
        return dx if c["batched"] else dx[0]

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
