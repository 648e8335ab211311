"""Deployed power-of-two (shift) layers: ShiftCNN weights (Gudovskiy & Rigazio, "ShiftCNN: Generalized
Low-Precision Architecture for Inference of Convolutional Neural Networks", arXiv 1706.02393, 2017).

Implements
    Eq. (2)-(3): each weight is a sum of N codebook terms {0, +-2**0, ..., +-2**-(M/2-1)} (B = 4 bits, here
    M = 15 values: 0 and 7 powers per sign), chosen greedily on the residual (Algorithm 1, nearest power of
    two). The products of activations and terms are bit shifts of fixed-point activations.

Deviations
    One power-of-two scale per tensor (the codebook is scaled by 2**6 so terms are integers); the paper
    normalises by the maximum. Activations are fixed point with ``act_bits`` bits and a power-of-two step
    ``act_scale``; values are rounded half to even and saturated.

``forward`` takes float activations, quantises them to int8 fixed point, runs the integer shift GEMM
(``kernels.shift``) and rescales: y = (x_int @ W_int.T) * (w_scale * act_scale) + bias. It equals a float
layer with the decoded weights applied to the fake-quantised input (exactly in float64: every product and
partial sum is an integer times one power of two). Inference only: ``backward`` raises.
"""
from __future__ import annotations

import numpy as np

from kernels.int8 import qim2col
from kernels.shift import PackedShift, decode, encode, pack_codes, shift_gemm, unpack_codes
from nn.module import Module


class _ShiftLayer(Module):
    def _setup(self, codes: np.ndarray, weight_scale: float, bias: np.ndarray | None, act_scale: float,
               act_bits: int) -> None:
        name = type(self).__name__
        if not (isinstance(act_bits, (int, np.integer)) and 2 <= act_bits <= 8):
            raise ValueError(f"{name}: act_bits must be an int in [2, 8], got {act_bits!r}")
        if not (isinstance(act_scale, (float, int)) and act_scale > 0 and float(np.log2(act_scale)).is_integer()):
            raise ValueError(f"{name}: act_scale must be a positive power of two (fixed point), got {act_scale!r}")
        self.act_scale, self.act_bits, self.weight_scale = float(act_scale), int(act_bits), float(weight_scale)
        self.n_terms = int(codes.shape[0])
        packed = pack_codes(codes.reshape(self.n_terms, codes.shape[1], -1))
        self._shape = (packed.O, packed.K)
        self.register_buffer("codes", packed.data)  # int32 words, 8 nibbles each: 4 bits per term
        self.register_buffer("bias", None if bias is None else np.asarray(bias, np.float64).copy())

    def _packed(self) -> PackedShift:
        return PackedShift(self._shape[0], self._shape[1], self.n_terms, self.codes)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Fixed point: clamp(round(x / act_scale)) in int8 with ``act_bits`` bits."""
        hi = (1 << (self.act_bits - 1)) - 1
        return np.clip(np.round(x / self.act_scale), -hi - 1, hi).astype(np.int8)

    def decoded_weight(self) -> np.ndarray:
        """W_hat = weight_scale * sum_n decode(codes[n]) in float64, (O, K) reshaped to the layer's weight."""
        W_int = decode(unpack_codes(self._packed())).sum(axis=0)
        return (W_int * self.weight_scale).reshape(self.weight_shape)

    def _check_float(self, x: np.ndarray, ndim: tuple[int, ...]) -> np.ndarray:
        x = self._check_input(x, ndim)  # float32/float64 (there are no float parameters to match)
        return x

    def _finish(self, y_int: np.ndarray, dtype) -> np.ndarray:
        return (y_int * (self.weight_scale * self.act_scale)).astype(dtype)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is an inference-only shift layer; train the float layer")

    def storage_bytes(self) -> int:
        """Bytes really stored: packed 4-bit codes (with tile padding) + float bias."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values()))


class ShiftLinear(_ShiftLayer):
    """x (..., I) float -> (..., O) float with power-of-two weights and integer shift arithmetic."""

    def __init__(self, codes: np.ndarray, weight_scale: float, bias: np.ndarray | None = None,
                 act_scale: float = 2.0 ** -4, act_bits: int = 8) -> None:
        super().__init__()
        if not isinstance(codes, np.ndarray) or codes.ndim != 3:
            raise ValueError("ShiftLinear: codes must be (n_terms, O, I) uint8")
        self.out_features, self.in_features = codes.shape[1:]
        self.weight_shape = (self.out_features, self.in_features)
        self._setup(codes, weight_scale, bias, act_scale, act_bits)

    @classmethod
    def from_float(cls, layer, n_terms: int = 1, act_scale: float = 2.0 ** -4, act_bits: int = 8) -> ShiftLinear:
        """Round a float ``nn.linear.Linear``'s weights to ``n_terms`` power-of-two terms (ShiftCNN)."""
        codes, scale = encode(layer.weight, n_terms)
        return cls(codes, scale, None if layer.bias is None else layer.bias, act_scale, act_bits)

    def forward_int(self, x_int: np.ndarray) -> np.ndarray:
        """Integer-only core: x_int (M, I) int8 -> (M, O) int32 = x_int @ W_int.T by shifts."""
        return shift_gemm(self._packed(), x_int)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_float(x, tuple(range(1, 9)))
        if x.shape[-1] != self.in_features:
            raise ValueError(f"ShiftLinear expects input (..., {self.in_features}), got shape {x.shape}")
        x_int = self.quantize_input(x.reshape(-1, self.in_features))  # (M, I)
        y = self._finish(self.forward_int(x_int), x.dtype)  # (M, O)
        if self.bias is not None:
            y += self.bias.astype(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n_terms={self.n_terms}"


class ShiftConv2d(_ShiftLayer):
    """Conv2d (groups=1, symmetric zero padding) with power-of-two weights; x (N, Ci, H, W) float."""

    def __init__(self, codes: np.ndarray, weight_scale: float, bias: np.ndarray | None = None, kernel_size=(1, 1),
                 stride=1, padding=0, dilation=1, act_scale: float = 2.0 ** -4, act_bits: int = 8) -> None:
        super().__init__()
        if not isinstance(codes, np.ndarray) or codes.ndim != 5:
            raise ValueError("ShiftConv2d: codes must be (n_terms, Co, Ci, kH, kW) uint8")
        self.out_channels, self.in_channels = codes.shape[1:3]
        self.kernel_size = tuple(codes.shape[3:])
        self.weight_shape = codes.shape[1:]
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self._setup(codes, weight_scale, bias, act_scale, act_bits)

    @classmethod
    def from_float(cls, layer, n_terms: int = 1, act_scale: float = 2.0 ** -4, act_bits: int = 8) -> ShiftConv2d:
        """Encode a float ``nn.conv.Conv2d`` (groups=1, symmetric padding)."""
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(f"ShiftConv2d.from_float: groups={layer.groups} is not supported (groups=1 only)")
        pads = getattr(layer, "_pads", (layer.padding, layer.padding))
        if pads[0] != pads[1]:
            raise ValueError(f"ShiftConv2d.from_float: asymmetric padding {pads} is not supported")
        codes, scale = encode(layer.weight, n_terms)
        return cls(codes, scale, layer.bias, layer.kernel_size, layer.stride, pads[0], layer.dilation, act_scale,
                   act_bits)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_float(x, (3, 4))
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"ShiftConv2d expects {self.in_channels} input channels, got shape {x.shape}")
        cols, (Ho, Wo) = qim2col(self.quantize_input(x4), self.kernel_size, self.stride, self.padding,
                                 self.dilation, pad_value=0)  # (N*L, K)
        y = self._finish(shift_gemm(self._packed(), cols), x.dtype)  # (N*L, Co)
        if self.bias is not None:
            y += self.bias.astype(x.dtype)
        N = x4.shape[0]
        y = np.ascontiguousarray(y.reshape(N, Ho, Wo, self.out_channels).transpose(0, 3, 1, 2))  # (N, Co, Ho, Wo)
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, n_terms={self.n_terms}")
