"""Pruning filters by their L1 norm.

Hao Li, Asim Kadav, Igor Durdanovic, Hanan Samet, Hans Peter Graf. "Pruning Filters for Efficient ConvNets".
ICLR 2017. arXiv:1608.08710.

Implements
----------
* Sec. 3.1, the procedure for pruning m filters of layer i: (1) for each filter F_{i,j} compute
  s_j = sum_l sum |K_l| (the L1 norm of its kernel weights, Eq. in Sec. 3.1); (2) sort s_j; (3) prune the m
  filters with the smallest s_j and their feature maps; the kernels of the next layer that read those maps
  are removed too; (4) a new, smaller kernel matrix is created for layers i and i+1 (``surgery``).
* Sec. 3.2, sensitivity analysis: prune each layer independently at increasing ratios and evaluate
  (``sensitivity``), then choose per-layer ratios that keep the drop within a tolerance
  (``ratios_from_sensitivity``).
* Sec. 3.3, multi-layer pruning: *independent* (each layer ranked on the original weights, including the
  kernels of maps removed in the previous layer) and *greedy* (each layer ranked after the previous layers
  were pruned, so removed maps no longer count).
* Sec. 3.4, retraining: one-shot prune then retrain (the caller fine-tunes with ``common.train_epochs``).
* Random filter selection, the paper's comparison in Fig. 2(b)/Fig. 4.

Deviations
----------
* ResNets: the paper prunes only the first conv of each residual block; ``prunable_layers(independent=True)``
  gives exactly those layers, the coupled ones (residual streams) are left to the caller.
* Ratios are rounded to a whole number of filters, m = round(ratio * C_out), and at least one filter is kept.
* Reproduction is on Fashion-MNIST with LeNet-5 / a small VGG, not CIFAR-10 VGG-16 (data and compute budget).

Reproduce: ``python -m scripts.pruning.li2017_l1filter --seed 0``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np

from methods.pruning.surgery import prune_channels, prune_plan, trace
from nn.module import Module


def filter_l1_norms(weight: np.ndarray) -> np.ndarray:
    """s_j for every filter of a conv (Co, Ci/G, kH, kW) or linear (O, I) weight -> (Co,) float64."""
    # Sec. 3.1: s_j = sum_{l=1}^{n_i} sum |K_l|
    return np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).sum(axis=1)


def n_pruned(c: int, ratio: float) -> int:
    """m = round(ratio * c) filters to remove, leaving at least one."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    return min(round(ratio * c), c - 1)


def keep_smallest_removed(scores: np.ndarray, ratio: float) -> np.ndarray:
    """Indices (sorted) of the filters kept after removing the round(ratio * C) lowest-scoring ones."""
    m = n_pruned(len(scores), ratio)
    order = np.argsort(scores, kind="stable")  # ascending: the first m are pruned
    return np.sort(order[m:])


def keep_random(c: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Random filter selection with the same count (the paper's baseline)."""
    return np.sort(rng.permutation(c)[n_pruned(c, ratio):])


def _weight(model: Module, name: str) -> np.ndarray:
    params = dict(model.named_parameters())
    if f"{name}.weight" not in params:
        raise ValueError(f"li2017_l1filter: no layer {name!r} with a weight in the model")
    return params[f"{name}.weight"]


def l1_plan(model: Module, ratios: dict[str, float], criterion: str = "l1",
            rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """{layer: kept filter indices} ranking every layer on the current weights (the *independent* strategy)."""
    plan = {}
    for name, ratio in ratios.items():
        w = _weight(model, name)
        if criterion == "l1":
            plan[name] = keep_smallest_removed(filter_l1_norms(w), ratio)
        elif criterion == "random":
            if rng is None:
                raise ValueError("li2017_l1filter: criterion='random' needs rng")
            plan[name] = keep_random(w.shape[0], ratio, rng)
        else:
            raise ValueError(f"li2017_l1filter: criterion must be 'l1' or 'random', got {criterion!r}")
    return plan


def prune_filters(model: Module, ratios: dict[str, float], input_shape: tuple[int, ...],
                  strategy: str = "independent", criterion: str = "l1",
                  rng: np.random.Generator | None = None) -> Module:
    """Remove round(ratio * C) filters of each named layer (in place) and the matching next-layer kernels.

    strategy : ``"independent"`` ranks all layers on the original weights and prunes them in one surgery;
        ``"greedy"`` prunes layer by layer in execution order, ranking each after the previous ones shrank
        (Sec. 3.3: removed feature maps no longer contribute to the next layer's L1 norms).
    """
    if strategy == "independent":
        return prune_plan(model, l1_plan(model, ratios, criterion, rng), input_shape)
    if strategy != "greedy":
        raise ValueError(f"li2017_l1filter: strategy must be 'independent' or 'greedy', got {strategy!r}")
    order = [n.name for n in trace(model, input_shape).nodes if n.name in ratios]
    for name in order:
        prune_channels(model, name, l1_plan(model, {name: ratios[name]}, criterion, rng)[name], input_shape)
    return model


def sensitivity(model: Module, layers: Iterable[str], ratios: Iterable[float], input_shape: tuple[int, ...],
                evaluate: Callable[[Module], float]) -> dict[str, list[float]]:
    """Sec. 3.2: accuracy after pruning each layer *alone* at each ratio, without retraining (Fig. 2(b)).

    ``evaluate(model) -> accuracy``; the model itself is not modified. Returns {layer: [acc per ratio]}.
    """
    ratios = list(ratios)
    out = {}
    for name in layers:
        out[name] = [evaluate(prune_filters(copy.deepcopy(model), {name: r}, input_shape)) if r > 0
                     else evaluate(model) for r in ratios]
    return out


def ratios_from_sensitivity(sens: dict[str, list[float]], ratios: Iterable[float], base_acc: float,
                            tolerance: float) -> dict[str, float]:
    """For each layer, the largest ratio whose accuracy (layer pruned alone) stays within ``tolerance`` of
    ``base_acc``; layers that cannot be pruned at any ratio get 0 and are left out."""
    ratios = list(ratios)
    out = {}
    for name, accs in sens.items():
        ok = [r for r, a in zip(ratios, accs) if a >= base_acc - tolerance]
        best = max(ok, default=0.0)
        if best > 0:
            out[name] = best
    return out
