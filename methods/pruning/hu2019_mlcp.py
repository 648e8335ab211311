"""Multi-loss-aware channel pruning: select channels by reconstruction error + distribution gap + task loss.

Yiming Hu, Siyang Sun, Jianquan Li, Jiagang Zhu, Xingang Wang, Qingyi Gu. "Multi-loss-aware Channel Pruning of
Deep Networks". arXiv:1902.10364, 2019 (ICIP 2019).

Implements
----------
Layer-wise channel selection in the channel-pruning framework of He et al. 2017 (select the input channels of
layer i+1 to keep, remove the matching filters of layer i, refit layer i+1 by least squares), with the
selection criterion of the paper, which adds two terms to the feature-reconstruction error:

  L(S) = L_rec(S) + alpha * L_dist(S) + beta * L_cls(S)                                  (``criterion``)

* L_rec: relative reconstruction error of layer i+1's output, ||Y - Y_S||^2 / ||Y||^2, with Y from the baseline;
* L_dist: the gap between the feature and semantic distributions of the baseline and the pruned model: the
  squared distance of the normalised spatial attention maps of layer i+1 (feature distribution,
  a = sum_c Y_c^2 / ||sum_c Y_c^2||) plus the KL divergence of the class posteriors (semantic distribution),
  KL(softmax(z) || softmax(z_S));
* L_cls: the cross-entropy of the pruned model on the sample labels.

S is found by greedy backward elimination (drop, one at a time, the channel whose removal gives the smallest
L(S)) on sampled images; the kept channels' kernels in layer i+1 are then refit by least squares
(``he2017_channelprune.reconstruct``, which this paper builds on).

Deviations
----------
* The paper's exact form of the additional loss and its selection solver were not at hand (PAPERS.md marks them
  (?)); the attention-map + KL form and the greedy solver above are our reading of "feature and semantic
  distributions within feature maps" and of layer-wise selection.
* While selecting, a removed channel is zeroed in layer i+1's input (no refit per candidate); the least-squares
  refit is done once for the final set, as in ThiNet/He 2017.
* The network after layer i+1 is run from layer i+1's input, so the model must be a ``Sequential`` whose
  top-level children contain layer i+1; single-branch layers only.
* Reproduction on Fashion-MNIST with a small CNN, not CIFAR-10 / ImageNet.

Reproduce: ``python -m scripts.pruning.hu2019_mlcp --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.he2017_channelprune import reconstruct
from methods.pruning.surgery import capture, conv_patches, next_consumer, prune_channels
from nn.containers import Sequential
from nn.module import Module


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def attention(y: np.ndarray) -> np.ndarray:
    """Normalised spatial attention a = sum_c y_c^2 / ||.||_2 per sample: (N, C, H, W) -> (N, H*W) float64."""
    a = np.square(y.astype(np.float64)).sum(axis=1).reshape(len(y), -1)  # (N, H*W)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def criterion(y: np.ndarray, y_s: np.ndarray, z: np.ndarray, z_s: np.ndarray, labels: np.ndarray,
              alpha: float, beta: float) -> dict[str, float]:
    """The three losses and their weighted sum for one candidate channel set.

    y, y_s : layer i+1 output of the baseline / candidate (N, C, H, W);  z, z_s : logits (N, K);  labels (N,)
    """
    y, y_s = y.astype(np.float64), y_s.astype(np.float64)
    # L_rec = ||Y - Y_S||^2 / ||Y||^2
    rec = float(np.sum((y - y_s) ** 2) / max(np.sum(y ** 2), 1e-300))
    p, p_s = _softmax(z.astype(np.float64)), _softmax(z_s.astype(np.float64))
    # L_dist = mean_n ||a_n - a_S,n||^2 + mean_n KL(p_n || p_S,n)
    att = float(np.mean(np.sum((attention(y) - attention(y_s)) ** 2, axis=1)))
    kl = float(np.mean(np.sum(p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(p_s, 1e-300))), axis=1)))
    # L_cls = mean_n -log p_S(label_n)
    cls = float(-np.mean(np.log(np.maximum(p_s[np.arange(len(labels)), labels], 1e-300))))
    # L(S) = L_rec + alpha * L_dist + beta * L_cls
    return {"rec": rec, "dist": att + kl, "cls": cls, "total": rec + alpha * (att + kl) + beta * cls}


def _tail(model: Sequential, start: str) -> list[Module]:
    names = [n for n, _ in model.named_children()]
    if not isinstance(model, Sequential) or start not in names:
        raise ValueError(f"hu2019_mlcp: layer i+1 {start!r} must be a top-level child of a Sequential model "
                         f"(children: {names})")
    return [m for _, m in model.named_children()][names.index(start):]


def _run(layers: list[Module], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output of the first layer, output of the last) for input x, in eval mode."""
    first = layers[0](x)
    out = first
    for m in layers[1:]:
        out = m(out)
    return first, out


def select_channels(model: Sequential, layer: str, x: np.ndarray, labels: np.ndarray, n_keep: int,
                    alpha: float, beta: float, input_shape: tuple[int, ...],
                    reference: Sequential | None = None) -> tuple[np.ndarray, list[dict]]:
    """Greedy backward elimination of ``layer``'s output channels under L(S); returns (kept indices, history).

    ``reference`` (default: ``model``) is the baseline whose layer i+1 output and logits are the targets.
    Both models run in eval mode; their train/eval modes are restored on return.
    """
    nxt = next_consumer(model, layer, input_shape)
    ref = model if reference is None else reference
    modes = {id(m): (m, m.training) for net in (model, ref) for m in net.modules()}
    try:
        model.eval()
        ref.eval()
        return _select(model, ref, nxt, x, labels, n_keep, alpha, beta, layer)
    finally:  # the caller's train/eval mode is restored
        for m, training in modes.values():
            object.__setattr__(m, "training", training)


def _select(model: Sequential, ref: Sequential, nxt: str, x: np.ndarray, labels: np.ndarray, n_keep: int,
            alpha: float, beta: float, layer: str) -> tuple[np.ndarray, list[dict]]:
    """``select_channels``' greedy loop, with both models in eval mode."""
    x_in = capture(model, [nxt], x)[nxt][0]  # (N, C, H, W): layer i+1's input in the current model
    y_ref = capture(ref, [nxt], x)[nxt][1]
    z_ref = ref(x)
    tail = _tail(model, nxt)
    c = x_in.shape[1]
    if not 1 <= n_keep <= c:
        raise ValueError(f"hu2019_mlcp: must keep between 1 and {c} channels of {layer!r}, got {n_keep}")
    keep, history = list(range(c)), []
    while len(keep) > n_keep:
        best = None
        for ch in keep:
            mask = np.zeros(c, dtype=x_in.dtype)
            mask[[k for k in keep if k != ch]] = 1
            y_s, z_s = _run(tail, x_in * mask[None, :, None, None])
            loss = criterion(y_ref, y_s, z_ref, z_s, labels, alpha, beta)
            if best is None or loss["total"] < best[1]["total"]:
                best = (ch, loss)
        keep.remove(best[0])
        history.append({"removed": int(best[0]), **best[1]})
    return np.array(keep), history


def mlcp_prune(model: Sequential, layer: str, x: np.ndarray, labels: np.ndarray, ratio: float,
               input_shape: tuple[int, ...], alpha: float = 1.0, beta: float = 1.0, n_samples: int = 3000,
               rng: np.random.Generator | None = None, reference: Sequential | None = None) -> Sequential:
    """Remove round(ratio * C) output channels of ``layer`` chosen by L(S), in place, and refit layer i+1.

    alpha = beta = 0 gives reconstruction-only greedy selection (the comparison). The refit uses
    ``n_samples`` random output positions of layer i+1 on the images x (targets from ``reference``).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    ref = model if reference is None else reference
    nxt = next_consumer(model, layer, input_shape)
    conv = dict(model.named_modules())[nxt]
    if getattr(conv, "groups", 1) != 1 or conv.weight.ndim != 4:
        raise ValueError(f"hu2019_mlcp: layer i+1 {nxt!r} must be a dense Conv2d")
    c = conv.weight.shape[1]
    keep, _ = select_channels(model, layer, x, labels, c - min(round(ratio * c), c - 1), alpha, beta,
                              input_shape, reference)
    inp = capture(model, [nxt], x)[nxt][0]
    out = capture(ref, [nxt], x)[nxt][1]
    n_img, _, ho, wo = out.shape
    idx = (rng.integers(0, n_img, n_samples), rng.integers(0, ho, n_samples), rng.integers(0, wo, n_samples))
    X = conv_patches(conv, inp.astype(np.float64), *idx)  # (M, c, kH, kW)
    bias = 0.0 if conv.bias is None else conv.bias.astype(np.float64)
    Y = out[idx[0], :, idx[1], idx[2]].astype(np.float64) - bias  # (M, n): target without the bias
    prune_channels(model, layer, keep, input_shape)
    conv.register_parameter("weight", reconstruct(X, Y, keep).astype(conv.weight.dtype))
    return model
