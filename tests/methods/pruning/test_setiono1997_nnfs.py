"""Setiono & Liu 1997 on real Fashion-MNIST features (16 block means of the image) with 8 added noise inputs:
the penalty keeps the noise inputs' weights small, backward elimination removes every noise input first (within
the first 10 removals), and the selected network stays within the tolerance of the full one."""
from __future__ import annotations

import numpy as np

from methods.pruning import setiono1997_nnfs as fs
from nn.containers import Sequential
from nn.linear import Linear

N_NOISE = 8
TOL = 0.02


def test_penalty_value_and_gradient():
    w = np.array([[0.0, 0.5], [-1.0, 2.0]])
    val, g = fs.penalty(w, 0.1, 1e-3, 10.0)
    w2 = w ** 2
    assert np.isclose(val, 0.1 * np.sum(10 * w2 / (1 + 10 * w2)) + 1e-3 * np.sum(w2))
    for idx in [(0, 1), (1, 0)]:
        d = np.zeros_like(w)
        d[idx] = 1e-6
        num = (fs.penalty(w + d, 0.1, 1e-3, 10.0)[0] - fs.penalty(w - d, 0.1, 1e-3, 10.0)[0]) / 2e-6
        assert np.isclose(num, g[idx], rtol=1e-6)


def test_remove_input_masks_the_column():
    m = Sequential(Linear(3, 2, dtype=np.float64))
    fs.remove_input(m, 1)
    assert np.all(m[0].weight[:, 1] == 0) and fs.input_mask(m).tolist() == [1, 0, 1]


def test_backward_elimination_removes_the_noise_inputs(fmnist):
    rng = np.random.default_rng(0)
    f = fs.block_features(np.concatenate([fmnist.x_train[:6000], fmnist.x_test[:2000]]))
    f = (f - f[:5000].mean(0)) / f[:5000].std(0)
    f = fs.with_noise(f, N_NOISE, rng)
    n_real = f.shape[1] - N_NOISE
    x, y, xv, yv = f[:5000], fmnist.y_train[:5000], f[5000:6000], fmnist.y_train[5000:6000]
    xt, yt = f[6000:], fmnist.y_test[:2000]
    model = fs.mlp(f.shape[1], 12, 10, rng)
    fs.train(model, x, y, 5, rng)
    col = np.abs(model[0].weight).sum(axis=0)
    acc_full = fs._accuracy(model, xt, yt)
    res = fs.backward_elimination(model, x, y, xv, yv, TOL, 1, rng)
    acc_sel = fs._accuracy(model, xt, yt)
    print(f"setiono1997_nnfs: column L1 real {np.round(col[:n_real], 2)} noise {np.round(col[n_real:], 2)}; "
          f"removed {res['removed']}; kept {res['kept']}; test acc {acc_full:.4f} -> {acc_sel:.4f}")
    assert col[n_real:].max() < 0.5 * np.median(col[:n_real])
    noise = set(range(n_real, f.shape[1]))
    assert noise <= set(res["removed"][:10])
    assert len(res["kept"]) < n_real and all(k < n_real for k in res["kept"])
    assert np.all(model[0].weight[:, res["removed"]] == 0)
    assert res["history"][-1]["accepted"] is False or len(res["kept"]) == 1
    assert acc_sel >= acc_full - 0.03


def test_backward_elimination_removes_whole_groups_up_to_max_removed():
    """Input groups (e.g. the flattened outputs of one conv channel) are removed together; max_removed caps it.
    Groups 1 and 3 carry no signal (zero inputs), so they are the ones removed first."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    x[:, 2:4] = 0
    x[:, 6:8] = 0
    y = (x[:, 0] + x[:, 4] > 0).astype(np.int64)
    groups = [np.arange(2 * g, 2 * g + 2) for g in range(4)]
    model = fs.mlp(8, 6, 2, rng)
    fs.train(model, x[:400], y[:400], 3, rng)
    res = fs.backward_elimination(model, x[:400], y[:400], x[400:], y[400:], 0.05, 1, rng, groups=groups,
                                  max_removed=2)
    assert sorted(res["removed"]) == [1, 3] and res["kept"] == [0, 2]
    assert fs.input_mask(model).tolist() == [1, 1, 0, 0, 1, 1, 0, 0]


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.setiono1997_nnfs import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv", "history.csv"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["all inputs", "selected inputs"]
