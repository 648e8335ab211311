"""Network Slimming on real Fashion-MNIST.

Claim tested (one run, same seed and init for both arms): training with the L1 penalty on the BatchNorm scales
makes them sparse (>= 20% of |gamma| below 5% of the largest, vs none without the penalty), and removing the
50% of channels with the smallest |gamma| (global threshold, surgery, no fine-tuning) costs the penalised
model at most 3 accuracy points, and less than it costs the unpenalised one.

Adaptation: the paper slims conv nets over 160 epochs; to stay within a test budget the model is a
784-300-100-10 MLP with BatchNorm1d after each hidden Linear (neurons are its channels), trained 3 epochs on
6000 images.
"""
from __future__ import annotations

import copy

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.liu2017_slimming import (
    add_bn_l1_subgradient,
    gamma_sparsity,
    global_threshold,
    prunable_bns,
    slim,
    slimming_plan,
)
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.linear import Linear
from nn.norm import BatchNorm1d
from nn.optim import SGD
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, small_cnn

LAM, PERCENT, MAX_DROP = 0.012, 0.5, 0.03


def mlp_bn(seed):
    r = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(784, 300, bias=False, rng=r), BatchNorm1d(300), ReLU(),
                      Linear(300, 100, bias=False, rng=r), BatchNorm1d(100), ReLU(), Linear(100, 10, rng=r))


def test_subgradient_golden():
    model = Sequential(Linear(3, 4, dtype=np.float64), BatchNorm1d(4, dtype=np.float64))
    model[1].weight[...] = [0.5, -2.0, 0.0, 1e-9]
    add_bn_l1_subgradient(model, 0.1)
    assert np.array_equal(model[1]._grads["weight"], [0.1, -0.1, 0.0, 0.1])
    assert global_threshold([np.array([1.0, -3.0]), np.array([2.0, 4.0, -5.0])], 0.5) == 3.0


def test_plan_is_global_and_keeps_one_channel():
    model = small_cnn(0)
    model[1].weight[...] = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
    model[5].weight[...] = np.linspace(1.0, 2.0, 16)
    assert prunable_bns(model, INPUT_SHAPE) == ["1", "5"]
    plan, thr = slimming_plan(model, 0.34, INPUT_SHAPE)  # threshold ~0.83: all of "1" is below it
    assert plan["1"].tolist() == [7] and len(plan["5"]) == 16 and thr < 1.0
    slim(model, 0.34, INPUT_SHAPE)
    assert model[0].weight.shape == (1, 1, 5, 5) and model[4].weight.shape == (16, 1, 5, 5)


def test_sparse_gammas_and_slimming_on_fashion_mnist(fmnist):
    x, y = fmnist.x_train[:6000], fmnist.y_train[:6000]
    xt, yt = fmnist.x_test[:2000], fmnist.y_test[:2000]
    res = {}
    for lam in (0.0, LAM):
        model = mlp_bn(0)
        opt = SGD(model, lr=0.05, momentum=0.9)

        def step(model=model, opt=opt, lam=lam):
            add_bn_l1_subgradient(model, lam)
            opt.step()

        train_epochs(model, opt, x, y, 3, 64, np.random.default_rng(1), step=step)
        acc = evaluate(model, xt, yt)[1]
        slimmed = slim(copy.deepcopy(model), PERCENT, (1, 28, 28))
        res[lam] = {"sparsity": gamma_sparsity(model, 0.05), "acc": acc, "slim_acc": evaluate(slimmed, xt, yt)[1],
                        "params": slimmed.num_parameters(), "dense_params": model.num_parameters(),
                        "shapes": (slimmed[1].weight.shape, slimmed[4].weight.shape)}
    print("liu2017:", res)
    pen, free = res[LAM], res[0.0]
    assert pen["sparsity"] >= 0.2 and free["sparsity"] <= 0.02
    assert pen["params"] < 0.6 * pen["dense_params"]
    assert pen["slim_acc"] >= pen["acc"] - MAX_DROP
    assert pen["acc"] - pen["slim_acc"] < free["acc"] - free["slim_acc"]


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.liu2017_slimming import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert len(rows) == 5 and rows[-1]["params"] < rows[0]["params"]
