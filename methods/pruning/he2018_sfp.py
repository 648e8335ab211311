"""Soft Filter Pruning (SFP): zero the weakest filters after every epoch but keep training them.

Yang He, Guoliang Kang, Xuanyi Dong, Yanwei Fu, Yi Yang. "Soft Filter Pruning for Accelerating Deep
Convolutional Neural Networks". IJCAI 2018. arXiv:1808.06866.

Implements
----------
* Eq. (2): the L2 norm of every filter, ||W_j^(i)||_p with p = 2 (``filter_l2_norms``).
* Algorithm 1: for each training epoch, update the weights; then, in every pruned layer i, set the
  N_(i+1) * P_i filters with the smallest norm to zero (``soft_prune_step``). Zeroed filters are *not* masked:
  the next epoch's updates may make them grow back, and the set is re-chosen every epoch.
* After the last epoch, obtain the compact model by removing the zero filters (``remove_zero_filters`` ->
  ``surgery``).
* The hard-pruning comparison (zero and freeze with a mask) is ``soft_prune_step(..., hard=True)``.
* Eq. (2) on the BatchNorm-folded filter when a BatchNorm follows the conv (``soft_prune_step(...,
  batchnorms={conv: bn})``, see Deviations).

Deviations
----------
* Only the filter weights are zeroed (bias and BatchNorm untouched, as in the paper); the final removal
  therefore drops a constant channel (ReLU(BN(bias))), which the paper also accepts.
* The same rate P for every listed layer (the paper's setting); layers are named by the caller.
* The count is round(P C), at most C - 1; the released code (he-y/soft-filter-pruning) takes floor(C P) and also
  zeroes the filters once before the first epoch. We zero only after each epoch, as Algorithm 1 is written.
* BatchNorm-aware selection (optional, ``batchnorms``): a BatchNorm after the conv rescales every channel to
  unit variance in training, so a regrown filter of small norm is a full-size feature, and the plain L2
  criterion keeps zeroing such features (measured in papers/pruning/he2018_sfp.md: accuracy fell epoch after
  epoch, and on another CPU's rounding the test's run fell below its bound). With ``batchnorms`` the norm of
  Eq. (2) is taken of the filter with its BatchNorm folded in, ||W_j|| * |gamma_j| / sqrt(running_var_j + eps),
  the size of what the channel really contributes; only the filter weights are zeroed, as in the paper.

Reproduce: ``python -m scripts.pruning.he2018_sfp --seed 0`` (soft vs hard, same seed); the test's run is in its docstring.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import prune_plan
from nn.module import Module


def filter_l2_norms(weight: np.ndarray) -> np.ndarray:
    """Eq. (2) with p = 2: ||W_j||_2 of every filter of a (Co, Ci/G, kH, kW) or (O, I) weight -> (Co,)."""
    return np.sqrt((weight.astype(np.float64).reshape(weight.shape[0], -1) ** 2).sum(axis=1))


def folded_filter_norms(weight: np.ndarray, bn: Module) -> np.ndarray:
    """Eq. (2) of the filter with the following BatchNorm folded in: ||W_j|| * |gamma_j| / sqrt(var_j + eps)."""
    gamma = bn.weight if getattr(bn, "weight", None) is not None else np.ones(weight.shape[0])
    return filter_l2_norms(weight) * np.abs(gamma.astype(np.float64)) / np.sqrt(
        bn.running_var.astype(np.float64) + bn.eps)


def soft_prune_step(model: Module, layers: list[str], rate: float, hard: bool = False,
                    batchnorms: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Zero the round(rate * C) smallest-norm filters of each layer (hard: also attach a mask). Returns
    {layer: zeroed filter indices}. ``batchnorms`` maps a layer to the BatchNorm that follows it: its filters
    are then ranked by their BatchNorm-folded norm (``folded_filter_norms``, a deviation: see the module doc)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"he2018_sfp: rate must be in [0, 1), got {rate}")
    mods = dict(model.named_modules())
    batchnorms = batchnorms or {}
    for name, bn in batchnorms.items():
        if bn not in mods or not hasattr(mods[bn], "running_var"):
            raise ValueError(f"he2018_sfp: {bn!r} (after {name!r}) is not a BatchNorm of the model")
        if mods[bn].running_var.shape[0] != mods[name].weight.shape[0]:
            raise ValueError(f"he2018_sfp: BatchNorm {bn!r} has {mods[bn].running_var.shape[0]} channels, "
                             f"layer {name!r} {mods[name].weight.shape[0]} filters")
    out = {}
    for name in layers:
        m = mods[name]
        if name in batchnorms:
            norms = folded_filter_norms(m.weight, mods[batchnorms[name]])
        else:
            # Eq. (2): ||W_j||_2
            norms = filter_l2_norms(m.weight)
        k = min(round(rate * len(norms)), len(norms) - 1)
        idx = np.sort(np.argsort(norms, kind="stable")[:k])
        if hard:
            mask = np.ones_like(m.weight)
            mask[idx] = 0
            old = m._masks.get("weight")
            m.set_mask("weight", mask if old is None else mask * old)
        else:
            # Algorithm 1: Z_j^(i) = 0 for the selected filters; they stay trainable
            m.weight[idx] = 0
        out[name] = idx
    return out


def zero_filters(model: Module, layer: str) -> np.ndarray:
    """Indices of the filters of ``layer`` whose weights are all exactly zero."""
    return np.flatnonzero(filter_l2_norms(dict(model.named_modules())[layer].weight) == 0)


def remove_zero_filters(model: Module, layers: list[str], input_shape: tuple[int, ...]) -> Module:
    """The compact model: surgery on every all-zero filter of ``layers`` (in place)."""
    mods = dict(model.named_modules())
    plan = {}
    for name in layers:
        c = mods[name].weight.shape[0]
        keep = np.setdiff1d(np.arange(c), zero_filters(model, name))
        if 0 < len(keep) < c:
            plan[name] = keep
    return prune_plan(model, plan, input_shape) if plan else model
