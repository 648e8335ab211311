"""OBS: recursive inverse Hessian, the constrained update, and OBS vs OBD on a small Fashion-MNIST MLP."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import hassibi1993_obs as obs
from tests.helpers import assert_close


def test_recursive_inverse_equals_direct_inverse(rng):
    X = rng.standard_normal((50, 8))
    want = np.linalg.inv(1e-2 * np.eye(8) + X.T @ X / 50)
    for block in (1, 7, 64):  # block 1 = one Sherman-Morrison step per vector, as in the paper
        assert_close(f"H^-1 block={block}", obs.inverse_hessian(X, 50, alpha=1e-2, block=block), want, np.float64)


def test_obs_step_solves_the_constrained_quadratic(rng):
    """On E(w) = 1/2 (w - w*)^T H (w - w*), the OBS step from w* is the exact constrained minimiser."""
    A = rng.standard_normal((6, 6))
    H = A @ A.T + 0.5 * np.eye(6)
    w = rng.standard_normal(6)
    w1, order, sal = obs.obs_prune(w, np.linalg.inv(H), 1)
    q = order[0]
    # KKT of min 1/2 d^T H d s.t. d_q = -w_q, for every q: the chosen q has the least cost
    costs = []
    for j in range(6):
        K = np.block([[H, np.eye(6)[:, [j]]], [np.eye(6)[[j]], np.zeros((1, 1))]])
        d = np.linalg.solve(K, np.r_[np.zeros(6), -w[j]])[:6]
        costs.append(0.5 * d @ H @ d)
        if j == q:
            assert_close("dw", w1 - w, d, np.float64)
    assert q == int(np.argmin(costs)) and sal[0] == pytest.approx(min(costs))
    assert w1[q] == 0.0
    w3, order3, _ = obs.obs_prune(w, np.linalg.inv(H), 3)
    assert len(set(order3)) == 3 and np.all(w3[order3] == 0.0)


def _small_mlp_data(fmnist, n_train):
    def pool(x):  # (N, 1, 28, 28) -> (N, 1, 7, 7): 4x4 average pooling
        return x.reshape(len(x), 1, 7, 4, 7, 4).mean(axis=(3, 5)).astype(np.float32)
    return pool(fmnist.x_train[:n_train]), fmnist.y_train[:n_train], pool(fmnist.x_test), fmnist.y_test


@pytest.mark.slow
def test_obs_beats_obd_and_magnitude_without_retraining(fmnist):
    from methods.pruning.common import train_epochs
    from nn.activations import ReLU
    from nn.basic import Flatten
    from nn.containers import Sequential
    from nn.linear import Linear
    from nn.optim import SGD
    from nn.train import evaluate

    x, y, xt, yt = _small_mlp_data(fmnist, 20000)
    rng = np.random.default_rng(0)
    model = Sequential(Flatten(), Linear(49, 16, rng=rng), ReLU(), Linear(16, 10, rng=rng))
    train_epochs(model, SGD(model, lr=0.05, momentum=0.9), x, y, 4, 64, rng)
    w0, layout = obs.weight_vector(model)
    assert len(w0) == 944
    X = obs.gn_vectors(model, x[:400], layout)
    Hinv = obs.inverse_hessian(X, 400, alpha=1e-4)
    h_diag = (X * X).sum(axis=0) / 400
    dense = evaluate(model, x[:5000], y[:5000])[0]
    for frac in (0.5, 0.75):
        k = int(frac * len(w0))
        res = {}
        w_obs, _, _ = obs.obs_prune(w0, Hinv, k)
        for name, w in (("obs", w_obs), ("obd", obs.obd_prune(w0, h_diag, k)),
                        ("magnitude", obs.magnitude_prune(w0, k))):
            assert int((w == 0).sum()) >= k
            obs.set_weight_vector(model, w.astype(np.float32), layout)
            res[name] = (evaluate(model, x[:5000], y[:5000])[0], evaluate(model, xt, yt)[1])
        obs.set_weight_vector(model, w0.astype(np.float32), layout)
        print(frac, dense, res)
        assert res["obs"][0] < res["obd"][0] and res["obs"][0] < res["magnitude"][0]
        assert res["obs"][1] >= res["obd"][1]


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.hassibi1993_obs import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ("config.json", "results.json", "sweep.csv"):
        assert (tmp_path / f).is_file(), f
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["weights"] == 944 and {row["criterion"] for row in r["sweep"]} == {"obs", "obd", "magnitude"}
