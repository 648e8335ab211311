"""Residual, Concat, ChannelSplit, ChannelShuffle (and nesting in Sequential) against torch twins."""
from __future__ import annotations

import numpy as np
import pytest

from nn.activations import ReLU
from nn.basic import Identity
from nn.containers import ChannelShuffle, ChannelSplit, Concat, Residual, Sequential
from nn.conv import Conv2d
from nn.interop import to_torch
from nn.module import Module
from nn.norm import BatchNorm2d
from tests.helpers import check_module_against_torch, gradcheck_module
from tests.nn.test_layers import one_thread  # noqa: F401 (fixture)

DTYPES = [np.float64, np.float32]


def resnet_block(c_in, c_out, stride, rng, dtype):
    """ResNet basic block: conv-BN-ReLU-conv-BN plus a 1x1 conv-BN projection when the shape changes."""
    body = Sequential(Conv2d(c_in, c_out, 3, stride, 1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(c_out, dtype=dtype),
                      ReLU(), Conv2d(c_out, c_out, 3, 1, 1, bias=False, rng=rng, dtype=dtype),
                      BatchNorm2d(c_out, dtype=dtype))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = Sequential(Conv2d(c_in, c_out, 1, stride, bias=False, rng=rng, dtype=dtype),
                              BatchNorm2d(c_out, dtype=dtype))
    return Sequential(Residual(body, shortcut), ReLU())


def fire(c_in, squeeze, expand, rng, dtype):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expand branches concatenated."""
    return Sequential(Conv2d(c_in, squeeze, 1, rng=rng, dtype=dtype), ReLU(),
                      Concat(Sequential(Conv2d(squeeze, expand, 1, rng=rng, dtype=dtype), ReLU()),
                             Sequential(Conv2d(squeeze, expand, 3, padding=1, rng=rng, dtype=dtype), ReLU())))


def shuffle_unit(c, rng, dtype):
    """ShuffleNetV2 basic unit: split channels, identity | 1x1-dw3x3-1x1 branch, concatenate, shuffle."""
    h = c // 2
    branch = Sequential(Conv2d(h, h, 1, bias=False, rng=rng, dtype=dtype), BatchNorm2d(h, dtype=dtype), ReLU(),
                        Conv2d(h, h, 3, padding=1, groups=h, bias=False, rng=rng, dtype=dtype),
                        BatchNorm2d(h, dtype=dtype), Conv2d(h, h, 1, bias=False, rng=rng, dtype=dtype),
                        BatchNorm2d(h, dtype=dtype), ReLU())
    return Sequential(ChannelSplit([h, h], Identity(), branch), ChannelShuffle(2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", ["resnet-identity", "resnet-projection", "fire", "shuffle"])
def test_blocks_match_torch(name, train, dtype, rng, torch):
    make = {"resnet-identity": lambda: resnet_block(4, 4, 1, rng, dtype),
            "resnet-projection": lambda: resnet_block(3, 4, 2, rng, dtype),
            "fire": lambda: fire(4, 2, 3, rng, dtype),
            "shuffle": lambda: shuffle_unit(4, rng, dtype)}[name]
    m = make()
    for _, b in m.named_buffers():
        if b.dtype.kind == "f":
            b[...] = rng.uniform(0.5, 1.5, b.shape)  # non-trivial running statistics for eval mode
    x = rng.standard_normal((2, m[0].in_channels if name == "fire" else 4 if name != "resnet-projection" else 3,
                             5, 6)).astype(dtype)
    check_module_against_torch(m, to_torch(m), x, rng, train=train)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups, shape", [(2, (2, 6, 3, 4)), (3, (1, 6, 2, 2)), (1, (2, 3, 2, 2)), (2, (2, 4, 5))])
def test_channel_shuffle_matches_torch(groups, shape, dtype, rng, torch):
    m = ChannelShuffle(groups)
    check_module_against_torch(m, to_torch(m), rng.standard_normal(shape).astype(dtype), rng)


def test_channel_split_with_three_uneven_sections(rng, torch):
    m = ChannelSplit([1, 3, 2], ReLU(), Conv2d(3, 2, 3, padding=1, rng=rng, dtype=np.float64), Identity())
    check_module_against_torch(m, to_torch(m), rng.standard_normal((2, 6, 4, 3)), rng)


@pytest.mark.usefixtures("one_thread")
def test_residual_and_shuffle_finite_differences(rng):
    gradcheck_module(Residual(Conv2d(2, 2, 1, rng=rng, dtype=np.float64)), rng.standard_normal((1, 2, 3, 3)), rng)
    gradcheck_module(ChannelShuffle(3), rng.standard_normal((1, 6, 2, 1)), rng)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["resnet-projection", "fire", "shuffle"])
def test_blocks_finite_differences(name, rng):
    m = {"resnet-projection": lambda: resnet_block(2, 2, 2, rng, np.float64),
         "fire": lambda: fire(2, 2, 1, rng, np.float64),
         "shuffle": lambda: shuffle_unit(2, rng, np.float64)}[name]()
    m.eval()  # eval: BN is a fixed affine map, so repeated forwards do not move the running statistics
    gradcheck_module(m, rng.standard_normal((1, 2, 3, 3)), rng)


def test_children_are_named_like_torch():
    m = Sequential(Residual(Conv2d(2, 2, 1), Conv2d(2, 2, 1)), Concat(Identity(), Conv2d(2, 1, 1)),
                   ChannelSplit([1, 2], Identity(), Conv2d(2, 2, 1)))
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.body.weight", "0.body.bias", "0.shortcut.weight", "0.shortcut.bias",
                     "1.1.weight", "1.1.bias", "2.1.weight", "2.1.bias"]
    assert [n for n, _ in Residual(Identity()).named_children()] == ["body"]


class _ToFloat64(Module):
    def forward(self, x):
        return x.astype(np.float64)


def test_container_errors():
    with pytest.raises(ValueError, match="Residual branch shapes differ"):
        Residual(Conv2d(2, 3, 1, dtype=np.float64))(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="cannot be concatenated"):
        Concat(Identity(), Conv2d(2, 2, 3, dtype=np.float64))(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="sum to 4 channels, input has 3"):
        ChannelSplit([2, 2], Identity(), Identity())(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="one branch per section"):
        ChannelSplit([2, 2], Identity())
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        ChannelShuffle(2)(np.zeros((1, 3, 2, 2)))
    with pytest.raises(TypeError, match="not an lwnn Module"):
        Concat(Identity(), "relu")
    with pytest.raises(TypeError, match="Residual body is a NoneType"):
        Residual(None)
    with pytest.raises(TypeError, match="Residual branch dtypes differ"):
        Residual(_ToFloat64())(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="ndarray"):
        Residual(Identity())([1.0, 2.0])
    for m in (Residual(Identity()), Concat(Identity()), ChannelShuffle(2)):
        with pytest.raises(RuntimeError, match="without a fresh forward"):
            m.backward(np.zeros((1, 2, 2, 2)))
