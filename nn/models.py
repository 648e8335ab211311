"""The model zoo: plain compositions of engine layers and containers, built by name.

``build(name, **kwargs)`` returns the model with ``model.arch = {"name": name, "kwargs": kwargs}``, which a
checkpoint stores to rebuild it. ``rng`` (a Generator or a seed) and ``dtype`` are accepted by every builder
but are not part of the architecture, so they are left out of ``arch["kwargs"]`` (a checkpoint restores the
dtype from its layout and the weights from its arrays). Every model is made only of ``Sequential``,
``Residual`` and leaf layers, so a pruning tool can walk it; names follow torch's dotted convention.

| name | input | structure | params (defaults) |
|---|---|---|---|
| ``lenet_300_100`` | (N, 1, 28, 28) | Flatten, 784-300-100-10 with ReLU (LeCun et al. 1998; Han et al. 2015) | 266,610 |
| ``lenet5`` | (N, 1, 28, 28) | Caffe LeNet used by Han et al. 2015: conv 20@5x5, maxpool 2, conv 50@5x5, maxpool 2, fc 500, ReLU, fc 10 (no activation after the convs, as in Caffe's ``lenet_train_test.prototxt``) | 431,080 |
| ``vgg_small`` | (N, 3, 32, 32) | [conv3x3-BN-ReLU] 32-32-M-64-64-M-128-128-M (M = maxpool 2), Flatten, Linear(128 * (S/8)^2, 10); convs have no bias (BN follows) | 307,946 |
| ``resnet20`` (32/44/56/110) | (N, 3, 32, 32) | He et al. 2016 CIFAR ResNet: conv3x3 16-BN-ReLU, 3 stages of n basic blocks at 16/32/64 channels (stride 2 at stages 2 and 3), global average pool, Linear(64, 10); depth = 6n + 2 | 269,722 (option A) |

ResNet shortcut options (He et al. 2016, Sec. 4.2): ``shortcut="A"`` (default, the paper's CIFAR choice)
downsamples by taking every second pixel and zero-pads the new channels (``ShortcutA``, no parameters);
``shortcut="B"`` uses a 1x1 strided conv + BN projection where the shape changes (272,474 params for
ResNet-20). Identity shortcuts elsewhere in both.
"""
from __future__ import annotations

import numpy as np

from nn import init
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Residual, Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm2d
from nn.pooling import AdaptiveAvgPool2d, MaxPool2d


def _conv_out(n: int, k: int, stride: int = 1, pad: int = 0) -> int:
    return (n + 2 * pad - k) // stride + 1


def _check_size(name: str, image_size: int, minimum: int) -> None:
    if not isinstance(image_size, (int, np.integer)) or image_size < minimum:
        raise ValueError(f"{name}: image_size must be an int >= {minimum}, got {image_size!r}")


def _he_init_convs(model: Module, rng: np.random.Generator) -> Module:
    """He et al. 2015 normal init (std = sqrt(2 / fan_out)) for every conv weight, in place."""
    for m in model.modules():
        if isinstance(m, Conv2d):
            m.weight[...] = init.kaiming_normal(rng, m.weight.shape, mode="fan_out", dtype=m.weight.dtype)
    return model


# ---------------------------------------------------------------------------------------------- LeNets
def lenet_300_100(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                  rng=None, dtype=np.float32) -> Sequential:
    """784-300-100-10 MLP with ReLU on a flattened (N, in_channels, S, S) image."""
    _check_size("lenet_300_100", image_size, 1)
    rng = init.default_rng(rng)
    d = in_channels * image_size * image_size
    return Sequential(
        Flatten(),  # (N, C, H, W) -> (N, C*H*W)
        Linear(d, 300, rng=rng, dtype=dtype), ReLU(),
        Linear(300, 100, rng=rng, dtype=dtype), ReLU(),
        Linear(100, num_classes, rng=rng, dtype=dtype),
    )


def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, rng=None, dtype=np.float32) -> Sequential:
    """Caffe LeNet-5 (Han et al. 2015's "LeNet-5", 431K parameters at 28x28)."""
    _check_size("lenet5", image_size, 16)
    rng = init.default_rng(rng)
    s = _conv_out(_conv_out(image_size, 5) // 2, 5) // 2  # 28 -> 24 -> 12 -> 8 -> 4
    return Sequential(
        Conv2d(in_channels, 20, 5, rng=rng, dtype=dtype), MaxPool2d(2),
        Conv2d(20, 50, 5, rng=rng, dtype=dtype), MaxPool2d(2),
        Flatten(),  # (N, 50, s, s) -> (N, 50*s*s)
        Linear(50 * s * s, 500, rng=rng, dtype=dtype), ReLU(),
        Linear(500, num_classes, rng=rng, dtype=dtype),
    )


# ---------------------------------------------------------------------------------------------- VGG
VGG_SMALL_CFG = (32, 32, "M", 64, 64, "M", 128, 128, "M")


def vgg_small(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, rng=None,
              dtype=np.float32) -> Sequential:
    """Small VGG-style CIFAR net: conv3x3(pad 1, no bias)-BN-ReLU blocks per ``VGG_SMALL_CFG``, then one Linear."""
    _check_size("vgg_small", image_size, 8)
    rng = init.default_rng(rng)
    layers: list[Module] = []
    c, s = in_channels, image_size
    for v in VGG_SMALL_CFG:
        if v == "M":
            layers.append(MaxPool2d(2))
            s //= 2
        else:
            layers += [Conv2d(c, v, 3, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(v, dtype=dtype),
                       ReLU()]
            c = v
    layers += [Flatten(), Linear(c * s * s, num_classes, rng=rng, dtype=dtype)]  # (N, C, s, s) -> (N, C*s*s)
    return _he_init_convs(Sequential(*layers), rng)


# ---------------------------------------------------------------------------------------------- ResNet (CIFAR)
class ShortcutA(Module):
    """He et al. 2016 option A shortcut: x[:, :, ::stride, ::stride] with zero channels padded on both sides.

    (N, Ci, H, W) -> (N, Co, ceil(H/stride), ceil(W/stride)); the (Co - Ci) new channels are split as
    (Co - Ci) // 2 before and the rest after, as in the common CIFAR ResNet code. No parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        if out_channels < in_channels or stride < 1:
            raise ValueError(f"ShortcutA needs out_channels >= in_channels and stride >= 1, got "
                             f"{in_channels} -> {out_channels}, stride {stride}")
        self.in_channels, self.stride = int(in_channels), int(stride)
        extra = int(out_channels) - self.in_channels
        self.pad = (extra // 2, extra - extra // 2)

    @property
    def out_channels(self) -> int:  # derived, so channel surgery only has to edit in_channels and pad
        return self.in_channels + self.pad[0] + self.pad[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (4,), "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ShortcutA expects {self.in_channels} channels, got input shape {x.shape}")
        s = self.stride
        xs = x[:, :, ::s, ::s]  # (N, Ci, Ho, Wo)
        self._save(shape=x.shape)
        return np.pad(xs, ((0, 0), self.pad, (0, 0), (0, 0)))  # (N, Co, Ho, Wo)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = self._take()["shape"]
        s, lo = self.stride, self.pad[0]
        dx = np.zeros(shape, grad_output.dtype)
        dx[:, :, ::s, ::s] = grad_output[:, lo:lo + self.in_channels]
        return dx

    def macs(self, in_shape, out_shape) -> int:
        return 0

    def flops(self, in_shape, out_shape) -> int:
        return 0

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def basic_block(c_in: int, c_out: int, stride: int, shortcut: str, rng, dtype) -> Sequential:
    """relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)) as Sequential(Residual(body, shortcut), ReLU)."""
    body = Sequential(
        Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(c_out, dtype=dtype),
        ReLU(),
        Conv2d(c_out, c_out, 3, padding=1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(c_out, dtype=dtype),
    )
    short = None
    if stride != 1 or c_in != c_out:
        if shortcut == "A":
            short = ShortcutA(c_in, c_out, stride)
        else:
            short = Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
                               BatchNorm2d(c_out, dtype=dtype))
    return Sequential(Residual(body, short), ReLU())


def resnet_cifar(depth: int = 20, in_channels: int = 3, num_classes: int = 10, shortcut: str = "A", rng=None,
                 dtype=np.float32) -> Sequential:
    """CIFAR ResNet of depth 6n + 2 (He et al. 2016, Sec. 4.2)."""
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"resnet_cifar: depth must be 6n + 2 with n >= 1, got {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet_cifar: shortcut must be 'A' or 'B', got {shortcut!r}")
    rng = init.default_rng(rng)
    n = (depth - 2) // 6
    layers: list[Module] = [Conv2d(in_channels, 16, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                            BatchNorm2d(16, dtype=dtype), ReLU()]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        blocks = []
        for i in range(n):
            blocks.append(basic_block(c, width, 2 if (stage > 0 and i == 0) else 1, shortcut, rng, dtype))
            c = width
        layers.append(Sequential(*blocks))
    layers += [AdaptiveAvgPool2d(1), Flatten(), Linear(64, num_classes, rng=rng, dtype=dtype)]  # (N, 64, 1, 1) -> (N, 64)
    return _he_init_convs(Sequential(*layers), rng)


def _resnet(depth: int):
    def builder(in_channels: int = 3, num_classes: int = 10, shortcut: str = "A", rng=None, dtype=np.float32):
        return resnet_cifar(depth, in_channels, num_classes, shortcut, rng, dtype)
    builder.__name__ = f"resnet{depth}"
    builder.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016); see ``resnet_cifar``."
    return builder


# ---------------------------------------------------------------------------------------------- registry
BUILDERS = {
    "lenet_300_100": lenet_300_100,
    "lenet5": lenet5,
    "vgg_small": vgg_small,
    **{f"resnet{d}": _resnet(d) for d in (20, 32, 44, 56, 110)},
}
NAMES = tuple(BUILDERS)
_NOT_ARCH = ("rng", "dtype")


def build(name: str, **kwargs) -> Module:
    """Build model ``name`` with ``kwargs`` (in_channels, num_classes, image_size, shortcut, rng, dtype).

    Sets ``model.arch = {"name": name, "kwargs": <kwargs without rng and dtype>}``.
    """
    if name not in BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(NAMES)}")
    model = BUILDERS[name](**kwargs)
    model.arch = {"name": name, "kwargs": {k: v for k, v in kwargs.items() if k not in _NOT_ARCH}}
    return model
