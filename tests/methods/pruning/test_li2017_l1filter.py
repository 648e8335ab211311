"""Li et al. 2017 on real Fashion-MNIST: L1-ranked filter pruning shrinks a trained CNN (fewer MACs, lower
measured latency) and one short retraining epoch brings accuracy back within 2 points of the baseline."""
from __future__ import annotations

import copy

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.li2017_l1filter import (
    filter_l1_norms,
    keep_smallest_removed,
    prune_filters,
    ratios_from_sensitivity,
    sensitivity,
)
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.optim import SGD
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, N_TEST, load, macs, paired_speedup, speed_line

MAX_DROP = 0.02  # stated claim: within 2 accuracy points after one retraining epoch on 6000 images


def acc(model, data):
    return evaluate(model, data.x_test[:N_TEST], data.y_test[:N_TEST])[1]


def test_l1_norm_and_selection_golden():
    w = np.zeros((4, 1, 2, 2))
    w[0], w[1], w[2], w[3] = 0.5, -2.0, 0.1, 1.0  # s = 2, 8, 0.4, 4
    assert np.allclose(filter_l1_norms(w), [2.0, 8.0, 0.4, 4.0])
    assert keep_smallest_removed(filter_l1_norms(w), 0.5).tolist() == [1, 3]
    assert keep_smallest_removed(filter_l1_norms(w), 0.99).tolist() == [1]  # at least one filter stays


def test_greedy_ignores_kernels_of_removed_maps():
    # conv "1" filter 0 is large only on input map 0, which conv "0" prunes; filter 1 is medium everywhere.
    model = Sequential(Conv2d(2, 2, 1, bias=False, dtype=np.float64), Conv2d(2, 2, 1, bias=False, dtype=np.float64),
                       Conv2d(2, 1, 1, dtype=np.float64))
    model[0].weight[...] = np.array([0.1, 1.0]).reshape(2, 1, 1, 1)  # filter 0 (smaller) is pruned
    model[1].weight[...] = np.array([[5.0, 0.1], [1.0, 1.0]]).reshape(2, 2, 1, 1)
    ind = prune_filters(copy.deepcopy(model), {"0": 0.5, "1": 0.5}, (2, 3, 3), strategy="independent")
    gre = prune_filters(copy.deepcopy(model), {"0": 0.5, "1": 0.5}, (2, 3, 3), strategy="greedy")
    assert np.allclose(ind[1].weight.ravel(), [0.1]) and np.allclose(gre[1].weight.ravel(), [1.0])


def test_ratios_from_sensitivity_golden():
    """Sec. 3.2: per layer, the largest ratio whose accuracy stays within the tolerance. A stub returning
    max(ratios) for every layer, or one stopping at the first failing ratio, fails this case."""
    ratios = [0.0, 0.25, 0.5, 0.75]
    sens = {"a": [0.90, 0.89, 0.80, 0.70],  # 0.25 within 0.02 of 0.90, 0.5 not
            "b": [0.90, 0.70, 0.60, 0.50],  # no ratio > 0 qualifies: left out
            "c": [0.90, 0.85, 0.89, 0.60]}  # 0.25 fails but 0.5 qualifies: the largest qualifying ratio
    assert ratios_from_sensitivity(sens, ratios, 0.90, 0.02) == {"a": 0.25, "c": 0.5}


def test_prune_retrain_on_fashion_mnist(fmnist, base):
    state, acc0 = base
    assert acc0 > 0.75, f"baseline too weak to test pruning: {acc0:.3f}"
    dense = load(state)
    pruned = prune_filters(load(state), {"0": 0.5, "4": 0.5}, INPUT_SHAPE)
    assert pruned[0].weight.shape == (4, 1, 5, 5) and pruned[4].weight.shape == (8, 4, 5, 5)
    assert pruned[9].weight.shape == (64, 128) and pruned[1].num_features == 4
    acc_pruned = acc(pruned, fmnist)
    opt = SGD(pruned, lr=0.01, momentum=0.9, weight_decay=5e-4)
    train_epochs(pruned, opt, fmnist.x_train[6000:12000], fmnist.y_train[6000:12000], 1, 64,
                 np.random.default_rng(1))
    acc_ft = acc(pruned, fmnist)
    m0, m1 = macs(dense), macs(pruned)
    sp = paired_speedup(pruned, dense)
    print(f"li2017: acc base {acc0:.4f} pruned {acc_pruned:.4f} retrained {acc_ft:.4f}; MACs {m0} -> {m1}; "
          + speed_line(sp))
    assert acc_ft >= acc0 - MAX_DROP
    assert m1 < 0.4 * m0
    assert sp["ms"] < sp["reference_ms"]  # 2.5x fewer MACs: faster on any CPU (paired samples)


def test_sensitivity_scan(fmnist, base):
    state, _ = base
    model = load(state)
    x, y = fmnist.x_test[:500], fmnist.y_test[:500]
    ratios = [0.0, 0.25, 0.75]
    sens = sensitivity(model, ["0", "4"], ratios, INPUT_SHAPE, lambda m: evaluate(m, x, y)[1])
    a0 = evaluate(model, x, y)[1]
    for layer, accs in sens.items():
        assert accs[0] == a0 and accs[2] < a0, (layer, accs)
    chosen = ratios_from_sensitivity(sens, ratios, a0, tolerance=1.0)
    assert chosen == {"0": 0.75, "4": 0.75}
    assert load(state).state_dict()["0.weight"].shape == model[0].weight.shape  # scan left the model alone


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.li2017_l1filter import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv", "sensitivity.csv", "sensitivity.png"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["baseline", "random, no retraining", "L1, no retraining", "L1, retrained"]
    assert rows[-1]["macs"] < rows[0]["macs"] and rows[-1]["params"] < rows[0]["params"]
