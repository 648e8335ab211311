"""Deployed binary layers (XNOR-Net inference): packed sign weights, activations binarized by sign at run time.

Buffers: ``weight_bits`` (uint64, ``kernels.binary`` bit order), ``alpha`` (Co,) float = mean |W| per output
channel (XNOR-Net Eq. (6), only with ``scale=True``) and ``bias`` if the float layer had one. The output is

    y = (sign(x) . sign(W)) * alpha [* K] + b

where the dot product is the exact XNOR-popcount integer and ``K`` (``act_scale=True``) is XNOR-Net's
activation scale (Linear: mean |x| per row; Conv2d: mean over channels of |x|, box-filtered over the window).
Conv padding follows ``kernels.binary``: +1 outside the input (sign of a zero-padded input). Inference only:
``backward`` raises; train with the float/STE layers in ``methods/``.
"""
from __future__ import annotations

import numpy as np

from kernels.binary import binary_conv2d, pack_conv_weight, pack_signs, pack_weight_panels, xnor_gemm_panels
from nn.module import FLOAT_DTYPES, Module


class _BinaryBase(Module):
    def _set(self, bits: np.ndarray, W: np.ndarray, reduce_axes: tuple[int, ...], scale: bool, bias) -> None:
        self.register_buffer("weight_bits", bits)
        # XNOR-Net Eq. (6): alpha = ||W||_l1 / n per output channel
        self.register_buffer("alpha", np.abs(W).mean(axis=reduce_axes).astype(W.dtype) if scale else None)
        self.register_buffer("bias", None if bias is None else np.array(bias, copy=True))
        self._dtype = W.dtype

    @property
    def dtype(self) -> np.dtype:
        for b in (self.alpha, self.bias):
            if b is not None:
                return b.dtype
        return self._dtype

    def to(self, dtype) -> Module:
        super().to(dtype)
        self._dtype = np.dtype(dtype)
        return self

    def storage_bytes(self) -> int:
        """Bytes of the arrays really stored: the sum of the buffers' ``nbytes``."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values()))

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is a deployed inference-only layer and has no backward; "
                           "train the float layer with a straight-through estimator and convert it again")


class BinaryLinear(_BinaryBase):
    """Binary Linear: input (..., I) float, output (..., O) in the same dtype."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None = None, scale: bool = True,
                 act_scale: bool = False) -> None:
        super().__init__()
        if not isinstance(W, np.ndarray) or W.ndim != 2 or W.dtype not in FLOAT_DTYPES:
            raise ValueError(f"BinaryLinear: weight must be a 2-d float (out, in) array, got {getattr(W, 'shape', W)}")
        self.out_features, self.in_features = W.shape
        self.act_scale = bool(act_scale)
        self._set(pack_signs(np.ascontiguousarray(W)), W, (1,), scale, bias)  # weight_bits (O, B)
        self._panels, self._panels_of = None, None
        self._weight_panels()  # once at construction; again only if weight_bits is replaced (load_state_dict)

    def _weight_panels(self) -> np.ndarray:
        """``weight_bits`` in the XNOR kernel's panel layout, re-arranged only when the buffer is a new array."""
        if self._panels_of is not self.weight_bits:
            self._panels = pack_weight_panels(self.weight_bits, self.in_features)  # (O/NR, B, NR)
            self._panels_of = self.weight_bits
        return self._panels

    @classmethod
    def from_float(cls, linear, scale: bool = True, act_scale: bool = False) -> BinaryLinear:
        return cls(linear.weight, linear.bias, scale, act_scale)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"BinaryLinear expects input (..., {self.in_features}), got shape {x.shape}")
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))  # (M, I)
        # (M, B) x (O, B) -> (M, O) int32, the weights already in panels
        dot = xnor_gemm_panels(pack_signs(x2), self._weight_panels(), self.out_features, self.in_features)
        y = dot.astype(x.dtype)
        if self.alpha is not None:
            y *= self.alpha
        if self.act_scale:
            y *= np.abs(x2).mean(axis=1, keepdims=True)  # K: mean |x| per row, (M, 1)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, scale={self.alpha is not None}, "
                f"act_scale={self.act_scale}, bias={self.bias is not None}")


class BinaryConv2d(_BinaryBase):
    """Binary Conv2d (groups=1): input (N, Ci, H, W) or (Ci, H, W) float, output in the same dtype.

    ``pads = ((top, left), (bottom, right))``; torch's 'same' padding with an even kernel pads the extra
    bottom/right row/column here with float zeros, which binarize to +1 like the kernel's padding."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0, dilation=1,
                 scale: bool = True, act_scale: bool = False, pads=None) -> None:
        super().__init__()
        if not isinstance(W, np.ndarray) or W.ndim != 4 or W.dtype not in FLOAT_DTYPES:
            raise ValueError(f"BinaryConv2d: weight must be a 4-d float (Co, Ci, kH, kW) array, "
                             f"got {getattr(W, 'shape', W)}")
        self.out_channels, self.in_channels, kH, kW = W.shape
        self.kernel_size = (kH, kW)
        self.stride, self.dilation, self.padding = _pair(stride), _pair(dilation), padding
        self._pads = pads if pads is not None else (_pair(padding), _pair(padding))
        self.act_scale = bool(act_scale)
        self._set(pack_conv_weight(W), W, (1, 2, 3), scale, bias)  # weight_bits (Co, kH*kW*Bc)

    @classmethod
    def from_float(cls, conv, scale: bool = True, act_scale: bool = False) -> BinaryConv2d:
        if conv.groups != 1:
            raise ValueError(f"BinaryConv2d supports groups=1 only, got groups={conv.groups}")
        return cls(conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, scale, act_scale,
                   getattr(conv, "_pads", None))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"BinaryConv2d({self.in_channels}, {self.out_channels}) got {x4.shape[1]} input "
                             f"channels (input shape {x.shape})")
        before, after = self._pads
        extra = (after[0] - before[0], after[1] - before[1])
        if extra != (0, 0):
            x4 = np.pad(x4, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        y = binary_conv2d(np.ascontiguousarray(x4), self.weight_bits, self.kernel_size, self.stride, before,
                          self.dilation, self.alpha, self.act_scale)
        if self.bias is not None:
            y += self.bias[:, None, None]
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, scale={self.alpha is not None}, "
                f"act_scale={self.act_scale}, bias={self.bias is not None}")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))
