"""Network Slimming: L1-sparse BatchNorm scale factors select the channels to remove.

Zhuang Liu, Jianguo Li, Zhiqiang Shen, Gao Huang, Shoumeng Yan, Changshui Zhang. "Learning Efficient
Convolutional Networks through Network Slimming". ICCV 2017. arXiv:1708.06519.

Implements
----------
* Eq. (1): L = sum_(x,y) l(f(x, W), y) + lambda * sum_(gamma in Gamma) g(gamma), with g(s) = |s|, trained by
  adding the subgradient lambda * sign(gamma) to every BatchNorm scale's gradient (``add_bn_l1_subgradient``,
  called between backward and the optimizer step).
* Sec. 4.2 "Channel pruning": one *global* threshold, the ``percent``-quantile of all |gamma| of the prunable
  BatchNorms; channels below it are removed with their incoming filters and outgoing kernels
  (``slimming_plan`` + ``surgery.prune_plan``).
* Fine-tuning afterwards and multi-pass slimming (Fig. 2) are loops the caller runs.

Deviations
----------
* Only channels whose BatchNorm belongs to an *independent* channel group (one producing conv) are pruned;
  in residual streams (coupled through adds) the paper inserts a channel-selection layer instead, which we
  do not implement, so those BatchNorms are left out of the threshold.
* Every pruned layer keeps at least one channel (its largest |gamma|), so a layer can never vanish.
* Weight decay, if the optimizer has it, also applies to gamma (as in the paper's PyTorch code).

Reproduce: ``python -m scripts.pruning.liu2017_slimming --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import channel_groups, prune_plan, trace
from nn.module import Module


def _is_bn(m: Module) -> bool:
    return any(c.__name__ in ("BatchNorm1d", "BatchNorm2d") for c in type(m).__mro__)


def bn_layers(model: Module) -> list[str]:
    """Names of every affine BatchNorm layer."""
    return [n for n, m in model.named_modules() if _is_bn(m) and m.weight is not None]


def add_bn_l1_subgradient(model: Module, lam: float, names: list[str] | None = None) -> None:
    """Add lambda * sign(gamma) to the gradient of every BatchNorm scale (after backward, before the step)."""
    mods = dict(model.named_modules())
    for name in bn_layers(model) if names is None else names:
        m = mods[name]
        # Eq. (1): d/dgamma [lambda * |gamma|] = lambda * sign(gamma)  (subgradient 0 at gamma = 0)
        m._grads["weight"] += lam * np.sign(m.weight)


def prunable_bns(model: Module, input_shape: tuple[int, ...]) -> list[str]:
    """BatchNorms whose channels can be removed on their own (one producing conv, not reaching the output)."""
    kinds = {n.name: n.kind for n in trace(model, input_shape).nodes}
    out = []
    for g in channel_groups(model, input_shape):
        producers = [n for n in g.layers if kinds[n] in ("conv", "gconv", "linear")]
        bns = [n for n in g.layers if kinds[n] == "bn"]
        if len(producers) == 1 and len(bns) == 1 and g.fixed == 0:
            out += bns
    return out


def global_threshold(gammas: list[np.ndarray], percent: float) -> float:
    """The ``percent``-quantile of all |gamma| pooled together (Sec. 4.2: e.g. 70% of the channels)."""
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"liu2017_slimming: percent must be in [0, 1), got {percent}")
    allg = np.concatenate([np.abs(g).ravel() for g in gammas])
    return float(np.quantile(allg, percent))


def slimming_plan(model: Module, percent: float, input_shape: tuple[int, ...]) -> tuple[dict, float]:
    """({BatchNorm name: kept channel indices}, threshold) for pruning ``percent`` of the prunable channels."""
    mods = dict(model.named_modules())
    names = prunable_bns(model, input_shape)
    if not names:
        raise ValueError("liu2017_slimming: the model has no independently prunable BatchNorm layer")
    thr = global_threshold([mods[n].weight for n in names], percent)
    plan = {}
    for n in names:
        g = np.abs(mods[n].weight)
        keep = np.flatnonzero(g > thr)
        if keep.size == 0:
            keep = np.array([int(np.argmax(g))])
        plan[n] = keep
    return plan, thr


def slim(model: Module, percent: float, input_shape: tuple[int, ...]) -> Module:
    """Remove the ``percent`` smallest-|gamma| channels (globally) by surgery, in place."""
    plan, _ = slimming_plan(model, percent, input_shape)
    return prune_plan(model, plan, input_shape)


def gamma_sparsity(model: Module, tol: float, names: list[str] | None = None) -> float:
    """Fraction of BatchNorm scales with |gamma| < tol * max |gamma| (per model)."""
    mods = dict(model.named_modules())
    g = np.abs(np.concatenate([mods[n].weight for n in (bn_layers(model) if names is None else names)]))
    return float((g < tol * g.max()).mean())
