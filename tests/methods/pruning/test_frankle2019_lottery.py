"""Lottery tickets on Fashion-MNIST: the rewound ticket beats the same mask with a fresh random init at >= 90%."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import common
from methods.pruning import frankle2019_lottery as lt
from nn.activations import ReLU
from nn.containers import Sequential
from nn.linear import Linear

KEEP = {"1.weight": 0.09, "3.weight": 0.10, "5.weight": 0.5}  # output layer pruned at half the rate


def test_rewind_restores_initial_weights_under_the_mask():
    model = Sequential(Linear(6, 4, rng=0), ReLU(), Linear(4, 2, rng=1))
    theta0 = model.state_dict()
    dict(model.named_parameters())["0.weight"][...] += 1.0  # "training"
    masks = lt.prune_masks(model, {"0.weight": 0.5})
    lt.rewind(model, theta0, masks)
    p = dict(model.named_parameters())
    np.testing.assert_array_equal(p["0.weight"], theta0["0.weight"] * masks["0.weight"])
    np.testing.assert_array_equal(p["2.weight"], theta0["2.weight"])
    assert int(masks["0.weight"].sum()) == 12
    fresh = Sequential(Linear(6, 4, rng=5), ReLU(), Linear(4, 2, rng=6))
    lt.random_reinit(model, fresh, masks)
    np.testing.assert_array_equal(p["0.weight"], fresh[0].weight * masks["0.weight"])


@pytest.mark.slow
def test_ticket_beats_random_reinit_at_90_percent(lenet300_baseline, fmnist):
    from nn.models import build
    from nn.optim import SGD
    from nn.train import evaluate

    trained = lenet300_baseline.build()  # steps 1-2: theta_0 trained by the shared fixture
    masks = lt.prune_masks(trained, KEEP)  # step 3, one shot
    assert common.mask_sparsity(masks) >= 0.90
    accs = {}
    for kind in ("ticket", "random"):
        model = lenet300_baseline.build_init()
        if kind == "ticket":
            lt.rewind(model, lenet300_baseline.init_state, masks)  # step 4
        else:
            fresh = build(lenet300_baseline.arch, rng=np.random.default_rng(1000))  # theta'_0 ~ D_theta
            lt.random_reinit(model, fresh, masks)
        opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)
        common.train_epochs(model, opt, fmnist.x_train, fmnist.y_train, 1, 64, np.random.default_rng(1))
        assert common.sparsity_stats(model)[-1]["sparsity"] >= 0.90
        accs[kind] = evaluate(model, fmnist.x_test, fmnist.y_test)[1]
    print(f"lottery: {accs}")
    assert accs["ticket"] > accs["random"]


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.frankle2019_lottery import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ("config.json", "results.json"):
        assert (tmp_path / f).is_file(), f
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["sparsity"] >= 0.9 and set(r["test_acc"]) == {"dense", "ticket", "random_reinit"}
