"""Channel pruning by LASSO channel selection and least-squares reconstruction.

Yihui He, Xiangyu Zhang, Jian Sun. "Channel Pruning for Accelerating Very Deep Neural Networks". ICCV 2017.
arXiv:1707.06168.

Implements
----------
* Eq. (1): min_(beta, W) (1 / 2N) ||Y - sum_i beta_i X_i W_i^T||_F^2 s.t. ||beta||_0 <= c', for one layer with
  c input channels, X_i (N, kH*kW) the sampled input slice of channel i and W_i (n, kH*kW) its kernels.
* Eq. (2), channel selection: the LASSO relaxation min_beta (1 / 2N) ||Y - sum_i beta_i Z_i||_F^2 + lambda
  ||beta||_1 with Z_i = X_i W_i^T (N, n) under the constraint ||W_i||_F = 1 (the kernels of each channel are
  normalised first, so beta_i = ||W_i||_F reproduces Y and the L1 penalty is not weighted by the kernel
  norms), solved by coordinate descent; lambda is raised (bisection on log lambda) until ||beta||_0 <= c'
  (Sec. 3.1, "gradually increase lambda").
* Eq. (3), reconstruction: with beta fixed, W' = argmin ||Y - X' (W')^T||_F^2 over the kept channels, the
  least-squares solution (``reconstruct``), replacing the kernels of layer i + 1; the paper's renormalisation
  beta_i <- beta_i ||W'_i||_F, W'_i <- W'_i / ||W'_i||_F leaves the product beta_i W'_i, which is what the
  layer stores, unchanged.
* Whole-model pruning (Sec. 3.2): Y is the output of layer i + 1 in the *unpruned* model (``reference``),
  while X comes from the model being pruned, so errors of earlier pruned layers are compensated rather than
  accumulated.
* Filter removal in the producing layer i and kernel removal in layer i + 1 via ``surgery``.

Deviations
----------
* The alternation of (a) and (b) is run once (select, then reconstruct), which the paper reports is
  enough when pruning a trained model layer by layer; beta is folded into W' by the least squares.
* Single-branch layers only (no multi-branch residual variant, Sec. 3.3).
* Without ``reference`` (a single layer of an unpruned model, as in the tests) Y is layer i + 1's output in
  the model passed in, which is the unpruned one; bias excluded in both cases.

Reproduce: ``python -m scripts.pruning.he2017_channelprune --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import capture, conv_patches, next_consumer, prune_channels
from nn.module import Module


def lasso_cd(G: np.ndarray, r: np.ndarray, lam: float, n: int, beta0: np.ndarray | None = None,
             iters: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Coordinate descent for min_beta (1/2n) ||y - Z beta||^2 + lam ||beta||_1 from G = Z^T Z, r = Z^T y."""
    beta = np.zeros(len(r)) if beta0 is None else beta0.copy()
    for _ in range(iters):
        delta = 0.0
        for i in range(len(r)):
            if G[i, i] == 0:
                continue
            # partial residual correlation, excluding coordinate i
            rho = (r[i] - G[i] @ beta + G[i, i] * beta[i]) / n
            new = np.sign(rho) * max(abs(rho) - lam, 0.0) / (G[i, i] / n)  # soft threshold
            delta = max(delta, abs(new - beta[i]))
            beta[i] = new
        if delta < tol:
            break
    return beta


def select_channels(Z: np.ndarray, Y: np.ndarray, c_keep: int, steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (2): (kept channel indices, beta) with ||beta||_0 <= c_keep, raising lambda by bisection.

    Z (N, n, c): Z[:, :, i] = X_i W_i^T;  Y (N, n).
    """
    N, n, c = Z.shape
    Zf = Z.reshape(N * n, c)  # (N*n, c)
    y = Y.reshape(N * n)
    G, r = Zf.T @ Zf, Zf.T @ y  # (c, c), (c,)
    lo, hi = 1e-12, float(np.abs(r).max()) / (N * n) + 1e-12  # at lam >= hi, beta = 0
    best = None
    for _ in range(steps):
        lam = np.sqrt(lo * hi)
        beta = lasso_cd(G, r, lam, N * n, best)
        nnz = int(np.count_nonzero(beta))
        if nnz > c_keep:
            lo = lam
        else:
            hi, best = lam, beta
            if nnz == c_keep:
                break
    if best is None:
        best = lasso_cd(G, r, hi, N * n)
    # keep exactly c_keep channels: the nonzero ones by |beta|, topped up by the largest |beta| at the last lower
    # lambda (a lexicographic order: any nonzero beta, however small, ranks above every zero one)
    order = np.argsort(-np.abs(best), kind="stable")
    if np.count_nonzero(best) < c_keep:
        fallback = lasso_cd(G, r, lo, N * n)
        order = np.lexsort((-np.abs(fallback), -np.abs(best)))  # last key first: |best|, then |fallback|
    keep = np.sort(order[:c_keep])
    return keep, best


def reconstruct(X: np.ndarray, Y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Eq. (3): W' (n, c', kH, kW) = argmin ||Y - X_S W'^T||_F^2; X (N, c, kH, kW), Y (N, n)."""
    N, _, kh, kw = X.shape
    Xs = X[:, keep].reshape(N, -1)  # (N, c'*kH*kW)
    Wt = np.linalg.lstsq(Xs, Y, rcond=None)[0]  # (c'*kH*kW, n)
    return Wt.T.reshape(Y.shape[1], len(keep), kh, kw)


def channel_prune(model: Module, layer: str, x: np.ndarray, ratio: float, input_shape: tuple[int, ...],
                  n_samples: int = 2000, rng: np.random.Generator | None = None, reconstruct_weights: bool = True,
                  reference: Module | None = None, keep: np.ndarray | None = None) -> Module:
    """Remove round(ratio * C) output channels of ``layer`` selected by LASSO on layer i + 1, in place, and
    refit layer i + 1's kernels by least squares on ``n_samples`` sampled positions of images x.

    reference : the unpruned model, whose layer i + 1 output is the target Y (whole-model pruning, layer after
        layer); default: the model passed in (right for its first pruned layer).
    keep : channels to keep instead of the LASSO selection (an ablation: e.g. L1-selected filters with the same
        least-squares refit, so that selection is compared with the reconstruction held equal).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    nxt = next_consumer(model, layer, input_shape)
    conv = dict(model.named_modules())[nxt]
    if getattr(conv, "groups", 1) != 1 or conv.weight.ndim != 4:
        raise ValueError(f"he2017_channelprune: layer i+1 {nxt!r} must be a dense Conv2d")
    inp, out = capture(model, [nxt], x)[nxt]
    n_img, _, ho, wo = out.shape
    idx = (rng.integers(0, n_img, n_samples), rng.integers(0, ho, n_samples), rng.integers(0, wo, n_samples))
    X = conv_patches(conv, inp.astype(np.float64), *idx)  # (N, c, kH, kW)
    W = conv.weight.astype(np.float64)  # (n, c, kH, kW)
    norms = np.sqrt((W * W).sum(axis=(0, 2, 3)))  # ||W_i||_F per input channel i
    Wn = W / np.where(norms > 0, norms, 1.0)[None, :, None, None]  # Eq. (2)'s constraint ||W_i||_F = 1
    Z = np.einsum("Nckl,nckl->Nnc", X, Wn)  # (N, n, c): Z[:, :, i] = X_i W_i^T
    if reference is None:
        Y = np.einsum("Nnc,c->Nn", Z, norms)  # Eq. (1): Y = sum_i X_i W_i^T (bias excluded)
    else:
        ref_conv = dict(reference.named_modules()).get(nxt)
        if ref_conv is None or ref_conv.weight.shape[0] != W.shape[0]:
            raise ValueError(f"he2017_channelprune: the reference model has no layer {nxt!r} with "
                             f"{W.shape[0]} output channels")
        ref_out = capture(reference, [nxt], x)[nxt][1]
        Y = ref_out[idx[0], :, idx[1], idx[2]].astype(np.float64)  # (N, n)
        if ref_conv.bias is not None:
            Y = Y - ref_conv.bias.astype(np.float64)
    c = W.shape[1]
    if keep is None:
        keep, _ = select_channels(Z, Y, c - min(round(ratio * c), c - 1))
    keep = np.asarray(keep, dtype=np.int64)
    prune_channels(model, layer, keep, input_shape)
    if reconstruct_weights:
        conv.register_parameter("weight", reconstruct(X, Y, keep).astype(conv.weight.dtype))
    return model
