"""Structured Sparsity Learning (SSL): group Lasso on filters and channels, then removal of the zero groups.

Wei Wen, Chunpeng Wu, Yandan Wang, Yiran Chen, Hai Li. "Learning Structured Sparsity in Deep Neural
Networks". NIPS 2016. arXiv:1608.03665.

Implements
----------
* Eq. (1)-(2): E(W) = E_D(W) + lambda * R(W) + lambda_g * sum_l R_g(W^(l)), with the group Lasso
  R_g(w) = sum_g ||w^(g)||_2.
* Eq. (3), filter-wise and channel-wise groups of a conv layer l: lambda_n * sum_(n_l) ||W^(l)_(n_l,:,:,:)||_2
  + lambda_c * sum_(c_l) ||W^(l)_(:,c_l,:,:)||_2 (``group_norms``, ``penalty``).
* Removing the groups that reached zero: a zero filter of layer l is removed with its output channel; a zero
  channel group of layer l + 1 lets the matching filter of layer l go too (``ssl_plan`` + ``surgery``).

Deviations
----------
* The group Lasso is optimised by *proximal* SGD: after each optimizer step every group is shrunk,
  w_g <- w_g * max(0, 1 - lr * lambda_g / ||w_g||) (``group_prox``), which puts whole groups at exactly zero;
  the paper uses the plain (sub)gradient lambda_g * w_g / ||w_g|| and thresholds small groups afterwards
  (``add_group_lasso_grad`` is that subgradient, for comparison).
* Shape-wise and depth-wise groups (Sec. 3.2-3.3) are not implemented.
* Removing a zero *filter* drops its constant output (ReLU(bias) after the layer's activation) instead of
  folding it into the next layer's bias, so that removal is exact only when that constant is zero; removing a
  filter whose zero *channel group* in layer l + 1 no longer reads it is always exact.

Reproduce: ``python -m scripts.pruning.wen2016_ssl --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import next_consumer, prune_plan
from nn.module import Module

AXES = {"filter": 0, "channel": 1}


def group_norms(weight: np.ndarray, kind: str) -> np.ndarray:
    """||W_g||_2 of every filter (kind="filter", (Co,)) or input-channel group (kind="channel", (Ci,))."""
    w = np.moveaxis(weight.astype(np.float64), AXES[kind], 0)
    return np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))


def penalty(model: Module, groups: dict[tuple[str, str], float]) -> float:
    """Eq. (3): sum over {(layer, kind): lambda} of lambda * sum_g ||W_g||_2."""
    params = dict(model.named_parameters())
    return float(sum(lam * group_norms(params[f"{name}.weight"], kind).sum() for (name, kind), lam in groups.items()))


def add_group_lasso_grad(model: Module, groups: dict[tuple[str, str], float]) -> None:
    """The paper's subgradient lambda * W_g / ||W_g|| (0 for a zero group), added to the weight gradients."""
    mods = dict(model.named_modules())
    for (name, kind), lam in groups.items():
        m = mods[name]
        n = group_norms(m.weight, kind)
        scale = np.divide(lam, n, out=np.zeros_like(n), where=n > 0)
        shape = [1] * m.weight.ndim
        shape[AXES[kind]] = -1
        m._grads["weight"] += (m.weight * scale.reshape(shape)).astype(m.weight.dtype)


def group_prox(model: Module, groups: dict[tuple[str, str], float], lr: float) -> None:
    """Proximal step of lr * lambda * sum_g ||W_g||: block soft-thresholding, zero groups stay exactly zero."""
    mods = dict(model.named_modules())
    for (name, kind), lam in groups.items():
        m = mods[name]
        n = group_norms(m.weight, kind)
        shrink = np.maximum(0.0, 1.0 - lr * lam / np.maximum(n, 1e-300))
        shape = [1] * m.weight.ndim
        shape[AXES[kind]] = -1
        m.weight *= shrink.reshape(shape).astype(m.weight.dtype)


def zero_groups(model: Module, layer: str, kind: str) -> np.ndarray:
    """Indices of the groups of ``layer`` whose weights are all exactly zero."""
    return np.flatnonzero(group_norms(dict(model.named_parameters())[f"{layer}.weight"], kind) == 0)


def ssl_plan(model: Module, layers: list[str], input_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """{layer: kept filters}: a filter goes if it is zero, or if the next layer's channel group reading it is
    zero. Layers whose next consumer is not a one-to-one conv/linear only lose their zero filters."""
    plan = {}
    for name in layers:
        c = dict(model.named_parameters())[f"{name}.weight"].shape[0]
        dead = set(zero_groups(model, name, "filter").tolist())
        try:
            nxt = next_consumer(model, name, input_shape)
            dead |= set(zero_groups(model, nxt, "channel").tolist())
        except ValueError:
            pass
        keep = np.array([i for i in range(c) if i not in dead], dtype=np.int64)
        if len(keep) == 0:
            keep = np.array([int(np.argmax(group_norms(dict(model.named_parameters())[f"{name}.weight"],
                                                       "filter")))])
        if len(keep) < c:
            plan[name] = keep
    return plan


def remove_zero_groups(model: Module, layers: list[str], input_shape: tuple[int, ...]) -> Module:
    """Surgery on the groups that SSL drove to zero (in place); a model with no zero group is returned as is."""
    plan = ssl_plan(model, layers, input_shape)
    return prune_plan(model, plan, input_shape) if plan else model
