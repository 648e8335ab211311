"""Soft Filter Pruning on real Fashion-MNIST, continuing the trained small CNN for 4 epochs with 25% of each
conv layer's filters zeroed after every epoch (6000 images, lr 0.005): zeroed filters keep training (some grow
back), exactly 25% are zero at the end, surgery removes them (fewer MACs) and the compact model needs no
fine-tuning after the removal.

This CNN has a BatchNorm after each conv, which rescales a regrown small filter to full size, so the plain L2
criterion of Eq. (2) keeps zeroing full-size features and the network falls apart epoch after epoch
(``test_batchnorm_rescales_regrown_filters``); how far depended on the CPU's rounding (the 2-epoch run of the
previous test: 83% on an AVX2 Zen 3, 74.6% on an AVX-512 Zen 5). The test ranks filters by their
BatchNorm-folded norm instead (``batchnorms=``, a written deviation of the method module) and asserts what
holds by a wide margin on both ISAs (checked natively and with ``make test-avx2``): measured on a Zen 4 at
seed 0, BatchNorm-aware 77.4% against plain 33.6% after 4 zeroings (baseline 83.6%). The bound on the drop,
12 points, is for 8- and 16-filter layers losing a quarter of their filters with no fine-tuning after the
last zeroing; the paper's ResNets with fine-tuning budget lose under a point. Speed is not asserted here
(benchmarks/ holds the latency targets)."""
from __future__ import annotations

import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.he2018_sfp import filter_l2_norms, remove_zero_filters, soft_prune_step, zero_filters
from nn.linear import Linear
from nn.optim import SGD
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, N_TEST, latency_ms, load, macs

RATE, MAX_DROP = 0.25, 0.12
LAYERS = ["0", "4"]
BATCHNORMS = {"0": "1", "4": "5"}  # each conv of the small CNN and the BatchNorm after it


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


def _sfp(fmnist, state, batchnorms, epochs=4):
    model = load(state)
    opt = SGD(model, lr=0.005, momentum=0.9, weight_decay=5e-4)
    x, y = fmnist.x_train[6000:12000], fmnist.y_train[6000:12000]
    zeroed, revived = [], 0
    for epoch in range(epochs):
        train_epochs(model, opt, x, y, 1, 64, np.random.default_rng(epoch))
        if zeroed:
            revived += sum(int((filter_l2_norms(dict(model.named_modules())[n].weight)[zeroed[-1][n]] > 0).sum())
                           for n in LAYERS)
        zeroed.append(soft_prune_step(model, LAYERS, RATE, batchnorms=batchnorms))
    return model, revived


def test_sfp_on_fashion_mnist(fmnist, base):
    state, acc0 = base
    dense = load(state)
    model, revived = _sfp(fmnist, state, BATCHNORMS)
    assert revived > 0, "zeroed filters must keep receiving updates"
    assert [len(zero_filters(model, n)) for n in LAYERS] == [2, 4]
    acc_soft = evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    remove_zero_filters(model, LAYERS, INPUT_SHAPE)
    acc1 = evaluate(model, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    assert model[0].weight.shape == (6, 1, 5, 5) and model[4].weight.shape == (12, 6, 5, 5)
    plain, _ = _sfp(fmnist, state, None)
    remove_zero_filters(plain, LAYERS, INPUT_SHAPE)
    acc_plain = evaluate(plain, fmnist.x_test[:N_TEST], fmnist.y_test[:N_TEST])[1]
    print(f"he2018_sfp: revived {revived}; acc {acc0:.4f} -> soft {acc_soft:.4f} -> compact {acc1:.4f} "
          f"(plain L2 criterion: {acc_plain:.4f}); MACs {macs(dense)} -> {macs(model)}; "
          f"latency@256 {latency_ms(dense, 256):.2f} -> {latency_ms(model, 256):.2f} ms (reported, not asserted)")
    assert macs(model) < 0.7 * macs(dense)
    assert acc1 >= acc0 - MAX_DROP
    assert acc1 > acc_plain + 0.10, "the BatchNorm-aware criterion must not fall apart like the plain one"


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
