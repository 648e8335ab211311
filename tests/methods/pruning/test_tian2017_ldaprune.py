"""Tian et al. 2017 (LDA-pruned nets) on real Fashion-MNIST.

Claim tested (adaptation of the paper's gender task to a 2-class subset, Pullover vs Coat, the pair the
shared small CNN confuses most among those tried): keeping only the 6 of 16 last-conv channels with the
highest Fisher ratio (back-tracking the first conv to 4 of 8 filters) and replacing the FC head by a linear SVM
fitted on 6000 held-out training images (their ~1200 of the two classes) matches the original net's FC head on
the two classes (at most 1 point lower on the 2000 test images), beats the same counts of randomly chosen
channels (mean of 3 draws) by >= 2 points, and runs with fewer MACs and lower measured latency.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.tian2017_ldaprune import (
    backtrack_scores,
    fisher_scores,
    gaussian_bayes_head,
    lda_prune,
    svm_head,
    top_k,
)
from nn.train import evaluate
from tests.methods.structured_cnn import INPUT_SHAPE, load, macs, paired_speedup, speed_line

PAIR, KEEP_TOP, KEEP_LOW = (2, 4), 6, 4
MAX_DROP, MIN_GAIN = 0.01, 0.02


def test_fisher_ratio_golden():
    # channel 0: class means 0 and 2, within-class values +-1 -> S_b = 2*(1^2) + 2*(1^2) = 4, S_w = 4 -> J = 1
    # channel 1: identical distributions in both classes -> J = 0;  channel 2: constant -> J = 0 (no division)
    f = np.array([[-1.0, 1.0, 3.0], [1.0, -1.0, 3.0], [1.0, 1.0, 3.0], [3.0, -1.0, 3.0]])
    y = np.array([0, 0, 1, 1])
    assert np.allclose(fisher_scores(f, y), [1.0, 0.0, 0.0])
    assert top_k(np.array([0.1, 3.0, 2.0, 0.5]), 2).tolist() == [1, 2]
    w = np.zeros((3, 2, 1, 1))
    w[0, 0], w[1, 1], w[2, 1] = 5.0, -1.0, 2.0
    assert np.allclose(backtrack_scores(w, np.array([1, 2])), [0.0, 3.0])  # filter 0 only feeds a removed one
    lin = np.zeros((2, 2 * 3))  # a linear layer after Flatten of 2 channels x 3 positions: columns c*3 + p
    lin[1, 0], lin[1, 4], lin[0, 5] = -2.0, 1.0, 7.0
    assert np.allclose(backtrack_scores(lin, np.array([1]), channels=2), [2.0, 1.0])  # neuron 0 removed


def test_heads_golden(rng):
    # 1-d Gaussians N(-1, 1) and N(+1, 1), equal priors: the Bayes boundary is x = 0, logit gap = 2x
    f = np.concatenate([rng.normal(-1, 1, 4000), rng.normal(1, 1, 4000)])[:, None]
    y = np.repeat([0, 1], 4000)
    h = gaussian_bayes_head(f, y, 2, shrink=0.0, dtype=np.float64)
    gap = h(np.array([[0.0], [1.0]])) @ np.array([-1.0, 1.0])
    assert abs(gap[0]) < 0.1 and abs(gap[1] - 2.0) < 0.2
    s = svm_head(np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([0, 0, 1, 1]), 2, C=10.0, dtype=np.float64)
    assert (s(np.array([[-1.5], [-0.2], [0.2], [1.5]])).argmax(1) == [0, 0, 1, 1]).all()


def test_lda_pruned_net_matches_fc_head(fmnist, base):
    state, _ = base
    model = load(state)
    a, b = PAIR
    sel = np.isin(fmnist.y_train[6000:12000], PAIR)
    x, y = fmnist.x_train[6000:12000][sel], (fmnist.y_train[6000:12000][sel] == b).astype(np.int64)
    selt = np.isin(fmnist.y_test, PAIR)
    xt, yt = fmnist.x_test[selt], (fmnist.y_test[selt] == b).astype(np.int64)
    full = float((model.eval()(xt)[:, [a, b]].argmax(1) == yt).mean())

    args = {"top": "4", "keep_top": KEEP_TOP, "backtrack": {"0": KEEP_LOW}, "feature_end": "8", "x": x, "y": y,
            "input_shape": INPUT_SHAPE, "n_classes": 2, "summary": "6"}
    pruned, plan = lda_prune(model, **args)
    acc = evaluate(pruned, xt, yt)[1]
    rnd = [evaluate(lda_prune(model, scores="random", rng=np.random.default_rng(s), **args)[0], xt, yt)[1]
           for s in range(3)]
    m0, m1 = macs(model), macs(pruned)
    sp = paired_speedup(pruned, model)
    print(f"tian2017: classes {PAIR}: full FC head {full:.4f}; LDA {KEEP_TOP}/16 + back-track {KEEP_LOW}/8 + SVM "
          f"{acc:.4f}; random channels {np.round(rnd, 4).tolist()}; kept {({k: v.tolist() for k, v in plan.items()})}"
          f"; MACs {m0} -> {m1}; " + speed_line(sp))
    assert pruned[0].weight.shape == (KEEP_LOW, 1, 5, 5) and pruned[4].weight.shape == (KEEP_TOP, KEEP_LOW, 5, 5)
    assert pruned[9].weight.shape == (2, KEEP_TOP * 16)  # the SVM head on the kept 4x4 maps
    assert acc >= full - MAX_DROP
    assert acc >= float(np.mean(rnd)) + MIN_GAIN
    assert m1 < 0.35 * m0 and sp["ms"] < sp["reference_ms"]  # 2.9x fewer MACs (paired samples)


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.tian2017_ldaprune import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert {"config.json", "results.json", "results.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["baseline (FC head, 2 classes)", "LDA + SVM", "LDA + Bayes",
                                          "random + SVM"]
    assert all(r["macs"] < rows[0]["macs"] for r in rows[1:])
