"""Zhuang et al. 2018 (DCP) on real Fashion-MNIST: with the same channel budget, selecting channels by the
gradient of the joint loss L_M + lambda * L_S^p (discrimination-aware) beats reconstruction-only selection
(lambda = 0, ThiNet style) before fine-tuning, and the pruned LeNet-300-100 is smaller and faster."""
from __future__ import annotations

import numpy as np

from methods.pruning import zhuang2018_dcp as dcp
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.linear import Linear
from nn.profile import profile, totals
from nn.train import evaluate
from tests.methods.structured_cnn import paired_speedup, speed_line

SHAPE = (1, 28, 28)
KEEP = {"3": 0.2, "5": 0.5}  # input neurons kept: 60 of fc1's 300, 50 of fc2's 100
STAGES = {"3": 5, "5": 6}  # stage 1 ends after fc2's ReLU (aux head there), stage 2 at the network output


def test_joint_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    model = Sequential(Flatten(), Linear(6, 5, rng=rng, dtype=np.float64), ReLU(), Linear(5, 4, rng=rng,
                       dtype=np.float64), ReLU(), Linear(4, 3, rng=rng, dtype=np.float64))
    layer = dcp.chain(model, (6,))[0]
    head = dcp.AuxHead(4, 3, rng, np.float64)
    x, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    x_in = model[1](model[0](x))
    x_in = model[2](x_in)
    f_b = rng.standard_normal((7, 4))
    _, _, g = dcp.joint_loss_grad(model, layer, head, 5, x_in, f_b, y, lam=0.7)
    w = model[3].weight
    for i, j in [(0, 0), (2, 3), (3, 1)]:
        old = w[i, j]
        vals = []
        for d in (1e-6, -1e-6):
            w[i, j] = old + d
            lm, ls, _ = dcp.joint_loss_grad(model, layer, head, 5, x_in, f_b, y, lam=0.7)
            vals.append(lm + 0.7 * ls)
        w[i, j] = old
        assert abs((vals[0] - vals[1]) / 2e-6 - g[i, j]) < 1e-6


def test_selection_and_aux_head_restore_train_mode():
    """train_aux_head and select_channels run the networks in eval mode and give the caller's modes back (they
    used to leave the model, and the baseline passed to dcp_prune, in eval mode)."""
    rng = np.random.default_rng(0)

    def net():
        r = np.random.default_rng(1)
        return Sequential(Flatten(), Linear(6, 5, rng=r, dtype=np.float64), ReLU(), Linear(5, 4, rng=r,
                          dtype=np.float64), ReLU(), Linear(4, 3, rng=r, dtype=np.float64))
    model, baseline = net(), net()
    model.train()
    baseline.train()
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    head = dcp.train_aux_head(model, 5, x, y, rng, epochs=1, batch_size=8)
    layer = dcp.chain(model, (6,))[0]
    a, _ = dcp.select_channels(model, baseline, layer, head, 5, x, y, 2, 0.5, rng, sgd_steps=2, batch_size=8)
    assert len(a) == 2
    assert all(m.training for m in model.modules()) and all(m.training for m in baseline.modules())


def test_dcp_beats_reconstruction_only_selection(fmnist, lenet300_baseline):
    model = lenet300_baseline.build()
    x, y = fmnist.x_train[:3000], fmnist.y_train[:3000]
    head = dcp.train_aux_head(model, STAGES["3"], x, y, np.random.default_rng(0))
    heads = {"3": head, "5": None}
    res = {}
    for lam in (1.0, 0.0):
        pruned, info = dcp.dcp_prune(model, SHAPE, KEEP, STAGES, heads, x, y, lam, np.random.default_rng(0),
                                     step=6, sgd_steps=20)
        res[lam] = (pruned, evaluate(pruned, fmnist.x_test, fmnist.y_test)[1], info)
    acc0 = evaluate(model, fmnist.x_test, fmnist.y_test)[1]
    pruned, acc_dcp, info = res[1.0]
    acc_rec = res[0.0][1]
    m0, m1 = (totals(profile(m, (1, *SHAPE), latency=False))["macs"] for m in (model, pruned))
    sp = paired_speedup(pruned, model, input_shape=SHAPE)
    print(f"zhuang2018_dcp: test acc dense {acc0:.4f} DCP {acc_dcp:.4f} reconstruction-only {acc_rec:.4f}; "
          f"MACs {m0} -> {m1}; " + speed_line(sp))
    assert pruned[1].weight.shape == (60, 784) and pruned[3].weight.shape == (50, 60)
    assert len(info["selected"]["3"]) == 60 and len(info["selected"]["5"]) == 50
    assert acc_dcp > acc_rec + 0.02
    assert acc_dcp > acc0 - 0.05  # no fine-tuning
    assert m1 < 0.25 * m0 and sp["ms"] < sp["reference_ms"]  # 4x fewer MACs (paired samples)


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.zhuang2018_dcp import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv", "selection.csv"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["baseline", "reconstruction only", "DCP", "reconstruction only, fine-tuned",
                                          "DCP, fine-tuned"]
    assert rows[2]["macs"] < rows[0]["macs"]
