"""OBD: the diagonal Hessian against torch, and OBD vs magnitude pruning before retraining on Fashion-MNIST."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import common
from methods.pruning import lecun1989_obd as obd
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from tests.helpers import assert_close


def _torch_loss(torch, params, x, y, shapes):
    """Mean CE of the Linear-ReLU-...-Linear chain with flat parameters (weights and biases in order)."""
    a, i = torch.tensor(x), 0
    for k, (o, n) in enumerate(shapes):
        W = params[i:i + o * n].reshape(o, n)
        b = params[i + o * n:i + o * n + o]
        i += o * n + o
        a = a @ W.T + b
        if k < len(shapes) - 1:
            a = torch.relu(a)
    return torch.nn.functional.cross_entropy(a, torch.tensor(y))


def _flat(model):
    return np.concatenate([p.ravel() for _, p in model.named_parameters()])


def test_obd_diag_is_exact_hessian_diag_for_one_layer(torch, rng):
    model = Sequential(Linear(4, 3, rng=0, dtype=np.float64))
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 3, 5)
    p = torch.tensor(_flat(model), requires_grad=True)
    H = torch.autograd.functional.hessian(lambda q: _torch_loss(torch, q, x, y, [(3, 4)]), p).numpy()
    h = obd.diag_hessian(model, x, method="obd")
    got = np.concatenate([h["0.weight"].ravel(), h["0.bias"]])
    assert_close("OBD h_kk vs torch Hessian diagonal", got, np.diag(H), np.float64)


def test_gn_diag_matches_torch_gauss_newton(torch, rng):
    """Both diagonals of a Linear-ReLU-Linear net against torch Jacobians J_n (K, P) per sample:
    ``gn`` = diag(sum_n J_n^T (diag(p) - p p^T) J_n) / N, the exact Gauss-Newton diagonal;
    ``obd`` = diag(sum_n J_n^T diag(p (1 - p)) J_n) / N: with one hidden layer a weight reaches each logit
    through one unit only, so the paper's recursion (Eqs. (5)-(6): times x^2, back through W*W and the squared
    ReLU derivative) is exactly this, in every layer. The case has inactive ReLU units and negative weights,
    so back-propagating through W instead of W*W, or without the ReLU mask, gives other hidden-layer values
    (both stubs are computed below and shown to fail)."""
    model = Sequential(Flatten(), Linear(6, 5, rng=0, dtype=np.float64), ReLU(), Linear(5, 3, rng=1, dtype=np.float64))
    x = rng.standard_normal((7, 1, 2, 3))
    p = torch.tensor(_flat(model))
    shapes = [(5, 6), (3, 5)]
    want, want_obd = np.zeros(p.numel()), np.zeros(p.numel())
    for n in range(len(x)):
        xn = x[n:n + 1].reshape(1, -1)

        def logits(q):
            a, i = torch.tensor(xn), 0  # noqa: B023 - used within this iteration only
            for k, (o, m) in enumerate(shapes):
                a = a @ q[i:i + o * m].reshape(o, m).T + q[i + o * m:i + o * m + o]
                i += o * m + o
                a = torch.relu(a) if k == 0 else a
            return a[0]
        J = torch.autograd.functional.jacobian(logits, p).numpy()  # (K, P)
        pr = torch.softmax(logits(p), 0).numpy()
        Hz = np.diag(pr) - np.outer(pr, pr)
        want += np.einsum("kp,kl,lp->p", J, Hz, J) / len(x)
        want_obd += np.einsum("kp,k,kp->p", J, pr * (1 - pr), J) / len(x)
    h = obd.diag_hessian(model, x, method="gn", batch_size=3)
    keys = ("1.weight", "1.bias", "3.weight", "3.bias")
    got = np.concatenate([h[k].ravel() for k in keys])
    assert_close("exact Gauss-Newton diagonal vs torch", got, want, np.float64)
    h_obd = obd.diag_hessian(model, x, method="obd")
    assert_close("OBD recursion vs torch, all layers", np.concatenate([h_obd[k].ravel() for k in keys]), want_obd,
                 np.float64)
    assert not np.allclose(h_obd["1.weight"], h["1.weight"])  # OBD drops H_z's off-diagonal terms
    # the two stubs: hidden-layer h through W instead of W*W, and without the ReLU derivative
    x2 = x.reshape(len(x), -1)
    a1 = x2 @ model[1].weight.T + model[1].bias
    z = np.maximum(a1, 0) @ model[3].weight.T + model[3].bias
    pz = np.exp(z - z.max(1, keepdims=True))
    pz /= pz.sum(1, keepdims=True)
    D, W2, on = pz * (1 - pz), model[3].weight, (a1 > 0)
    assert not on.all() and (W2 < 0).any()  # the case can tell the stubs apart
    stub_w = ((D @ W2) * on).T @ (x2 * x2) / len(x)
    stub_mask = (D @ (W2 * W2)).T @ (x2 * x2) / len(x)
    right = ((D @ (W2 * W2)) * on).T @ (x2 * x2) / len(x)
    assert_close("hand recursion", right, h_obd["1.weight"], np.float64)
    assert not np.allclose(stub_w, right) and not np.allclose(stub_mask, right)


def test_saliency_golden_and_unsupported_layer():
    model = Sequential(Linear(2, 1, rng=0, dtype=np.float64))
    model[0].weight[...] = [[2.0, -1.0]]
    s = obd.saliency(model, {"0.weight": np.array([[0.5, 4.0]]), "0.bias": np.zeros(1)})
    # s_k = h_kk u_k^2 / 2
    np.testing.assert_allclose(s["0.weight"], [[1.0, 2.0]])
    assert list(s) == ["0.weight"]
    with pytest.raises(TypeError, match="Conv2d"):
        obd.diag_hessian(Sequential(Conv2d(1, 1, 3)), np.zeros((1, 1, 5, 5), np.float32))


@pytest.mark.slow
def test_obd_ties_magnitude_and_beats_random_before_retraining(lenet300_baseline, fmnist):
    """Same baseline, same number of deleted weights (global ranking), no retraining, 30-60% deleted.

    The paper's claim is that saliency ranks weights better than magnitude. On this network that holds only
    narrowly and not on every CPU: on an AVX2 Zen 3 OBD's training-loss increase was the smaller at 50% and 60%,
    on an AVX-512 Zen 4 (2026-12-04) it was smaller at 30% and 60% and larger at 50% (0.0122 vs 0.0114), and
    at >= 70% magnitude wins (papers/pruning/lecun1989_obd.md has the curves, and a 15-epoch baseline where
    magnitude wins from 50% up). What holds by a wide margin on both ISAs is asserted: OBD's loss increase is
    within 1.5x of magnitude's (a tie) and under a tenth of a random deletion's, and its test accuracy at 60%
    is within a point of magnitude's. A saliency that ignored the Hessian or the weights fails the random bound.
    """
    from nn.train import evaluate
    xs, ys = fmnist.x_train[:10000], fmnist.y_train[:10000]
    model = lenet300_baseline.build()
    h = obd.diag_hessian(model, fmnist.x_train[:3000])
    sal = obd.saliency(model, h)
    L0 = evaluate(model, xs, ys)[0]
    noise = {k: np.random.default_rng(0).random(v.shape) for k, v in sal.items()}
    for ratio in (0.3, 0.5, 0.6):
        res = {}
        for crit in ("obd", "magnitude", "random"):
            m = lenet300_baseline.build()
            if crit == "magnitude":
                masks = common.global_magnitude_masks(m, ratio)
            else:
                masks = common.score_masks(sal if crit == "obd" else noise, ratio)
            common.apply_masks(m, masks)
            assert common.sparsity_stats(m)[-1]["sparsity"] == pytest.approx(ratio, abs=1e-5)
            res[crit] = (evaluate(m, xs, ys)[0] - L0, evaluate(m, fmnist.x_test, fmnist.y_test)[1])
        print(ratio, res)
        assert res["obd"][0] <= 1.5 * res["magnitude"][0], ratio
        assert res["obd"][0] < 0.1 * res["random"][0], ratio
    assert res["obd"][1] >= res["magnitude"][1] - 0.01


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.lecun1989_obd import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ("config.json", "results.json", "sweep.csv", "sweep.png"):
        assert (tmp_path / f).is_file(), f
    r = json.loads((tmp_path / "results.json").read_text())
    assert {row["criterion"] for row in r["sweep"]} == {"obd", "gn", "magnitude"} and len(r["sweep"]) == 6
