"""Iterative magnitude pruning with retraining.

Han S., Pool J., Tran J., Dally W. J. — "Learning both Weights and Connections for Efficient Neural
Networks", NIPS 2015, arXiv:1506.02626.

**Implements**

* Section 3 / Fig. 2, the three-step pipeline: train densely, prune the small-magnitude connections of each
  layer, retrain the survivors from their trained values (never re-initialised), with the pruned weights
  held at exactly zero by a mask (``Module.set_mask``; ``nn.optim`` re-applies it after every step).
* Section 3.1, L2 regularisation during retraining (``weight_decay`` of the SGD retraining).
* Section 3.2, dropout ratio adjustment: Eq. (1) C_i = N_i N_{i-1} connections of layer i, Eq. (2)
  D_r = D_o sqrt(C_ir / C_io) (``adjusted_dropout``, ``adjust_dropout``).
* Section 3.4, iterative pruning: several prune/retrain rounds, each removing a further part of the weights,
  against one-shot pruning to the same sparsity (Fig. 5 compares the two).
* Section 3.5, dead neurons: units with no remaining input connections (``dead_neurons``; see Deviations).
* The pruning threshold: "a quality parameter multiplied by the standard deviation of a layer's weights"
  (the authors' later Deep Compression code, and Section 4 wording) with ``prune_round(quality=...)``; or
  fixed per-layer keep ratios (``prune_round(keep=...)``, how the paper reports its LeNet results, Table 2 /
  Table 1). ``iterative_prune`` uses the keep ratios.

**Deviations**

* Fashion-MNIST instead of MNIST (the project's dataset; MNIST is near saturation for this claim).
* The per-round keep ratios follow a geometric schedule keep_t = keep_final^(t / rounds) (the paper does
  not give its per-iteration schedule).
* Retraining budget: a few epochs per round (the paper retrains until convergence); the test uses 1 epoch
  per round on the shared 6-epoch baseline to stay within its time budget.
* Biases are not pruned (the paper counts weights; biases are < 0.2% of LeNet-300-100).
* Dead neurons (Section 3.5) are only counted, and only on the input side (a Linear row with no weight
  left); the paper also names units with no *output* connections, and lets retraining remove them (their
  gradient vanishes and weight decay drives them to zero); we neither count the output side nor remove
  either kind by surgery.

Reproduce: ``python -m scripts.pruning.han2015_prune --seed 0`` (see papers/pruning/han2015_prune.md).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from methods.pruning.common import (
    apply_masks,
    compression_ratio,
    layer_masks,
    prunable_names,
    std_threshold_masks,
    train_epochs,
)
from nn.basic import Dropout
from nn.module import Module
from nn.optim import SGD


def keep_schedule(keep_final: float, rounds: int) -> list[float]:
    """Geometric per-round keep ratios ending at ``keep_final``: keep_t = keep_final ** (t / rounds), t = 1..rounds."""
    if not 0.0 < keep_final <= 1.0:
        raise ValueError(f"keep ratio must be in (0, 1], got {keep_final}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    return [keep_final ** (t / rounds) for t in range(1, rounds + 1)]


def prune_round(model: Module, keep: dict[str, float] | None = None, quality: dict[str, float] | float | None = None,
                ) -> dict[str, np.ndarray]:
    """One pruning step (Fig. 2, middle): attach magnitude masks and zero the pruned weights.

    Give exactly one of
    keep : name -> fraction of the layer's weights kept (the smallest |w| of each layer go); weights already
        pruned have |w| = 0 so they stay pruned and the mask only shrinks.
    quality : per-layer (or one) quality factor q: prune |w| <= q * std(surviving w) (Han's threshold rule).
    """
    if (keep is None) == (quality is None):
        raise ValueError("prune_round: give exactly one of keep= (ratios) or quality= (threshold factors)")
    if keep is not None:
        masks = layer_masks(model, {n: 1.0 - k for n, k in keep.items()})
        old = dict(model.named_masks())
        for n in masks:
            if n in old:
                masks[n] = masks[n] * old[n]
    else:
        masks = std_threshold_masks(model, quality)
    apply_masks(model, masks)
    return masks


# Eq. (2): D_r = D_o * sqrt(C_ir / C_io)
def adjusted_dropout(p_original: float, c_original: int, c_remaining: int) -> float:
    """Han 2015 Eq. (2): the dropout ratio for a layer that kept ``c_remaining`` of ``c_original`` connections."""
    if c_original <= 0 or not 0 <= c_remaining <= c_original:
        raise ValueError(f"connection counts must satisfy 0 <= C_r <= C_o, C_o > 0; got C_o={c_original}, "
                         f"C_r={c_remaining}")
    return float(p_original) * math.sqrt(c_remaining / c_original)


def adjust_dropout(model: Module, p_original: dict[str, float]) -> dict[str, float]:
    """Set each ``Dropout`` (by module name) to Eq. (2)'s ratio for the weighted layer that follows it.

    The connection count C_i (Eq. (1): C_i = N_i N_{i-1}, the weight's size) and its remaining part are
    those of the first layer with a ``weight`` after the dropout in the same container. Returns the new ratios.
    """
    mods = dict(model.named_modules())
    out = {}
    for name, p0 in p_original.items():
        drop = mods.get(name)
        if not isinstance(drop, Dropout):
            raise KeyError(f"{name!r} is not a Dropout module of this model; Dropout modules: "
                           f"{[n for n, m in mods.items() if isinstance(m, Dropout)]}")
        parent_name, _, child = name.rpartition(".")
        siblings = list(mods[parent_name]._modules.items())
        idx = [k for k, _ in siblings].index(child)
        nxt = next((m for _, m in siblings[idx + 1:] if "weight" in m._parameters), None)
        if nxt is None:
            raise ValueError(f"Dropout {name!r} is not followed by a weighted layer in its container")
        w = nxt.weight
        # Eq. (1): C_i = N_i N_{i-1} = number of weights; C_ir = the nonzero ones
        drop.p = adjusted_dropout(p0, w.size, int(np.count_nonzero(w)))
        out[name] = drop.p
    return out


def dead_neurons(model: Module) -> dict[str, int]:
    """Section 3.5: per Linear weight, output units whose whole row of weights is zero (no input left)."""
    out = {}
    for n, p in model.named_parameters():
        if n in prunable_names(model) and p.ndim == 2:
            out[n] = int((~p.any(axis=1)).sum())
    return out


@dataclass(frozen=True)
class RetrainCfg:
    """Retraining after each pruning round (Section 3.1: L2 works best with retraining)."""
    epochs: int = 1
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64


def iterative_prune(model: Module, x: np.ndarray, y: np.ndarray, keep_final: dict[str, float], rounds: int,
                    retrain: RetrainCfg, rng: np.random.Generator,
                    evaluate: Callable[[Module], float] | None = None,
                    dropout: dict[str, float] | None = None) -> list[dict]:
    """Section 3.4: ``rounds`` x (prune to the next keep ratio, retrain with the mask fixed).

    ``rounds=1`` is one-shot pruning followed by the same retraining per round. The model is pruned in place.

    Parameters
    ----------
    x, y : training data (x in the model's dtype, y int64)
    keep_final : name -> fraction of weights kept at the end (e.g. LeNet-300-100: 0.08, 0.09, 0.26)
    evaluate : model -> test accuracy, recorded after each prune and each retrain
    dropout : Dropout module name -> original ratio D_o, re-set by Eq. (2) after each prune

    Returns
    -------
    history : one row per round with keep ratios, compression, accuracy after pruning and after retraining
    """
    schedules = {n: keep_schedule(k, rounds) for n, k in keep_final.items()}
    history = []
    for t in range(rounds):
        keep_t = {n: s[t] for n, s in schedules.items()}
        prune_round(model, keep=keep_t)
        row = {"round": t + 1, "keep": keep_t, "compression": compression_ratio(model)}
        if dropout:
            row["dropout"] = adjust_dropout(model, dropout)
        if evaluate is not None:
            row["acc_pruned"] = float(evaluate(model))
        # A fresh optimizer each round: the momentum of the previous round's weights is not carried over.
        opt = SGD(model, lr=retrain.lr, momentum=retrain.momentum, weight_decay=retrain.weight_decay)
        row["train_loss"] = train_epochs(model, opt, x, y, retrain.epochs, retrain.batch_size, rng)[-1]
        if evaluate is not None:
            row["acc_retrained"] = float(evaluate(model))
        history.append(row)
    return history
