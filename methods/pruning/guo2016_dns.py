"""Dynamic Network Surgery: prune and splice connections during training, with masks that are revisited.

Guo Y., Yao A., Chen Y. — "Dynamic Network Surgery for Efficient DNNs", NIPS 2016, arXiv:1608.04493.

**Implements**

* Eq. (1): train min L(W (.) T) with the binary mask T = h(W) (the network computes with W (.) T).
* Eq. (2): the discriminative function with two thresholds a < b:
  h(w) = 0 if |w| < a, T (unchanged) if a <= |w| < b, 1 if |w| >= b (``dns_mask``): weights between the
  thresholds keep their state, which keeps the masks from oscillating.
* Eq. (3): W <- W - beta dL/d(W (.) T): *every* entry of W, masked ones included, receives the gradient of the
  masked weight, so a wrongly pruned connection can grow back and be spliced in (``RevivableMask`` in
  methods/pruning/common.py holds the dense W and the mask T).
* Section 3.3: T is updated with a probability sigma(iter) = (1 + gamma * iter)^(-power) that decays, so the
  structure settles; a and b come from the mean and standard deviation of |W| in the layer.

**Deviations**

* a = 0.9 t and b = 1.1 t with t = mean|W| + c std|W| per layer, the authors' released Caffe code's rule (the
  paper only says a, b are set from the layer's statistics); c per layer is our choice for LeNet-300-100.
  As in that code, a and b are computed once, from the weights at the start of surgery, and then held fixed.
* The released code also masks the biases (its mean/std pool weights and biases) and stops revisiting T after
  ``iter_stop`` iterations; we prune weights only and revisit T with probability sigma(iter) until the end.
  Its comparisons are |w| <= a (prune) and |w| > b (splice); ours are |w| < a and |w| >= b (Eq. (2)'s form).
* Starting from the shared trained baseline instead of pruning during the original training, and a few
  epochs rather than the paper's long schedule (time budget of the tests).
* Fashion-MNIST instead of MNIST.

Reproduce: ``python -m scripts.pruning.guo2016_dns --seed 0`` (papers/pruning/guo2016_dns.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.pruning.common import RevivableMask, train_epochs
from nn.module import Module
from nn.optim import SGD


def dns_thresholds(w: np.ndarray, c: float) -> tuple[float, float]:
    """(a, b) = (0.9 t, 1.1 t), t = mean|w| + c std|w|."""
    aw = np.abs(w).astype(np.float64)
    t = max(float(aw.mean() + c * aw.std()), 0.0)
    return 0.9 * t, 1.1 * t


def dns_mask(w: np.ndarray, t_old: np.ndarray, a: float, b: float) -> np.ndarray:
    """Eq. (2): 0 where |w| < a, 1 where |w| >= b, the old mask in between."""
    if a > b:
        raise ValueError(f"DNS thresholds need a <= b, got a={a}, b={b}")
    aw = np.abs(w)
    # Eq. (2): h(w) = 0 if |w| < a; T if a <= |w| < b; 1 if b <= |w|
    return np.where(aw < a, 0, np.where(aw >= b, 1, t_old)).astype(w.dtype)


def update_probability(it: int, gamma: float, power: float) -> float:
    """Section 3.3: sigma(iter) = (1 + gamma iter)^(-power), the chance of revisiting T at iteration ``it``."""
    return float((1.0 + gamma * it) ** (-power))


@dataclass(frozen=True)
class DNSCfg:
    c: dict  # name -> c of t = mean|W| + c std|W|
    epochs: int = 2
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    gamma: float = 1e-4
    power: float = 1.0


def surgery(model: Module, x: np.ndarray, y: np.ndarray, cfg: DNSCfg, rng: np.random.Generator) -> dict:
    """Prune and splice ``cfg.c``'s weights of ``model`` while training on (x, y); masks fixed at the end.

    Returns ``{"pruned": name -> total 1->0 transitions, "spliced": name -> total 0->1 transitions,
    "updates": number of mask updates, "thresholds": name -> (a, b)}``.
    """
    params = dict(model.named_parameters())
    thr = {n: dns_thresholds(params[n], c) for n, c in cfg.c.items()}
    ones = {n: np.ones_like(params[n]) for n in cfg.c}
    rev = RevivableMask(model, {n: dns_mask(params[n], ones[n], *thr[n]) for n in cfg.c})
    opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    stats = {"pruned": dict.fromkeys(cfg.c, 0), "spliced": dict.fromkeys(cfg.c, 0), "updates": 0,
             "thresholds": thr}
    stats["pruned"] = {n: int((m == 0).sum()) for n, m in rev.masks.items()}

    def after_step(it: int) -> None:
        if rng.random() < update_probability(it, cfg.gamma, cfg.power):
            changes = rev.update(lambda n, w, t: dns_mask(w, t, *thr[n]))
            stats["updates"] += 1
            for n, (p, s) in changes.items():
                stats["pruned"][n] += p
                stats["spliced"][n] += s

    # Eq. (3): the optimizer step lands on the dense W with the gradient of W (.) T
    train_epochs(model, opt, x, y, cfg.epochs, cfg.batch_size, rng, step=lambda: rev.step(opt.step),
                 after_step=after_step)
    rev.freeze()
    return stats
