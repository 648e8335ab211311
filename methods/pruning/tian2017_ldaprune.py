"""LDA-pruned nets: keep the top-layer channels that discriminate the target classes, back-track, new head.

Qing Tian, Tal Arbel, James J. Clark. "Deep LDA-Pruned Nets for Efficient Facial Gender Classification".
CVPR Workshops (CVPRW) 2017. arXiv:1704.06305.

Implements
----------
* Fisher LDA on the activations of the last conv layer w.r.t. the task label. The paper observes that, given the
  class, the top-layer neurons are close to decorrelated, so the within-class scatter is taken as diagonal and
  the LDA criterion splits into one Fisher ratio per neuron (channel):
  J_c = S_b[c] / S_w[c],  S_b[c] = sum_k n_k (mu_k[c] - mu[c])^2,  S_w[c] = sum_k sum_{i in k} (x_i[c] - mu_k[c])^2
  (``fisher_scores``); the channels with the largest J_c are kept, the rest removed (``surgery``).
* Back-tracking: a filter of a lower layer is kept only if it feeds the kept filters above it; its score is the
  total absolute weight connecting it to them, s_c = sum_{j kept} ||W_next[j, c]||_1 (``backtrack_scores``).
* The FC head is replaced by a classifier on the kept features (the paper: SVM or Bayesian): a one-vs-rest linear
  SVM (``svm_head``) or a Bayes classifier with Gaussian class conditionals sharing one covariance S, which is
  linear, logit_k = mu_k^T S^-1 x - mu_k^T S^-1 mu_k / 2 + log pi_k (``gaussian_bayes_head``); either is a
  ``Linear`` layer, so the pruned net stays one ``Sequential``.

Deviations
----------
* A channel's activation is summarised by its spatial mean over the pooled post-ReLU map before the Fisher
  ratio (the paper ranks conv5_3 neurons of VGG-16; it does not need a summary because it works on the flattened
  responses); the classifier itself sees the full pooled maps of the kept channels.
* The SVM is linear (squared hinge, primal Newton), not a kernel SVM; the Bayes classifier shares one
  (shrunk) covariance between the classes, which makes it linear, a simplification of per-class covariances.
* The top layer may also be a fully connected layer (its neurons are the channels) and back-tracking may go
  through a Flatten into the conv below it (a conv channel = its H*W inputs of the linear layer).
* Back-tracking keeps a fixed number of filters per lower layer (the paper removes filters with weak or no
  connection to the kept ones; a count makes runs comparable).
* Reproduction on a 2-class subset of Fashion-MNIST with a small CNN, not VGG-16 on LFW/CelebA gender.

Reproduce: ``python -m scripts.pruning.tian2017_ldaprune --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import capture, next_consumer, prune_plan, trace
from nn.containers import Sequential
from nn.linear import Linear
from nn.module import Module


def fisher_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-dimension Fisher ratio J (C,) float64 of features (N, C) w.r.t. integer labels (N,)."""
    f = features.astype(np.float64)
    if f.ndim != 2 or len(f) != len(labels):
        raise ValueError(f"tian2017_ldaprune: features must be (N, C) with N labels, got {f.shape}, {labels.shape}")
    mu = f.mean(axis=0)  # (C,)
    s_b, s_w = np.zeros(f.shape[1]), np.zeros(f.shape[1])
    for k in np.unique(labels):
        fk = f[labels == k]  # (N_k, C)
        mu_k = fk.mean(axis=0)
        # between-class scatter: S_b[c] = sum_k n_k (mu_k[c] - mu[c])^2
        s_b += len(fk) * (mu_k - mu) ** 2
        # within-class scatter (diagonal): S_w[c] = sum_k sum_{i in k} (x_i[c] - mu_k[c])^2
        s_w += ((fk - mu_k) ** 2).sum(axis=0)
    # Fisher criterion per decorrelated neuron: J_c = S_b[c] / S_w[c]  (a dead channel scores 0)
    return np.where(s_w > 0, s_b / np.maximum(s_w, 1e-300), 0.0)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the k largest scores (ties by position)."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"tian2017_ldaprune: must keep between 1 and {len(scores)} channels, got {k}")
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def backtrack_scores(next_weight: np.ndarray, keep_next: np.ndarray, channels: int | None = None) -> np.ndarray:
    """s_c = sum_{j in keep_next} ||W_next[j, c]||_1 for every input channel c of a conv (Co, Ci, kH, kW), or of
    a linear layer after a Flatten, (O, channels * H * W), when ``channels`` is given (each channel = H*W inputs)."""
    w = np.abs(next_weight[keep_next].astype(np.float64))  # (K, Ci, kH, kW) or (K, channels * H * W)
    c = w.shape[1] if channels is None else channels
    return w.reshape(w.shape[0], c, -1).sum(axis=(0, 2))  # (K, C, kH*kW or H*W) -> (C,)


def channel_features(model: Module, layer: str, x: np.ndarray) -> np.ndarray:
    """Spatial mean of ``layer``'s output for images x: (N, C) float64 (the per-channel LDA input)."""
    out = capture(model, [layer], x)[layer][1].astype(np.float64)  # (N, C, H, W)
    return out.reshape(out.shape[0], out.shape[1], -1).mean(axis=2)


def gaussian_bayes_head(features: np.ndarray, labels: np.ndarray, n_classes: int, shrink: float = 0.1,
                        dtype=np.float32) -> Linear:
    """Bayes classifier with Gaussian class conditionals N(mu_k, S) sharing one covariance, as a Linear(F, K).

    features (N, F), labels (N,) in [0, n_classes). S is the pooled within-class covariance shrunk towards
    its mean variance, S <- (1 - shrink) S + shrink * (tr S / F) I, so that it is invertible.
    """
    f = features.astype(np.float64)
    mu = np.stack([f[labels == k].mean(axis=0) for k in range(n_classes)])  # (K, F)
    prior = np.array([(labels == k).mean() for k in range(n_classes)])
    d = f - mu[labels]  # (N, F)
    s = d.T @ d / len(f)  # (F, F)
    s = (1 - shrink) * s + shrink * max(np.trace(s) / len(s), 1e-12) * np.eye(len(s))
    a = np.linalg.solve(s, mu.T).T  # (K, F): S^-1 mu_k
    head = Linear(f.shape[1], n_classes, dtype=dtype, rng=np.random.default_rng(0))
    # log N(x; mu_k, S) + log pi_k up to a k-independent term: logit_k = mu_k^T S^-1 x - mu_k^T S^-1 mu_k / 2
    # + log pi_k
    head.weight[...] = a
    head.bias[...] = -0.5 * (a * mu).sum(axis=1) + np.log(np.maximum(prior, 1e-12))
    return head


def svm_head(features: np.ndarray, labels: np.ndarray, n_classes: int, C: float = 1.0, iters: int = 50,
             dtype=np.float32) -> Linear:
    """One-vs-rest linear L2-SVM, min 1/2 ||w||^2 + C/N sum_i max(0, 1 - y_i (w.x_i + b))^2, as a Linear(F, K).

    Solved exactly in the primal by Newton steps on the active set (the squared hinge is piecewise quadratic:
    the step is final once the set of margin violators stops changing), on standardised features; the
    standardisation is folded back into the weights. features (N, F), labels (N,) in [0, n_classes).
    """
    f = features.astype(np.float64)
    m, sd = f.mean(axis=0), f.std(axis=0) + 1e-8
    z = np.hstack([(f - m) / sd, np.ones((len(f), 1))])  # (N, F+1), last column = bias input
    n = len(z)
    reg = np.ones(z.shape[1])
    reg[-1] = 1e-8  # the bias is (almost) not regularised
    w = np.zeros((n_classes, z.shape[1]))  # (K, F+1)
    for k in range(n_classes):
        y = np.where(labels == k, 1.0, -1.0)  # (N,)
        active = np.ones(n, dtype=bool)
        for _ in range(iters):
            za = z[active]  # (A, F+1)
            # stationarity on the active set: (diag(reg) + 2C/N Z_A^T Z_A) w = 2C/N Z_A^T y_A
            w[k] = np.linalg.solve(np.diag(reg) + 2.0 * C / n * za.T @ za, 2.0 * C / n * za.T @ y[active])
            new = y * (z @ w[k]) < 1.0
            if np.array_equal(new, active):
                break
            active = new
    head = Linear(f.shape[1], n_classes, dtype=dtype, rng=np.random.default_rng(0))
    head.weight[...] = w[:, :-1] / sd
    head.bias[...] = w[:, -1] - (w[:, :-1] / sd) @ m
    return head


def features_of(model: Sequential, last: str) -> Sequential:
    """The children of a ``Sequential`` up to and including ``last`` (the feature extractor)."""
    names = [n for n, _ in model.named_children()]
    if last not in names:
        raise ValueError(f"tian2017_ldaprune: {last!r} is not a child of the model (children: {names})")
    return Sequential(*[m for n, m in model.named_children()][:names.index(last) + 1])


def _consumer(model: Module, low: str, input_shape: tuple[int, ...]) -> str:
    """The conv/linear layer reading ``low``'s channels: ``surgery.next_consumer``, or else the single linear layer
    that reads all of them through a Flatten (channel-major: a channel = H*W consecutive inputs)."""
    try:
        return next_consumer(model, low, input_shape)
    except ValueError:
        t = trace(model, input_shape)
        node = t.node(low)
        cls = set(t.classes(node.out_atoms).tolist())
        readers = [n for n in t.nodes if n.kind in ("conv", "gconv", "dwconv", "linear") and n is not node
                   and set(t.classes(n.in_atoms).tolist()) & cls]
        if len(readers) != 1 or readers[0].kind != "linear" or set(t.classes(readers[0].in_atoms).tolist()) != cls:
            raise
        return readers[0].name


def lda_prune(model: Sequential, top: str, keep_top: int, backtrack: dict[str, int], feature_end: str,
              x: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...], n_classes: int,
              summary: str | None = None, scores: str = "lda", head: str = "svm",
              rng: np.random.Generator | None = None) -> tuple[Sequential, dict]:
    """Prune ``model`` (not modified) for the task labels y and put a Bayes head on the kept features.

    Parameters
    ----------
    top : the last conv layer (its channels are ranked by LDA); ``summary`` is the layer whose output summarises
        them (default ``top``; e.g. the ReLU or pooling after it)
    keep_top : number of top-layer channels kept
    backtrack : {lower conv layer: channels kept}, processed from the top down (each scored by its connections
        to the channels kept in the layer that consumes it)
    feature_end : last child of the feature extractor (e.g. the ``Flatten``); the old head after it is dropped
    x, y : sample images (N, C, H, W) and labels (N,) in [0, n_classes)
    scores : ``"lda"`` (Fisher ratio) or ``"random"`` (same counts, random channels: the comparison)
    head : ``"svm"`` (linear SVM) or ``"bayes"`` (Gaussian, shared covariance) on the kept features

    Returns
    -------
    (pruned Sequential = smaller features + Linear Bayes head, {layer: kept indices})
    """
    import copy
    net = copy.deepcopy(model)  # pruned whole (the old head keeps the kept features reachable), then cut
    if scores == "lda":
        j = fisher_scores(channel_features(net, summary or top, x), y)
    elif scores == "random":
        rng = np.random.default_rng(0) if rng is None else rng
        j = rng.random(dict(net.named_modules())[top].weight.shape[0])
    else:
        raise ValueError(f"tian2017_ldaprune: scores must be 'lda' or 'random', got {scores!r}")
    plan = {top: top_k(j, keep_top)}
    mods = dict(net.named_modules())
    for low in sorted(backtrack, key=lambda n: -[k for k, _ in net.named_children()].index(n)):
        up = _consumer(net, low, input_shape)
        if up not in plan:
            raise ValueError(f"tian2017_ldaprune: back-track {low!r} after its consumer {up!r}")
        c = mods[low].weight.shape[0]
        s = backtrack_scores(mods[up].weight, plan[up], c) if scores == "lda" else rng.random(c)
        plan[low] = top_k(s, backtrack[low])
    prune_plan(net, plan, input_shape)
    feats = features_of(net, feature_end)
    f = feats.eval()(x.astype(feats.dtype or np.float32))
    if head not in ("svm", "bayes"):
        raise ValueError(f"tian2017_ldaprune: head must be 'svm' or 'bayes', got {head!r}")
    fit = svm_head if head == "svm" else gaussian_bayes_head
    return Sequential(*feats.children(), fit(f, y, n_classes, dtype=feats.dtype or np.float32)), plan
