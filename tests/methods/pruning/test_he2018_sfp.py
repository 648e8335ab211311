"""Soft Filter Pruning on real Fashion-MNIST, continuing the trained small CNN for 2 epochs with 25% of each
conv layer's filters zeroed after every epoch: zeroed filters keep training (some grow back and the selected
set can change), exactly 25% are zero at the end, surgery removes them (fewer MACs, lower measured latency)
and accuracy stays within 3 points of the baseline (no fine-tuning after the removal). The 2 epochs run on 6000
images at lr 0.005, a tenth of the baseline's: at lr 0.01 (or 3-4 epochs on 3000 images) this BatchNorm CNN's
result swung between 18% and 80% in a probe, which we have not explained yet (written in the README status)."""
from __future__ import annotations

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.he2018_sfp import filter_l2_norms, remove_zero_filters, soft_prune_step, zero_filters
from nn.linear import Linear
from nn.optim import SGD
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, N_TEST, latency_ms, load, macs

RATE, MAX_DROP = 0.25, 0.03


def test_soft_and_hard_step_golden():
    lin = Linear(2, 4, dtype=np.float64)
    lin.weight[...] = [[3.0, 4.0], [0.1, 0.0], [1.0, 1.0], [0.0, -0.2]]
    assert np.allclose(filter_l2_norms(lin.weight), [5.0, 0.1, np.sqrt(2), 0.2])
    from nn.containers import Sequential
    model = Sequential(lin)
    assert soft_prune_step(model, ["0"], 0.5)["0"].tolist() == [1, 3]
    assert not dict(model.named_masks()) and zero_filters(model, "0").tolist() == [1, 3]
    soft_prune_step(model, ["0"], 0.25, hard=True)
    assert dict(model.named_masks())["0.weight"][1].sum() == 0


def test_sfp_on_fashion_mnist(fmnist, base):
    state, acc0 = base
    dense, model = load(state), load(state)
    layers = ["0", "4"]
    opt = SGD(model, lr=0.005, momentum=0.9, weight_decay=5e-4)  # a tenth of the baseline's lr (see module doc)
    x, y = fmnist.x_train[6000:12000], fmnist.y_train[6000:12000]
    zeroed, revived = [], 0
    for epoch in range(2):
        train_epochs(model, opt, x, y, 1, 64, np.random.default_rng(epoch))
        if zeroed:
            revived += sum(int((filter_l2_norms(dict(model.named_modules())[n].weight)[zeroed[-1][n]] > 0).sum())
                           for n in layers)
        zeroed.append(soft_prune_step(model, layers, RATE))
    assert revived > 0, "zeroed filters must keep receiving updates"
    assert [len(zero_filters(model, n)) for n in layers] == [2, 4]
    acc_soft = evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    remove_zero_filters(model, layers, INPUT_SHAPE)
    acc1 = evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    assert model[0].weight.shape == (6, 1, 5, 5) and model[4].weight.shape == (12, 6, 5, 5)
    # Alternate the two models and keep each one's best of 4 at batch 256 (compute-bound): one noisy sample
    # from the other xdist worker must not decide the comparison.
    pairs = [(latency_ms(dense, 256), latency_ms(model, 256)) for _ in range(4)]
    lat0, lat1 = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(f"he2018_sfp: revived {revived}, same set both epochs: "
          f"{all(np.array_equal(zeroed[0][n], zeroed[1][n]) for n in layers)}; acc {acc0:.4f} -> soft {acc_soft:.4f}"
          f" -> compact {acc1:.4f}; MACs {macs(dense)} -> {macs(model)}; latency@64 {lat0:.2f} -> {lat1:.2f} ms")
    assert macs(model) < 0.7 * macs(dense)
    assert acc1 >= acc0 - MAX_DROP
    assert lat1 < lat0


def test_batchnorm_rescales_regrown_filters(fmnist, base):
    """The measured reason SFP is fragile on this BatchNorm CNN with a short budget (papers/pruning/he2018_sfp.md): at
    lr 0.01, 3000 images per epoch, accuracy right after each zeroing falls epoch after epoch while plain
    fine-tuning with the same settings does not, and the zeroed conv2 filters regrow only to a small output
    variance (BatchNorm running_var) that the BatchNorm rescales to full size in training."""
    state, acc0 = base
    x, y = fmnist.x_train[6000:9000], fmnist.y_train[6000:9000]

    def run(soft: bool):
        model = load(state)
        opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
        accs = []
        for epoch in range(4):
            train_epochs(model, opt, x, y, 1, 64, np.random.default_rng(epoch))
            if soft:
                soft_prune_step(model, ["0", "4"], RATE)
            accs.append(evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1])
        return model, accs
    _, plain = run(False)
    model, soft = run(True)
    z = zero_filters(model, "4")
    var = model[5].running_var
    ratio = float(np.median(var[z]) / np.median(np.delete(var, z)))
    print(f"he2018_sfp BN probe: base {acc0:.4f}; plain fine-tuning {np.round(plain, 4).tolist()}; "
          f"after each zeroing {np.round(soft, 4).tolist()}; running_var zeroed/other median ratio {ratio:.4f}")
    assert min(plain) >= acc0 - 0.01  # fine-tuning alone is stable
    assert soft[-1] < soft[0] - 0.1 < plain[-1]  # each zeroing removes more than the last
    assert ratio < 0.1  # the zeroed filters' outputs are small before the BatchNorm rescales them


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.he2018_sfp import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    out = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {r["model"]: r for r in out["rows"]}
    assert list(rows) == ["baseline", "SFP, zero filters in place", "SFP, compact", "hard, compact"]
    base = rows["baseline"]
    for name in ("SFP, compact", "hard, compact"):  # LeNet-5: 20-50 filters, 30% removed -> 14-35
        r = rows[name]
        assert (r["filters_0"], r["filters_2"]) == (14, 35)
        assert r["macs"] < 0.7 * base["macs"] and r["params"] < base["params"] and 0.1 < r["accuracy"] <= 1
    assert rows["SFP, zero filters in place"]["revived_total"] > 0  # soft: zeroed filters keep training
    assert [s["revived"] for s in out["steps"]["hard"]] == [0, 0]  # hard: masked filters stay zero
