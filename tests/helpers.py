"""One cross-check helper and one tolerance table for the whole suite.

``TOL[dtype]`` is the single source of tolerances; an override must say why on its own line.
``check_module_against_torch`` compares an lwnn module with its torch twin: shapes and dtypes first, then the
forward, then backward with a *random* upstream gradient — the input gradient and every parameter gradient by
name. A failure message names the quantity and prints the max abs and rel error.
"""
from __future__ import annotations

import numpy as np

TOL = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
}


def tol(dtype) -> dict:
    return TOL[np.dtype(dtype)]


def assert_close(name: str, got: np.ndarray, want: np.ndarray, dtype=None, scale: float = 1.0) -> None:
    """Compare with the tolerance of ``dtype`` (``scale`` widens atol for sums over many terms)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != expected {want.shape}"
    t = tol(dtype if dtype is not None else want.dtype)
    rtol, atol = t["rtol"], t["atol"] * scale * max(1.0, float(np.abs(want).max(initial=0.0)))
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        rel = diff / np.maximum(np.abs(want.astype(np.float64)), 1e-30)
        raise AssertionError(f"{name}: max abs err {diff.max():.3e}, max rel err {rel.max():.3e} "
                             f"(rtol={rtol}, atol={atol:.1e}, dtype={t})")


def torch_dtype(dtype):
    import torch
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def check_module_against_torch(module, torch_module, x: np.ndarray, rng: np.random.Generator,
                               scale: float = 1.0, train: bool = True) -> None:
    """Forward, input gradient and every parameter gradient (by name) of ``module`` against ``torch_module``.

    The torch module must already hold the same parameters (use ``nn.interop`` or copy them). Both run in
    ``x.dtype``; the upstream gradient is random, never all ones.
    """
    import torch

    module.train(train)
    torch_module.train(train)
    torch_module.to(torch_dtype(x.dtype))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_module(xt)
    y = module(x)
    assert y.dtype == x.dtype, f"forward changed dtype {x.dtype} -> {y.dtype}"
    assert_close("forward", y, yt.detach().numpy(), x.dtype, scale)
    g = rng.standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.tensor(g))
    module.zero_grad()
    dx = module.backward(g)
    assert dx.dtype == x.dtype, f"backward changed dtype {x.dtype} -> {dx.dtype}"
    assert_close("grad input", dx, xt.grad.numpy(), x.dtype, scale)
    ours = dict(module.named_grads())
    theirs = {n: p.grad for n, p in torch_module.named_parameters()}
    assert set(ours) == set(theirs), f"parameter names differ: ours {sorted(ours)} torch {sorted(theirs)}"
    for name, tg in theirs.items():
        want = np.zeros(ours[name].shape, x.dtype) if tg is None else tg.numpy()
        assert_close(f"grad {name}", ours[name], want, x.dtype, scale)


def finite_difference_check(f, x: np.ndarray, analytic: np.ndarray, eps: float = 1e-6,
                            rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Central differences of the scalar ``f(x)`` against ``analytic`` = df/dx (float64 only)."""
    assert x.dtype == np.float64, "finite differences run in float64"
    num = np.zeros_like(x)
    flat, nflat = x.reshape(-1), num.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        nflat[i] = (fp - fm) / (2 * eps)
    if not np.allclose(analytic, num, rtol=rtol, atol=atol):
        diff = np.abs(analytic - num)
        raise AssertionError(f"finite differences: max abs err {diff.max():.3e} at {np.unravel_index(diff.argmax(), x.shape)}")


def gradcheck_module(module, x: np.ndarray, rng: np.random.Generator, eps: float = 1e-6) -> None:
    """Finite-difference check of ``module.backward`` for the input and every parameter (float64, tiny shapes).

    The scalar is <g, module(x)> with a random g, so every output element is weighted differently.
    """
    y = module(x)
    g = rng.standard_normal(y.shape)
    module.zero_grad()
    dx = module.backward(g)

    def f_of_x(xx):
        return float(np.sum(module(xx) * g))

    finite_difference_check(f_of_x, x.copy(), dx, eps)
    grads = {n: gg.copy() for n, gg in module.named_grads()}
    for name, p in module.named_parameters():
        finite_difference_check(lambda _p: float(np.sum(module(x) * g)), p, grads[name], eps)
