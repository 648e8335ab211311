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


def test_greedy_removal_is_not_a_norm_ranking():
    """Columns are channels. The two smallest ||x_hat_c||^2 are channels 1 (3.0) and 2 (3.65), but channel 3
    (6.75) cancels channel 1: ||x_1 + x_3||^2 = 0.75 against ||x_1 + x_2||^2 = 9.25. Algorithm 1 takes channel 1,
    then the channel that minimises the running sum, 3; "drop the smallest norms" would say {1, 2}."""
    x_hat = np.array([[5.0, 1.0, 1.2, -1.5], [4.0, -1.0, 1.0, 1.5], [6.0, 1.0, 1.1, -1.5]])
    norms = (x_hat ** 2).sum(axis=0)
    assert sorted(np.argsort(norms)[:2].tolist()) == [1, 2]
    assert greedy_removal(x_hat, 2).tolist() == [1, 3]


def test_patches_and_contributions_rebuild_the_conv_output(rng):
    conv = Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 3, 7, 7))
    y = conv(x) - conv.bias[None, :, None, None]
    n, h, w, o = np.array([0, 1, 1]), np.array([0, 3, 2]), np.array([3, 0, 1]), np.array([2, 0, 3])
    x_hat = contributions(conv.weight, conv_patches(conv, x, n, h, w), o)
    assert np.allclose(x_hat.sum(axis=1), y[n, o, h, w])


def test_thinet_beats_l1_reconstruction(fmnist, base):
    """Selection and reconstruction separately, at the same ratio on the same model and held-out images:
    ThiNet's greedy selection alone (no rescaling) reconstructs layer i+1 better than L1-norm selection alone,
    and with Eq. (7)'s least squares applied to both selections ThiNet still wins, and rescaling never hurts."""
    from methods.pruning.li2017_l1filter import filter_l1_norms, keep_smallest_removed
    state, _ = base
    ref = load(state)
    xs, xh = fmnist.x_train[:300], fmnist.x_test[2000:2300]  # sampling images / held-out images
    l1 = prune_filters(load(state), {"0": RATIO}, INPUT_SHAPE)
    l1_keep = keep_smallest_removed(filter_l1_norms(ref[0].weight), RATIO)
    kw = {"n_samples": 3000}
    thin = thinet_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, rng=np.random.default_rng(0), **kw)
    thin_sel = thinet_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, rng=np.random.default_rng(0), rescale=False,
                            **kw)
    l1_ls = thinet_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, rng=np.random.default_rng(0), keep=l1_keep, **kw)
    e_l1, e_thin, e_sel, e_l1_ls = (rel_error(m, ref, xh) for m in (l1, thin, thin_sel, l1_ls))
    print(f"luo2017: relative reconstruction error of layer i+1 at ratio {RATIO}: selection alone: L1 {e_l1:.4f}, "
          f"ThiNet {e_sel:.4f}; + least squares: L1 {e_l1_ls:.4f}, ThiNet {e_thin:.4f}")
    assert thin[0].weight.shape == (4, 1, 5, 5) and thin[4].weight.shape == (16, 4, 5, 5)
    assert macs(thin) < macs(ref)
    assert e_sel < e_l1  # selection alone
    assert e_thin < e_l1_ls  # the same least-squares reconstruction on both selections
    assert e_thin <= e_sel and e_l1_ls <= e_l1
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
