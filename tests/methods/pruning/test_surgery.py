"""Structural surgery: the shrunk model computes what the masked model computes, on every coupling we support.

The masked model (``zero_channels``) keeps the shapes and zeroes each removed channel's filter, bias and
BatchNorm weight and bias, so the channel is exactly 0 wherever it is consumed; the shrunk model (``prune_plan``)
drops it. Their outputs must agree to float64 tolerance (the dropped terms are exact zeros; only the GEMM
summation order changes), with fewer parameters and MACs. BatchNorm statistics and affine parameters are
randomised so that a wrong slice cannot hide behind identity BatchNorms.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from methods.pruning.surgery import (
    channel_groups,
    layer_macs,
    prunable_layers,
    prune_channels,
    prune_plan,
    zero_channels,
)
from nn.activations import ReLU, ReLU6, Softmax
from nn.basic import Flatten, Identity
from nn.containers import ChannelShuffle, ChannelSplit, Concat, Residual, Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm2d
from nn.pooling import AdaptiveAvgPool2d, MaxPool2d
from nn.profile import profile, totals
from tests.helpers import assert_close

F64 = np.float64


def conv(ci, co, k=3, s=1, p=1, g=1, seed=0, bias=False):
    return Conv2d(ci, co, k, stride=s, padding=p, groups=g, bias=bias, rng=seed, dtype=F64)


def cbr(ci, co, k=3, s=1, g=1, seed=0, act=ReLU):
    return [conv(ci, co, k, s, k // 2, g, seed), BatchNorm2d(co, dtype=F64), act()]


def randomize_bn(model: Module, rng: np.random.Generator) -> Module:
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            c = m.num_features
            m.weight[...] = rng.uniform(0.5, 1.5, c)
            m.bias[...] = rng.normal(0, 0.3, c)
            m.running_mean = rng.normal(0, 0.3, c)
            m.running_var = rng.uniform(0.5, 2.0, c)
    return model.eval()


def lenet5():
    return Sequential(Conv2d(1, 6, 5, padding=2, rng=1, dtype=F64), ReLU(), MaxPool2d(2),
                      Conv2d(6, 16, 5, rng=2, dtype=F64), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(400, 120, rng=3, dtype=F64), ReLU(), Linear(120, 84, rng=4, dtype=F64), ReLU(),
                      Linear(84, 10, rng=5, dtype=F64))


def vgg():
    return Sequential(*cbr(1, 8, seed=1), *cbr(8, 8, seed=2), MaxPool2d(2), *cbr(8, 16, seed=3), MaxPool2d(2),
                      *cbr(16, 16, seed=4), AdaptiveAvgPool2d(1), Flatten(), Linear(16, 10, rng=5, dtype=F64))


def resnet():
    """Stem, an identity-shortcut block, a projection-shortcut block (stride 2), head."""
    b1 = Residual(Sequential(*cbr(8, 8, seed=2), conv(8, 8, seed=3), BatchNorm2d(8, dtype=F64)))
    b2 = Residual(Sequential(*cbr(8, 16, s=2, seed=4), conv(16, 16, seed=5), BatchNorm2d(16, dtype=F64)),
                  Sequential(conv(8, 16, 1, 2, 0, seed=6), BatchNorm2d(16, dtype=F64)))
    return Sequential(*cbr(1, 8, seed=1), b1, ReLU(), b2, ReLU(), AdaptiveAvgPool2d(1), Flatten(),
                      Linear(16, 10, rng=7, dtype=F64))


def mobilenet_v2():
    """Stem, an inverted residual (1x1 expand, 3x3 depthwise, 1x1 project, identity add), head."""
    body = Sequential(*cbr(8, 24, 1, seed=2, act=ReLU6), *cbr(24, 24, 3, g=24, seed=3, act=ReLU6),
                      conv(24, 8, 1, p=0, seed=4), BatchNorm2d(8, dtype=F64))
    return Sequential(*cbr(1, 8, s=2, seed=1, act=ReLU6), Residual(body), *cbr(8, 16, 1, seed=5),
                      AdaptiveAvgPool2d(1), Flatten(), Linear(16, 10, rng=6, dtype=F64))


def shufflenet_v2():
    """Stem, a ShuffleNet-v2 basic unit (split, 1x1 / dw 3x3 / 1x1 branch, shuffle), a grouped conv, head."""
    branch = Sequential(*cbr(4, 4, 1, seed=2), conv(4, 4, 3, g=4, seed=3), BatchNorm2d(4, dtype=F64),
                        *cbr(4, 4, 1, seed=4))
    unit = Sequential(ChannelSplit([4, 4], Identity(), branch), ChannelShuffle(2))
    return Sequential(*cbr(1, 8, s=2, seed=1), unit, *cbr(8, 8, 3, g=2, seed=5), *cbr(8, 16, 1, seed=6),
                      AdaptiveAvgPool2d(1), Flatten(), Linear(16, 10, rng=7, dtype=F64))


def n_params(model):
    return sum(p.size for p in model.parameters())


def check_equivalent(model, plan, shape, rng, expect_shapes=None):
    """Shrunk vs masked outputs, parameter and MAC reduction; returns the shrunk model."""
    randomize_bn(model, rng)
    x = rng.standard_normal((3, *shape))
    masked = zero_channels(copy.deepcopy(model), plan, shape)
    shrunk = prune_plan(copy.deepcopy(model), plan, shape).eval()
    y_full, y_masked, y_shrunk = model(x), masked(x), shrunk(x)
    assert not np.allclose(y_full, y_masked), "the plan removed nothing that matters"
    assert_close("shrunk vs masked", y_shrunk, y_masked, F64)
    assert n_params(shrunk) < n_params(model)
    assert _macs(shrunk, shape) < _macs(model, shape)
    assert sum(layer_macs(shrunk, shape).values()) == _macs(shrunk, shape)
    for name, want in (expect_shapes or {}).items():
        got = shrunk.state_dict()[name].shape
        assert got == want, f"{name}: {got} != {want}"
    return shrunk


def _macs(model, shape):
    return totals(profile(model, (1, *shape), dtype=F64, latency=False))["macs"]


# ----------------------------------------------------------------------------------- equivalence


def test_lenet5_conv_flatten_linear(rng):
    plan = {"0": [0, 2, 3, 5], "3": np.arange(0, 16, 2), "7": np.arange(60)}
    shrunk = check_equivalent(lenet5(), plan, (1, 28, 28), rng, {
        "0.weight": (4, 1, 5, 5), "3.weight": (8, 4, 5, 5), "7.weight": (60, 200), "9.weight": (84, 60)})
    assert shrunk[3].in_channels == 4 and shrunk[7].in_features == 200


def test_lenet5_flatten_keeps_each_channels_hw_block(rng):
    model = lenet5()
    w = model[7].weight.copy()
    prune_channels(model, "3", [1, 4], (1, 28, 28))
    blocks = w.reshape(120, 16, 25)  # (O, C, H*W)
    assert_close("flatten columns", model[7].weight, blocks[:, [1, 4]].reshape(120, 50), F64)


def test_vgg_with_batchnorm(rng):
    plan = {"0": [1, 2, 5], "3": [0, 7], "7": np.arange(10), "11": [3, 4, 5, 6, 15]}
    shrunk = check_equivalent(vgg(), plan, (1, 16, 16), rng, {"1.running_mean": (3,), "4.weight": (2,),
                                                               "11.weight": (5, 10, 3, 3), "16.weight": (10, 5)})
    assert shrunk[1].num_features == 3


def test_resnet_internal_channels(rng):
    model = resnet()
    check_equivalent(model, {"3.body.0": [0, 3, 4], "5.body.0": np.arange(1, 16, 3)}, (1, 12, 12), rng,
                     {"3.body.0.weight": (3, 8, 3, 3), "3.body.3.weight": (8, 3, 3, 3)})


def test_resnet_stream_channels_pruned_together(rng):
    # Removing stem channel 2 removes channel 2 of every layer added into the first stage's stream.
    shrunk = check_equivalent(resnet(), {"0": [0, 1, 3, 4, 5, 6, 7]}, (1, 12, 12), rng, {
        "0.weight": (7, 1, 3, 3), "3.body.0.weight": (8, 7, 3, 3), "3.body.3.weight": (7, 8, 3, 3),
        "3.body.4.weight": (7,), "5.body.0.weight": (16, 7, 3, 3), "5.shortcut.0.weight": (16, 7, 1, 1)})
    assert shrunk[1].num_features == 7


def test_resnet_second_stage_stream_via_projection(rng):
    check_equivalent(resnet(), {"5.shortcut.0": np.arange(12)}, (1, 12, 12), rng, {
        "5.body.3.weight": (12, 16, 3, 3), "5.shortcut.1.weight": (12,), "9.weight": (10, 12)})


def test_resnet_channel_groups():
    groups = {g.layers[0]: g for g in channel_groups(resnet(), (1, 12, 12))}
    assert groups["0"].layers == ("0", "1", "3.body.3", "3.body.4")
    assert groups["0"].channels == 8 and groups["0"].fixed == 0
    assert groups["3.body.0"].layers == ("3.body.0", "3.body.1")
    assert set(groups["5.body.3"].layers) == {"5.body.3", "5.body.4", "5.shortcut.0", "5.shortcut.1"}
    assert groups["9"].fixed == 10
    assert prunable_layers(resnet(), (1, 12, 12)) == ["3.body.0", "5.body.0"]


def test_mobilenet_v2_depthwise_follows_expansion(rng):
    check_equivalent(mobilenet_v2(), {"3.body.0": np.arange(0, 24, 2)}, (1, 16, 16), rng, {
        "3.body.3.weight": (12, 1, 3, 3), "3.body.4.weight": (12,), "3.body.6.weight": (8, 12, 1, 1)})
    shrunk = prune_channels(mobilenet_v2(), "3.body.0", np.arange(0, 24, 2), (1, 16, 16))
    assert shrunk[3].body[3].groups == 12


def test_mobilenet_v2_stream(rng):
    check_equivalent(mobilenet_v2(), {"0": [0, 1, 2, 5, 6]}, (1, 16, 16), rng, {
        "3.body.6.weight": (5, 24, 1, 1), "3.body.0.weight": (24, 5, 1, 1), "4.weight": (16, 5, 1, 1)})


def test_shufflenet_v2_branch_internal(rng):
    shrunk = check_equivalent(shufflenet_v2(), {"3.0.1.0": [0, 3]}, (1, 16, 16), rng, {
        "3.0.1.3.weight": (2, 1, 3, 3), "3.0.1.5.weight": (4, 2, 1, 1)})
    assert shrunk[3][0].sections == [4, 4]


def test_shufflenet_v2_split_and_shuffle(rng):
    # Identity-half channels 1 and 3 and branch-output channels 1 and 3 sit at the same within-group positions
    # of the shuffle, so removing all four keeps it a shuffle (and removes 2 inputs from each group of the
    # grouped conv that follows); the split's sections follow.
    plan = {"0": [0, 2, 4, 5, 6, 7], "3.0.1.5": [0, 2]}
    shrunk = check_equivalent(shufflenet_v2(), plan, (1, 16, 16), rng, {"4.weight": (8, 2, 3, 3)})
    assert shrunk[3][0].sections == [2, 4]
    assert shrunk[4].groups == 2 and shrunk[4].in_channels == 4


def test_grouped_conv_equal_removal_per_group(rng):
    check_equivalent(shufflenet_v2(), {"4": [0, 2, 3, 5, 6, 7]}, (1, 16, 16), rng, {"4.weight": (6, 4, 3, 3)})


def fire():
    """SqueezeNet fire module: squeeze 1x1, then Concat of expand 1x1 and expand 3x3."""
    expand = Concat(Sequential(*cbr(4, 6, 1, seed=2)), Sequential(*cbr(4, 5, 3, seed=3)))
    return Sequential(*cbr(1, 4, 1, seed=1), expand, *cbr(11, 8, 3, seed=4), AdaptiveAvgPool2d(1), Flatten(),
                      Linear(8, 10, rng=5, dtype=F64))


def test_concat_channel_offsets(rng):
    model = fire()
    w = model[4].weight.copy()
    check_equivalent(model, {"3.1.0": [0, 4], "3.0.0": [1, 2, 5]}, (1, 10, 10), rng, {"4.weight": (8, 5, 3, 3)})
    shrunk = prune_plan(copy.deepcopy(model), {"3.1.0": [0, 4], "3.0.0": [1, 2, 5]}, (1, 10, 10))
    assert_close("concat columns", shrunk[4].weight, w[:, [1, 2, 5, 6, 10]], F64)


# ----------------------------------------------------------------------------------- the model zoo


def zoo(name, **kw):
    from nn.models import build
    return build(name, rng=0, dtype=F64, **kw)


def test_zoo_lenet5(rng):
    check_equivalent(zoo("lenet5"), {"0": np.arange(0, 20, 2), "2": np.arange(25), "5": np.arange(300)},
                     (1, 28, 28), rng, {"2.weight": (25, 10, 5, 5), "5.weight": (300, 400), "7.weight": (10, 300)})


def test_zoo_vgg_small(rng):
    plan = {"0": np.arange(16), "3": np.arange(1, 32, 2), "14": np.arange(64, 128)}
    check_equivalent(zoo("vgg_small", in_channels=1, image_size=16), plan, (1, 16, 16), rng,
                     {"3.weight": (16, 16, 3, 3), "7.weight": (64, 16, 3, 3), "17.weight": (128, 64, 3, 3)})


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_zoo_resnet20(rng, shortcut):
    model = zoo("resnet20", in_channels=1, shortcut=shortcut)
    inner = prunable_layers(model, (1, 8, 8))
    assert len(inner) == 9 and all(n.endswith(".0.body.0") for n in inner)  # first conv of each block
    plan = {n: np.arange(0, model.state_dict()[n + ".weight"].shape[0], 2) for n in inner}
    check_equivalent(model, plan, (1, 8, 8), rng, {"3.0.0.body.3.weight": (16, 8, 3, 3)})
    # The first stage's stream, through every identity add (and, with option A, into later stages' streams).
    check_equivalent(model, {"0": np.arange(12)}, (1, 8, 8), rng, {"3.2.0.body.3.weight": (12, 16, 3, 3)})


def test_zoo_resnet20_option_a_stream_groups():
    groups = channel_groups(zoo("resnet20", in_channels=1, shortcut="A"), (1, 8, 8))
    streams = [g for g in groups if len(g.layers) > 2]
    # Option A pads stage k's stream into the middle of stage k+1's: all three streams become one group.
    assert len(streams) == 1 and streams[0].channels == 64 and "0" in streams[0].layers


# ----------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("plan, match", [
    ({"99": [0]}, "no layer named '99'"),
    ({"2": [0]}, "no output channels to prune"),
    ({"0": [0, 6]}, r"out of range for '0': it has 6"),
    ({"0": [-1]}, "out of range"),
    ({"0": []}, "empty keep set for '0'"),
    ({"0": [1, 1]}, "duplicates"),
    ({"0": [0.5]}, "integer"),
    ({"11": [0, 1]}, "model's input or output"),
])
def test_bad_plans(plan, match):
    with pytest.raises(ValueError, match=match):
        prune_plan(lenet5(), plan, (1, 28, 28))


def test_refusals_name_the_layer():
    with pytest.raises(ValueError, match="ChannelShuffle '3.1'"):
        prune_channels(shufflenet_v2(), "3.0.1.5", [0, 2, 3], (1, 16, 16))
    with pytest.raises(ValueError, match="grouped conv '4'.*unequal"):
        prune_plan(shufflenet_v2(), {"0": [0, 2, 3, 4, 5, 6, 7], "3.0.1.5": [0, 2, 3]}, (1, 16, 16))
    with pytest.raises(ValueError, match="keeps channels that the plan removes"):
        prune_plan(resnet(), {"0": [0, 1, 2], "3.body.3": [0, 1, 2, 3]}, (1, 12, 12))
    with pytest.raises(ValueError, match="Softmax"):
        prune_channels(Sequential(conv(1, 4), Softmax(1), conv(4, 2)), "0", [0], (1, 5, 5))

    class Custom(Module):
        def __init__(self):
            super().__init__()
            self.a = conv(1, 4)

    with pytest.raises(ValueError, match="cannot walk Custom"):
        prune_channels(Sequential(Custom()), "0.a", [0], (1, 5, 5))


def test_model_unchanged_when_plan_is_refused():
    model = shufflenet_v2()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError):
        prune_plan(model, {"0": [0, 2, 3, 4, 5, 6, 7]}, (1, 16, 16))
    after = model.state_dict()
    assert all(after[k].shape == v.shape for k, v in before.items())


def test_masks_are_sliced_and_zero_channels_as_masks(rng):
    model = lenet5()
    mask = (rng.random(model[3].weight.shape) > 0.5).astype(F64)
    model[3].set_mask("weight", mask)
    prune_channels(model, "0", [1, 2], (1, 28, 28))
    assert_close("mask", dict(model.named_masks())["3.weight"], mask[:, [1, 2]], F64)
    m2 = zero_channels(lenet5(), {"3": [0, 1]}, (1, 28, 28), as_masks=True)
    assert dict(m2.named_masks())["3.weight"][2:].sum() == 0 and (m2[3].bias[2:] == 0).all()


def test_float32_model(rng):
    model = lenet5().to(np.float32)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    masked = zero_channels(copy.deepcopy(model), {"3": [0, 5, 9]}, (1, 28, 28))
    shrunk = prune_channels(model, "3", [0, 5, 9], (1, 28, 28))
    assert shrunk[3].weight.dtype == np.float32
    assert_close("float32 shrunk vs masked", shrunk(x), masked(x), np.float32)


# ----------------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("name, kwargs, shape, plans", [
    ("lenet5", {}, (1, 28, 28), [{"0": np.arange(0, 20, 2)}, {"5": np.arange(100)}]),  # two surgeries in a row
    ("resnet20", {"in_channels": 1, "shortcut": "A"}, (1, 8, 8), [{"0": np.arange(12), "3.0.0.body.0": np.arange(8)}]),
])
def test_shrunk_zoo_model_checkpoint_rebuilds_itself(tmp_path, rng, name, kwargs, shape, plans):
    from nn.checkpoint import load_checkpoint, save_checkpoint
    from nn.models import build
    model = build(name, rng=np.random.default_rng(0), dtype=np.float64, **kwargs)
    for plan in plans:
        prune_plan(model, plan, shape)
    assert len(model.arch["edits"]) == len(plans)
    path = save_checkpoint(tmp_path / "shrunk.h5", model)
    loaded = load_checkpoint(path).model  # no model given: built from the zoo recipe, then the edits replayed
    assert loaded.arch == model.arch
    x = rng.standard_normal((2, *shape))
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))


def test_checkpoint_with_a_bad_edit_is_refused(tmp_path):
    from nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from nn.models import build
    model = build("lenet5", rng=np.random.default_rng(0))
    prune_plan(model, {"0": np.arange(10)}, (1, 28, 28))
    model.arch["edits"][0]["fn"] = "os.system"
    with pytest.raises(CheckpointError, match="unknown architecture edit 'os.system'"):
        load_checkpoint(save_checkpoint(tmp_path / "a.h5", model))
    model.arch["edits"][0]["fn"] = "methods.pruning.surgery.prune_plan"
    model.arch["edits"][0]["plan"] = {"nope": [0]}
    with pytest.raises(CheckpointError, match="cannot replay architecture edit"):
        load_checkpoint(save_checkpoint(tmp_path / "b.h5", model))
