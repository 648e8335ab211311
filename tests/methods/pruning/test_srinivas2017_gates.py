"""Srinivas et al. 2017 (learned per-weight gates) on real Fashion-MNIST: after two epochs of joint training of
weights and gates from a trained LeNet-300-100, the gates are bimodal, >= 90% of the weights are removed without
a separate prune/retrain loop, accuracy stays within 4 points of dense, and the gated network is far better than
one-shot magnitude pruning at the same per-layer sparsity (same run)."""
from __future__ import annotations

import numpy as np

from methods.pruning import srinivas2017_gates as sg
from methods.pruning.common import apply_masks, layer_masks, sparsity_stats
from nn.activations import ReLU
from nn.containers import Sequential
from nn.linear import Linear
from nn.losses import CrossEntropyLoss
from nn.train import evaluate

CFG = {"epochs": 2, "batch_size": 64, "lr": 0.01, "lr_gate": 30.0, "lambda1": 5e-5, "lambda2": 3e-5}


def test_penalty_and_straight_through_gradients():
    g = np.array([0.0, 0.25, 0.5, 1.0])
    val, grad = sg.gate_penalty(g, 2.0, 0.5)
    assert np.isclose(val, 2.0 * (0 + 0.1875 + 0.25 + 0) + 0.5 * 1.75)
    assert np.allclose(grad, 2.0 * (1 - 2 * g) + 0.5)
    rng = np.random.default_rng(0)
    model = Sequential(Linear(4, 3, rng=rng, dtype=np.float64), ReLU(), Linear(3, 2, rng=rng, dtype=np.float64))
    gates = sg.Gates(model, init=0.5)
    gates.sample(np.random.default_rng(1))
    z = gates.z["0.weight"].copy()
    assert set(np.unique(z)) <= {0.0, 1.0} and np.allclose(model[0].weight, gates.dense["0.weight"] * z)
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 2, 5)
    ce = CrossEntropyLoss()
    model.zero_grad()
    gates.bank.zero_grad()
    ce(model(x), y)
    model.backward(ce.backward())
    g_eff = dict(model.named_grads())["0.weight"].copy()
    gates.backward(0.0, 0.0)
    assert np.allclose(dict(gates.bank.named_grads())["0/weight"], g_eff * gates.dense["0.weight"])  # STE
    assert np.allclose(dict(model.named_grads())["0.weight"], g_eff * z)


def test_gates_prune_lenet300_on_fashion_mnist(fmnist, lenet300_baseline):
    model = lenet300_baseline.build()
    gates = sg.Gates(model, init=0.6)
    hist = sg.train_gated(model, gates, fmnist.x_train[:8000], fmnist.y_train[:8000], CFG["epochs"],
                          CFG["batch_size"], CFG["lr"], CFG["lr_gate"], CFG["lambda1"], CFG["lambda2"],
                          np.random.default_rng(0))
    undecided = gates.undecided_fraction()
    masks = gates.freeze()
    acc = evaluate(model, fmnist.x_test, fmnist.y_test)[1]
    stats = sparsity_stats(model)
    mag = lenet300_baseline.build()
    apply_masks(mag, layer_masks(mag, {n: 1.0 - float(m.mean()) for n, m in masks.items()}))
    acc_mag = evaluate(mag, fmnist.x_test, fmnist.y_test)[1]
    print(f"srinivas2017_gates: history {hist}; sparsity {[round(r['sparsity'], 4) for r in stats]}; "
          f"test acc dense {lenet300_baseline.test_acc:.4f} gated {acc:.4f} magnitude one-shot {acc_mag:.4f}")
    assert undecided < 0.05  # bimodal
    assert stats[-1]["sparsity"] >= 0.9
    assert all(np.all(model.state_dict()[n][m == 0] == 0) for n, m in masks.items())  # closed gates really zero
    assert acc >= lenet300_baseline.test_acc - 0.04
    assert acc > acc_mag + 0.05


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.srinivas2017_gates import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv", "history.csv", "gates.png"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["baseline", "gates", "magnitude one-shot", "magnitude + retraining"]
