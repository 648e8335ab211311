"""DropPruning: iterative magnitude pruning with stochastic drop-away and drop-back of weights.

Haipeng Jia, Xueshuang Xiang, Da Fan, Meiyu Huang, Changhao Sun, Qingliang Meng, Yang He, Chunyu Chen.
"DropPruning for Model Compression". arXiv:1812.02035, 2018.

Implements
----------
* The pruning stage (Sec. 3): at stage t every layer must reach sparsity s_t. Instead of pruning the
  n_t smallest surviving weights,
  - *drop away*: the candidate set is the n_t smallest-magnitude surviving weights plus the next
    ``pool * (survivors - n_t)`` (the "unimportant" ones); a random subset of n_t of it is pruned;
  - *drop back*: a random fraction ``back`` of the weights pruned in earlier stages is revived, with the value
    its dense shadow copy has reached;
  the drop-away draw removes n_t plus the number revived, so the layer lands exactly on s_t
  (``drop_mask``). pool = back = 0 is deterministic iterative magnitude pruning (Han et al. 2015).
* Iterative prune/retrain (Sec. 3, Algorithm 1): stages with a sparsity schedule, retraining after each,
  the pruned weights' shadows keep their gradient updates (``common.RevivableMask``) so a revived weight
  comes back with a trained value (``drop_pruning``).

Deviations
----------
* The paper draws each candidate / pruned weight independently with tuned probabilities so that the sparsity
  *drifts* to the target; we draw fixed-size random subsets so that every stage hits its sparsity exactly,
  which makes the comparison with deterministic pruning at equal sparsity exact.
* LeNet-300-100 (the test) / LeNet-5 on Fashion-MNIST, with few retraining epochs per stage, instead of LeNet-5
  on MNIST and VGG-16 on CIFAR-10 with full retraining.

Reproduce: ``python -m scripts.pruning.jia2018_droppruning --seed 0``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from methods.pruning.common import RevivableMask
from nn.module import Module


def drop_mask(w: np.ndarray, mask: np.ndarray, sparsity: float, pool: float, back: float,
              rng: np.random.Generator) -> np.ndarray:
    """New 0/1 mask with exactly floor(sparsity * w.size) zeros, drawn by drop-away / drop-back.

    Parameters
    ----------
    w : (...) dense (shadow) weights;  mask : (...) current 0/1 mask
    sparsity : target fraction of zeros, >= the current one
    pool : the candidate set is the n_drop smallest survivors plus the next ``pool`` fraction of the survivors
        that deterministic pruning would keep (0: deterministic)
    back : fraction of the currently pruned weights revived (0: no drop-back)
    """
    flat_w, flat_m = np.abs(w).ravel(), mask.ravel() != 0
    target = int(np.floor(sparsity * w.size))
    pruned = np.flatnonzero(~flat_m)
    if target < len(pruned):
        raise ValueError(f"jia2018_droppruning: target sparsity {sparsity} is below the current one "
                         f"{len(pruned) / w.size:.4f}")
    new = flat_m.copy()
    # drop back: revive a random fraction of the pruned weights
    n_back = round(back * len(pruned))
    if n_back:
        new[rng.choice(pruned, n_back, replace=False)] = True
    alive = np.flatnonzero(flat_m)  # only weights that survived the previous stage can be dropped away
    n_drop = target - len(pruned) + n_back
    n_pool = min(len(alive), n_drop + int(np.ceil(pool * (len(alive) - n_drop))))
    cand = alive[np.argsort(flat_w[alive], kind="stable")[:n_pool]]  # the unimportant survivors
    # drop away: a random subset of the candidates
    drop = rng.choice(cand, n_drop, replace=False) if pool > 0 else cand[:n_drop]
    new[drop] = False
    return new.reshape(w.shape).astype(w.dtype)


def drop_pruning(model: Module, final: dict[str, float], stages: int, retrain: Callable[[RevivableMask], None],
                 pool: float, back: float, rng: np.random.Generator) -> tuple[RevivableMask, list[dict]]:
    """Algorithm 1: ``stages`` prune/retrain rounds to the per-layer sparsities ``final`` (linear schedule).

    retrain : trains the model for one stage; it must update through ``rev.step(optimizer.step)`` so the
        shadow weights get the gradient (``common.train_epochs(..., step=lambda: rev.step(opt.step))``).
    Returns the RevivableMask (call ``.freeze()`` to fix the masks) and one row per stage and layer.
    """
    params = dict(model.named_parameters())
    rev = RevivableMask(model, {n: np.ones_like(params[n]) for n in final})
    hist = []
    for t in range(1, stages + 1):
        def rule(name, w, old, t=t):
            return drop_mask(w, old, final[name] * t / stages, pool, back, rng)
        changes = rev.update(rule)
        for n, (pruned_now, revived) in changes.items():
            hist.append({"stage": t, "layer": n, "pruned": pruned_now, "revived": revived,
                         "sparsity": 1.0 - float(rev.masks[n].mean())})
        retrain(rev)
    return rev, hist
