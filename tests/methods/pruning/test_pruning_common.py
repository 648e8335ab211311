"""Mask utilities of methods/pruning/common.py on tiny models (exact mask counts, errors, revivable masks)."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import common
from nn.activations import ReLU
from nn.containers import Sequential
from nn.linear import Linear


def tiny(dtype=np.float64):
    return Sequential(Linear(6, 5, rng=1, dtype=dtype), ReLU(), Linear(5, 3, rng=2, dtype=dtype))


def test_prunable_names_are_weights_only():
    assert common.prunable_names(tiny()) == ["0.weight", "2.weight"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_magnitude_mask_prunes_exact_count_of_smallest(rng, dtype):
    w = rng.standard_normal((7, 9)).astype(dtype)
    m = common.magnitude_mask(w, 0.4)
    k = int(np.floor(0.4 * w.size))
    assert m.dtype == dtype and m.shape == w.shape
    assert int((m == 0).sum()) == k
    assert np.abs(w[m == 0]).max() <= np.abs(w[m == 1]).min()
    assert common.magnitude_mask(w, 0.0).all()


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_unit_interval_is_refused(rng, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        common.magnitude_mask(rng.standard_normal(10), bad)
    with pytest.raises(ValueError, match="0.weight"):
        common.layer_masks(tiny(), {"0.weight": bad})


def test_std_threshold_mask_is_han_rule(rng):
    w = rng.standard_normal(1000)
    m = common.std_threshold_mask(w, 0.5)
    np.testing.assert_array_equal(m, (np.abs(w) > 0.5 * w.std()).astype(w.dtype))


def test_std_threshold_masks_second_round_prunes_further():
    model = tiny()
    m1 = common.std_threshold_masks(model, 1.0)
    common.apply_masks(model, m1)
    m2 = common.std_threshold_masks(model, 1.0)
    for n in m1:
        assert np.all(m2[n] <= m1[n]) and m2[n].sum() < m1[n].sum()


def test_global_masks_pool_all_layers(rng):
    model = tiny()
    params = dict(model.named_parameters())
    params["2.weight"] *= 100  # the second layer is far larger: a global threshold prunes only the first
    masks = common.global_magnitude_masks(model, 0.5)
    total = params["0.weight"].size + params["2.weight"].size
    assert sum(int((m == 0).sum()) for m in masks.values()) == int(np.floor(0.5 * total))
    assert masks["2.weight"].all()


def test_apply_masks_zeroes_weights_and_attaches(rng):
    model = tiny()
    masks = common.layer_masks(model, {"0.weight": 0.5, "2.weight": 0.2})
    common.apply_masks(model, masks)
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert np.all(params[n][m == 0] == 0)
    assert set(dict(model.named_masks())) == set(masks)
    rows = common.sparsity_stats(model)
    assert rows[0]["nonzero"] == 15 and rows[1]["nonzero"] == 12
    assert rows[-1]["name"] == "total" and rows[-1]["numel"] == 45
    assert common.compression_ratio(model) == pytest.approx(45 / 27)
    common.remove_masks(model)
    assert not dict(model.named_masks())


def test_apply_masks_errors_name_and_shape():
    model = tiny()
    with pytest.raises(KeyError, match=r"0\.weight.*2\.weight"):
        common.apply_masks(model, {"1.weight": np.ones((5, 6))})
    with pytest.raises(ValueError, match="shape"):
        common.apply_masks(model, {"0.weight": np.ones((6, 5))})
    with pytest.raises(KeyError, match="prunable"):
        common.layer_masks(model, 0.5, names=["9.weight"])


def test_score_masks_global_and_layer(rng):
    s = {"a": rng.random((4, 4)), "b": 10 + rng.random((2, 3))}
    g = common.score_masks(s, 0.5)
    assert g["b"].all() and int((g["a"] == 0).sum()) == 11
    lay = common.score_masks(s, 0.5, scope="layer")
    assert int((lay["b"] == 0).sum()) == 3
    with pytest.raises(ValueError, match="scope"):
        common.score_masks(s, 0.5, scope="row")


def test_revivable_mask_splices_weights_back(rng):
    model = tiny()
    params = dict(model.named_parameters())
    grads = dict(model.named_grads())
    w0 = params["0.weight"].copy()
    mask = common.magnitude_mask(w0, 0.5)
    rev = common.RevivableMask(model, {"0.weight": mask})
    np.testing.assert_array_equal(params["0.weight"], w0 * mask)
    # a gradient step reaches the pruned (masked) entries of the dense copy
    grads["0.weight"][...] = -1.0

    def sgd():
        params["0.weight"][...] -= 0.5 * grads["0.weight"]
    rev.step(sgd)
    np.testing.assert_allclose(rev.dense["0.weight"], w0 + 0.5)
    np.testing.assert_array_equal(params["0.weight"], (w0 + 0.5) * mask)
    # a rule that keeps everything splices the pruned weights back
    changes = rev.update(lambda name, w, t: np.ones_like(w))
    assert changes["0.weight"] == (0, int((mask == 0).sum()))
    np.testing.assert_allclose(params["0.weight"], w0 + 0.5)
    rev.update(lambda name, w, t: mask)
    rev.freeze()
    assert np.all(params["0.weight"][mask == 0] == 0)


def test_revivable_refuses_fixed_masks():
    model = tiny()
    common.apply_masks(model, common.layer_masks(model, 0.5))
    with pytest.raises(ValueError, match="fixed"):
        common.RevivableMask(model, {"0.weight": np.ones((5, 6))})


def test_zero_by_masks_does_not_attach():
    model = tiny()
    common.zero_by_masks(model, common.layer_masks(model, 0.5))
    assert not dict(model.named_masks())
    assert common.sparsity_stats(model)[-1]["sparsity"] == pytest.approx((15 + 7) / 45)


# ----------------------------------------------------------------------------------- report


def test_layer_table_counts_effective_macs():
    from methods.pruning import report
    model = tiny(np.float32)
    ref = tiny(np.float32)
    common.apply_masks(model, {"0.weight": common.magnitude_mask(dict(model.named_parameters())["0.weight"], 0.5)})
    rows = report.layer_table(model, (4, 6), reference=ref)
    assert [r["name"] for r in rows] == ["0", "2"]
    r0 = rows[0]
    assert r0["shape_before"] == r0["shape_after"] == (5, 6)
    assert r0["macs"] == 4 * 30 and r0["nonzeros"] == 15 and r0["effective_macs"] == 60
    assert r0["bytes_dense"] == 120 and r0["bytes_csr"] == 15 * 8 + 4 * 6
    s = report.model_summary(model, (4, 6), reference=ref)
    assert s["compression"] == pytest.approx(45 / 30) and s["all_params"] == 45 + 8
    assert "0" in report.format_table(rows)


def test_sensitivity_restores_weights_and_writes_files(tmp_path):
    from methods.pruning import report
    model = tiny()
    before = {n: p.copy() for n, p in model.named_parameters()}
    x = np.random.default_rng(0).standard_normal((50, 6))
    y = model(x).argmax(1)

    def acc(m):
        return float((m(x).argmax(1) == y).mean())
    rows = report.sensitivity(model, [0.0, 0.5, 0.9], acc)
    assert rows[0]["accuracy"] == 1.0 and len(rows) == 1 + 2 * 3
    assert [r["accuracy"] for r in rows if r["ratio"] == 0.0] == [1.0] * 3
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p, before[n])
    csv_path, png_path = report.write_sensitivity(rows, tmp_path)
    assert csv_path.read_text().splitlines()[0] == "layer,ratio,accuracy"
    assert png_path.stat().st_size > 1000


def test_baseline_fixture_is_trained(lenet300_baseline, fmnist):
    """The shared LeNet-300-100 baseline: trained (>= 85% on Fashion-MNIST test) and rebuilt identically."""
    from nn.train import evaluate
    assert fmnist.x_train.shape == (60000, 1, 28, 28) and abs(float(fmnist.x_train.mean())) < 1e-3
    assert lenet300_baseline.test_acc >= 0.85
    m = lenet300_baseline.build()
    assert evaluate(m, fmnist.x_test, fmnist.y_test)[1] == lenet300_baseline.test_acc
    m0 = lenet300_baseline.build_init()
    assert evaluate(m0, fmnist.x_test[:2000], fmnist.y_test[:2000])[1] < 0.5


def test_deployed_sparse_zoo_model_checkpoint_rebuilds_itself(tmp_path, rng):
    """A zoo model pruned by surgery and then deployed sparse loads back without being given the model: the
    checkpoint's recipe (zoo name + recorded edits) rebuilds the shrunk, CSR-layered architecture, with its nnz."""
    from methods.pruning.surgery import prune_plan
    from nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from nn.models import build
    from nn.sparse import SparseConv2d, SparseLinear
    model = build("lenet5", rng=np.random.default_rng(0), dtype=np.float64)
    prune_plan(model, {"0": np.arange(12)}, (1, 28, 28))
    params = dict(model.named_parameters())
    common.apply_masks(model, {n: common.magnitude_mask(params[n], s) for n, s in
                               (("2.weight", 0.8), ("5.weight", 0.9), ("7.weight", 0.3))})
    deployed = common.deploy_sparse(model, min_sparsity=0.5)  # 7 (30% zeros) stays dense
    assert isinstance(deployed[2], SparseConv2d) and isinstance(deployed[5], SparseLinear)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "d.h5", deployed)).model
    assert [type(m).__name__ for m in loaded] == [type(m).__name__ for m in deployed]
    assert loaded[5].nnz() == deployed[5].nnz() and loaded.arch == deployed.arch
    x = rng.standard_normal((2, 1, 28, 28))
    np.testing.assert_array_equal(loaded.eval()(x), deployed.eval()(x))
    bad = load_checkpoint(tmp_path / "d.h5").model
    bad.arch["edits"][-1]["plan"]["5"] = 10 ** 9
    with pytest.raises(CheckpointError, match="cannot hold 1000000000 nonzeros"):
        load_checkpoint(save_checkpoint(tmp_path / "bad.h5", bad))


def test_deploy_sparse_swaps_masked_layers_and_matches(rng):
    from nn.sparse import SparseLinear
    from tests.helpers import assert_close
    model = tiny(np.float64)
    common.apply_masks(model, {"0.weight": common.magnitude_mask(dict(model.named_parameters())["0.weight"], 0.7)})
    sparse = common.deploy_sparse(model, min_sparsity=0.5)
    assert isinstance(sparse[0], SparseLinear) and isinstance(sparse[2], Linear)  # 2 is dense: not converted
    assert isinstance(model[0], Linear)  # a copy unless inplace
    x = rng.standard_normal((4, 6))
    assert_close("deployed vs masked dense", sparse(x), model(x), np.float64)
