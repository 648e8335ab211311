"""Lottery tickets: iterative magnitude pruning with rewinding of the surviving weights to their initial values.

Frankle J., Carbin M. — "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
ICLR 2019, arXiv:1803.03635.

**Implements** (Section 1, "Identifying winning tickets", and Section 2's iterative variant)

1. Randomly initialise f(x; theta_0) (theta_0 ~ D_theta).
2. Train for j iterations, arriving at theta_j.
3. Prune p% of the surviving parameters of each layer by magnitude, creating a mask m.
4. Reset the remaining parameters to their values in theta_0: the winning ticket f(x; m (.) theta_0)
   (``rewind``). Iterative pruning repeats 2-4 for n rounds, pruning p^(1/n)% each round (``find_ticket``).
* The control: the same mask with a fresh random initialisation theta'_0 ~ D_theta (``random_reinit``).

**Deviations**

* Fashion-MNIST instead of MNIST; SGD with momentum (our baseline's optimiser) instead of Adam 1.2e-3.
* The test uses one-shot pruning (n = 1, which the paper also evaluates) from the shared trained baseline,
  whose initial weights theta_0 are kept by the fixture, and a short retraining budget; the script runs the
  iterative version.
* Per-layer keep ratios are given directly (the paper prunes fc layers at p = 20% per round and the output
  layer at half that rate).

Reproduce: ``python -m scripts.pruning.frankle2019_lottery --seed 0`` (papers/pruning/frankle2019_lottery.md).
"""
from __future__ import annotations

import numpy as np

from methods.pruning.common import Masks, apply_masks, get_masks, layer_masks, remove_masks, train_epochs
from nn.module import Module
from nn.optim import SGD


def rewind(model: Module, theta0: dict[str, np.ndarray], masks: Masks) -> None:
    """Step 4: weights <- m (.) theta_0 (biases and all other parameters <- theta_0 too); masks attached."""
    remove_masks(model)
    model.load_state_dict({k: v for k, v in theta0.items() if not k.endswith("_mask")})
    apply_masks(model, masks)


def random_reinit(model: Module, fresh: Module, masks: Masks) -> None:
    """Control: weights <- m (.) theta'_0 from ``fresh``, a newly initialised model of the same architecture."""
    rewind(model, fresh.state_dict(), masks)


def prune_masks(model: Module, keep: dict[str, float]) -> Masks:
    """Step 3: keep the fraction ``keep[name]`` of each layer's weights by magnitude, within the current mask."""
    masks = layer_masks(model, {n: 1.0 - k for n, k in keep.items()})
    old = get_masks(model)
    return {n: m * old[n] if n in old else m for n, m in masks.items()}


def find_ticket(model: Module, theta0: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                keep_final: dict[str, float], rounds: int, epochs: int, rng: np.random.Generator,
                lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 1e-4, batch_size: int = 64,
                ) -> Masks:
    """Iterative magnitude pruning with rewinding: ``rounds`` x (train ``epochs``, prune, rewind to theta_0).

    ``model`` must hold theta_0 on entry; on return it holds the winning ticket m (.) theta_0 with masks attached.
    """
    masks: Masks = {}
    for t in range(1, rounds + 1):
        opt = SGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
        train_epochs(model, opt, x, y, epochs, batch_size, rng)  # step 2
        # step 3, per round: keep^(t / rounds) of each layer overall (p^(1/n) per round)
        masks = prune_masks(model, {n: k ** (t / rounds) for n, k in keep_final.items()})
        rewind(model, theta0, masks)  # step 4
    return masks
