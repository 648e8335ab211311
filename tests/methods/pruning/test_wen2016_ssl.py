"""SSL on real Fashion-MNIST: group Lasso (proximal SGD) drives whole neuron groups to exactly zero, and
surgery removes them.

Claim tested (one run, same seed and initialisation for both arms): with the penalty, >= 25% of the hidden
neurons of a 784-300-100-10 MLP end with an all-zero group (their fc1 row / fc2 column, or fc2 row / fc3
column), none without it; removing them by surgery gives fewer parameters and MACs and costs at most 1
accuracy point (the zero column groups are removed exactly; a zero row leaves a constant ReLU(bias)).

Adaptation: the paper's MLP/LeNet experiments on MNIST train to convergence; here 3 epochs on 6000 images.
"""
from __future__ import annotations

import copy

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.wen2016_ssl import (
    add_group_lasso_grad,
    group_norms,
    group_prox,
    penalty,
    remove_zero_groups,
    ssl_plan,
    zero_groups,
)
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.linear import Linear
from nn.optim import SGD
from nn.train import evaluate

LAM, LR, MAX_DROP = 0.05, 0.05, 0.01
GROUPS = {("1", "filter"): LAM, ("3", "channel"): LAM, ("3", "filter"): LAM, ("5", "channel"): LAM}


def mlp(seed, dtype=np.float32):
    r = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(784, 300, rng=r, dtype=dtype), ReLU(), Linear(300, 100, rng=r, dtype=dtype),
                      ReLU(), Linear(100, 10, rng=r, dtype=dtype))


def test_group_norms_penalty_and_prox_golden():
    model = Sequential(Linear(2, 3, dtype=np.float64))
    model[0].weight[...] = [[3.0, 4.0], [0.0, 0.1], [1.0, 0.0]]
    assert np.allclose(group_norms(model[0].weight, "filter"), [5.0, 0.1, 1.0])
    assert np.allclose(group_norms(model[0].weight, "channel"), [np.sqrt(10), np.sqrt(16.01)])
    assert np.isclose(penalty(model, {("0", "filter"): 0.5}), 0.5 * 6.1)
    add_group_lasso_grad(model, {("0", "filter"): 0.5})
    assert np.allclose(model[0]._grads["weight"][0], [0.3, 0.4])
    group_prox(model, {("0", "filter"): 1.0}, lr=0.5)  # shrink each row's norm by 0.5
    assert np.allclose(model[0].weight, [[2.7, 3.6], [0.0, 0.0], [0.5, 0.0]])
    assert zero_groups(model, "0", "filter").tolist() == [1]


def test_zero_groups_are_removed_by_surgery():
    model = mlp(0, np.float64)
    model[3].weight[:, [5, 7]] = 0.0  # channel groups of fc2: neurons 5 and 7 of fc1 are unused
    model[1].weight[9] = 0.0  # a zero filter of fc1
    assert ssl_plan(model, ["1"], (1, 28, 28))["1"].tolist() == [i for i in range(300) if i not in (5, 7, 9)]
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28))
    model[1].bias[9] = -1.0  # ReLU(-1) = 0: neuron 9 is then exactly dead, so removal is exact
    y = model(x)
    remove_zero_groups(model, ["1"], (1, 28, 28))
    assert model[1].weight.shape == (297, 784) and np.allclose(model(x), y)


def test_ssl_zeroes_groups_on_fashion_mnist(fmnist):
    x, y = fmnist.x_train[:6000], fmnist.y_train[:6000]
    xt, yt = fmnist.x_test[:2000], fmnist.y_test[:2000]
    res = {}
    for lam in (0.0, LAM):
        model = mlp(0)
        opt = SGD(model, lr=LR, momentum=0.9)
        groups = {k: lam for k in GROUPS}

        def step(model=model, opt=opt, groups=groups):
            opt.step()
            group_prox(model, groups, LR)

        train_epochs(model, opt, x, y, 3, 64, np.random.default_rng(1), step=step)
        plan = ssl_plan(model, ["1", "3"], (1, 28, 28))
        removed = sum(c - len(plan.get(n, range(c))) for n, c in (("1", 300), ("3", 100)))
        slim = remove_zero_groups(copy.deepcopy(model), ["1", "3"], (1, 28, 28))
        res[lam] = {"removed": removed, "acc": evaluate(model, xt, yt)[1], "slim_acc": evaluate(slim, xt, yt)[1],
                    "params": slim.num_parameters(), "dense": model.num_parameters(),
                    "shapes": (slim[1].weight.shape, slim[3].weight.shape)}
    print("wen2016:", res)
    assert res[0.0]["removed"] == 0
    assert res[LAM]["removed"] >= 0.25 * 400
    assert res[LAM]["params"] < 0.8 * res[LAM]["dense"]
    assert res[LAM]["slim_acc"] >= res[LAM]["acc"] - MAX_DROP


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.wen2016_ssl import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert len(rows) == 4 and rows[3]["params"] <= rows[2]["params"]
