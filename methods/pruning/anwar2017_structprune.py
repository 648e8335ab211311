"""Structured pruning at channel, kernel and intra-kernel (strided) granularity, masks chosen by a particle filter.

Sajid Anwar, Kyuyeon Hwang, Wonyong Sung. "Structured Pruning of Deep Convolutional Neural Networks".
ACM Journal on Emerging Technologies in Computing Systems 13(3), article 32, 2017. arXiv:1512.08571.

Implements
----------
* Sec. 3, the three granularities of a conv weight (Co, Ci, kH, kW):
  - channel-wise: whole input feature maps (``channel_mask``; removed for real with ``surgery.prune_plan``,
    the im2col matrix loses Ci*kH*kW rows per map),
  - kernel-wise: whole kH x kW kernels, one per (output, input) pair (``kernel_mask``),
  - intra-kernel strided: every kernel of the layer keeps the same strided subset of its kH*kW positions
    (``strided_pattern`` / ``intra_kernel_mask``), so the lowered im2col matrix drops the same rows for all
    output channels (``gemm_shape``).
* Sec. 4, choosing the pruning mask with a particle filter (``particle_filter``): each particle is a candidate
  mask with the target number of pruned units; its weight comes from the network's misclassification rate with
  that mask on validation data (w proportional to exp(-MCR / temperature)); particles are resampled by weight and
  perturbed (a few kept/pruned units swapped) for several iterations; the best particle seen is the result.
* Sec. 5, the pruned network is retrained with the mask fixed (``common.apply_masks`` + ``train_epochs``, in the
  script) and its weights are rounded to short fixed-point words (``fixed_point``).

Deviations
----------
* The paper scores particles on a validation set of CIFAR-10 / MNIST with its own CNNs; we use the small
  LeNet-5-shaped CNN of the structured tests on Fashion-MNIST and a few hundred validation images.
* The particle weight uses exp(-MCR / T) (T a temperature) to make resampling sharper with few particles; the
  exact likelihood of the paper is not known to us. Perturbation swaps ``swaps`` units of each resampled particle.
* Fixed-point: symmetric, per layer, with the integer bits chosen from max |w| (no retraining in fixed point).

Reproduce: ``python -m scripts.pruning.anwar2017_structprune --seed 0``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def channel_mask(weight_shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
    """(Co, Ci, kH, kW) mask keeping input channels where ``keep`` (Ci,) is 1."""
    m = np.zeros(weight_shape)
    m[:, np.asarray(keep) != 0] = 1.0
    return m


def kernel_mask(weight_shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
    """(Co, Ci, kH, kW) mask from a (Co*Ci,) or (Co, Ci) 0/1 kernel vector."""
    co, ci = weight_shape[:2]
    k = np.asarray(keep, float).reshape(co, ci)
    return np.broadcast_to(k[:, :, None, None], weight_shape).copy()


def strided_pattern(kh: int, kw: int, stride: int, offset: int) -> np.ndarray:
    """(kH, kW) 0/1 pattern keeping positions p = i*kW + j with p % stride == offset."""
    if not 0 <= offset < stride:
        raise ValueError(f"anwar2017_structprune: offset must be in [0, stride), got {offset} for stride {stride}")
    p = np.arange(kh * kw).reshape(kh, kw)
    return (p % stride == offset).astype(float)


def intra_kernel_mask(weight_shape: tuple[int, ...], stride: int, offset: int) -> np.ndarray:
    """(Co, Ci, kH, kW) mask with the same strided pattern in every kernel of the layer."""
    pat = strided_pattern(weight_shape[2], weight_shape[3], stride, offset)
    return np.broadcast_to(pat, weight_shape).copy()


def gemm_shape(weight: np.ndarray, mask: np.ndarray, out_hw: int) -> tuple[int, int, int]:
    """(M, K, N) of the lowered conv GEMM after dropping the im2col rows that are zero in *every* output channel
    (whole input channels or shared intra-kernel positions) and the output channels that are all zero."""
    co = weight.shape[0]
    rows = (mask.reshape(co, -1) != 0).any(axis=0)  # (Ci*kH*kW,) rows of im2col still used
    cols = (mask.reshape(co, -1) != 0).any(axis=1)  # (Co,)
    return int(cols.sum()), int(rows.sum()), int(out_hw)


def _random_particle(n: int, n_keep: int, rng: np.random.Generator) -> np.ndarray:
    p = np.zeros(n)
    p[rng.choice(n, n_keep, replace=False)] = 1.0
    return p


def _perturb(p: np.ndarray, swaps: int, rng: np.random.Generator) -> np.ndarray:
    q = p.copy()
    on, off = np.flatnonzero(q == 1), np.flatnonzero(q == 0)
    s = min(swaps, len(on), len(off))
    if s:
        q[rng.choice(on, s, replace=False)] = 0.0
        q[rng.choice(off, s, replace=False)] = 1.0
    return q


def particle_filter(n_units: int, n_keep: int, mcr: Callable[[np.ndarray], float], rng: np.random.Generator,
                    particles: int = 16, iterations: int = 4, swaps: int = 2, temperature: float = 0.02) -> dict:
    """Sec. 4: search a 0/1 vector with ``n_keep`` ones over ``n_units`` units that minimises ``mcr``.

    mcr : unit vector -> misclassification rate in [0, 1] of the network with that mask (validation data)
    Returns {"best": vector, "best_mcr", "history": [(iteration, mean MCR, best MCR)], "first": the MCRs of the
    initial random particles (the random-mask baseline at the same sparsity)}.
    """
    if not 0 < n_keep <= n_units:
        raise ValueError(f"anwar2017_structprune: n_keep must be in 1..{n_units}, got {n_keep}")
    pop = [_random_particle(n_units, n_keep, rng) for _ in range(particles)]
    scores = np.array([mcr(p) for p in pop])
    first = scores.copy()
    best_i = int(np.argmin(scores))
    best, best_mcr = pop[best_i].copy(), float(scores[best_i])
    history = [(0, float(scores.mean()), best_mcr)]
    for it in range(1, iterations + 1):
        # weights from the misclassification rate, then resampling (with replacement) by weight
        w = np.exp(-(scores - scores.min()) / temperature)
        w /= w.sum()
        idx = rng.choice(particles, particles, p=w)
        pop = [_perturb(pop[i], swaps, rng) for i in idx]
        scores = np.array([mcr(p) for p in pop])
        i = int(np.argmin(scores))
        if scores[i] < best_mcr:
            best, best_mcr = pop[i].copy(), float(scores[i])
        history.append((it, float(scores.mean()), best_mcr))
    return {"best": best, "best_mcr": best_mcr, "history": history, "first": first.tolist()}


def fixed_point(w: np.ndarray, bits: int) -> np.ndarray:
    """Round to signed fixed point with ``bits`` bits (1 sign bit), integer bits from max |w|, saturating."""
    if bits < 2:
        raise ValueError(f"anwar2017_structprune: fixed-point word needs >= 2 bits, got {bits}")
    m = float(np.abs(w).max())
    int_bits = max(0, int(np.ceil(np.log2(m)))) if m > 0 else 0
    frac = bits - 1 - int_bits
    step = 2.0 ** -frac
    lim = 2 ** (bits - 1)
    q = np.clip(np.round(w / step), -lim, lim - 1)
    return (q * step).astype(w.dtype)
