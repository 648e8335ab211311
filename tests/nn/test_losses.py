"""Losses against torch (value and gradient, both dtypes), central differences, large logits, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from nn.losses import CrossEntropyLoss, KDLoss, MSELoss
from tests.helpers import assert_close, finite_difference_check, tol

DTYPES = [np.float64, np.float32]


def _torch_ce(torch, logits, target, eps):
    lt = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(lt, torch.tensor(target), label_smoothing=eps)
    loss.backward()
    return loss.item(), lt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])  # 1e4: exp would overflow without the log-sum-exp shift
def test_cross_entropy_vs_torch(torch, rng, dtype, eps, scale):
    logits = (rng.standard_normal((7, 5)) * scale).astype(dtype)
    target = rng.integers(0, 5, size=7)
    crit = CrossEntropyLoss(label_smoothing=eps)
    loss = crit(logits, target)
    g = crit.backward()
    want_loss, want_g = _torch_ce(torch, logits, target, eps)
    assert np.isfinite(loss) and g.dtype == logits.dtype
    assert_close("ce loss", np.float64(loss), np.float64(want_loss), dtype, scale=scale)
    assert_close("ce grad", g, want_g, dtype)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_finite_differences(rng, eps):
    logits = rng.standard_normal((4, 6))
    target = rng.integers(0, 6, size=4)
    crit = CrossEntropyLoss(eps)
    crit(logits, target)
    finite_difference_check(lambda z: crit(z, target), logits.copy(), crit.backward())


def test_cross_entropy_grad_output_scales(rng):
    logits, target = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    crit = CrossEntropyLoss()
    crit(logits, target)
    g1 = crit.backward()
    crit(logits, target)
    assert_close("scaled grad", crit.backward(0.25), 0.25 * g1)


def test_cross_entropy_errors():
    crit = CrossEntropyLoss()
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        crit(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        crit(z, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="integer class targets"):
        crit(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        crit(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        crit(np.zeros(4), np.array([0]))
    with pytest.raises(TypeError, match="float32 or float64"):
        crit(z.astype(np.int32), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="fresh forward"):
        crit.backward()


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_vs_torch(torch, rng, dtype):
    x = rng.standard_normal((3, 2, 4)).astype(dtype)
    y = rng.standard_normal((3, 2, 4)).astype(dtype)
    crit = MSELoss()
    loss = crit(x, y)
    g = crit.backward()
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.mse_loss(xt, torch.tensor(y))
    lt.backward()
    assert_close("mse loss", np.float64(loss), np.float64(lt.item()), dtype)
    assert_close("mse grad", g, xt.grad.numpy(), dtype)


def test_mse_finite_differences(rng):
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    crit = MSELoss()
    crit(x, y)
    finite_difference_check(lambda z: MSELoss()(z, y), x.copy(), crit.backward())


def test_mse_errors():
    with pytest.raises(ValueError, match="same shape"):
        MSELoss()(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="one dtype"):
        MSELoss()(np.zeros(3), np.zeros(3, np.float32))


def _torch_kd(torch, s, t, T):
    st = torch.tensor(s, requires_grad=True)
    tt = torch.tensor(t, requires_grad=True)
    F = torch.nn.functional
    loss = F.kl_div(F.log_softmax(st / T, 1), F.softmax(tt / T, 1), reduction="batchmean") * T * T
    loss.backward()
    return loss.item(), st.grad.numpy(), tt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [1.0, 4.0])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_kd_vs_torch(torch, rng, dtype, T, scale):
    s = (rng.standard_normal((6, 10)) * scale).astype(dtype)
    t = (rng.standard_normal((6, 10)) * scale).astype(dtype)
    crit = KDLoss(T)
    loss = crit(s, t)
    ds, dt = crit.backward(teacher=True)
    want, want_ds, want_dt = _torch_kd(torch, s, t, T)
    assert np.isfinite(loss) and ds.dtype == dt.dtype == s.dtype
    assert_close("kd loss", np.float64(loss), np.float64(want), dtype, scale=scale)
    assert_close("kd grad student", ds, want_ds, dtype)
    # torch's teacher gradient is NaN where softmax(t / T) underflows to 0 (d xlogy(p, p) at p = 0); ours is 0
    ok = np.isfinite(want_dt)
    assert np.isfinite(dt).all() and (scale > 1 or ok.all())
    assert_close("kd grad teacher", dt[ok], want_dt[ok], dtype)
    crit(s, t)
    assert_close("student-only backward", crit.backward(), ds, dtype)


def test_kd_finite_differences(rng):
    s, t = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    crit = KDLoss(T=3.0)
    crit(s, t)
    ds, dt = crit.backward(teacher=True)
    finite_difference_check(lambda z: KDLoss(3.0)(z, t), s.copy(), ds)
    finite_difference_check(lambda z: KDLoss(3.0)(s, z), t.copy(), dt)


def test_kd_zero_when_equal_and_errors(rng):
    s = rng.standard_normal((2, 3))
    assert abs(KDLoss(2.0)(s, s.copy())) <= tol(np.float64)["atol"]
    with pytest.raises(ValueError, match="must match"):
        KDLoss(2.0)(s, s[:, :2].copy())
    with pytest.raises(ValueError, match="positive"):
        KDLoss(0.0)
