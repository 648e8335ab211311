"""Profiling: MACs/FLOPs/params/bytes against hand-worked numbers, bookkeeping restored, latency fields."""
from __future__ import annotations

import numpy as np
import pytest

from nn.activations import ReLU, Sigmoid
from nn.basic import Flatten
from nn.containers import Residual, Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.models import build
from nn.module import Module
from nn.norm import BatchNorm2d
from nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from nn.profile import model_latency, profile, summary_table, totals


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_lenet5_by_hand():
    rows = _by_name(profile(build("lenet5"), (1, 1, 28, 28), latency=False))
    # conv1: 20 out channels x 24x24 positions x (1 in channel x 5x5) = 288,000 MACs; bias 20*576 = 11,520 FLOPs
    assert rows["0"]["macs"] == 20 * 24 * 24 * 1 * 25 == 288_000
    assert rows["0"]["flops"] == 2 * 288_000 + 11_520
    # pool1: 20x12x12 outputs, 3 comparisons each
    assert rows["1"]["flops"] == 20 * 12 * 12 * 3 and rows["1"]["macs"] == 0
    # conv2: 50 x 8x8 x (20 x 5x5) = 1,600,000 MACs; bias 50*64 = 3,200
    assert rows["2"]["macs"] == 50 * 8 * 8 * 20 * 25 == 1_600_000
    assert rows["2"]["flops"] == 3_200_000 + 3_200
    assert rows["3"]["flops"] == 50 * 4 * 4 * 3
    assert rows["4"]["flops"] == 0  # Flatten
    # fc1: 800 x 500 = 400,000 MACs + 500 bias; ReLU 500; fc2: 500 x 10 = 5,000 + 10
    assert rows["5"]["macs"] == 400_000 and rows["5"]["flops"] == 800_500
    assert rows["6"]["flops"] == 500
    assert rows["7"]["macs"] == 5_000 and rows["7"]["flops"] == 10_010
    t = totals(list(rows.values()))
    assert t["macs"] == 288_000 + 1_600_000 + 400_000 + 5_000 == 2_293_000
    assert t["flops"] == 587_520 + 8_640 + 3_203_200 + 2_400 + 800_500 + 500 + 10_010 == 4_612_770
    assert t["params"] == 431_080 and t["bytes"] == 4 * 431_080


def test_resnet20_macs_by_hand():
    rows = profile(build("resnet20"), (1, 3, 32, 32), latency=False)
    # stem 16*32*32*3*9; each 3x3 conv at 16@32x32, 32@16x16 (in 32) and 64@8x8 (in 64) costs 2,359,296;
    # the first conv of stages 2 and 3 has half the inputs: 1,179,648; fc 64*10
    stem, full, half = 16 * 32 * 32 * 3 * 9, 16 * 32 * 32 * 16 * 9, 32 * 16 * 16 * 16 * 9
    assert full == 2_359_296 and half == 1_179_648
    assert totals(rows)["macs"] == stem + 6 * full + 2 * (half + 5 * full) + 640 == 40_551_040
    res = [r for r in rows if r["type"] == "Residual"]
    assert len(res) == 9 and res[0]["flops"] == 16 * 32 * 32 and res[0]["params"] == 0
    assert all(r["counted"] for r in rows)


@pytest.mark.parametrize("groups,macs", [(1, 2 * 16 * 10 * 10 * 8 * 9), (4, 2 * 16 * 10 * 10 * 2 * 9)])
def test_grouped_conv_macs(groups, macs):
    conv = Conv2d(8, 16, 3, padding=1, groups=groups, bias=False)
    (r,) = profile(conv, (2, 8, 10, 10), latency=False)
    assert r["macs"] == macs and r["flops"] == 2 * macs and r["params"] == 16 * (8 // groups) * 9


def test_depthwise_conv_macs():
    # depthwise 3x3, stride 2: N*Co*Ho*Wo*(Ci/G)*kH*kW = 2*8*5*5*1*9, plus 8 bias adds per position
    conv = Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    (r,) = profile(conv, (2, 8, 10, 10), latency=False)
    assert r["out_shape"] == (2, 8, 5, 5)
    assert r["macs"] == 2 * 8 * 5 * 5 * 9 == 3_600 and r["flops"] == 7_200 + 2 * 8 * 5 * 5


def test_linear_on_3d_input():
    # (2, 5, 6) -> (2, 5, 4): 2*5 rows x 6 x 4 = 240 MACs; bias 40 adds
    (r,) = profile(Linear(6, 4).to(np.float64), (2, 5, 6), dtype=np.float64, latency=False)
    assert (r["macs"], r["flops"], r["out_shape"], r["bytes"]) == (240, 520, (2, 5, 4), 8 * 28)


def test_norm_pool_activation_rules():
    m = Sequential(BatchNorm2d(3), Sigmoid(), AvgPool2d(2), AdaptiveAvgPool2d(3), MaxPool2d(3), Flatten())
    rows = profile(m, (2, 3, 10, 10), latency=False)
    bn, sig, avg, ada, mx, fl = rows
    assert bn["flops"] == 2 * 600 and bn["params"] == 6 and bn["bytes"] == 4 * 6 + 4 * 6 + 8  # + num_batches_tracked
    assert sig["flops"] == 4 * 600
    assert avg["flops"] == 4 * 2 * 3 * 5 * 5
    # adaptive 5 -> 3 bins [0,2) [1,4) [3,5): sizes 2 + 3 + 2 = 7 per axis, 49 per (n, c)
    assert ada["flops"] == 2 * 3 * 49
    assert mx["flops"] == 2 * 3 * 1 * 1 * 8 and fl["flops"] == 0


class Mystery(Module):
    def forward(self, x):
        return x * 2.0


class Compressed(Module):
    def __init__(self):
        super().__init__()
        self.inner = Linear(4, 4)

    def forward(self, x):
        return self.inner(x)

    def macs(self, in_shape, out_shape):
        return 7

    def storage_bytes(self):
        return 3


def test_overrides_unknown_and_shared_modules():
    relu = ReLU()
    m = Sequential(Compressed(), relu, Mystery(), relu)
    rows = profile(m, (2, 4), latency=False)
    names = [r["name"] for r in rows]
    assert names == ["0", "1", "2"]  # Compressed owns its subtree; the shared ReLU gets one row
    comp, r, mys = rows
    assert (comp["macs"], comp["flops"], comp["bytes"], comp["params"]) == (7, 14, 3, 20)
    assert r["calls"] == 2 and r["flops"] == 2 * 8
    assert not mys["counted"] and mys["macs"] == 0
    table = summary_table(rows)
    assert "Mystery ?" in table and "0 MACs and FLOPs assumed" in table


def test_residual_and_restores_state(rng):
    m = Sequential(Residual(Sequential(Conv2d(2, 2, 3, padding=1), ReLU())), ReLU())
    m.train()
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    m(x)  # leaves a fresh cache that profile must not destroy
    rows = profile(m, (1, 2, 4, 4), latency=True, repeat=1, min_time=0.0, warmup=0.0)
    assert [r["type"] for r in rows] == ["Conv2d", "ReLU", "Residual", "ReLU"]
    assert rows[2]["flops"] == 32 and rows[2]["latency_ms"] is None
    assert all(r["latency_ms"] > 0 for r in rows if r["type"] != "Residual")
    assert all("forward" not in mod.__dict__ for mod in m.modules())
    assert all(mod.training for mod in m.modules())
    m.backward(np.ones((1, 2, 4, 4), np.float32))  # the cache of the earlier forward survived


def test_summary_table_and_model_latency():
    model = build("lenet_300_100")
    rows = profile(model, (1, 1, 28, 28), repeat=1, min_time=0.0, warmup=0.0)
    table = summary_table(rows)
    assert "266,610" in table and "266.61K" in table
    widths = {len(line) for line in table.splitlines()[:-1]}
    assert len(widths) == 1, "rows of the table are aligned"
    lat = model_latency(model, 4, (1, 28, 28), repeat=1, warmup=0.0, min_time=0.0)
    assert lat["batch"] == 4 and lat["median_ms"] > 0 and lat["per_sample_ms"] == lat["median_ms"] / 4
    lat = model_latency(model, np.zeros((2, 1, 28, 28), np.float32), repeat=1, warmup=0.0, min_time=0.0)
    assert lat["batch"] == 2 and model.training
    with pytest.raises(ValueError, match="input_shape"):
        model_latency(model, 4)


def test_vgg_small_macs_by_hand():
    rows = profile(build("vgg_small"), (1, 3, 32, 32), latency=False)
    # 3x3 convs: (Co*H*W) * Ci*9 at 32x32, 32x32, 16x16, 16x16, 8x8, 8x8; fc (128*4*4)*10
    convs = [32 * 1024 * 3, 32 * 1024 * 32, 64 * 256 * 32, 64 * 256 * 64, 128 * 64 * 64, 128 * 64 * 128]
    assert totals(rows)["macs"] == 9 * sum(convs) + 2048 * 10 == 38_653_952


def test_failed_forward_leaves_model_untouched():
    m = Sequential(Linear(4, 3), ReLU())
    m.train()
    with pytest.raises(ValueError, match="Linear expects input"):
        profile(m, (2, 5), latency=False)
    assert all("forward" not in mod.__dict__ for mod in m.modules()) and all(mod.training for mod in m.modules())


def test_paired_latency_figures_agree_and_a_loaded_machine_makes_no_speedup():
    """Two copies of one model timed while a busy thread (BLAS calls in a loop, GIL released) loads the machine:
    interleaved samples must not turn the equal pair into a speed-up above 1.3x or below 0.77x; when the load
    makes the samples spread too much, the routine says so instead of quoting a number."""
    import copy
    import threading

    from nn.profile import paired_latency
    model = build("lenet5", rng=np.random.default_rng(0))
    twin = copy.deepcopy(model)
    stop = threading.Event()

    def busy():
        a = np.random.default_rng(1).standard_normal((384, 384))
        while not stop.is_set():
            a = np.tanh(a @ a.T / 384.0)
    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    try:
        results = [paired_latency(model, twin, b, (1, 28, 28), pairs=12) for b in (1, 16)]
    finally:
        stop.set()
        worker.join()
    for r in results:
        assert r["ms"] == np.median(r["samples_ms"]) and r["reference_ms"] == np.median(r["reference_samples_ms"])
        assert len(r["samples_ms"]) == 12 and r["spread"] >= 0
        ratios = np.asarray(r["reference_samples_ms"]) / np.asarray(r["samples_ms"])
        if r["stable"]:
            assert r["speedup"] == pytest.approx(np.median(ratios))
            assert 0.77 < r["speedup"] < 1.3, r
        else:
            assert r["speedup"] is None
    with pytest.raises(ValueError, match="at least 4 pairs"):
        paired_latency(model, twin, 1, (1, 28, 28), pairs=2)


def test_deployed_int8_binary_shift_layers_count_the_float_layers_macs(rng):
    """A quantised, binarised or power-of-two model has the MACs of its float original, in its own arithmetic
    (so the comparison's MACs column is not 0 for those rows)."""
    from nn.binary import BinaryConv2d, BinaryLinear
    from nn.quant import QuantConv2d, QuantLinear
    from nn.shift import ShiftConv2d, ShiftLinear
    conv, lin = Conv2d(3, 8, 3, padding=1, rng=rng, dtype=np.float32), Linear(8 * 6 * 6, 5, rng=rng, dtype=np.float32)
    x_shape = (2, 3, 6, 6)
    want_conv = 2 * 8 * 6 * 6 * 3 * 9
    want_lin = 2 * 8 * 6 * 6 * 5
    deployed = [(BinaryConv2d.from_float(conv), BinaryLinear.from_float(lin)),
                (QuantConv2d.from_float(conv, 0.05, 128, 0.1, 128), QuantLinear.from_float(lin, 0.05, 128, 0.1, 128)),
                (ShiftConv2d.from_float(conv), ShiftLinear.from_float(lin))]
    for c, f in deployed:
        codes = isinstance(c, QuantConv2d)  # the int8 layers take uint8 codes
        for layer, shape, want in ((c, x_shape, want_conv), (f, (2, 8 * 6 * 6), want_lin)):
            x = np.full(shape, 130, np.uint8) if codes else None
            row = profile(Sequential(layer), shape, latency=False, x=x)[-1]
            assert row["type"] == type(layer).__name__ and row["counted"] and row["macs"] == want, row
            assert row["flops"] == 2 * want + row["out_shape"][0] * (8 if layer is c else 5) * (36 if layer is c else 1)
