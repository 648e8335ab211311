"""Optimal Brain Surgeon: delete one weight at a time with the full inverse Hessian and correct all the others.

Hassibi B., Stork D. G. — "Second order derivatives for network pruning: Optimal Brain Surgeon", Advances in
Neural Information Processing Systems 5 (NIPS 1992), Morgan Kaufmann 1993, pp. 164-171; and Hassibi B.,
Stork D. G., Wolff G. J. — "Optimal Brain Surgeon and general network pruning", IEEE International
Conference on Neural Networks (ICNN) 1993, pp. 293-299. (No arXiv ids: pre-arXiv.)

**Implements**

* The constrained quadratic problem: minimise 1/2 dw^T H dw subject to e_q^T dw + w_q = 0, whose solution is
  the weight update dw = -(w_q / [H^-1]_qq) H^-1 e_q and the saliency (loss increase) L_q = w_q^2 / (2 [H^-1]_qq)
  (``obs_prune``). After each deletion the inverse Hessian of the remaining weights is the Schur complement
  H^-1 <- H^-1 - H^-1 e_q e_q^T H^-1 / [H^-1]_qq (weight q stays at 0 in every later update).
* The outer-product approximation H = (1/P) sum_k X_k X_k^T and its recursive inverse, starting from
  H_0^-1 = alpha^-1 I, by the Sherman-Morrison (matrix inversion lemma) update
  H_{m+1}^-1 = H_m^-1 - H_m^-1 X X^T H_m^-1 / (P + X^T H_m^-1 X) (``inverse_hessian``). For a network with
  several outputs ([11]) one vector per output: here softmax cross-entropy, whose Gauss-Newton matrix is
  exactly sum_n sum_c p_nc g_nc g_nc^T with g_nc the weight gradient for label c (H_z = diag(p) - p p^T =
  sum_c p_c (e_c - p)(e_c - p)^T), so X_{n,c} = sqrt(p_nc) g_nc.
* The paper's procedure (``surgeon``): 1. train to a minimum; 2. compute H^-1 at the current weights; 3. find
  the q of least saliency L_q; if L_q is small against the error E, delete w_q, correct every weight by the
  update above and go back to 2; else stop. ``recompute_every=1`` recomputes H^-1 (the Gauss-Newton matrix of
  the remaining weights at the new weights) after every deletion, as the paper does; a larger value reuses the
  Schur-downdated H^-1 in between (``obs_prune``'s fixed-H loop is ``recompute_every = infinity``).
* OBD as the diagonal special case for the comparison (``obd_prune``): same H, saliency H_qq w_q^2 / 2 and no
  correction of the other weights.

**Deviations**

* Softmax cross-entropy instead of the paper's sum-of-squares error (the vectors X above replace the output
  derivatives); Fashion-MNIST downsampled to 7x7 and a 49-16-10 MLP (944 weights) instead of MONK's /
  XOR / NETtalk: H^-1 is dense (P^2 entries), so full OBS is only feasible for ~10^3-10^4 weights.
* The recursion is applied in blocks of ``block`` vectors with the Woodbury identity, which equals that many
  Sherman-Morrison steps in exact arithmetic (tested against ``numpy.linalg.inv``).
* ``obs_prune`` (used by the sweeps, the test against OBD and the demo) is the fast variant: H^-1 is computed
  once at the trained weights and only downdated, and a fixed number of weights is deleted, where the paper
  recomputes H^-1 after every deletion and stops on the saliency. For a quadratic error both are the same;
  ``surgeon`` is the paper's loop and is tested on real data.
* Biases are kept (not in the pruned parameter vector). The paper's equations are named, not numbered: we
  could not check the numbering against the text.

Reproduce: ``python -m scripts.pruning.hassibi1993_obs --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.common import prunable_names
from nn.losses import CrossEntropyLoss, softmax
from nn.module import Module


def weight_vector(model: Module, names: list[str] | None = None) -> tuple[np.ndarray, list[tuple[str, tuple]]]:
    """Concatenate the named weights (default: all prunable) into one float64 vector; return it and the layout."""
    params = dict(model.named_parameters())
    names = names if names is not None else prunable_names(model)
    layout = [(n, params[n].shape) for n in names]
    return np.concatenate([params[n].ravel().astype(np.float64) for n in names]), layout


def set_weight_vector(model: Module, w: np.ndarray, layout: list[tuple[str, tuple]]) -> None:
    params = dict(model.named_parameters())
    i = 0
    for n, shape in layout:
        k = int(np.prod(shape))
        params[n][...] = w[i:i + k].reshape(shape)
        i += k


def gn_vectors(model: Module, x: np.ndarray, layout: list[tuple[str, tuple]]) -> np.ndarray:
    """X (N*K, P): sqrt(p_nc) times the weight gradient of the cross-entropy with label c, per sample n and
    class c, so that X^T X / N is the Gauss-Newton matrix of the mean loss (see the module docstring)."""
    loss = CrossEntropyLoss()
    grads = dict(model.named_grads())
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        p = softmax(logits.astype(np.float64), axis=-1)
        n, k = p.shape
        out = np.empty((n * k, sum(int(np.prod(s)) for _, s in layout)))
        for i in range(n):
            for c in range(k):
                model.zero_grad()
                loss(model(x[i:i + 1]), np.array([c]))
                model.backward(loss.backward())
                out[i * k + c] = np.sqrt(p[i, c]) * np.concatenate([grads[name].ravel() for name, _ in layout])
        model.zero_grad()
    finally:
        model.train(was_training)
    return out


def inverse_hessian(X: np.ndarray, n_samples: int, alpha: float = 1e-4, block: int = 256) -> np.ndarray:
    """H^-1 for H = alpha I + X^T X / n_samples by the recursive (Sherman-Morrison / Woodbury) update.

    Parameters
    ----------
    X : (M, P) vectors X_k (rows); n_samples : the P of the paper's 1/P (number of training patterns)
    alpha : H_0 = alpha I, the paper's small initial constant (keeps H invertible)
    """
    P = X.shape[1]
    Hinv = np.eye(P) / alpha
    for s in range(0, len(X), block):
        Xb = X[s:s + block].T  # (P, B)
        HX = Hinv @ Xb  # (P, P) @ (P, B) -> (P, B)
        # recursion: H^-1 <- H^-1 - H^-1 X (P I + X^T H^-1 X)^-1 X^T H^-1 (B Sherman-Morrison steps at once)
        S = n_samples * np.eye(Xb.shape[1]) + Xb.T @ HX  # (B, B)
        Hinv -= HX @ np.linalg.solve(S, HX.T)  # (P, B) @ (B, P)
        Hinv = (Hinv + Hinv.T) / 2  # keep it symmetric against rounding
    return Hinv


def obs_prune(w: np.ndarray, Hinv: np.ndarray, n_delete: int) -> tuple[np.ndarray, list[int], list[float]]:
    """Delete ``n_delete`` weights one by one, each time the one of least saliency, correcting all others.

    Returns the new weight vector (deleted entries exactly 0), the deleted indices in order and their saliencies.
    Weights that are already 0 count as deleted only if chosen; they have saliency 0 and go first.
    """
    w = w.astype(np.float64).copy()
    Hinv = Hinv.copy()
    alive = np.ones(len(w), bool)
    order, sal = [], []
    for _ in range(int(n_delete)):
        d = np.diag(Hinv)
        # saliency: L_q = w_q^2 / (2 [H^-1]_qq)
        L = np.where(alive, w * w / (2 * np.where(alive, d, 1.0)), np.inf)
        q = int(np.argmin(L))
        col = Hinv[:, q].copy()
        # update: dw = -(w_q / [H^-1]_qq) H^-1 e_q
        w -= (w[q] / col[q]) * col
        w[q] = 0.0
        alive[q] = False
        # inverse Hessian of the remaining weights: H^-1 <- H^-1 - H^-1 e_q e_q^T H^-1 / [H^-1]_qq
        Hinv -= np.outer(col, col) / col[q]
        w[~alive] = 0.0
        order.append(q)
        sal.append(float(L[q]))
    return w, order, sal


def obd_prune(w: np.ndarray, h_diag: np.ndarray, n_delete: int) -> np.ndarray:
    """OBD with the diagonal of the same H: delete the ``n_delete`` lowest h_qq w_q^2 / 2, no correction."""
    w = w.astype(np.float64).copy()
    s = h_diag * w * w / 2
    w[np.argsort(s, kind="stable")[:int(n_delete)]] = 0.0
    return w


def magnitude_prune(w: np.ndarray, n_delete: int) -> np.ndarray:
    w = w.astype(np.float64).copy()
    w[np.argsort(np.abs(w), kind="stable")[:int(n_delete)]] = 0.0
    return w


def surgeon(model: Module, x: np.ndarray, y: np.ndarray, layout: list[tuple[str, tuple]] | None = None,
            stop_ratio: float = 0.05, recompute_every: int = 1, max_delete: int | None = None,
            alpha: float = 1e-4) -> dict:
    """The paper's OBS procedure on ``model`` (in place), with the Gauss-Newton H of the mean cross-entropy on
    (x, y): step 2, H^-1 of the remaining weights at the current weights (recomputed every ``recompute_every``
    deletions, Schur-downdated in between; 1 = the paper); step 3, the least-saliency weight q; if
    L_q < ``stop_ratio`` * E (E the current mean loss on x), delete it and correct all remaining weights; stop
    at the first L_q that is not small, or after ``max_delete`` deletions. Weights already 0 count as deleted.
    Give x at least P / K samples (P weights, K classes), or H is rank-deficient and alpha decides the saliencies.

    Returns {"deleted": indices in order, "saliency": their L_q, "error": E before each deletion,
    "stopped": "saliency" or "max_delete", "recomputed": number of H^-1 computations}.
    """
    if recompute_every < 1:
        raise ValueError(f"surgeon: recompute_every must be >= 1, got {recompute_every}")
    layout = layout if layout is not None else weight_vector(model)[1]
    w = weight_vector(model, [n for n, _ in layout])[0]
    dtype = dict(model.named_parameters())[layout[0][0]].dtype
    alive = w != 0  # weights already exactly 0 count as deleted (a second call continues the first)
    loss = CrossEntropyLoss()
    out = {"deleted": [], "saliency": [], "error": [], "stopped": "max_delete", "recomputed": 0}
    limit = len(w) if max_delete is None else int(max_delete)
    Hinv = idx = None
    was_training = model.training
    model.eval()
    try:
        while len(out["deleted"]) < limit and alive.any():
            if Hinv is None or len(out["deleted"]) % recompute_every == 0:
                idx = np.flatnonzero(alive)  # H^-1 of the remaining weights only: the deleted ones stay 0
                X = gn_vectors(model, x, layout)[:, idx]
                Hinv = inverse_hessian(X, len(x), alpha)
                out["recomputed"] += 1
            E = float(loss(model(x), y))
            wa = w[idx]
            d = np.diag(Hinv)
            live = alive[idx]
            L = np.where(live, wa * wa / (2 * np.where(live, d, 1.0)), np.inf)  # L_q = w_q^2 / (2 [H^-1]_qq)
            j = int(np.argmin(L))
            if L[j] >= stop_ratio * E:
                out["stopped"] = "saliency"
                break
            col = Hinv[:, j].copy()
            wa = wa - (wa[j] / col[j]) * col  # dw = -(w_q / [H^-1]_qq) H^-1 e_q
            Hinv -= np.outer(col, col) / col[j]  # the Schur complement: q's row and column become 0
            alive[idx[j]] = False
            wa[~alive[idx]] = 0.0
            w[idx] = wa
            set_weight_vector(model, w.astype(dtype), layout)
            out["deleted"].append(int(idx[j]))
            out["saliency"].append(float(L[j]))
            out["error"].append(E)
    finally:
        model.train(was_training)
    return out
