"""PyTorch in and out: ``from_torch(torch_module)`` and ``to_torch(lwnn_module)``.

Both walk the module tree and build the twin with the same constructor options, the same parameters and
buffers (copied; float32 stays float32, float64 stays float64) and the same train/eval flag on every module.
PyTorch is imported only inside these functions, so lwnn runs without it.

The lwnn containers ``Residual``, ``Concat`` and ``ChannelSplit`` have no torch class; their twins
``TorchResidual``, ``TorchConcat`` and ``TorchChannelSplit`` are small ``torch.nn.Module`` classes created on
first use (``from nn.interop import TorchResidual`` creates them, and so imports torch). ``SqueezeExcitation``
and ``DropPath`` stand for torchvision modules (not a dependency): their twins ``TorchSqueezeExcitation`` (the
structure and names of torchvision.ops.SqueezeExcitation) and ``TorchDropPath`` (per-sample stochastic depth;
its ``keep`` attribute replays lwnn's draws) are created the same way, as is ``TorchLastStep`` (twin of
``nn.recurrent.LastStep``; it also accepts the ``(output, state)`` tuple a torch LSTM/GRU returns, so
``Sequential(LSTM, LastStep, Linear)`` converts to a working torch Sequential). Module types are
matched exactly (a subclass may change ``forward``), and an unknown type raises a TypeError naming it.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from nn.activations import Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Tanh
from nn.basic import Dropout, DropPath, Flatten, Identity
from nn.containers import ChannelShuffle, ChannelSplit, Concat, Residual, Sequential, SqueezeExcitation
from nn.conv import Conv1d, Conv2d, ConvTranspose2d
from nn.embedding import Embedding
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from nn.pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from nn.recurrent import GRU, LSTM, LastStep
from nn.upsample import Upsample

_TORCH_TWINS: dict[str, type] = {}
_TWIN_NAMES = ("TorchResidual", "TorchConcat", "TorchChannelSplit", "TorchShortcutA", "TorchSqueezeExcitation",
               "TorchDropPath", "TorchLastStep")


def torch_twins() -> dict[str, type]:
    """The torch classes standing for Residual, Concat and ChannelSplit, created once (imports torch)."""
    if _TORCH_TWINS:
        return _TORCH_TWINS
    import torch

    class TorchResidual(torch.nn.Module):
        """y = body(x) + shortcut(x) (identity shortcut when None); twin of nn.containers.Residual."""

        def __init__(self, body: torch.nn.Module, shortcut: torch.nn.Module | None = None) -> None:
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class TorchConcat(torch.nn.Module):
        """cat([b(x) for b in branches], dim=1); twin of nn.containers.Concat."""

        def __init__(self, *branches: torch.nn.Module) -> None:
            super().__init__()
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], dim=1)

    class TorchChannelSplit(torch.nn.Module):
        """Split channels into ``sections``, branch i on part i, concatenate; twin of nn.containers.ChannelSplit."""

        def __init__(self, sections, *branches: torch.nn.Module) -> None:
            super().__init__()
            self.sections = [int(s) for s in sections]
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            parts = torch.split(x, self.sections, dim=1)
            return torch.cat([b(p) for b, p in zip(self.children(), parts)], dim=1)

    class TorchShortcutA(torch.nn.Module):
        """x[:, :, ::stride, ::stride] with zero channels padded before/after; twin of nn.models.ShortcutA."""

        def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
            super().__init__()
            self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), int(stride)

        def forward(self, x):
            extra = self.out_channels - self.in_channels
            xs = x[:, :, ::self.stride, ::self.stride]
            return torch.nn.functional.pad(xs, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    class TorchSqueezeExcitation(torch.nn.Module):
        """torchvision.ops.SqueezeExcitation (same children and names); twin of nn.containers.SqueezeExcitation."""

        def __init__(self, input_channels: int, squeeze_channels: int, activation=torch.nn.ReLU,
                     scale_activation=torch.nn.Sigmoid) -> None:
            super().__init__()
            self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc1 = torch.nn.Conv2d(input_channels, squeeze_channels, 1)
            self.fc2 = torch.nn.Conv2d(squeeze_channels, input_channels, 1)
            self.activation = activation()
            self.scale_activation = scale_activation()

        def forward(self, x):
            return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x))))) * x

    class TorchDropPath(torch.nn.Module):
        """torchvision's stochastic_depth(mode="row"); twin of nn.basic.DropPath.

        Set ``keep`` to a bool tensor (N,) to replay lwnn's draws exactly; ``None`` draws with torch.
        """

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = float(p)
            self.keep = None

        def forward(self, x):
            if not self.training or self.p == 0.0:
                return x
            keep = torch.rand(x.shape[0]) >= self.p if self.keep is None else self.keep
            scale = keep.to(x.dtype) * (0.0 if self.p >= 1 else 1.0 / (1.0 - self.p))
            return x * scale.reshape((x.shape[0],) + (1,) * (x.ndim - 1))

        def extra_repr(self) -> str:
            return f"p={self.p}"

    class TorchLastStep(torch.nn.Module):
        """x[:, -1] (batch_first) or x[-1]; takes the output of a torch LSTM/GRU (a tuple); twin of LastStep."""

        def __init__(self, batch_first: bool = False) -> None:
            super().__init__()
            self.batch_first = bool(batch_first)

        def forward(self, x):
            x = x[0] if isinstance(x, tuple) else x  # torch's LSTM/GRU return (output, state)
            return x[:, -1] if self.batch_first else x[-1]

    for cls in (TorchResidual, TorchConcat, TorchChannelSplit, TorchShortcutA, TorchSqueezeExcitation,
                TorchDropPath, TorchLastStep):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__  # picklable as nn.interop.<name>
        _TORCH_TWINS[cls.__name__] = cls
    return _TORCH_TWINS


def __getattr__(name: str):
    if name in _TWIN_NAMES:
        return torch_twins()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------ helpers

def _np(t, where: str) -> np.ndarray:
    a = t.detach().cpu().numpy()
    if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        raise TypeError(f"from_torch: {where} is {a.dtype}; lwnn supports float32 and float64")
    return a.copy()


def _torch_dtype(dtype):
    import torch
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def _param_dtype(t) -> np.dtype:
    for p in t.parameters(recurse=False):
        return _np(p, type(t).__name__).dtype
    for b in t.buffers(recurse=False):
        if b.is_floating_point():
            return _np(b, type(t).__name__).dtype
    return np.dtype(np.float32)


def _copy_into_lwnn(m: Module, t) -> Module:
    for name, p in t.named_parameters(recurse=False):
        m.register_parameter(name, _np(p, f"{type(t).__name__}.{name}"))
    for name, b in t.named_buffers(recurse=False):
        if name in m._buffers:
            m.register_buffer(name, _np(b, f"{type(t).__name__}.{name}"))
    object.__setattr__(m, "training", bool(t.training))
    return m


def _copy_into_torch(t, m: Module):
    import torch
    with torch.no_grad():
        for name, p in m._parameters.items():
            setattr(t, name, torch.nn.Parameter(torch.from_numpy(p.copy())))
        for name, b in m._buffers.items():
            setattr(t, name, torch.from_numpy(np.array(b, copy=True)))
    t.training = bool(m.training)
    return t


# ------------------------------------------------------------------------------------------ torch -> lwnn

def from_torch(torch_module, rng: np.random.Generator | int | None = None) -> Module:
    """The lwnn module equivalent to ``torch_module`` (any nesting of the supported types).

    ``rng`` seeds the dropout masks of converted Dropout layers (torch's masks cannot be reproduced).
    """
    import torch.nn as tnn

    t = torch_module
    T = type(t)
    twins = torch_twins()
    if T is tnn.Sequential:
        m = Sequential()
        for name, c in t.named_children():  # keeps torch's names, also OrderedDict ones ("conv1", ...)
            setattr(m, name, from_torch(c, rng))
    elif T is twins["TorchResidual"]:
        m = Residual(from_torch(t.body, rng), None if t.shortcut is None else from_torch(t.shortcut, rng))
    elif T is twins["TorchShortcutA"]:
        from nn.models import ShortcutA
        m = ShortcutA(t.in_channels, t.out_channels, t.stride)
    elif T is twins["TorchConcat"]:
        m = Concat(*[from_torch(c, rng) for c in t.children()])
    elif T is twins["TorchChannelSplit"]:
        m = ChannelSplit(t.sections, *[from_torch(c, rng) for c in t.children()])
    elif T is twins["TorchSqueezeExcitation"]:
        m = SqueezeExcitation(t.fc1.in_channels, t.fc1.out_channels, from_torch(t.activation, rng),
                              from_torch(t.scale_activation, rng))
        m.fc1, m.fc2 = from_torch(t.fc1, rng), from_torch(t.fc2, rng)
    elif T is twins["TorchDropPath"]:
        m = DropPath(t.p, rng=rng)
    elif T is tnn.LayerNorm:
        m = LayerNorm(t.normalized_shape, t.eps, t.elementwise_affine, t.bias is not None, dtype=_param_dtype(t))
    elif T is tnn.GroupNorm:
        m = GroupNorm(t.num_groups, t.num_channels, t.eps, t.affine, dtype=_param_dtype(t), bias=t.bias is not None)
    elif T is tnn.Embedding:
        for opt, ok in (("max_norm", t.max_norm is None), ("scale_grad_by_freq", not t.scale_grad_by_freq),
                        ("sparse", not t.sparse)):
            if not ok:
                raise ValueError(f"from_torch: Embedding option {opt}={getattr(t, opt)!r} is not supported")
        m = Embedding(t.num_embeddings, t.embedding_dim, t.padding_idx, dtype=_param_dtype(t))
    elif T is tnn.Linear:
        m = Linear(t.in_features, t.out_features, t.bias is not None, dtype=_param_dtype(t))
    elif T is tnn.Conv2d:
        m = Conv2d(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding, t.dilation, t.groups,
                   t.bias is not None, t.padding_mode, dtype=_param_dtype(t))
    elif T is tnn.Conv1d:
        m = Conv1d(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding, t.dilation, t.groups,
                   t.bias is not None, t.padding_mode, dtype=_param_dtype(t))
    elif T is tnn.ConvTranspose2d:
        m = ConvTranspose2d(t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding, t.output_padding,
                            t.groups, t.bias is not None, t.dilation, t.padding_mode, dtype=_param_dtype(t))
    elif T in (tnn.Upsample, tnn.UpsamplingNearest2d, tnn.UpsamplingBilinear2d):
        m = Upsample(t.size, t.scale_factor, t.mode, t.align_corners, t.recompute_scale_factor)
    elif T in (tnn.BatchNorm1d, tnn.BatchNorm2d):
        cls = BatchNorm1d if T is tnn.BatchNorm1d else BatchNorm2d
        m = cls(t.num_features, t.eps, t.momentum, t.affine, t.track_running_stats, dtype=_param_dtype(t))
    elif T in (tnn.ReLU, tnn.ReLU6, tnn.Sigmoid, tnn.Tanh, tnn.Hardswish, tnn.Hardsigmoid, tnn.SiLU):
        cls = {tnn.ReLU: ReLU, tnn.ReLU6: ReLU6, tnn.Sigmoid: Sigmoid, tnn.Tanh: Tanh, tnn.Hardswish: Hardswish,
               tnn.Hardsigmoid: Hardsigmoid, tnn.SiLU: SiLU}[T]
        m = cls(getattr(t, "inplace", False))
    elif T is tnn.LeakyReLU:
        m = LeakyReLU(t.negative_slope, t.inplace)
    elif T is tnn.Softmax:
        m = Softmax(t.dim)
    elif T is tnn.MaxPool2d:
        m = MaxPool2d(t.kernel_size, t.stride, t.padding, t.dilation, t.return_indices, t.ceil_mode)
    elif T is tnn.AvgPool2d:
        m = AvgPool2d(t.kernel_size, t.stride, t.padding, t.ceil_mode, t.count_include_pad, t.divisor_override)
    elif T is tnn.AdaptiveAvgPool2d:
        m = AdaptiveAvgPool2d(t.output_size)
    elif T is tnn.AdaptiveMaxPool2d:
        m = AdaptiveMaxPool2d(t.output_size, t.return_indices)
    elif T is tnn.Flatten:
        m = Flatten(t.start_dim, t.end_dim)
    elif T is tnn.Dropout:
        m = Dropout(t.p, rng=rng, inplace=t.inplace)
    elif T in (tnn.LSTM, tnn.GRU):
        for opt, ok in (("dropout", t.dropout == 0), ("proj_size", getattr(t, "proj_size", 0) == 0)):
            if not ok:
                raise ValueError(f"from_torch: {T.__name__} option {opt}={getattr(t, opt)!r} is not supported")
        m = (LSTM if T is tnn.LSTM else GRU)(t.input_size, t.hidden_size, t.num_layers, t.bias, t.batch_first,
                                             t.bidirectional, dtype=_param_dtype(t))
    elif T is twins["TorchLastStep"]:
        m = LastStep(t.batch_first)
    elif T is tnn.Identity:
        m = Identity()
    elif T is tnn.ChannelShuffle:
        m = ChannelShuffle(t.groups)
    else:
        raise TypeError(f"from_torch: no lwnn equivalent for torch module type {T.__module__}.{T.__qualname__}")
    return _copy_into_lwnn(m, t)


# ------------------------------------------------------------------------------------------ lwnn -> torch

def to_torch(module: Module):
    """The torch module equivalent to the lwnn ``module`` (any nesting of the supported types)."""
    import torch.nn as tnn

    m = module
    T = type(m)
    twins = torch_twins()
    dt = _torch_dtype(m.dtype or np.float32)
    if T is Sequential:
        t = tnn.Sequential(OrderedDict((name, to_torch(c)) for name, c in m.named_children()))
    elif T is Residual:
        t = twins["TorchResidual"](to_torch(m.body), None if m.shortcut is None else to_torch(m.shortcut))
    elif type(m).__name__ == "ShortcutA" and type(m).__module__ == "nn.models":
        t = twins["TorchShortcutA"](m.in_channels, m.out_channels, m.stride)
    elif T is Concat:
        t = twins["TorchConcat"](*[to_torch(c) for c in m.children()])
    elif T is ChannelSplit:
        t = twins["TorchChannelSplit"](m.sections, *[to_torch(c) for c in m.children()])
    elif T is SqueezeExcitation:
        t = twins["TorchSqueezeExcitation"](m.channels, m.squeeze_channels, lambda: to_torch(m.activation),
                                            lambda: to_torch(m.scale_activation))
        t.fc1, t.fc2 = to_torch(m.fc1), to_torch(m.fc2)
    elif T is DropPath:
        t = twins["TorchDropPath"](m.p)
    elif T is LayerNorm:
        t = tnn.LayerNorm(m.normalized_shape, m.eps, m.elementwise_affine, m.bias is not None, dtype=dt)
    elif T is GroupNorm:
        t = tnn.GroupNorm(m.num_groups, m.num_channels, m.eps, m.affine, dtype=dt, bias=m.bias is not None)
    elif T is Embedding:
        t = tnn.Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, dtype=dt)
    elif T is Linear:
        t = tnn.Linear(m.in_features, m.out_features, m.bias is not None, dtype=dt)
    elif T is Conv2d:
        t = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                       m.bias is not None, m.padding_mode, dtype=dt)
    elif T is Conv1d:
        t = tnn.Conv1d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                       m.bias is not None, m.padding_mode, dtype=dt)
    elif T is ConvTranspose2d:
        t = tnn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.output_padding,
                                m.groups, m.bias is not None, m.dilation, m.padding_mode, dtype=dt)
    elif T is Upsample:
        t = tnn.Upsample(m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor)
    elif T in (BatchNorm1d, BatchNorm2d):
        cls = tnn.BatchNorm1d if T is BatchNorm1d else tnn.BatchNorm2d
        if not m.affine and m.track_running_stats:
            dt = _torch_dtype(m.running_mean.dtype)
        t = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, dtype=dt)
    elif T in (ReLU, ReLU6, Sigmoid, Tanh, Hardswish, Hardsigmoid, SiLU):
        cls = {ReLU: tnn.ReLU, ReLU6: tnn.ReLU6, Sigmoid: tnn.Sigmoid, Tanh: tnn.Tanh, Hardswish: tnn.Hardswish,
               Hardsigmoid: tnn.Hardsigmoid, SiLU: tnn.SiLU}[T]
        t = cls() if T in (Sigmoid, Tanh) else cls(inplace=m.inplace)
    elif T is LeakyReLU:
        t = tnn.LeakyReLU(m.negative_slope, m.inplace)
    elif T is Softmax:
        t = tnn.Softmax(m.dim)
    elif T is MaxPool2d:
        t = tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, False, m.ceil_mode)
    elif T is AvgPool2d:
        t = tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    elif T is AdaptiveAvgPool2d:
        t = tnn.AdaptiveAvgPool2d(m.output_size)
    elif T is AdaptiveMaxPool2d:
        t = tnn.AdaptiveMaxPool2d(m.output_size)
    elif T is Flatten:
        t = tnn.Flatten(m.start_dim, m.end_dim)
    elif T is Dropout:
        t = tnn.Dropout(m.p, m.inplace)
    elif T in (LSTM, GRU):
        t = (tnn.LSTM if T is LSTM else tnn.GRU)(m.input_size, m.hidden_size, m.num_layers, m.bias, m.batch_first,
                                                 bidirectional=m.bidirectional, dtype=dt)
    elif T is LastStep:
        t = twins["TorchLastStep"](m.batch_first)
    elif T is Identity:
        t = tnn.Identity()
    elif T is ChannelShuffle:
        t = tnn.ChannelShuffle(m.groups)
    else:
        raise TypeError(f"to_torch: no torch equivalent for lwnn module type {T.__module__}.{T.__qualname__}")
    return _copy_into_torch(t, m)
