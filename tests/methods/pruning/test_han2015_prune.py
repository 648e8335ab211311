"""Han et al. 2015 on real Fashion-MNIST: >= 10x fewer weights within 1 point, deployed on the sparse kernel
with the masked model's outputs; the sparse path is faster than dense where it holds on every CPU.

The 92%-sparse LeNet-300-100 must be faster than dense at batch 64. That claim once flipped with the ISA (an
AVX-512 Zen 5 measured it 1.8x *slower*: its CSR kernel gathered and scattered the zmm lanes, fixed since); on
both code paths it is now about 3x faster (Zen 4, paired samples: 3.05x natively, ~3.8x on the AVX2 path under
``make test-avx2``), so the test asserts only "faster", a margin that load or rounding cannot close. Timings are
``nn.profile.paired_latency``'s interleaved samples. A large layer pruned by the same method to 99% must be at
least 1.4x faster (PERFORMANCE.md 3.3: 17-20x for the kernel alone). The batch-1 target lives in
``benchmarks/bench_models.py``."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import common
from methods.pruning import han2015_prune as han
from nn.activations import ReLU
from nn.basic import Dropout
from nn.containers import Sequential
from nn.linear import Linear
from tests.helpers import assert_close

LENET_KEEP = {"1.weight": 0.08, "3.weight": 0.09, "5.weight": 0.26}  # PERFORMANCE.md section 6


def test_eq2_dropout_adjustment_golden():
    # Eq. (2): D_r = D_o sqrt(C_ir / C_io): a quarter of the connections left halves the dropout ratio
    assert han.adjusted_dropout(0.5, 100, 25) == pytest.approx(0.25)
    assert han.adjusted_dropout(0.5, 100, 100) == 0.5
    with pytest.raises(ValueError, match="C_r"):
        han.adjusted_dropout(0.5, 100, 101)
    model = Sequential(Linear(8, 6, rng=0), ReLU(), Dropout(0.5, rng=0), Linear(6, 4, rng=1))
    han.prune_round(model, keep={"3.weight": 0.25})  # 6 of the 24 weights kept
    assert han.adjust_dropout(model, {"2": 0.5}) == {"2": pytest.approx(0.25)}
    assert model[2].p == pytest.approx(0.25)
    with pytest.raises(KeyError, match="Dropout"):
        han.adjust_dropout(model, {"1": 0.5})


def test_keep_schedule_and_rounds_only_shrink_masks():
    assert han.keep_schedule(0.01, 2) == pytest.approx([0.1, 0.01])
    model = Sequential(Linear(20, 10, rng=0), ReLU(), Linear(10, 3, rng=1))
    m1 = han.prune_round(model, keep={"0.weight": 0.5})
    dict(model.named_parameters())["0.weight"][...] += 1.0  # even if pruned weights grew, they stay pruned
    model.apply_masks()
    m2 = han.prune_round(model, keep={"0.weight": 0.25})
    assert np.all(m2["0.weight"] <= m1["0.weight"]) and int(m2["0.weight"].sum()) == 50
    with pytest.raises(ValueError, match="exactly one"):
        han.prune_round(model)


@pytest.mark.slow
def test_lenet300_10x_within_one_point_and_sparse_deploy_is_faster(lenet300_baseline, fmnist):
    from nn.profile import paired_latency
    from nn.train import evaluate

    model = lenet300_baseline.build()
    dense_acc = lenet300_baseline.test_acc

    def acc(m):
        return evaluate(m, fmnist.x_test, fmnist.y_test)[1]
    hist = han.iterative_prune(model, fmnist.x_train, fmnist.y_train, LENET_KEEP, rounds=3,
                               retrain=han.RetrainCfg(epochs=1), rng=np.random.default_rng(0), evaluate=acc)
    final = hist[-1]
    print(f"dense {dense_acc:.4f}; rounds {[(round(h['compression'], 2), h['acc_pruned'], h['acc_retrained']) for h in hist]}")
    # pruned weights really zero, and exactly where the masks say
    params = dict(model.named_parameters())
    for n, m in model.named_masks():
        assert np.all(params[n][m == 0] == 0)
    assert common.compression_ratio(model) >= 10.0
    assert final["acc_retrained"] >= dense_acc - 0.010

    # deployment on the sparse kernel: same outputs as the masked dense model, and faster
    sparse = common.deploy_sparse(model)
    from nn.sparse import SparseLinear
    assert sum(isinstance(m, SparseLinear) for m in sparse.modules()) == 3
    x = fmnist.x_test[:64]
    assert_close("sparse vs masked dense", sparse(x), model(x), np.float32)
    t = paired_latency(sparse, model, x)  # interleaved samples: a burst of load hits both models
    print(f"LeNet-300-100 latency batch 64: dense {t['reference_ms']:.3f} ms, sparse {t['ms']:.3f} ms "
          f"(paired speed-up {t['speedup']}, spread {t['spread']:.2f})")
    assert t["ms"] < t["reference_ms"]


def test_99_percent_pruned_large_layer_is_faster_on_the_sparse_kernel():
    """A 2048x2048 layer pruned by Han et al.'s magnitude rule to 1% of its weights: SparseLinear equals the
    masked dense layer and is clearly faster at batch 64 (paired, interleaved samples)."""
    from nn.profile import paired_latency
    from nn.sparse import SparseLinear
    rng = np.random.default_rng(0)
    model = Sequential(Linear(2048, 2048, rng=rng))
    han.prune_round(model, keep={"0.weight": 0.01})
    assert np.count_nonzero(model[0].weight) == pytest.approx(0.01 * 2048 * 2048, rel=0.01)
    sparse = common.deploy_sparse(model)
    assert isinstance(sparse[0], SparseLinear)
    x = rng.standard_normal((64, 2048)).astype(np.float32)
    assert_close("sparse vs masked dense", sparse(x), model(x), np.float32)
    t = paired_latency(sparse, model, x)
    print(f"99%-sparse 2048x2048, batch 64: dense {t['reference_ms']:.3f} ms, sparse {t['ms']:.3f} ms")
    assert t["ms"] < 0.7 * t["reference_ms"]  # the kernel alone does 17-20x


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.han2015_prune import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ("config.json", "results.json", "history.csv", "layers.csv", "oneshot_vs_iterative.csv",
              "sensitivity.csv", "sensitivity.png"):
        assert (tmp_path / f).is_file(), f
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["compression"] > 10 and r["max_abs_diff_sparse_vs_dense"] < 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["train_limit"] == 1000
