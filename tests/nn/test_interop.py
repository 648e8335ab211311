"""from_torch / to_torch: every supported type, buffers, modes, dtypes, nesting and round trips."""
from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn.activations import ReLU
from nn.containers import Residual, Sequential
from nn.interop import from_torch, to_torch, torch_twins
from nn.module import Module
from tests.helpers import assert_close
from tests.nn.test_containers import fire, resnet_block, shuffle_unit


def _torch_layers(torch):
    tnn = torch.nn
    return [tnn.Linear(4, 3), tnn.Linear(4, 3, bias=False), tnn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=1,
                                                                       groups=2, bias=False),
            tnn.Conv2d(4, 4, 3, padding="same"), tnn.BatchNorm1d(4, eps=1e-3, momentum=None),
            tnn.BatchNorm2d(4, affine=False), tnn.BatchNorm2d(4, track_running_stats=False), tnn.ReLU(),
            tnn.ReLU6(), tnn.LeakyReLU(0.3), tnn.Sigmoid(), tnn.Tanh(), tnn.Hardswish(), tnn.Hardsigmoid(),
            tnn.Softmax(dim=1), tnn.MaxPool2d(3, 2, 1, ceil_mode=True), tnn.AvgPool2d(2, 1, 1, True, False, 3),
            tnn.AdaptiveAvgPool2d((2, None)), tnn.Flatten(0, 2), tnn.Dropout(0.2), tnn.Identity(),
            tnn.ChannelShuffle(2)]


def _options(t) -> str:
    """torch's repr of the constructor options, with (k, k) written as k (lwnn stores pairs)."""
    return re.sub(r"\((\d+), \1\)", r"\1", t.extra_repr())


def _same_state(m: Module, t, dtype) -> None:
    tp = dict(t.named_parameters())
    assert [n for n, _ in m.named_parameters()] == list(tp), "parameter names/order differ"
    for name, p in m.named_parameters():
        assert p.dtype == dtype, f"{name} is {p.dtype}"
        np.testing.assert_array_equal(p, tp[name].detach().numpy(), err_msg=name)
    tb = dict(t.named_buffers())
    assert [n for n, _ in m.named_buffers()] == list(tb), "buffer names/order differ"
    for name, b in m.named_buffers():
        np.testing.assert_array_equal(b, tb[name].numpy(), err_msg=name)
        assert b.dtype == tb[name].numpy().dtype, name
    for (_, mm), (_, tm) in zip(m.named_modules(), t.named_modules()):
        assert mm.training == tm.training, f"{type(mm).__name__} training flag"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_layer_converts_both_ways(dtype, torch):
    for t in _torch_layers(torch):
        t.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
        for b in t.buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
        t.eval()
        m = from_torch(t)
        _same_state(m, t, dtype)
        back = to_torch(m)
        assert type(back) is type(t)
        assert _options(back) == _options(t), (back.extra_repr(), t.extra_repr())
        _same_state(m, back, dtype)


def test_copies_are_independent(torch):
    t = torch.nn.Linear(3, 2)
    m = from_torch(t)
    m.weight += 1
    assert not np.allclose(m.weight, t.weight.detach().numpy())
    back = to_torch(m)
    m.weight += 1
    assert not np.allclose(m.weight, back.weight.detach().numpy())


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nested_model_round_trips(train, dtype, rng, torch):
    m = Sequential(resnet_block(4, 4, 1, rng, dtype), resnet_block(4, 6, 2, rng, dtype), fire(6, 2, 2, rng, dtype),
                   shuffle_unit(4, rng, dtype), Residual(ReLU()))
    for _, b in m.named_buffers():
        if b.dtype.kind == "f":
            b[...] = rng.uniform(0.5, 1.5, b.shape)
    m.train(train)
    x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
    t = to_torch(m)
    _same_state(m, t, dtype)
    twin = from_torch(to_torch(m))
    _same_state(twin, t, dtype)
    t2 = to_torch(from_torch(t))
    _same_state(from_torch(t2), t, dtype)
    with torch.no_grad():
        want = t(torch.tensor(x)).numpy()
        want2 = t2(torch.tensor(x)).numpy()
    assert_close("lwnn vs torch", m(x), want, dtype)
    assert_close("from_torch(to_torch(m))", twin(x), want, dtype)
    assert_close("to_torch(from_torch(t))", want2, want, dtype)


def test_sequential_keeps_torch_child_names(torch):
    from collections import OrderedDict

    t = torch.nn.Sequential(OrderedDict(conv1=torch.nn.Conv2d(1, 2, 3), act=torch.nn.ReLU(),
                                        head=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))))
    m = from_torch(t)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(to_torch(m).state_dict()) == list(t.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        assert_close("named Sequential", m(x), t(torch.tensor(x)).numpy(), np.float32)


def test_unknown_types_raise_typeerror_naming_the_type(torch):
    with pytest.raises(TypeError, match="torch.nn.modules.conv.Conv3d"):
        from_torch(torch.nn.Sequential(torch.nn.Conv3d(2, 2, 3)))

    class Custom(Module):
        pass

    with pytest.raises(TypeError, match="Custom"):
        to_torch(Sequential(Custom()))


def test_unsupported_options_are_named(torch):
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        from_torch(torch.nn.Conv2d(2, 2, 3, padding_mode="reflect"))
    with pytest.raises(ValueError, match="return_indices"):
        from_torch(torch.nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(TypeError, match="float16"):
        from_torch(torch.nn.Linear(2, 2).half())


def test_twins_are_picklable_and_importable(torch):
    from nn.interop import TorchChannelSplit, TorchConcat, TorchResidual

    assert torch_twins()["TorchResidual"] is TorchResidual
    t = TorchResidual(TorchConcat(torch.nn.Identity(), TorchChannelSplit([1, 1], torch.nn.ReLU(), torch.nn.Tanh())),
                      torch.nn.Conv2d(2, 4, 1))
    t2 = pickle.loads(pickle.dumps(t))
    x = torch.randn(1, 2, 3, 3)
    assert torch.equal(t(x), t2(x))


def test_importing_lwnn_layers_does_not_import_torch():
    code = ("import sys, nn.interop, nn.conv, nn.norm, nn.pooling, nn.containers, nn.activations, nn.basic; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_option_a_resnet_round_trip(torch, rng):
    """ResNet-20 with option-A (parameter-free, zero-padding) shortcuts: to_torch and back, train and eval."""
    import numpy as np

    from nn.interop import from_torch, to_torch
    from nn.models import build
    from tests.helpers import assert_close

    model = build("resnet20", rng=np.random.default_rng(0), dtype=np.float64)
    x = rng.standard_normal((2, 3, 16, 16))
    for train in (False, True):
        model.train(train)
        twin = to_torch(model)
        twin.train(train)
        assert_close(f"forward (train={train})", model(x), twin(torch.tensor(x)).detach().numpy())
    back = from_torch(twin)
    back.eval()
    model.eval()
    assert_close("round trip", back(x), model(x))
