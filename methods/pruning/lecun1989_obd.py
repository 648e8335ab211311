"""Optimal Brain Damage: prune the weights whose deletion the diagonal of the Hessian says costs least.

LeCun Y., Denker J. S., Solla S. A. — "Optimal Brain Damage", Advances in Neural Information Processing
Systems 2 (NIPS 1989), Morgan Kaufmann 1990, pp. 598-605. (No arXiv id: pre-arXiv.)

**Implements**

* Eq. (1)-(2): the change of the objective when the parameters move by dU, to second order about a trained
  minimum (gradient term ~ 0) with only the Hessian's diagonal kept: dE = 1/2 sum_k h_kk du_k^2.
* The saliency of parameter k, s_k = h_kk u_k^2 / 2 (Section "Optimal Brain Damage", step 4 of the
  procedure): the cost of setting u_k to 0.
* Eq. (5): d2E/dw_ij^2 = d2E/da_i^2 x_j^2 (a_i = sum_j w_ij x_j the pre-activation of unit i, x_j its input).
* Eq. (6) with the Levenberg-Marquardt (Gauss-Newton) approximation the paper recommends (the f'' term
  dropped): d2E/da_j^2 = f'(a_j)^2 sum_i w_ij^2 d2E/da_i^2, back-propagated layer by layer like a gradient.
* The boundary condition at the output for our loss: softmax cross-entropy, whose exact Hessian diagonal with
  respect to the logits z is p_i (1 - p_i) (the paper's Eq. (7) is the MSE/sigmoid counterpart).
* The procedure: train, compute h_kk, sort by saliency, delete the lowest, (retrain, iterate).

**Deviations**

* Softmax cross-entropy output instead of the paper's MSE with sigmoid outputs (our networks' loss); for a
  single Linear layer our h_kk equals the exact Hessian diagonal (tested against torch).
* ReLU activations: f'' = 0 almost everywhere, so Eq. (6)'s second term vanishes exactly, not by
  approximation; Gauss-Newton matters only through the dropped off-diagonal terms.
* h_kk is averaged over a sample of training images (the objective is a mean, not a sum); saliencies are
  ranked globally over all weight matrices (the paper's single parameter list); biases are not pruned.
* Equation numbers follow our reading of the NIPS paper; the formulas are what the code checks.

Supported models: chains (``Sequential``, nested) of ``Linear``, ``ReLU``, ``Flatten``, ``Identity`` and
``Dropout`` (eval). Reproduce: ``python -m scripts.pruning.lecun1989_obd --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.common import Masks, score_masks
from nn.activations import ReLU
from nn.basic import Dropout, Flatten, Identity
from nn.containers import Sequential
from nn.linear import Linear
from nn.losses import softmax
from nn.module import Module


def _chain(model: Module, prefix: str = "") -> list[tuple[str, Module]]:
    """Flatten nested Sequentials into (name, leaf) in forward order; refuse unsupported layers."""
    if isinstance(model, Sequential):
        out = []
        for name, child in model.named_children():
            out += _chain(child, f"{prefix}{name}.")
        return out
    if isinstance(model, (Linear, ReLU, Flatten, Identity, Dropout)):
        return [(prefix.rstrip("."), model)]
    raise TypeError(f"OBD's second-derivative pass supports Sequential chains of Linear/ReLU/Flatten/Identity/"
                    f"Dropout; {prefix.rstrip('.') or 'the model'} is a {type(model).__name__}")


def _forward(layers, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Float64 forward through the chain: (logits (N, K), the input of each layer)."""
    a = x.astype(np.float64)
    acts = []
    for _, m in layers:
        acts.append(a)
        if isinstance(m, Linear):
            a = a @ m.weight.T.astype(np.float64)  # (N, I) @ (I, O) -> (N, O)
            if m.bias is not None:
                a = a + m.bias
        elif isinstance(m, ReLU):
            a = np.maximum(a, 0)
        elif isinstance(m, Flatten):
            a = a.reshape(len(a), -1)  # (N, C, H, W) -> (N, C*H*W)
    return a, acts


def diag_hessian(model: Module, x: np.ndarray, batch_size: int = 500, method: str = "obd") -> dict[str, np.ndarray]:
    """h_kk for every Linear weight and bias: a diagonal Hessian of the mean cross-entropy.

    Parameters
    ----------
    model : Sequential chain of Linear / ReLU / Flatten / Identity / Dropout
    x : (N, ...) inputs in the model's dtype (labels are not needed: Gauss-Newton does not use them)
    method : ``"obd"`` -- the paper's second-derivative back-propagation, Eqs. (5)-(6), which also drops the
        off-diagonal terms while propagating; ``"gn"`` -- the exact diagonal of the Gauss-Newton matrix
        sum_n J_n^T H_z J_n, from H_z = diag(p) - p p^T = sum_c p_c (e_c - p)(e_c - p)^T: one ordinary
        backward per class c with the logit gradient (p - e_c), squared per sample and weighted by p_c.

    Returns
    -------
    name -> float64 array of the parameter's shape (e.g. ``"1.weight"`` (O, I), ``"1.bias"`` (O,))
    """
    if method not in ("obd", "gn"):
        raise ValueError(f"diag_hessian method must be 'obd' or 'gn', got {method!r}")
    layers = _chain(model)
    h = {f"{n}.{p}": np.zeros(arr.shape, np.float64)
         for n, m in layers if isinstance(m, Linear) for p, arr in m._parameters.items()}
    for s in range(0, len(x), batch_size):
        logits, acts = _forward(layers, x[s:s + batch_size])
        p = softmax(logits, axis=-1)
        if method == "obd":
            # boundary: d2E/dz_i^2 = p_i (1 - p_i) for softmax cross-entropy
            _backprop_diag(layers, acts, p * (1 - p), h, second_order=True)
        else:
            for c in range(p.shape[1]):
                g = p.copy()
                g[:, c] -= 1.0  # dE/dz for label c
                _backprop_diag(layers, acts, g, h, second_order=False, weight=p[:, c])
    return {k: v / len(x) for k, v in h.items()}


def _backprop_diag(layers, acts, d, h, second_order: bool, weight: np.ndarray | None = None) -> None:
    """Accumulate into h: with ``second_order`` propagate d2E/da^2 by Eqs. (5)-(6); otherwise propagate the
    per-sample gradient d and add weight_n * (per-sample gradient)^2."""
    for (name, m), inp in zip(reversed(layers), reversed(acts)):
        if isinstance(m, Linear):
            W = m.weight.astype(np.float64)
            if second_order:
                # Eq. (5): d2E/dw_ij^2 = d2E/da_i^2 x_j^2, summed over the samples
                h[f"{name}.weight"] += d.T @ (inp * inp)  # (O, N) @ (N, I) -> (O, I)
                if m.bias is not None:
                    h[f"{name}.bias"] += d.sum(axis=0)
                # Eq. (6), Gauss-Newton: d2E/dx_j^2 = sum_i w_ij^2 d2E/da_i^2
                d = d @ (W * W)  # (N, O) @ (O, I) -> (N, I)
            else:
                dw = d * d * weight[:, None]  # (N, O)
                h[f"{name}.weight"] += dw.T @ (inp * inp)  # per-sample (d_i x_j)^2 summed: (O, N) @ (N, I)
                if m.bias is not None:
                    h[f"{name}.bias"] += dw.sum(axis=0)
                d = d @ W  # (N, O) @ (O, I) -> (N, I)
        elif isinstance(m, ReLU):
            # Eq. (6): times f'(a_j)^2 (or f'(a_j) for a gradient); f'' = 0 for ReLU
            d = d * (inp > 0)
        elif isinstance(m, Flatten):
            d = d.reshape(inp.shape)


def saliency(model: Module, h: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
    """s_k = h_kk u_k^2 / 2 for each named parameter (default: the weights, not the biases)."""
    params = dict(model.named_parameters())
    names = names if names is not None else [n for n in h if n.endswith("weight")]
    out = {}
    for n in names:
        u = params[n].astype(np.float64)
        # saliency: s_k = h_kk u_k^2 / 2
        out[n] = h[n] * u * u / 2
    return out


def obd_masks(model: Module, x: np.ndarray, ratio: float, scope: str = "global",
              batch_size: int = 500, method: str = "obd") -> Masks:
    """Masks deleting the fraction ``ratio`` of the weights with the lowest OBD saliency.

    Already-pruned (zero) weights have saliency 0 and so are counted among the deleted ones.
    """
    s = saliency(model, diag_hessian(model, x, batch_size, method))
    params = dict(model.named_parameters())
    return {n: m.astype(params[n].dtype) for n, m in score_masks(s, ratio, scope).items()}
