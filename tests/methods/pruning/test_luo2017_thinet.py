"""ThiNet on real Fashion-MNIST: greedy next-layer selection + least-squares rescaling reconstructs layer i+1's
output better than L1-norm filter pruning at the same ratio (same trained model, same held-out images)."""
from __future__ import annotations

import copy

import numpy as np

from methods.pruning.li2017_l1filter import prune_filters
from methods.pruning.luo2017_thinet import contributions, greedy_removal, least_squares_scales, thinet_prune
from methods.pruning.surgery import conv_patches
from nn.conv import Conv2d
from scripts._structured_run import relative_error
from tests.methods.structured_cnn import INPUT_SHAPE, load, macs

RATIO = 0.5


def rel_error(model, ref, x):
    return relative_error(model, ref, "4", x)  # conv2 = layer i + 1


def test_greedy_removal_and_scales_golden():
    # channel 2 cancels channel 0, channel 1 is large: removing {0, 2} loses nothing.
    x_hat = np.array([[1.0, 5.0, -1.0, 3.0], [2.0, 4.0, -2.0, 2.5], [-1.0, 6.0, 1.0, 3.5]])
    assert sorted(greedy_removal(x_hat, 2).tolist()) == [0, 2]
    assert np.allclose(least_squares_scales(x_hat, np.array([1, 3])), [1.0, 1.0])


def test_patches_and_contributions_rebuild_the_conv_output(rng):
    conv = Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 3, 7, 7))
    y = conv(x) - conv.bias[None, :, None, None]
    n, h, w, o = np.array([0, 1, 1]), np.array([0, 3, 2]), np.array([3, 0, 1]), np.array([2, 0, 3])
    x_hat = contributions(conv.weight, conv_patches(conv, x, n, h, w), o)
    assert np.allclose(x_hat.sum(axis=1), y[n, o, h, w])


def test_thinet_beats_l1_reconstruction(fmnist, base):
    state, _ = base
    ref = load(state)
    xs, xh = fmnist.x_train[:300], fmnist.x_test[2000:2300]  # sampling images / held-out images
    l1 = prune_filters(load(state), {"0": RATIO}, INPUT_SHAPE)
    thin = thinet_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, n_samples=3000, rng=np.random.default_rng(0))
    thin_noscale = thinet_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, n_samples=3000,
                                rng=np.random.default_rng(0), rescale=False)
    e_l1, e_thin, e_sel = rel_error(l1, ref, xh), rel_error(thin, ref, xh), rel_error(thin_noscale, ref, xh)
    print(f"luo2017: relative reconstruction error of layer i+1 at ratio {RATIO}: L1 {e_l1:.4f}, "
          f"ThiNet selection {e_sel:.4f}, + least squares {e_thin:.4f}")
    assert thin[0].weight.shape == (4, 1, 5, 5) and thin[4].weight.shape == (16, 4, 5, 5)
    assert macs(thin) < macs(ref)
    assert e_thin < e_l1 and e_thin <= e_sel
    assert copy.deepcopy(thin)(xh[:2]).shape == (2, 10)


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.luo2017_thinet import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert len(rows) == 7 and all(r["macs"] < rows[0]["macs"] for r in rows[1:])
    assert all(r["next_layer_rel_error"] >= 0 for r in rows[1::2])
