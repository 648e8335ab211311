"""Model zoo: hand-worked parameter counts, forward/backward against a torch twin, build/arch bookkeeping."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nn import models
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Residual, Sequential
from nn.conv import Conv2d
from nn.interop import to_torch
from nn.linear import Linear
from nn.models import ShortcutA, build
from nn.norm import BatchNorm2d
from nn.pooling import AdaptiveAvgPool2d, MaxPool2d
from tests.helpers import check_module_against_torch, gradcheck_module, torch_dtype


# ---------------------------------------------------------------------------------------------- torch twin
def twin(torch, m):
    """nn.interop.to_torch, or a hand-built twin where the model holds ShortcutA (interop has no twin for it)."""
    if any(isinstance(x, ShortcutA) for x in m.modules()):
        return hand_twin(torch, m)
    return to_torch(m)


def hand_twin(torch, m):
    """A torch module with the same structure, parameter names and values as the lwnn model ``m``."""
    tnn = torch.nn

    class TResidual(tnn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class TShortcutA(tnn.Module):
        def __init__(self, pad, stride):
            super().__init__()
            self.pad, self.stride = pad, stride

        def forward(self, x):
            s = self.stride
            return tnn.functional.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, *self.pad))

    def conv(c):
        return tnn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                          c.groups, c.bias is not None)

    def convert(m):
        if isinstance(m, Sequential):
            return tnn.Sequential(*[convert(c) for c in m])
        if isinstance(m, Residual):
            return TResidual(convert(m.body), None if m.shortcut is None else convert(m.shortcut))
        table = {Linear: lambda m: tnn.Linear(m.in_features, m.out_features, m.bias is not None),
                 Conv2d: conv, BatchNorm2d: lambda m: tnn.BatchNorm2d(m.num_features, m.eps, m.momentum),
                 ReLU: lambda m: tnn.ReLU(), Flatten: lambda m: tnn.Flatten(),
                 MaxPool2d: lambda m: tnn.MaxPool2d(m.kernel_size, m.stride),
                 AdaptiveAvgPool2d: lambda m: tnn.AdaptiveAvgPool2d(m.output_size),
                 ShortcutA: lambda m: TShortcutA(m.pad, m.stride)}
        return table[type(m)](m)

    t = convert(m).to(torch_dtype(m.dtype))
    state = {k: torch.tensor(v) for k, v in m.state_dict().items()}
    missing = t.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and set(missing.missing_keys) <= {
        k for k in t.state_dict() if k.endswith("num_batches_tracked")}
    return t


# ---------------------------------------------------------------------------------------------- counts
def test_param_counts_by_hand():
    # LeNet-300-100: (784*300 + 300) + (300*100 + 100) + (100*10 + 10) = 235,500 + 30,100 + 1,010
    assert build("lenet_300_100").num_parameters() == 266_610
    # LeNet-5 (Caffe): conv1 20*1*5*5 + 20 = 520; conv2 50*20*5*5 + 50 = 25,050;
    # 28 -> 24 -> pool 12 -> 8 -> pool 4: fc1 (50*4*4)*500 + 500 = 400,500; fc2 500*10 + 10 = 5,010
    assert build("lenet5").num_parameters() == 520 + 25_050 + 400_500 + 5_010 == 431_080
    # ResNet-20 option A: stem conv 3*16*9 = 432 + BN 32;
    # stage 1: 6 convs 16*16*9 = 2,304 each + 6 BN of 32 -> 14,016
    # stage 2: 32*16*9 = 4,608 + 5 * 32*32*9 = 9,216 -> 50,688 + 6 BN of 64 -> 51,072
    # stage 3: 64*32*9 = 18,432 + 5 * 64*64*9 = 36,864 -> 202,752 + 6 BN of 128 -> 203,520
    # fc 64*10 + 10 = 650
    assert build("resnet20").num_parameters() == 432 + 32 + 14_016 + 51_072 + 203_520 + 650 == 269_722
    # option B adds two 1x1 projections with BN: 16*32 + 64 and 32*64 + 128
    assert build("resnet20", shortcut="B").num_parameters() == 269_722 + 576 + 2_176
    # vgg_small: convs 3*32*9 + 32*32*9 + 32*64*9 + 64*64*9 + 64*128*9 + 128*128*9 = 286,560;
    # BN 2*(32+32+64+64+128+128) = 896; fc (128*4*4)*10 + 10 = 20,490
    assert build("vgg_small").num_parameters() == 286_560 + 896 + 20_490
    # ResNet-56: stages hold 9 blocks; known figure 0.85M
    assert build("resnet56").num_parameters() == 853_018


def test_kwargs_change_input_and_classes():
    # 3x32x32 LeNet-5: 32 -> 28 -> 14 -> 10 -> 5: conv1 20*3*25 + 20, fc1 (50*25)*500 + 500, fc2 500*100 + 100
    m = build("lenet5", in_channels=3, image_size=32, num_classes=100)
    assert m.num_parameters() == 1_520 + 25_050 + 625_500 + 50_100
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert m(x).shape == (2, 100)
    m = build("lenet_300_100", in_channels=3, image_size=32)
    assert m(x).shape == (2, 10)
    m = build("resnet20", in_channels=1, num_classes=7)
    assert m(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 7)


def test_build_records_arch_and_is_deterministic():
    m = build("resnet20", num_classes=5, rng=np.random.default_rng(3), dtype=np.float64)
    assert m.arch == {"name": "resnet20", "kwargs": {"num_classes": 5}}
    json.dumps(m.arch)
    assert m.dtype == np.float64
    a, b = build("vgg_small", rng=7).state_dict(), build("vgg_small", rng=7).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], build("vgg_small", rng=8).state_dict()["0.weight"])
    with pytest.raises(KeyError, match="available"):
        build("resnet21")
    with pytest.raises(ValueError, match="shortcut"):
        build("resnet20", shortcut="C")
    assert set(models.NAMES) >= {"lenet_300_100", "lenet5", "vgg_small", "resnet20"}


def test_shortcut_a_gradcheck(rng):
    m = ShortcutA(2, 5, stride=2)
    x = rng.standard_normal((2, 2, 5, 4))
    y = m(x)
    assert y.shape == (2, 5, 3, 2) and np.all(y[:, [0, 3, 4]] == 0)
    np.testing.assert_array_equal(y[:, 1:3], x[:, :, ::2, ::2])
    gradcheck_module(m, x, rng)


# ---------------------------------------------------------------------------------------------- vs torch
CASES = [("lenet_300_100", {}, (3, 1, 28, 28), True), ("lenet5", {}, (2, 1, 28, 28), True),
         ("vgg_small", {}, (2, 3, 16, 16), True), ("vgg_small", {}, (2, 3, 16, 16), False),
         ("resnet20", {}, (2, 3, 8, 8), True), ("resnet20", {}, (2, 3, 8, 8), False),
         ("resnet20", {"shortcut": "B"}, (2, 3, 8, 8), True)]


@pytest.mark.parametrize("name,kw,shape,train", CASES,
                         ids=[f"{c[0]}{c[1].get('shortcut', '')}-{'train' if c[3] else 'eval'}" for c in CASES])
def test_model_vs_torch_float64(torch, rng, name, kw, shape, train):
    if "image_size" not in kw and name == "vgg_small":
        kw = {**kw, "image_size": shape[-1]}
    m = build(name, rng=rng, dtype=np.float64, **kw)
    if not train:  # non-trivial running statistics so that eval mode is a real check
        for bn in (x for x in m.modules() if isinstance(x, BatchNorm2d)):
            bn.running_mean[...] = rng.standard_normal(bn.num_features) * 0.1
            bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
    t = twin(torch, m)
    check_module_against_torch(m, t, rng.standard_normal(shape), rng, train=train)
    if train:  # running statistics were updated the same way
        for k, v in t.state_dict().items():
            if "running" in k:
                np.testing.assert_allclose(m.state_dict()[k], v.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_hand_twin_equals_interop(torch, rng):
    m = build("resnet20", shortcut="B", rng=rng, dtype=np.float64)
    x = torch.tensor(rng.standard_normal((1, 3, 8, 8)))
    a, b = hand_twin(torch, m).eval(), to_torch(m).eval()
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())


def test_resnet20_vs_torch_float32(torch, rng):
    m = build("resnet20", rng=rng)
    check_module_against_torch(m, twin(torch, m), rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
                               rng, scale=10.0)  # scale: 20 layers of float32 sums
