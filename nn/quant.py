"""Deployed int8 layers, integer-only inference (Jacob et al., "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, arXiv 1712.05877).

Implements
    Eq. (1) affine quantisation r = S (q - Z); Eq. (4) the integer matmul with zero points; Eq. (5)/(6) the
    real multiplier M = S_in S_w / S_out = 2**-n M0 applied in fixed point (``kernels.int8``); section 2.4
    int32 bias with scale S_in S_w and zero point 0.

Deviations
    Weights are per-tensor *symmetric* int8 in [-127, 127] (zero point 0), as fbgemm's default qconfig;
    the paper allows any zero point. Activations are uint8 (paper) or int8 (``dtype=np.int8``).

A layer holds int8 weights and int32 bias as buffers and the requantisation constants; ``forward`` takes
quantised activations (``quantize(x, input_scale, input_zero_point)``) and returns quantised outputs with
``output_scale``/``output_zero_point``. Inference only: ``backward`` raises.
"""
from __future__ import annotations

import numpy as np

from kernels.int8 import pack_weights, qgemm_requant, qim2col, quantize_multiplier
from nn.module import Module

_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype=np.uint8) -> np.ndarray:
    """Eq. (1) inverted: q = clamp(round(x / S) + Z) (round half to even, as torch.quantize_per_tensor)."""
    lo, hi = _RANGE[np.dtype(dtype)]
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Eq. (1): r = S (q - Z), float64."""
    return (q.astype(np.float64) - zero_point) * scale


def quantize_weight_symmetric(W: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-tensor symmetric int8: S_w = max|W| / 127, W_q = clamp(round(W / S_w), -127, 127)."""
    top = float(np.abs(W).max(initial=0.0))
    scale = top / 127.0 if top > 0 else 1.0
    return np.clip(np.round(W.astype(np.float64) / scale), -127, 127).astype(np.int8), scale


class _QuantLayer(Module):
    """Shared state of the int8 layers: scales, zero points, fixed-point multiplier, int8/int32 buffers."""

    weight_scale = property(lambda self: float(self._buffers["weight_scale"]))
    input_scale = property(lambda self: float(self._buffers["input_scale"]))
    output_scale = property(lambda self: float(self._buffers["scale"]))
    input_zero_point = property(lambda self: int(self._buffers["input_zero_point"]))
    output_zero_point = property(lambda self: int(self._buffers["zero_point"]))
    multiplier = property(lambda self: int(self._buffers["multiplier"]))
    shift = property(lambda self: int(self._buffers["shift"]))

    def _setup(self, W_q: np.ndarray, b_q: np.ndarray | None, weight_scale: float, input_scale: float,
               input_zero_point: int, output_scale: float, output_zero_point: int, dtype) -> None:
        name = type(self).__name__
        self.act_dtype = np.dtype(dtype)
        if self.act_dtype not in _RANGE:
            raise TypeError(f"{name}: activation dtype must be uint8 or int8, got {self.act_dtype}")
        lo, hi = _RANGE[self.act_dtype]
        for what, zp in (("input_zero_point", input_zero_point), ("output_zero_point", output_zero_point)):
            if isinstance(zp, bool) or not isinstance(zp, (int, np.integer)) or not lo <= zp <= hi:
                raise ValueError(f"{name}: {what}={zp!r} must be an int in [{lo}, {hi}] for {self.act_dtype}")
        for what, s in (("input_scale", input_scale), ("output_scale", output_scale),
                        ("weight_scale", weight_scale)):
            if not (isinstance(s, (float, int, np.floating)) and np.isfinite(s) and s > 0):
                raise ValueError(f"{name}: {what} must be a positive finite number, got {s!r}")
        real = float(input_scale) * float(weight_scale) / float(output_scale)
        try:
            multiplier, shift = quantize_multiplier(real)  # Eq. (6): M = 2**-n M0
        except ValueError as e:
            raise ValueError(f"{name}: S_in * S_w / S_out = {real!r} must lie in (2**-32, 1); "
                             f"choose a larger output_scale ({e})") from e
        self.register_buffer("weight", W_q)
        self.register_buffer("bias", b_q)
        # Scalars are 0-d buffers so that state_dict/load_state_dict carry them; the output's are named
        # ``scale``/``zero_point`` as in torch's quantized modules.
        for key, v, dt in (("weight_scale", weight_scale, np.float64), ("input_scale", input_scale, np.float64),
                           ("input_zero_point", input_zero_point, np.int64), ("scale", output_scale, np.float64),
                           ("zero_point", output_zero_point, np.int64), ("multiplier", multiplier, np.int64),
                           ("shift", shift, np.int64)):
            self.register_buffer(key, np.array(v, dt))
        self._packed, self._packed_src = None, None

    @staticmethod
    def _quantize_bias(bias, input_scale: float, weight_scale: float, name: str) -> np.ndarray | None:
        """Section 2.4: int32 bias with scale S_in S_w and zero point 0."""
        if bias is None:
            return None
        b = np.round(bias.astype(np.float64) / (input_scale * weight_scale))
        if np.abs(b).max(initial=0) > 2 ** 31 - 1:
            raise ValueError(f"{name}: bias / (S_in S_w) overflows int32; the scales are too small")
        return b.astype(np.int32)

    def _packed_weights(self, B_of_weight):
        """Weights packed for the GEMM kernel, rebuilt if the buffer was replaced (load_state_dict)."""
        if self._packed_src is not self.weight:
            self._packed = pack_weights(B_of_weight(self.weight), 0)
            self._packed_src = self.weight
        return self._packed

    def _gemm(self, cols: np.ndarray, B_of_weight) -> np.ndarray:
        return qgemm_requant(cols, self._packed_weights(B_of_weight), self.input_zero_point, 0, self.bias,
                             self.multiplier, self.shift, self.output_zero_point, self.act_dtype)

    def _check_q(self, x: np.ndarray, ndim: tuple[int, ...]) -> np.ndarray:
        name = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} expects a numpy.ndarray, got {type(x).__name__}")
        if x.dtype != self.act_dtype:
            raise TypeError(f"{name} expects {self.act_dtype} activations, got {x.dtype}; quantise first with "
                            f"nn.quant.quantize(x, {self.input_scale:g}, {self.input_zero_point}, "
                            f"np.{self.act_dtype.name})")
        if x.ndim not in ndim:
            raise ValueError(f"{name} expects a {' or '.join(map(str, ndim))}-d input, got shape {x.shape}")
        return np.ascontiguousarray(x)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is an inference-only integer layer; train the float layer")

    def storage_bytes(self) -> int:
        """Bytes really stored: int8 weights, int32 bias and seven 8-byte scalars (scales, zero points, M0,
        shift); the kernel's packed copy of the weights is a runtime cache, not counted."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values()))


class QuantLinear(_QuantLayer):
    """y_q = requant(sum_i (x_q - Z_in) W_q + b_q): x_q (..., I) uint8/int8 -> (..., O) same dtype."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, weight_scale: float, input_scale: float,
                 input_zero_point: int, output_scale: float, output_zero_point: int, dtype=np.uint8) -> None:
        super().__init__()
        if not isinstance(weight, np.ndarray) or weight.dtype != np.int8 or weight.ndim != 2:
            raise TypeError(f"QuantLinear: weight must be a 2-d int8 array (O, I), got {getattr(weight, 'dtype', weight)}")
        if bias is not None and (bias.dtype != np.int32 or bias.shape != (weight.shape[0],)):
            raise TypeError(f"QuantLinear: bias must be int32 of shape ({weight.shape[0]},)")
        self.out_features, self.in_features = weight.shape
        self._setup(weight, bias, weight_scale, input_scale, input_zero_point, output_scale, output_zero_point,
                    dtype)

    @classmethod
    def from_float(cls, layer, input_scale: float, input_zero_point: int, output_scale: float,
                   output_zero_point: int, dtype=np.uint8) -> QuantLinear:
        """Quantise a float ``nn.linear.Linear``: symmetric int8 weights, int32 bias."""
        W_q, s_w = quantize_weight_symmetric(layer.weight)
        b_q = cls._quantize_bias(layer.bias, input_scale, s_w, cls.__name__)
        return cls(W_q, b_q, s_w, input_scale, input_zero_point, output_scale, output_zero_point, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_q(x, tuple(range(1, 9)))
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects input (..., {self.in_features}), got shape {x.shape}")
        y = self._gemm(x.reshape(-1, self.in_features), lambda W: np.ascontiguousarray(W.T))  # (M, I) -> (M, O)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scale={self.output_scale:g}, zero_point={self.output_zero_point}")


class QuantConv2d(_QuantLayer):
    """Integer conv2d (groups=1, symmetric zero padding). Padding uses the input zero point, so it is the
    integer image of float zero padding. x_q (N, Ci, H, W) or (Ci, H, W) -> (N, Co, Ho, Wo)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, weight_scale: float, input_scale: float,
                 input_zero_point: int, output_scale: float, output_zero_point: int, stride=1, padding=0,
                 dilation=1, dtype=np.uint8) -> None:
        super().__init__()
        if not isinstance(weight, np.ndarray) or weight.dtype != np.int8 or weight.ndim != 4:
            raise TypeError("QuantConv2d: weight must be a 4-d int8 array (Co, Ci, kH, kW)")
        if bias is not None and (bias.dtype != np.int32 or bias.shape != (weight.shape[0],)):
            raise TypeError(f"QuantConv2d: bias must be int32 of shape ({weight.shape[0]},)")
        self.out_channels, self.in_channels = weight.shape[:2]
        self.kernel_size = tuple(weight.shape[2:])
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self._setup(weight, bias, weight_scale, input_scale, input_zero_point, output_scale, output_zero_point,
                    dtype)

    @classmethod
    def from_float(cls, layer, input_scale: float, input_zero_point: int, output_scale: float,
                   output_zero_point: int, dtype=np.uint8) -> QuantConv2d:
        """Quantise a float ``nn.conv.Conv2d`` (groups=1, symmetric int or pair padding)."""
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(f"QuantConv2d.from_float: groups={layer.groups} is not supported (groups=1 only)")
        pads = getattr(layer, "_pads", (layer.padding, layer.padding))
        if pads[0] != pads[1]:
            raise ValueError(f"QuantConv2d.from_float: asymmetric padding {pads} is not supported")
        W_q, s_w = quantize_weight_symmetric(layer.weight)
        b_q = cls._quantize_bias(layer.bias, input_scale, s_w, cls.__name__)
        return cls(W_q, b_q, s_w, input_scale, input_zero_point, output_scale, output_zero_point,
                   layer.stride, pads[0], layer.dilation, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_q(x, (3, 4))
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"QuantConv2d expects {self.in_channels} input channels, got shape {x.shape}")
        cols, (Ho, Wo) = qim2col(x4, self.kernel_size, self.stride, self.padding, self.dilation,
                                 pad_value=self.input_zero_point)  # (N*L, K)
        y = self._gemm(cols, lambda W: np.ascontiguousarray(W.reshape(W.shape[0], -1).T))  # (N*L, Co)
        N = x4.shape[0]
        y = np.ascontiguousarray(y.reshape(N, Ho, Wo, self.out_channels).transpose(0, 3, 1, 2))  # (N, Co, Ho, Wo)
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, scale={self.output_scale:g}, zero_point={self.output_zero_point}")
