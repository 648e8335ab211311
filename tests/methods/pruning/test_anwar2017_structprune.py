"""Anwar et al. 2017 on real Fashion-MNIST with the small structured-test CNN: particle-filter kernel masks beat
random kernel masks at the same kernel sparsity (62.5% of conv2's kernels removed, no retraining, same run);
channel-wise pruning shrinks the network (fewer MACs; latency reported, not asserted: a 1.7x cut in MACs is
within what fixed per-layer costs can hide on some CPU); intra-kernel strided sparsity halves the lowered GEMM's
reduction dimension; fixed-point rounding is exact on a golden example."""
from __future__ import annotations

import numpy as np

from methods.pruning import anwar2017_structprune as an
from methods.pruning.surgery import prune_plan
from tests.methods.structured_cnn import INPUT_SHAPE, load, macs, paired_speedup, speed_line


def test_patterns_gemm_shape_and_fixed_point():
    pat = an.strided_pattern(3, 3, 2, 0)
    assert pat.ravel().tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    w = np.ones((4, 2, 3, 3))
    m = an.intra_kernel_mask(w.shape, 2, 1)
    assert an.gemm_shape(w, m, 36) == (4, 8, 36)  # 2 channels x 4 kept positions
    m = an.channel_mask(w.shape, np.array([1, 0]))
    assert an.gemm_shape(w, m, 36) == (4, 9, 36)
    assert an.kernel_mask(w.shape, np.array([1, 0, 0, 1, 1, 1, 0, 0]))[:, :, 0, 0].tolist() == \
        [[1, 0], [0, 1], [1, 1], [0, 0]]
    q = an.fixed_point(np.array([0.3, -0.71, 0.124, 0.9]), 4)  # 0 integer bits, step 1/8, range [-1, 7/8]
    assert np.allclose(q, [0.25, -0.75, 0.125, 0.875])


def test_particle_filter_resampling_concentrates_on_good_masks():
    """Sec. 4 on a synthetic objective (10 of 40 units matter, MCR = fraction of them pruned): resampling by
    weight moves the *population*, not only the best-so-far. Random search with the same budget (a fresh
    random population each iteration), or resampling that ignores the weights, keeps the mean MCR near its
    initial 0.75 (checked: 0.73-0.79 over seeds 0-4), so it fails the mean assertion; the real-data test's
    best-so-far check alone is true by construction."""
    good = np.zeros(40)
    good[:10] = 1.0
    res = an.particle_filter(40, 10, lambda p: 1.0 - float(p @ good) / 10, np.random.default_rng(0), particles=12,
                             iterations=10, swaps=2, temperature=0.05)
    means = [h[1] for h in res["history"]]
    assert means[-1] < means[0] - 0.15  # seed 0: 0.758 -> 0.525
    assert res["best_mcr"] < min(res["first"]) and res["best"].sum() == 10


def test_particle_filter_beats_random_kernel_masks(fmnist, base):
    state, acc0 = base
    model = load(state)
    model.eval()
    head, rest = model[0:4], model[4:]
    fv, yv = head(fmnist.x_train[50000:50300]), fmnist.y_train[50000:50300]
    ft, yt = head(fmnist.x_test[:2000]), fmnist.y_test[:2000]
    w0 = model[4].weight.copy()

    def acc(p, f, y):
        model[4].weight[...] = w0 * an.kernel_mask(w0.shape, p)
        a = float((rest(f).argmax(1) == y).mean())
        model[4].weight[...] = w0
        return a
    res = an.particle_filter(128, 48, lambda p: 1.0 - acc(p, fv, yv), np.random.default_rng(0), particles=12,
                             iterations=4)
    rng = np.random.default_rng(5)
    acc_pf = acc(res["best"], ft, yt)
    acc_rnd = [acc(an._random_particle(128, 48, rng), ft, yt) for _ in range(3)]
    print(f"anwar2017_structprune: kernel-wise 48/128 kept: PF {acc_pf:.4f} random {acc_rnd} dense {acc0:.4f}; "
          f"PF history {res['history']}")
    assert res["best"].sum() == 48
    assert res["history"][-1][2] <= res["history"][0][2]
    assert acc_pf > max(acc_rnd) + 0.1


def test_channel_wise_pruning_shrinks_the_network(fmnist, base):
    state, acc0 = base
    model = load(state)
    model.eval()
    head, rest = model[0:4], model[4:]
    fv, yv = head(fmnist.x_train[50000:50300]), fmnist.y_train[50000:50300]
    w0 = model[4].weight.copy()

    def mcr(p):
        model[4].weight[...] = w0 * an.channel_mask(w0.shape, p)
        e = float((rest(fv).argmax(1) != yv).mean())
        model[4].weight[...] = w0
        return e
    res = an.particle_filter(8, 4, mcr, np.random.default_rng(0), particles=8, iterations=2, swaps=1)
    pruned = prune_plan(load(state), {"0": np.flatnonzero(res["best"])}, INPUT_SHAPE)
    from nn.train import evaluate
    acc = evaluate(pruned, fmnist.x_test[:2000], fmnist.y_test[:2000])[1]
    dense = load(state)
    m0, m1 = macs(dense), macs(pruned)
    sp = paired_speedup(pruned, dense)
    print(f"anwar2017_structprune: channel-wise 4/8 maps kept: acc {acc0:.4f} -> {acc:.4f}; MACs {m0} -> {m1}; "
          + speed_line(sp) + " (reported: the demo and benchmarks measure speed)")
    assert pruned[4].weight.shape == (16, 4, 5, 5)
    assert m1 < 0.6 * m0
    assert acc > acc0 - 0.2  # no retraining


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.anwar2017_structprune import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "results.json", "results.csv"} <= files
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows][:3] == ["baseline", "kernel-wise, random", "kernel-wise, particle filter"]
