"""Containers that express real topologies: chains, residual adds, concatenation, split, shuffle, SE gates."""
from __future__ import annotations

import numpy as np

from nn import init
from nn.activations import ReLU, Sigmoid
from nn.conv import Conv2d
from nn.module import Module
from nn.pooling import AdaptiveAvgPool2d


class Sequential(Module):
    """Children named "0", "1", ... as in torch; backward runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {i} is a {type(layer).__name__}, not an lwnn Module")
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self._modules.values())):
            grad_output = layer.backward(grad_output)
        return grad_output


def _check_array(name: str, x) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} expects a numpy.ndarray, got {type(x).__name__}")


def _check_channels_input(name: str, x, what: str = "(N, C, ...)") -> None:
    _check_array(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name} expects an input {what} with a channel axis 1, got shape {x.shape}")


class Residual(Module):
    """y = body(x) + shortcut(x); the shortcut is the identity when ``None``. Children ``body``, ``shortcut``."""

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        for what, m in (("body", body), ("shortcut", shortcut)):
            if not isinstance(m, Module) and (what == "body" or m is not None):
                raise TypeError(f"Residual {what} is a {type(m).__name__}, not an lwnn Module")
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            object.__setattr__(self, "shortcut", None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_array("Residual", x)
        yb = self.body(x)
        ys = x if self.shortcut is None else self.shortcut(x)
        if yb.shape != ys.shape:
            raise ValueError(f"Residual branch shapes differ: body gives {yb.shape}, "
                             f"shortcut gives {ys.shape} (input {x.shape})")
        if yb.dtype != ys.dtype:
            raise TypeError(f"Residual branch dtypes differ: body gives {yb.dtype}, shortcut gives {ys.dtype}")
        self._save(shape=yb.shape)
        return yb + ys

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = self._take()["shape"]
        if grad_output.shape != shape:
            raise ValueError(f"Residual.backward: grad_output shape {grad_output.shape} != output shape {shape}")
        dx = self.body.backward(grad_output)
        ds = grad_output if self.shortcut is None else self.shortcut.backward(grad_output)
        return dx + ds


class Concat(Module):
    """y = concatenate([b(x) for b in branches], axis=1) (SqueezeNet fire expand, Inception); children "0", "1", ..."""

    def __init__(self, *branches: Module) -> None:
        super().__init__()
        _add_branches(self, branches)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels_input("Concat", x)
        ys = [b(x) for b in self._modules.values()]
        _check_concat("Concat", ys)
        self._save(sizes=[y.shape[1] for y in ys])
        return np.concatenate(ys, axis=1)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        sizes = self._take()["sizes"]
        gs = _split_channels("Concat", grad_output, sizes)
        dx = None
        for b, g in zip(self._modules.values(), gs):
            d = b.backward(g)
            dx = d if dx is None else dx + d
        return dx


class ChannelSplit(Module):
    """Split x on channels into ``sections`` (sizes summing to C), apply branch i to part i, concatenate.

    ShuffleNetV2's basic unit is ``Sequential(ChannelSplit([c//2, c//2], Identity(), branch), ChannelShuffle(2))``.
    Children "0", "1", ...
    """

    def __init__(self, sections, *branches: Module) -> None:
        super().__init__()
        sections = [int(s) for s in sections]
        if len(sections) != len(branches) or not branches:
            raise ValueError(f"ChannelSplit has {len(sections)} sections {sections} but {len(branches)} branches; "
                             "give one branch per section")
        if any(s <= 0 for s in sections):
            raise ValueError(f"ChannelSplit sections must be positive, got {sections}")
        _add_branches(self, branches)
        self.sections = sections

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels_input("ChannelSplit", x)
        if x.shape[1] != sum(self.sections):
            raise ValueError(f"ChannelSplit sections {self.sections} sum to {sum(self.sections)} channels, "
                             f"input has {x.shape[1]} (shape {x.shape})")
        parts = _split_channels("ChannelSplit", x, self.sections)
        ys = [b(p) for b, p in zip(self._modules.values(), parts)]
        _check_concat("ChannelSplit", ys)
        self._save(sizes=[y.shape[1] for y in ys])
        return np.concatenate(ys, axis=1)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        sizes = self._take()["sizes"]
        gs = _split_channels("ChannelSplit", grad_output, sizes)
        return np.concatenate([b.backward(g) for b, g in zip(self._modules.values(), gs)], axis=1)

    def extra_repr(self) -> str:
        return f"sections={self.sections}"


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """(N, G*Cg, ...) -> (N, Cg*G, ...): output channel c*G + g is input channel g*Cg + c (torch.channel_shuffle)."""
    n, c = x.shape[:2]
    rest = x.shape[2:]
    y = x.reshape(n, groups, c // groups, *rest)  # (N, G, Cg, ...)
    return np.ascontiguousarray(y.swapaxes(1, 2)).reshape(x.shape)  # (N, Cg, G, ...) -> (N, C, ...)


def channel_shuffle_backward(g: np.ndarray, groups: int) -> np.ndarray:
    """The inverse permutation: a shuffle with Cg = C / G groups."""
    return channel_shuffle(g, g.shape[1] // groups)


class ChannelShuffle(Module):
    """torch.nn.ChannelShuffle: (N, G*Cg, H, W) viewed as (N, G, Cg, H, W), transposed to (N, Cg, G, H, W)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"ChannelShuffle groups must be a positive int, got {groups!r}")
        self.groups = int(groups)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels_input("ChannelShuffle", x, "(N, C, H, W)")
        if x.ndim < 3:
            raise ValueError(f"ChannelShuffle expects an input of at least 3 dimensions (N, C, *), got shape {x.shape}")
        if x.shape[1] % self.groups:
            raise ValueError(f"ChannelShuffle: {x.shape[1]} channels are not divisible by groups={self.groups}")
        self._save(shape=x.shape)
        return channel_shuffle(x, self.groups)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = self._take()["shape"]
        if grad_output.shape != shape:
            raise ValueError(f"ChannelShuffle.backward: grad_output shape {grad_output.shape} != output shape {shape}")
        return channel_shuffle_backward(grad_output, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def gate_multiply_forward(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """y = x * s with x (N, C, H, W) and a per-channel gate s (N, C, 1, 1)."""
    return x * s


def gate_multiply_backward(g: np.ndarray, x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dx, ds) of y = x * s: the identity path dx = g * s, the gate path ds = sum over H, W of g * x."""
    return g * s, (g * x).sum(axis=(-2, -1), keepdims=True)


def _activation(name: str, make) -> Module:
    """An activation from a Module class / zero-argument factory (torchvision's convention) or an instance."""
    m = make if isinstance(make, Module) else make()
    if not isinstance(m, Module):
        raise TypeError(f"SqueezeExcitation {name} must be an lwnn Module class, factory or instance, "
                        f"got {make!r}")
    return m


class SqueezeExcitation(Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018), structured and named as torchvision.ops.SqueezeExcitation.

    Eq. (2)-(4): s = scale_activation(fc2(activation(fc1(avgpool(x))))),  y = x * s
    with fc1 a 1x1 Conv2d C -> squeeze_channels and fc2 a 1x1 Conv2d back to C, both with bias. Children
    ``avgpool, fc1, fc2, activation, scale_activation`` in torchvision's order (parameters ``fc1.weight`` ...).
    The activations are lwnn Module classes (ReLU, Hardsigmoid, ...), factories or instances; MobileNetV3
    uses ``activation=ReLU, scale_activation=Hardsigmoid``. Input (N, C, H, W) or unbatched (C, H, W).
    """

    def __init__(self, channels: int, squeeze_channels: int, activation=ReLU, scale_activation=Sigmoid,
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        rng = init.default_rng(rng)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(channels, squeeze_channels, 1, rng=rng, dtype=dtype)
        self.fc2 = Conv2d(squeeze_channels, channels, 1, rng=rng, dtype=dtype)
        self.activation = _activation("activation", activation)
        self.scale_activation = _activation("scale_activation", scale_activation)
        self.channels, self.squeeze_channels = int(channels), int(squeeze_channels)

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_array("SqueezeExcitation", x)
        if x.ndim not in (3, 4) or x.shape[-3] != self.channels:
            raise ValueError(f"SqueezeExcitation({self.channels}, {self.squeeze_channels}) expects input "
                             f"(N, {self.channels}, H, W) or ({self.channels}, H, W), got shape {x.shape}")
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))  # (N, C, 1, 1)
        self._save(x=x, s=s)
        return gate_multiply_forward(x, s)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if grad_output.shape != c["x"].shape:
            raise ValueError(f"SqueezeExcitation.backward: grad_output shape {grad_output.shape} "
                             f"!= output shape {c['x'].shape}")
        dx, ds = gate_multiply_backward(grad_output, c["x"], c["s"])
        for layer in (self.scale_activation, self.fc2, self.activation, self.fc1, self.avgpool):
            ds = layer.backward(ds)
        return dx + ds  # identity path + gate path

    def extra_repr(self) -> str:
        return f"{self.channels}, {self.squeeze_channels}"


def _add_branches(container: Module, branches) -> None:
    """Register ``branches`` as children "0", "1", ...; each must be an lwnn Module."""
    name = type(container).__name__
    if not branches:
        raise ValueError(f"{name} needs at least one branch")
    for i, b in enumerate(branches):
        if not isinstance(b, Module):
            raise TypeError(f"{name} branch {i} is a {type(b).__name__}, not an lwnn Module")
        setattr(container, str(i), b)


def _check_concat(name: str, ys: list[np.ndarray]) -> None:
    """Branch outputs must agree on every axis but the channel axis 1."""
    ref = ys[0]
    for i, y in enumerate(ys):
        if y.ndim < 2 or y.ndim != ref.ndim or y.shape[:1] + y.shape[2:] != ref.shape[:1] + ref.shape[2:]:
            shapes = ", ".join(f"branch {j}: {tuple(z.shape)}" for j, z in enumerate(ys))
            raise ValueError(f"{name} branch outputs cannot be concatenated on channels "
                             f"(all axes but 1 must match): {shapes}")
        if y.dtype != ref.dtype:
            raise TypeError(f"{name} branch {i} returns {y.dtype}, branch 0 returns {ref.dtype}")


def _split_channels(name: str, a: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    if a.ndim < 2 or a.shape[1] != sum(sizes):
        raise ValueError(f"{name}: array of shape {a.shape} does not have the {sum(sizes)} channels {sizes} expected")
    return np.split(a, np.cumsum(sizes)[:-1], axis=1)
