"""ThiNet: prune the filters of layer i using the statistics of layer i + 1.

Jian-Hao Luo, Jianxin Wu, Weiyao Lin. "ThiNet: A Filter Level Pruning Method for Deep Neural Network
Compression". ICCV 2017. arXiv:1707.06342.

Implements
----------
* Sec. 3.2, data collection: sample (image, location, output channel) triples of layer i + 1; for each, the
  contribution of every input channel c is x_hat_c = sum_(k1, k2) W_hat[c, k1, k2] * x[c, k1, k2], so that the
  output (bias excluded) is y_hat = sum_c x_hat_c (Eq. 2-4).
* Eq. (5)-(6) and Algorithm 1, greedy channel selection: grow the removed set T one channel at a time, each
  time adding the channel that keeps ||sum_(c in T) x_hat_c||^2 smallest, until |T| = (1 - r) * C has been
  removed (``greedy_removal``).
* Eq. (7), least-squares rescaling: w = argmin ||y_hat - X_hat_S w||^2 over the kept channels S; layer i+1's
  kernels of channel c are multiplied by w_c (``least_squares_scales``).
* Filter removal in layer i and kernel removal in layer i + 1 via ``surgery`` (Sec. 3.3); fine-tuning is the
  caller's loop.

Deviations
----------
* One layer pair at a time through ``thinet_prune``; the paper's layer-by-layer schedule with a fine-tuning
  epoch after each layer is a loop in the script.
* Layer i + 1 must be a dense conv (groups=1) reading layer i's channels one to one (possibly through
  BatchNorm, activations and pooling), found with ``surgery.next_consumer``.

Reproduce: ``python -m scripts.pruning.luo2017_thinet --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import capture, conv_patches, next_consumer, prune_channels
from nn.module import Module


def sample_positions(out_shape: tuple[int, ...], m: int, rng: np.random.Generator):
    """m random (image, row, column) output positions of an (N, Co, Ho, Wo) output -> three (m,) int arrays."""
    n_img, _, ho, wo = out_shape
    return rng.integers(0, n_img, m), rng.integers(0, ho, m), rng.integers(0, wo, m)


def contributions(weight: np.ndarray, patches: np.ndarray, out_ch: np.ndarray) -> np.ndarray:
    """x_hat (M, C): each input channel's part of output channel out_ch[i] at sample i.

    weight (Co, C, kH, kW), patches (M, C, kH, kW), out_ch (M,) int.
    """
    # Eq. (3): x_hat_c = sum_(k1,k2) W_hat_c,k1,k2 * x_c,k1,k2 for the sampled filter W_hat = W[out_ch]
    return np.einsum("mckl,mckl->mc", weight[out_ch], patches)  # (M, C)


def greedy_removal(x_hat: np.ndarray, n_remove: int) -> np.ndarray:
    """Algorithm 1: the set T (in selection order) minimising ||sum_(c in T) x_hat_c||^2, |T| = n_remove."""
    c = x_hat.shape[1]
    removed: list[int] = []
    acc = np.zeros(x_hat.shape[0])
    for _ in range(n_remove):
        best, best_val = -1, np.inf
        for j in range(c):
            if j in removed:
                continue
            # Eq. (6): value of T u {j} is sum_i (sum_(c in T u {j}) x_hat_ic)^2
            val = float(np.sum((acc + x_hat[:, j]) ** 2))
            if val < best_val:
                best, best_val = j, val
        removed.append(best)
        acc += x_hat[:, best]
    return np.array(removed, dtype=np.int64)


def least_squares_scales(x_hat: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Eq. (7): w_hat = argmin_w ||y_hat - X_hat_S w||^2, with y_hat = sum over all channels -> (len(keep),)."""
    y_hat = x_hat.sum(axis=1)  # (M,)
    return np.linalg.lstsq(x_hat[:, keep], y_hat, rcond=None)[0]


def select(model: Module, layer: str, x: np.ndarray, ratio: float, input_shape: tuple[int, ...],
           n_samples: int, rng: np.random.Generator, keep: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """(kept channels of ``layer``, their least-squares scales, name of layer i + 1) from sample images x.
    ``keep`` given: those channels instead of the greedy choice, with the same least-squares scales (ablation)."""
    nxt = next_consumer(model, layer, input_shape)
    conv = dict(model.named_modules())[nxt]
    if getattr(conv, "groups", 1) != 1 or conv.weight.ndim != 4:
        raise ValueError(f"luo2017_thinet: layer i+1 {nxt!r} must be a dense Conv2d")
    inp, out = capture(model, [nxt], x)[nxt]
    n, h, w = sample_positions(out.shape, n_samples, rng)
    o = rng.integers(0, conv.weight.shape[0], n_samples)  # one random output channel per sampled location
    x_hat = contributions(conv.weight.astype(np.float64), conv_patches(conv, inp.astype(np.float64), n, h, w), o)
    c = x_hat.shape[1]
    n_remove = min(round(ratio * c), c - 1)
    if keep is None:
        keep = np.setdiff1d(np.arange(c), greedy_removal(x_hat, n_remove))
    keep = np.asarray(keep, dtype=np.int64)
    return keep, least_squares_scales(x_hat, keep), nxt


def thinet_prune(model: Module, layer: str, x: np.ndarray, ratio: float, input_shape: tuple[int, ...],
                 n_samples: int = 2000, rng: np.random.Generator | None = None, rescale: bool = True,
                 keep: np.ndarray | None = None) -> Module:
    """Remove round(ratio * C) filters of ``layer`` chosen by ThiNet on images x, rescale layer i + 1 (in place).

    ratio : fraction of the C filters *removed* (the paper's compression rate r is the fraction kept, 1 - ratio;
        lwnn's structured papers all name the removed fraction).
    rescale : apply Eq. (7)'s least-squares scales to layer i + 1 (False: selection alone).
    keep : channels to keep instead of the greedy selection (an ablation: e.g. L1-selected filters with ThiNet's
        least-squares rescaling, so that selection and reconstruction can be compared separately).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    keep, scales, nxt = select(model, layer, x, ratio, input_shape, n_samples, rng, keep)
    prune_channels(model, layer, keep, input_shape)
    if rescale:
        conv = dict(model.named_modules())[nxt]
        # Eq. (7) applied: layer i+1's kernels of kept channel c are scaled by w_hat_c
        conv.weight *= scales.astype(conv.weight.dtype)[None, :, None, None]
    return model
