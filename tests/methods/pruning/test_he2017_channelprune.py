"""He et al. 2017 on real Fashion-MNIST: LASSO channel selection + least-squares reconstruction rebuilds layer
i+1's output better than L1-norm filter pruning at the same ratio (same trained model, same held-out images)."""
from __future__ import annotations

import numpy as np

from methods.pruning.he2017_channelprune import channel_prune, lasso_cd, reconstruct, select_channels
from methods.pruning.li2017_l1filter import prune_filters
from scripts._structured_run import relative_error
from tests.methods.structured_cnn import INPUT_SHAPE, load, macs

RATIO = 0.5


def rel_error(model, ref, x):
    return relative_error(model, ref, "4", x)  # conv2 = layer i + 1


def test_lasso_closed_form_orthogonal_design():
    # With Z^T Z = n I the LASSO solution is the soft-thresholded least-squares one.
    n = 4
    Z = np.sqrt(n) * np.eye(n)
    y = np.array([3.0, -0.5, 1.0, 0.1]) * np.sqrt(n)
    beta = lasso_cd(Z.T @ Z, Z.T @ y, 0.6, n)
    assert np.allclose(beta, [2.4, 0.0, 0.4, 0.0])


def test_selection_finds_the_generating_channels(rng):
    N, n, c = 400, 6, 8
    X = rng.standard_normal((N, c, 3, 3))
    W = rng.standard_normal((n, c, 3, 3))
    W[:, [1, 4, 6]] *= 0.01  # three channels contribute almost nothing
    Z = np.einsum("Nckl,nckl->Nnc", X, W)
    keep, beta = select_channels(Z, Z.sum(axis=2), 5)
    assert keep.tolist() == [0, 2, 3, 5, 7] and np.count_nonzero(beta) <= 5
    Y = np.einsum("Nckl,nckl->Nn", X[:, keep], W[:, keep])
    assert np.allclose(reconstruct(X, Y, keep), W[:, keep])


def test_channel_pruning_beats_l1_reconstruction(fmnist, base):
    state, _ = base
    ref = load(state)
    xs, xh = fmnist.x_train[:300], fmnist.x_test[2000:2300]  # sampling images / held-out images
    l1 = prune_filters(load(state), {"0": RATIO}, INPUT_SHAPE)
    he = channel_prune(load(state), "0", xs, RATIO, INPUT_SHAPE, n_samples=3000, rng=np.random.default_rng(0))
    e_l1, e_he = rel_error(l1, ref, xh), rel_error(he, ref, xh)
    print(f"he2017: relative reconstruction error of layer i+1 at ratio {RATIO}: L1 {e_l1:.4f}, "
          f"LASSO + least squares {e_he:.4f}")
    assert he[0].weight.shape == (4, 1, 5, 5) and he[4].weight.shape == (16, 4, 5, 5)
    assert he[4].weight.dtype == np.float32 and macs(he) < macs(ref)
    assert e_he < e_l1


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.he2017_channelprune import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert len(rows) == 7 and all(r["macs"] < rows[0]["macs"] for r in rows[1:])
    assert all(r["next_layer_rel_error"] >= 0 for r in rows[1::2])
