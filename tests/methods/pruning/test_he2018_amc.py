"""He et al. 2018 (AMC) on real Fashion-MNIST: at the same MAC budget (5x fewer conv/linear MACs), the per-layer
preserve ratios found by the DDPG search beat one uniform ratio for all layers (same seed, one run, no
fine-tuning), and the pruned LeNet-300-100 is really smaller and faster."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import he2018_amc as amc
from methods.pruning.surgery import layer_macs
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.linear import Linear
from nn.profile import model_latency
from nn.train import evaluate

SHAPE = (1, 28, 28)
BUDGET = 0.2  # conv/linear MACs kept (5x reduction: at 2x the narrow test nets leave no room between policies)


def test_least_squares_recovers_a_consumer_that_ignores_the_pruned_channel():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 6))  # 3 channels x group 2
    w = rng.standard_normal((4, 6))
    w[:, 2:4] = 0.0  # channel 1 is unused
    y = a @ w.T
    keep = amc.select_channels(w, 3, 2)
    assert keep.tolist() == [0, 2]
    assert np.allclose(amc.reconstruct(w, a, y, keep, 3, ridge=0.0), w)


def test_action_wall_and_uniform_baseline_meet_the_budget():
    model = Sequential(Flatten(), Linear(16, 8, dtype=np.float64), ReLU(), Linear(8, 6, dtype=np.float64), ReLU(),
                       Linear(6, 2, dtype=np.float64))
    layers = amc.chain_layers(model, (16,))
    assert [(pl.producer, pl.consumer, pl.channels) for pl in layers] == [("1", "3", 8), ("3", "5", 6)]
    base = layer_macs(model, (16,))  # 128, 48, 12
    assert amc.chain_macs(base, layers, [4, 3]) == 64 + 12 + 6
    budget = 0.5 * 188
    k = amc._max_keep(base, layers, [], 0.2, budget)  # layer "5" keeps ceil(0.2 * 6) = 2
    assert amc.chain_macs(base, layers, [k, 2]) <= budget < amc.chain_macs(base, layers, [k + 1, 2])
    r, counts = amc.uniform_counts(base, layers, budget)
    assert amc.chain_macs(base, layers, counts) <= budget and 0 < r < 1


def test_collect_features_restores_train_mode():
    """collect_features runs the original model in eval mode and gives its mode back (it used to leave it in
    eval mode); Y is the consumer's output minus its bias."""
    model = Sequential(Flatten(), Linear(16, 8, dtype=np.float64), ReLU(), Linear(8, 6, dtype=np.float64))
    model.train()
    x = np.random.default_rng(0).standard_normal((5, 16))
    layers = amc.chain_layers(model, (16,))
    feats = amc.collect_features(model, x, layers)
    a, y = feats["3"]
    np.testing.assert_allclose(y, a @ model[3].weight.T)
    assert all(m.training for m in model.modules())


@pytest.fixture(scope="module")
def searched(fmnist, lenet300_baseline):
    model = lenet300_baseline.build()
    xv, yv = fmnist.x_train[50000:51000], fmnist.y_train[50000:51000]
    res = amc.search(model, SHAPE, BUDGET, lambda m: evaluate(m, xv, yv)[1], fmnist.x_train[:1000],
                     np.random.default_rng(0))
    return model, res


def test_searched_ratios_beat_uniform_at_the_same_budget(fmnist, searched):
    model, res = searched
    layers, base = res["layers"], layer_macs(model, SHAPE)
    _, uniform = amc.uniform_counts(base, layers, res["budget"])
    amc_net = amc.prune_with_ratios(model, layers, res["counts"], res["reg"], SHAPE)
    uni_net = amc.prune_with_ratios(model, layers, uniform, res["reg"], SHAPE)
    acc = {k: evaluate(m, fmnist.x_test, fmnist.y_test)[1] for k, m in
           (("dense", model), ("amc", amc_net), ("uniform", uni_net))}
    macs = {k: sum(layer_macs(m, SHAPE).values()) for k, m in (("dense", model), ("amc", amc_net),
                                                                 ("uniform", uni_net))}
    lat = {k: min(model_latency(m, 64, SHAPE)["median_ms"] for _ in range(2)) for k, m in
           (("dense", model), ("amc", amc_net))}
    print(f"he2018_amc: keep amc {res['counts']} uniform {uniform}; test acc {acc}; MACs {macs}; "
          f"latency@64 {lat}")
    assert macs["amc"] <= BUDGET * macs["dense"] and macs["uniform"] <= BUDGET * macs["dense"]
    assert acc["amc"] > acc["uniform"] + 0.005  # searched beats uniform by more than half a point
    assert acc["amc"] > acc["dense"] - 0.04  # 5x fewer MACs, no fine-tuning
    assert amc_net[1].weight.shape[0] == res["counts"][0] and amc_net.num_parameters() < 0.3 * model.num_parameters()
    assert lat["amc"] < lat["dense"]
    assert len(res["history"]) == amc.SearchCfg().episodes


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.he2018_amc import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv", "episodes.csv"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["baseline", "uniform", "AMC search"]
    assert rows[2]["macs"] < rows[0]["macs"]
