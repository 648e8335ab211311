"""Profile counting rules of the layers added for issue 9 and the recent ones, against numbers worked by hand."""
from __future__ import annotations

import numpy as np
import pytest

from nn.activations import SiLU
from nn.basic import DropPath, Flatten
from nn.containers import Sequential, SqueezeExcitation
from nn.conv import Conv1d, ConvTranspose2d
from nn.embedding import Embedding
from nn.linear import Linear
from nn.norm import GroupNorm, LayerNorm
from nn.pooling import AdaptiveMaxPool2d
from nn.profile import profile, summary_table
from nn.recurrent import GRU, LSTM, LastStep
from nn.upsample import Upsample


def _one(m, shape, **kw):
    (r,) = profile(m, shape, latency=False, **kw)
    assert r["counted"], f"{r['type']} has no counting rule"
    return r


def test_conv1d_and_conv_transpose2d_by_hand():
    # Conv1d(4, 6, 3, stride 2, pad 1, G=2) on (2, 4, 9): Lo = (9 + 2 - 3) // 2 + 1 = 5;
    # MACs = N*Co*Lo * (Ci/G * k) = 2*6*5 * 2*3 = 360; bias 2*6*5 = 60 adds
    r = _one(Conv1d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 9))
    assert (r["out_shape"], r["macs"], r["flops"], r["params"]) == ((2, 6, 5), 360, 780, 6 * 2 * 3 + 6)
    # ConvTranspose2d(4, 6, 3, stride 2, pad 1, output_padding 1, G=2) on (2, 4, 5, 5): Ho = 4*2 - 2 + 2 + 1 + 1 = 10;
    # MACs = N*Ci*H*W * (Co/G * kH*kW) = 2*4*25 * 3*9 = 5,400; bias 2*6*100 = 1,200 adds
    r = _one(ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 5))
    assert (r["out_shape"], r["macs"], r["flops"], r["params"]) == ((2, 6, 10, 10), 5_400, 12_000, 4 * 3 * 9 + 6)
    r = _one(ConvTranspose2d(2, 3, (2, 3), bias=False), (1, 2, 4, 4))  # 1*2*16 * 3*6 = 576 MACs, no bias
    assert (r["macs"], r["flops"]) == (576, 1_152)


def test_upsample_and_adaptive_max_pool_by_hand():
    assert _one(Upsample(scale_factor=2), (1, 3, 4, 4))["flops"] == 0  # nearest: a gather
    r = _one(Upsample(size=(6, 5), mode="bilinear"), (2, 3, 4, 4))
    assert r["flops"] == 9 * 2 * 3 * 6 * 5 == 1_620 and r["macs"] == 0
    # global: H*W - 1 = 19 comparisons per (n, c)
    assert _one(AdaptiveMaxPool2d(1), (2, 3, 5, 4))["flops"] == 2 * 3 * 19
    # 5 -> 3 bins [0,2) [1,4) [3,5) (sizes 2+3+2 = 7), 4 -> 2 bins (2+2 = 4): 28 elements in 6 windows, 22 comparisons
    assert _one(AdaptiveMaxPool2d((3, 2)), (1, 2, 5, 4))["flops"] == 2 * 22


def test_norms_and_silu_by_hand():
    # 5 FLOPs per element + 1 per affine array + 4 per row
    r = _one(LayerNorm((4, 5)), (2, 3, 4, 5))  # 120 elements in 6 rows, weight and bias
    assert (r["flops"], r["macs"], r["params"]) == (7 * 120 + 4 * 6, 0, 40)
    assert _one(LayerNorm(5, bias=False), (3, 5))["flops"] == 6 * 15 + 4 * 3
    assert _one(LayerNorm(5, elementwise_affine=False), (3, 5))["flops"] == 5 * 15 + 4 * 3
    r = _one(GroupNorm(2, 6), (2, 6, 3, 3))  # 108 elements in N*G = 4 rows
    assert (r["flops"], r["params"]) == (7 * 108 + 4 * 4, 12)
    assert _one(SiLU(), (2, 10))["flops"] == 5 * 20


def test_squeeze_excitation_rows_by_hand():
    rows = {r["name"]: r for r in profile(Sequential(SqueezeExcitation(8, 2)), (2, 8, 4, 4), latency=False)}
    assert list(rows) == ["0.avgpool", "0.fc1", "0.activation", "0.fc2", "0.scale_activation", "0"]
    assert rows["0.avgpool"]["flops"] == 2 * 8 * 16  # a bin of 16 per (n, c)
    assert (rows["0.fc1"]["macs"], rows["0.fc1"]["flops"]) == (2 * 2 * 8, 2 * 32 + 2 * 2)
    assert (rows["0.fc2"]["macs"], rows["0.fc2"]["flops"]) == (2 * 8 * 2, 2 * 32 + 2 * 8)
    assert rows["0.activation"]["flops"] == 4 and rows["0.scale_activation"]["flops"] == 4 * 16
    gate = rows["0"]
    assert (gate["type"], gate["flops"], gate["macs"], gate["params"], gate["latency_ms"]) == (
        "SqueezeExcitation", 2 * 8 * 16, 0, 0, None)
    assert sum(r["params"] for r in rows.values()) == 8 * 2 + 2 + 2 * 8 + 8


def test_drop_path_embedding_last_step_are_free():
    assert _one(DropPath(0.5), (4, 3))["flops"] == 0  # profile runs in eval mode: the identity
    idx = np.array([[1, 9, 0], [4, 4, 2]])
    rows = profile(Sequential(Embedding(10, 4), Flatten(), Linear(12, 3)), idx.shape, latency=False, x=idx)
    emb, _, lin = rows
    assert (emb["flops"], emb["params"], emb["counted"]) == (0, 40, True)
    assert lin["macs"] == 2 * 12 * 3
    with pytest.raises(ValueError, match=r"input_shape \(2, 4\) differs from the given input's \(2, 3\)"):
        profile(Embedding(10, 4), (2, 4), x=idx)


def test_lstm_and_gru_by_hand():
    # LSTM(5, 4, 2 layers, bidirectional) on (T=3, N=2, I=5): per step, sample and direction MACs = 4S (I_l + S)
    # = 16*9 = 144 (layer 0) and 16*12 = 192 (layer 1, input 2*4); FLOPs = 2 MACs + 22 S + 8 S (two biases) = +120
    rows = profile(Sequential(LSTM(5, 4, num_layers=2, bidirectional=True), LastStep(), Linear(8, 3)), (3, 2, 5),
                   latency=False)
    lstm, last, lin = rows
    assert lstm["macs"] == 3 * 2 * 2 * (144 + 192) == 4_032
    assert lstm["flops"] == 12 * (288 + 120) + 12 * (384 + 120) == 10_944
    assert lstm["params"] == 2 * (80 + 64 + 32) + 2 * (128 + 64 + 32) == 800
    assert (last["flops"], last["counted"], lin["macs"]) == (0, True, 2 * 8 * 3)
    # GRU(3, 2, batch_first, no bias) on (N=2, T=4, I=3): MACs = 3S (I + S) = 30 per step and sample;
    # FLOPs = 2 MACs + 17 S = 94
    r = _one(GRU(3, 2, bias=False, batch_first=True), (2, 4, 3))
    assert (r["macs"], r["flops"]) == (8 * 30, 8 * 94)
    r = _one(GRU(3, 2), (4, 3))  # unbatched (T, I); biases add 6 S per step
    assert (r["macs"], r["flops"]) == (4 * 30, 4 * (60 + 34 + 12))


def test_every_new_layer_has_a_rule_in_the_table():
    m = Sequential(ConvTranspose2d(3, 4, 2, stride=2), GroupNorm(2, 4), SiLU(), Upsample(scale_factor=0.5),
                   SqueezeExcitation(4, 2), AdaptiveMaxPool2d(1), Flatten(), DropPath(0.1), LayerNorm(4))
    rows = profile(m, (1, 3, 4, 4), latency=False)
    assert all(r["counted"] for r in rows)
    assert "?" not in summary_table(rows)
