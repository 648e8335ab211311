"""Network Trimming (APoZ) on real Fashion-MNIST: channels/neurons whose post-ReLU outputs are mostly zero are
removed from the trained small CNN (conv2 channels and fc1 neurons above mean + std APoZ), giving fewer
parameters and MACs; after one retraining epoch the accuracy is within 2 points of the baseline."""
from __future__ import annotations

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.hu2016_apoz import activation_after, apoz, trim, trim_plan
from nn.activations import ReLU
from nn.containers import Sequential
from nn.linear import Linear
from nn.optim import SGD
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, N_TEST, latency_ms, load, macs

MAX_DROP = 0.02


def test_apoz_golden():
    model = Sequential(Linear(2, 3, bias=False, dtype=np.float64), ReLU(), Linear(3, 1, dtype=np.float64))
    model[0].weight[...] = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]
    x = np.array([[1.0, 1.0], [2.0, -1.0], [-1.0, 1.0], [3.0, -2.0]])
    assert activation_after(model, "0", (2,)) == "1"
    assert np.allclose(apoz(model, "1", x), [0.25, 0.75, 0.5])
    plan, _ = trim_plan(model, ["0"], x, (2,), k_std=0.5)
    assert plan["0"].tolist() == [0, 2]


def test_apoz_is_not_mean_activation():
    """A neuron that is mostly zero but large when active (APoZ 0.75, mean output 25) goes; one that is always
    on but small (APoZ 0, mean 0.1) stays. Ranking by mean activation instead would remove the second; the
    golden case above does not separate the two rules (its lowest-mean neuron is also its highest-APoZ one)."""
    model = Sequential(Linear(3, 3, bias=False, dtype=np.float64), ReLU(), Linear(3, 1, dtype=np.float64))
    model[0].weight[...] = np.eye(3)
    x = np.array([[100.0, 0.1, 1.0], [-1.0, 0.1, 1.0], [-1.0, 0.1, -1.0], [-1.0, 0.1, -1.0]])
    assert np.allclose(apoz(model, "1", x), [0.75, 0.0, 0.5])
    plan, _ = trim_plan(model, ["0"], x, (3,), k_std=0.5)
    assert plan["0"].tolist() == [1, 2]


def test_trim_and_retrain_on_fashion_mnist(fmnist, base):
    state, acc0 = base
    dense, model = load(state), load(state)
    xs = fmnist.x_train[:500]
    _, scores = trim_plan(model, ["4", "9"], xs, INPUT_SHAPE)
    trim(model, ["4", "9"], xs, INPUT_SHAPE)
    c2, f1 = model[4].weight.shape[0], model[9].weight.shape[0]
    assert c2 < 16 and f1 < 64
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    train_epochs(model, opt, fmnist.x_train[6000:9000], fmnist.y_train[6000:9000], 1, 64, np.random.default_rng(1))
    acc1 = evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    lat0, lat1 = latency_ms(dense), latency_ms(model)
    print(f"hu2016: mean APoZ conv2 {scores['4'].mean():.3f} fc1 {scores['9'].mean():.3f}; kept {c2}/16 conv2 "
          f"channels, {f1}/64 fc1 neurons; acc {acc0:.4f} -> {acc1:.4f}; MACs {macs(dense)} -> {macs(model)}; "
          f"params {dense.num_parameters()} -> {model.num_parameters()}; latency@64 {lat0:.2f} -> {lat1:.2f} ms")
    assert macs(model) < macs(dense) and model.num_parameters() < dense.num_parameters()
    assert acc1 >= acc0 - MAX_DROP


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.hu2016_apoz import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert len(rows) == 2 and rows[1]["params"] <= rows[0]["params"] and "apoz_mean_5" in rows[1]
