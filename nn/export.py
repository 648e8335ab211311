"""ONNX out: ``to_onnx(model, path, input_shape)`` writes a standard ONNX graph (opset 17) of an lwnn model.

The graph is built with the ``onnx`` package (``onnx.helper`` / ``numpy_helper``), imported only inside these
functions, so lwnn runs without it. Like ``nn.interop.to_torch`` the exporter walks the module tree and
matches module types exactly (a subclass may change ``forward``); an unknown type raises a TypeError naming
its path in the model (``features.3``) and its type. The graph is the **eval-mode** function: BatchNorm uses
its running statistics (batch statistics if it tracks none, as lwnn does), Dropout and DropPath vanish.
Float tensors are float32 in the graph, whatever the model's dtype. The batch axis 0 of the input is named
``N`` and left free (``dynamic_batch=True``), so a graph exported at batch 1 runs at any batch.

What each layer becomes
    Conv2d / Conv1d / ConvTranspose2d -> Conv / ConvTranspose (pads per side, so torch's asymmetric
    ``padding='same'`` is kept); Linear -> Gemm on (N, I), MatMul + Add on (..., I); BatchNorm1d/2d ->
    BatchNormalization; LayerNorm -> LayerNormalization; GroupNorm -> Reshape to (N, G, -1),
    LayerNormalization without affine, Reshape back, per-channel Mul + Add; MaxPool2d / AvgPool2d ->
    MaxPool / AveragePool (``divisor_override`` as a Mul); AdaptiveAvg/MaxPool2d -> GlobalAveragePool /
    GlobalMaxPool for output 1, AveragePool / MaxPool when the input size is a multiple of the output size,
    else a ValueError; ReLU6 -> Clip(0, 6), SiLU -> x * Sigmoid(x), Hardsigmoid -> HardSigmoid(1/6, 1/2),
    the other activations their namesake ops; Flatten -> Reshape; Residual -> Add; Concat -> Concat;
    ChannelSplit -> Split + Concat; ChannelShuffle -> Reshape, Transpose, Reshape; SqueezeExcitation -> its
    pieces and a Mul; ShortcutA -> Slice with steps + Pad; Upsample -> Resize (nearest: ``asymmetric`` +
    ``floor``, torch's legacy nearest; bilinear: ``align_corners`` or ``half_pixel``); Embedding -> Gather
    (int64 index input); LSTM / GRU -> one ONNX LSTM / GRU node per layer (gate blocks reordered, GRU with
    ``linear_before_reset=1``, zero initial states; the graph returns the output sequence, as lwnn's forward);
    LastStep -> Gather of index -1. Axis 0 is left free also for a sequence model (T, or N with batch_first).

Deployed layers
    SparseLinear / SparseConv2d -> the dense float Gemm / Conv with the pruned weights as zeros.
    BinaryLinear / BinaryConv2d -> their dequantized float equivalent: sign(x) (with sign(0) = +1, as
    ``Where(x >= 0, 1, -1)``), a float MatMul / Conv with the +-1 weights (conv padding with +1, as
    ``kernels.binary``), times alpha, times XNOR-Net's K (``act_scale``, a box-filter Conv of mean |x|),
    plus bias. ShiftLinear / ShiftConv2d -> the fake-quantised input ``Clip(Round(x / s_a)) * s_a`` times the
    decoded power-of-two weights (MatMul / Conv); both are exact in float32 at lwnn's sizes.
    QuantConv2d -> **QLinearConv** with the layer's int8 weights, int32 bias, scales (as float32) and zero
    points; QuantLinear -> the same QLinearConv on an (M, I, 1, 1) view: QLinearMatMul has no bias input
    and adding the bias after its requantisation would round twice, while QLinearConv adds the int32 bias to
    the int32 accumulator exactly as lwnn does. The graph's input and output are then the uint8/int8
    tensors lwnn's quantised layers take and return. onnxruntime (MLAS) requantises with a float32
    multiplier and rounds once, half to even; lwnn uses the Q31 fixed-point multiplier of gemmlowp and rounds
    twice, half away from zero (kernels/README.md). Measured (onnxruntime 1.32, 5 seeds, uint8): at most
    **1 LSB** apart, on 0.02-0.03% of the outputs of a 3x3 conv (K = 144) and about 0.1% of a linear layer's
    (K = 14), identical elsewhere; through a chain of three layers a one-LSB input difference propagates
    (0.74% of outputs, still <= 1 LSB, in ``tests/nn/test_export.py``, which asserts <= 1 LSB on < 2%).

Not exported (TypeError): any type not listed above.
"""
from __future__ import annotations

import numpy as np

from nn.activations import Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Tanh
from nn.basic import Dropout, DropPath, Flatten, Identity, flatten_shape
from nn.binary import BinaryConv2d, BinaryLinear
from nn.containers import ChannelShuffle, ChannelSplit, Concat, Residual, Sequential, SqueezeExcitation
from nn.conv import Conv1d, Conv2d, ConvTranspose2d
from nn.embedding import Embedding
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from nn.pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from nn.quant import QuantConv2d, QuantLinear
from nn.recurrent import GRU, LSTM, LastStep
from nn.shift import ShiftConv2d, ShiftLinear
from nn.sparse import SparseConv2d, SparseLinear
from nn.upsample import Upsample

OPSET = 17
_SIMPLE = {ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid", Hardswish: "HardSwish"}
_SHAPE_ONLY = (Identity, Dropout, DropPath)


class _Graph:
    """Nodes and initializers under construction, with unique tensor names."""

    def __init__(self, dynamic_batch: bool) -> None:
        self.nodes, self.inits, self.dynamic, self._n = [], [], dynamic_batch, 0

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix or 'node'}_{self._n}"

    def const(self, value, prefix: str, dtype=np.float32) -> str:
        from onnx import numpy_helper
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.array(value, dtype, order="C"), name))  # 0-d stays 0-d
        return name

    def node(self, op: str, inputs, prefix: str, **attrs) -> str:
        from onnx import helper
        out = self.fresh(f"{prefix}.{op}" if prefix else op)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def reshape(self, x: str, in_shape, out_shape, prefix: str) -> str:
        """Reshape to ``out_shape``; with a free batch axis its size is copied (0) or inferred (-1)."""
        target = list(out_shape)
        if self.dynamic and target:
            target[0] = 0 if len(in_shape) and out_shape[0] == in_shape[0] else -1
        return self.node("Reshape", [x, self.const(target, prefix + ".shape", np.int64)], prefix)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _graph_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype.kind == "f" else dtype


def _out_shape(m: Module, shape, dtype) -> tuple[tuple[int, ...], np.dtype]:
    """Output shape and dtype of a leaf: its own forward on a zero input (eval mode, so no state changes)."""
    if isinstance(m, _SHAPE_ONLY):
        return tuple(shape), dtype
    if isinstance(m, Flatten):
        return flatten_shape(tuple(shape), m.start_dim, m.end_dim), dtype
    y = m.forward(np.zeros(shape, dtype))
    return tuple(y.shape), y.dtype


def _unbatched(g: _Graph, x: str, shape, batched_rank: int, prefix: str, fn):
    """Run ``fn`` (on an (N, ...) tensor) on an unbatched input by adding and removing the batch axis."""
    if len(shape) == batched_rank:
        return fn(x)
    axes = g.const([0], prefix + ".axes", np.int64)
    return g.node("Squeeze", [fn(g.node("Unsqueeze", [x, axes], prefix)), axes], prefix)


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


# ------------------------------------------------------------------------------------------ layers


def _conv(g, x, prefix, W, bias, stride, pads_before, pads_after, dilation, groups=1, pad_value=None):
    """Conv with per-side pads; ``pad_value`` (not 0) pads with that constant first (binary layers)."""
    pads = list(pads_before) + list(pads_after)
    if pad_value is not None and any(pads):
        nd = len(pads_before)
        full = [0, 0] + list(pads_before) + [0, 0] + list(pads_after)
        x = g.node("Pad", [x, g.const(full, prefix + ".pads", np.int64), g.const(pad_value, prefix + ".value")],
                   prefix, mode="constant")
        pads = [0] * (2 * nd)
    inputs = [x, g.const(W, prefix + ".weight")] + ([] if bias is None else [g.const(bias, prefix + ".bias")])
    return g.node("Conv", inputs, prefix, kernel_shape=list(W.shape[2:]), strides=list(stride), pads=pads,
                  dilations=list(dilation), group=int(groups))


def _matmul(g, x, shape, prefix, W, bias):
    """x (..., I) @ W.T + b: Gemm on a 2-d input, MatMul + Add otherwise; W (O, I)."""
    if len(shape) == 2:
        inputs = [x, g.const(W, prefix + ".weight")] + ([] if bias is None else [g.const(bias, prefix + ".bias")])
        return g.node("Gemm", inputs, prefix, transB=1)
    y = g.node("MatMul", [x, g.const(np.ascontiguousarray(_f32(W).T), prefix + ".weight_t")], prefix)
    return y if bias is None else g.node("Add", [y, g.const(bias, prefix + ".bias")], prefix)


def _sign(g, x, prefix):
    """sign(x) with sign(0) = +1 (kernels/README.md): Where(x >= 0, 1, -1)."""
    ge = g.node("GreaterOrEqual", [x, g.const(0.0, prefix + ".zero")], prefix)
    return g.node("Where", [ge, g.const(1.0, prefix + ".one"), g.const(-1.0, prefix + ".minus_one")], prefix)


def _fake_quant(g, x, m, prefix):
    """ShiftCNN's fixed-point input: clamp(round(x / s_a), -2**(b-1), 2**(b-1) - 1) * s_a."""
    hi = (1 << (m.act_bits - 1)) - 1
    q = g.node("Round", [g.node("Div", [x, g.const(m.act_scale, prefix + ".act_scale")], prefix)], prefix)
    q = g.node("Clip", [q, g.const(-hi - 1.0, prefix + ".lo"), g.const(float(hi), prefix + ".hi")], prefix)
    return g.node("Mul", [q, g.const(m.act_scale, prefix + ".act_scale")], prefix)


def _qlinear_conv(g, x, m, prefix, W, stride, padding, dilation):
    """QLinearConv with the layer's own int8 weights, int32 bias, scales and zero points."""
    act = m.act_dtype
    inputs = [x, g.const(m.input_scale, prefix + ".x_scale"), g.const(m.input_zero_point, prefix + ".x_zp", act),
              g.const(W, prefix + ".weight", np.int8), g.const(m.weight_scale, prefix + ".w_scale"),
              g.const(0, prefix + ".w_zp", np.int8), g.const(m.output_scale, prefix + ".y_scale"),
              g.const(m.output_zero_point, prefix + ".y_zp", act)]
    if m.bias is not None:
        inputs.append(g.const(m.bias, prefix + ".bias", np.int32))
    p = _pair(padding)
    return g.node("QLinearConv", inputs, prefix, kernel_shape=list(W.shape[2:]), strides=list(_pair(stride)),
                  pads=[p[0], p[1], p[0], p[1]], dilations=list(_pair(dilation)))


def _adaptive(g, x, shape, m, prefix, op):
    """Global pooling for output 1; a fixed pool when each input size is a multiple of its output size."""
    in_hw = shape[-2:]
    out_hw = tuple(n if o is None else o for o, n in zip(m.output_size, in_hw))
    if out_hw == (1, 1):
        return g.node(f"Global{op}", [x], prefix)
    if any(n % o for n, o in zip(in_hw, out_hw)):
        raise ValueError(f"to_onnx: {prefix or '<model>'} ({type(m).__name__}) maps input size {tuple(in_hw)} to "
                         f"{out_hw}, which has windows of unequal size; ONNX has no adaptive pooling, so only "
                         "output 1 or a divisor of the input size can be exported")
    k = [n // o for n, o in zip(in_hw, out_hw)]
    return g.node(op, [x], prefix, kernel_shape=k, strides=k)


def _leaf(g: _Graph, m: Module, x: str, shape, prefix: str) -> str:
    T = type(m)
    if T in _SHAPE_ONLY:
        return x
    if T in _SIMPLE:
        return g.node(_SIMPLE[T], [x], prefix)
    if T is ReLU6:
        return g.node("Clip", [x, g.const(0.0, prefix + ".min"), g.const(6.0, prefix + ".max")], prefix)
    if T is LeakyReLU:
        return g.node("LeakyRelu", [x], prefix, alpha=m.negative_slope)
    if T is Hardsigmoid:  # torch: relu6(x + 3) / 6
        return g.node("HardSigmoid", [x], prefix, alpha=1.0 / 6.0, beta=0.5)
    if T is SiLU:
        return g.node("Mul", [x, g.node("Sigmoid", [x], prefix)], prefix)
    if T is Softmax:
        return g.node("Softmax", [x], prefix, axis=m._axis(len(shape)))
    if T is Flatten:
        return g.reshape(x, shape, flatten_shape(tuple(shape), m.start_dim, m.end_dim), prefix)
    if T in (Linear, SparseLinear):
        W = m.weight if T is Linear else _dense(m)
        return _matmul(g, x, shape, prefix, W, m.bias)
    if T in (Conv2d, SparseConv2d):
        W = m.weight if T is Conv2d else _dense(m).reshape(m.out_channels, m.in_channels, *m.kernel_size)
        return _unbatched(g, x, shape, 4, prefix, lambda t: _conv(
            g, t, prefix, W, m.bias, m.stride, m._pads[0], m._pads[1], m.dilation, getattr(m, "groups", 1)))
    if T is Conv1d:
        return _unbatched(g, x, shape, 3, prefix, lambda t: _conv(
            g, t, prefix, m.weight, m.bias, m.stride, (m._pads[0][1],), (m._pads[1][1],), m.dilation, m.groups))
    if T is ConvTranspose2d:
        def convt(t):
            inputs = [t, g.const(m.weight, prefix + ".weight")]
            inputs += [] if m.bias is None else [g.const(m.bias, prefix + ".bias")]
            return g.node("ConvTranspose", inputs, prefix, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                          pads=list(m.padding) * 2, output_padding=list(m.output_padding),
                          dilations=list(m.dilation), group=m.groups)
        return _unbatched(g, x, shape, 4, prefix, convt)
    if T in (BatchNorm1d, BatchNorm2d):
        return _batchnorm(g, x, shape, m, prefix)
    if T is LayerNorm:
        d = len(m.normalized_shape)
        w = m.weight if m.weight is not None else np.ones(m.normalized_shape)
        inputs = [x, g.const(w, prefix + ".weight")] + ([] if m.bias is None else [g.const(m.bias, prefix + ".bias")])
        return g.node("LayerNormalization", inputs, prefix, axis=-d, epsilon=m.eps)
    if T is GroupNorm:
        n, c = shape[0], shape[1]
        k = int(np.prod(shape[1:])) // m.num_groups
        t = g.reshape(x, shape, (n, m.num_groups, k), prefix)  # (N, G, C/G*L)
        t = g.node("LayerNormalization", [t, g.const(np.ones(k), prefix + ".ones")], prefix, axis=-1, epsilon=m.eps)
        y = g.reshape(t, (n,), shape, prefix)
        bshape = (c,) + (1,) * (len(shape) - 2)  # (C, 1, ...) broadcasts over (N, C, *)
        if m.weight is not None:
            y = g.node("Mul", [y, g.const(m.weight.reshape(bshape), prefix + ".weight")], prefix)
        if m.bias is not None:
            y = g.node("Add", [y, g.const(m.bias.reshape(bshape), prefix + ".bias")], prefix)
        return y
    if T is MaxPool2d:
        return _unbatched(g, x, shape, 4, prefix, lambda t: _ceil_crop(g, g.node(
            "MaxPool", [t], prefix, kernel_shape=list(m.kernel_size), strides=list(m.stride),
            pads=list(m.padding) * 2, dilations=list(m.dilation), ceil_mode=int(m.ceil_mode)), shape, m, prefix))
    if T is AvgPool2d:
        return _unbatched(g, x, shape, 4, prefix, lambda t: _ceil_crop(g, _avgpool(g, t, m, prefix), shape, m, prefix))
    if T in (AdaptiveAvgPool2d, AdaptiveMaxPool2d):
        op = "AveragePool" if T is AdaptiveAvgPool2d else "MaxPool"
        return _unbatched(g, x, shape, 4, prefix, lambda t: _adaptive(g, t, shape, m, prefix, op))
    if T is Upsample:
        return _upsample(g, x, shape, m, prefix)
    if T is Embedding:
        return g.node("Gather", [g.const(m.weight, prefix + ".weight"), x], prefix, axis=0)
    if T is ChannelShuffle:
        n, c, rest = shape[0], shape[1], tuple(shape[2:])
        t = g.reshape(x, shape, (n, m.groups, c // m.groups) + rest, prefix)  # (N, G, Cg, ...)
        t = g.node("Transpose", [t], prefix, perm=[0, 2, 1] + list(range(3, 3 + len(rest))))  # (N, Cg, G, ...)
        return g.reshape(t, (n,), shape, prefix)
    if T.__name__ == "ShortcutA" and T.__module__ == "nn.models":
        s = m.stride
        t = g.node("Slice", [x, g.const([0, 0], prefix + ".starts", np.int64),
                             g.const([2 ** 62, 2 ** 62], prefix + ".ends", np.int64),
                             g.const([2, 3], prefix + ".axes", np.int64), g.const([s, s], prefix + ".steps", np.int64)],
                   prefix)
        pads = [0, m.pad[0], 0, 0, 0, m.pad[1], 0, 0]
        return g.node("Pad", [t, g.const(pads, prefix + ".pads", np.int64)], prefix, mode="constant")
    if T in (BinaryLinear, BinaryConv2d):
        return _binary(g, x, shape, m, prefix)
    if T in (LSTM, GRU):
        return _recurrent(g, x, shape, m, prefix)
    if T is LastStep:  # x[:, -1] or x[-1]: Gather with a scalar index drops the axis
        axis = 1 if m.batch_first and len(shape) == 3 else 0
        return g.node("Gather", [x, g.const(-1, prefix + ".last", np.int64)], prefix, axis=axis)
    if T is ShiftLinear:
        return _matmul(g, _fake_quant(g, x, m, prefix), shape, prefix, m.decoded_weight(), m.bias)
    if T is ShiftConv2d:
        p = _pair(m.padding)
        return _unbatched(g, x, shape, 4, prefix, lambda t: _conv(
            g, _fake_quant(g, t, m, prefix), prefix, m.decoded_weight(), m.bias, _pair(m.stride), p, p,
            _pair(m.dilation)))
    if T is QuantConv2d:
        return _unbatched(g, x, shape, 4, prefix, lambda t: _qlinear_conv(
            g, t, m, prefix, m.weight, m.stride, m.padding, m.dilation))
    if T is QuantLinear:
        rows = int(np.prod(shape[:-1]))
        t = g.reshape(x, shape, (rows, m.in_features, 1, 1), prefix)  # (..., I) -> (M, I, 1, 1)
        t = _qlinear_conv(g, t, m, prefix, m.weight[:, :, None, None], 1, 0, 1)  # (M, O, 1, 1)
        return g.reshape(t, (rows,), tuple(shape[:-1]) + (m.out_features,), prefix)
    raise TypeError(f"to_onnx: {prefix or '<model>'} is a {T.__module__}.{T.__qualname__}, which has no ONNX "
                    "export (see nn/export.py for the supported layers)")


def _dense(m) -> np.ndarray:
    """The dense (rows, cols) weight of a CSR layer, pruned entries 0 (duplicates add up, as in the kernel)."""
    rows, cols = m.weight_shape
    W = np.zeros((rows, cols), np.float64)
    row = np.repeat(np.arange(rows), np.diff(m.weight_indptr))
    np.add.at(W, (row, m.weight_indices), m.weight_data)
    return W


def _batchnorm(g, x, shape, m, prefix):
    c = m.num_features
    w = m.weight if m.weight is not None else np.ones(c)
    b = m.bias if m.bias is not None else np.zeros(c)
    if m.running_mean is not None:
        return g.node("BatchNormalization", [x, g.const(w, prefix + ".weight"), g.const(b, prefix + ".bias"),
                                             g.const(m.running_mean, prefix + ".running_mean"),
                                             g.const(m.running_var, prefix + ".running_var")], prefix, epsilon=m.eps)
    # no running statistics: lwnn (and torch) normalise with the batch's biased statistics even in eval
    axes = [0] + list(range(2, len(shape)))
    mean = g.node("ReduceMean", [x], prefix, axes=axes, keepdims=1)
    d = g.node("Sub", [x, mean], prefix)
    var = g.node("ReduceMean", [g.node("Mul", [d, d], prefix)], prefix, axes=axes, keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(m.eps, prefix + ".eps")], prefix)], prefix)
    bshape = (c,) + (1,) * (len(shape) - 2)
    y = g.node("Mul", [g.node("Div", [d, std], prefix), g.const(w.reshape(bshape), prefix + ".weight")], prefix)
    return g.node("Add", [y, g.const(b.reshape(bshape), prefix + ".bias")], prefix)


def _ceil_crop(g, y, shape, m, prefix):
    """With ceil_mode, torch drops a last window that starts in the right padding; ONNX's output-size formula
    keeps it (onnxruntime's kernel drops it, its shape inference does not), so slice to torch's size."""
    if not m.ceil_mode:
        return y
    dil = getattr(m, "dilation", (1, 1))
    onnx_hw = [-(-(n + 2 * p - (d * (k - 1) + 1)) // s) + 1
               for n, k, s, p, d in zip(shape[-2:], m.kernel_size, m.stride, m.padding, dil)]
    out_hw = list(m._out_hw(np.empty((1, 1) + tuple(shape[-2:]))))
    if onnx_hw == out_hw:
        return y
    return g.node("Slice", [y, g.const([0, 0], prefix + ".starts", np.int64), g.const(out_hw, prefix + ".ends", np.int64),
                            g.const([2, 3], prefix + ".axes", np.int64)], prefix)


def _avgpool(g, x, m, prefix):
    y = g.node("AveragePool", [x], prefix, kernel_shape=list(m.kernel_size), strides=list(m.stride),
               pads=list(m.padding) * 2, ceil_mode=int(m.ceil_mode),
               count_include_pad=int(m.count_include_pad or bool(m.divisor_override)))
    if not m.divisor_override:
        return y
    if m.ceil_mode:
        raise ValueError(f"to_onnx: {prefix or '<model>'} (AvgPool2d) combines divisor_override with ceil_mode, "
                         "which AveragePool cannot express")
    k = m.kernel_size[0] * m.kernel_size[1]  # sum = mean over the full window * k, then / divisor
    return g.node("Mul", [y, g.const(k / m.divisor_override, prefix + ".divisor")], prefix)


def _upsample(g, x, shape, m, prefix):
    out, scales = m._geometry(np.empty(shape, np.float32))
    mode = "nearest" if m.mode == "nearest" else "linear"
    if m.mode == "nearest":
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs = {"coordinate_transformation_mode": "align_corners" if m.align_corners else "half_pixel"}
    roi = g.const(np.zeros(0), prefix + ".roi")
    if scales[0] is not None:  # torch maps coordinates with 1 / scale_factor, as Resize does with ``scales``
        sc = g.const([1.0, 1.0, scales[0], scales[1]], prefix + ".scales")
        return g.node("Resize", [x, roi, sc], prefix, mode=mode, **attrs)
    sizes = [shape[0], shape[1], out[0], out[1]]
    if g.dynamic:  # the batch size comes from the input: sizes = concat(shape(x)[:2], (Ho, Wo))
        nc = g.node("Slice", [g.node("Shape", [x], prefix), g.const([0], prefix + ".s", np.int64),
                              g.const([2], prefix + ".e", np.int64)], prefix)
        size = g.node("Concat", [nc, g.const(out, prefix + ".hw", np.int64)], prefix, axis=0)
    else:
        size = g.const(sizes, prefix + ".sizes", np.int64)
    return g.node("Resize", [x, roi, "", size], prefix, mode=mode, **attrs)


def _binary(g, x, shape, m, prefix):
    from kernels.binary import unpack_signs
    if type(m) is BinaryLinear:
        W = unpack_signs(m.weight_bits, m.in_features)  # (O, I) of +-1
        y = _matmul(g, _sign(g, x, prefix), shape, prefix, W, None)
        if m.alpha is not None:
            y = g.node("Mul", [y, g.const(m.alpha, prefix + ".alpha")], prefix)
        if m.act_scale:  # K: mean |x| per row
            K = g.node("ReduceMean", [g.node("Abs", [x], prefix)], prefix, axes=[-1], keepdims=1)
            y = g.node("Mul", [y, K], prefix)
        return y if m.bias is None else g.node("Add", [y, g.const(m.bias, prefix + ".bias")], prefix)

    Co, Ci, (kH, kW) = m.out_channels, m.in_channels, m.kernel_size
    W = unpack_signs(m.weight_bits.reshape(Co * kH * kW, -1), Ci).reshape(Co, kH, kW, Ci).transpose(0, 3, 1, 2)
    before, after = m._pads

    def conv(t):
        y = _conv(g, _sign(g, t, prefix), prefix, W, None, m.stride, before, after, m.dilation, pad_value=1.0)
        if m.alpha is not None:
            y = g.node("Mul", [y, g.const(m.alpha.reshape(Co, 1, 1), prefix + ".alpha")], prefix)
        if m.act_scale:  # K = mean_c |x| box-filtered over the window, zero padding
            A = g.node("ReduceMean", [g.node("Abs", [t], prefix)], prefix, axes=[1], keepdims=1)
            box = np.full((1, 1, kH, kW), 1.0 / (kH * kW))
            y = g.node("Mul", [y, _conv(g, A, prefix + ".K", box, None, m.stride, before, after, m.dilation)], prefix)
        return y if m.bias is None else g.node("Add", [y, g.const(m.bias.reshape(Co, 1, 1), prefix + ".bias")],
                                               prefix)
    return _unbatched(g, x, shape, 4, prefix, conv)


# torch stacks the gate blocks of weight_ih / weight_hh as (i, f, g, o) (LSTM) and (r, z, n) (GRU); ONNX's LSTM
# wants (i, o, f, c) and its GRU (z, r, h)
_GATE_ORDER = {LSTM: (0, 3, 1, 2), GRU: (1, 0, 2)}


def _recurrent(g, x, shape, m, prefix):
    """One ONNX LSTM / GRU node per layer (both directions in one node), zero initial states, torch's layout."""
    order, S, dirs = _GATE_ORDER[type(m)], m.hidden_size, m.num_directions

    def gates(a):  # (G*S, ...) in torch's gate order -> ONNX's
        return np.concatenate([a[k * S:(k + 1) * S] for k in order], axis=0)

    unbatched = len(shape) == 2
    if unbatched:
        t = g.node("Unsqueeze", [x, g.const([1], prefix + ".axes", np.int64)], prefix)  # (T, I) -> (T, 1, I)
    else:
        t = g.node("Transpose", [x], prefix, perm=[1, 0, 2]) if m.batch_first else x  # (N, T, I) -> (T, N, I)
    for layer in range(m.num_layers):
        ws = [m._weights(layer, d) for d in range(dirs)]
        lp = f"{prefix}.l{layer}"
        inputs = [t, g.const(np.stack([gates(w[0]) for w in ws]), lp + ".W"),
                  g.const(np.stack([gates(w[1]) for w in ws]), lp + ".R")]
        if m.bias:
            inputs.append(g.const(np.stack([np.concatenate([gates(w[2]), gates(w[3])]) for w in ws]), lp + ".B"))
        attrs = {"linear_before_reset": 1} if type(m) is GRU else {}  # torch's GRU: r * (W_hn h + b_hn)
        y = g.node(type(m).__name__, inputs, lp, hidden_size=S,
                   direction="bidirectional" if dirs == 2 else "forward", **attrs)  # (T, dirs, N, S)
        y = g.node("Transpose", [y], lp, perm=[0, 2, 1, 3])  # (T, N, dirs, S)
        t = g.node("Reshape", [y, g.const([0, 0, dirs * S], lp + ".shape", np.int64)], lp)  # (T, N, dirs*S)
    if unbatched:
        return g.node("Squeeze", [t, g.const([1], prefix + ".axes", np.int64)], prefix)
    return g.node("Transpose", [t], prefix, perm=[1, 0, 2]) if m.batch_first else t


# ------------------------------------------------------------------------------------------ walk


def _emit(g: _Graph, m: Module, x: str, shape, dtype, prefix: str):
    """Add ``m`` applied to tensor ``x`` (lwnn shape and dtype); return the output's name, shape, dtype."""
    T = type(m)
    sub = (lambda name: f"{prefix}.{name}" if prefix else name)
    if T is Sequential:
        for name, c in m.named_children():
            x, shape, dtype = _emit(g, c, x, shape, dtype, sub(name))
        return x, shape, dtype
    if T is Residual:
        yb, sb, db = _emit(g, m.body, x, shape, dtype, sub("body"))
        ys, ss, _ = (x, shape, dtype) if m.shortcut is None else _emit(g, m.shortcut, x, shape, dtype, sub("shortcut"))
        if sb != ss:
            raise ValueError(f"to_onnx: {prefix or '<model>'} (Residual) branch shapes differ: body {sb}, "
                             f"shortcut {ss}")
        return g.node("Add", [yb, ys], prefix), sb, db
    if T in (Concat, ChannelSplit):
        branches = list(m.named_children())
        if T is Concat:
            parts = [x] * len(branches)
            shapes = [shape] * len(branches)
        else:
            split = g.const(m.sections, prefix + ".split", np.int64)
            parts = [g.fresh(f"{prefix}.part") for _ in branches]
            from onnx import helper
            g.nodes.append(helper.make_node("Split", [x, split], parts, name=g.fresh(prefix + ".Split"), axis=1))
            shapes = [(shape[0], s) + tuple(shape[2:]) for s in m.sections]
        outs = [_emit(g, c, p, s, dtype, sub(name)) for (name, c), p, s in zip(branches, parts, shapes)]
        y_shape = (outs[0][1][0], sum(o[1][1] for o in outs)) + tuple(outs[0][1][2:])
        return g.node("Concat", [o[0] for o in outs], prefix, axis=1), y_shape, outs[0][2]
    if T is SqueezeExcitation:
        s, s_shape, _ = x, shape, dtype
        for name in ("avgpool", "fc1", "activation", "fc2", "scale_activation"):
            s, s_shape, _ = _emit(g, getattr(m, name), s, s_shape, dtype, sub(name))
        return g.node("Mul", [x, s], prefix), shape, dtype
    y = _leaf(g, m, x, shape, prefix)
    y_shape, y_dtype = _out_shape(m, shape, dtype)
    return y, y_shape, y_dtype


def _input_dtype(model: Module) -> np.dtype:
    """What the model's first layer takes: uint8/int8 (quantised), int64 (Embedding) or its float dtype."""
    for m in model.modules():
        if type(m) in (QuantConv2d, QuantLinear):
            return m.act_dtype
        if type(m) is Embedding:
            return np.dtype(np.int64)
        if not m._modules and type(m) not in _SHAPE_ONLY + (Flatten,):
            break
    return np.dtype(model.dtype or np.float32)


def to_onnx(model: Module, path, input_shape, dynamic_batch: bool = True, input_dtype=None):
    """Write ``model`` (its eval-mode function) as an ONNX file at ``path``.

    Parameters
    ----------
    model : an lwnn Module made of the layers and containers listed in the module docstring.
    path : str or Path of the .onnx file to write.
    input_shape : the full input shape, batch included, e.g. (1, 3, 32, 32); the unbatched (C, H, W) forms
        of the layers that accept them work too.
    dynamic_batch : name axis 0 of the input ``N`` so the graph runs at any batch size (pass False for an
        unbatched input, whose axis 0 is C); the output's axis 0 is ``N`` too when it has the input's size.
    input_dtype : the graph input's dtype; default what the first layer takes: uint8/int8 for a quantised
        model, int64 for an Embedding, float32 otherwise (a float64 model is exported in float32).

    Returns
    -------
    The checked ``onnx.ModelProto`` (also saved at ``path``), with one input ``input`` and one output
    ``output``. Raises TypeError for a module type with no export (naming its path and type) and ValueError
    for a configuration ONNX cannot express.
    """
    import onnx
    from onnx import helper

    shape = tuple(int(s) for s in input_shape)
    dtype = np.dtype(input_dtype) if input_dtype is not None else _input_dtype(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        g = _Graph(dynamic_batch and len(shape) > 0)
        y, y_shape, y_dtype = _emit(g, model, "input", shape, dtype, "")
    finally:
        for m, t in modes:
            object.__setattr__(m, "training", t)
    g.nodes.append(helper.make_node("Identity", [y], ["output"], name="output"))

    def info(name, shp, dt, batch):
        dims = [batch if g.dynamic and i == 0 else int(s) for i, s in enumerate(shp)]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(_graph_dtype(np.dtype(dt))), dims)

    out_batch = "N" if y_shape and y_shape[0] == shape[0] else None  # e.g. (T, N, I) -> (N, O): axis 0 unknown
    graph = helper.make_graph(g.nodes, type(model).__name__, [info("input", shape, dtype, "N")],
                              [info("output", y_shape, y_dtype, out_batch)], g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lwnn")
    proto.ir_version = min(proto.ir_version, 9)  # readable by onnxruntime releases that predate IR 10
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return proto
