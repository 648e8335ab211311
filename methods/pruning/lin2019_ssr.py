"""Structured-sparsity regularised filter pruning, solved by alternating updates with Lagrange multipliers.

Shaohui Lin, Rongrong Ji, Yuchao Li, Cheng Deng, Xuelong Li. "Toward Compact ConvNets via Structure-Sparsity
Regularized Filter Pruning". IEEE Transactions on Neural Networks and Learning Systems 31(2):574-588, 2020 (online
2019). arXiv:1901.07827.

Implements
----------
Filter pruning as  min_W  L(W) + lambda * R(W),  with R one of the two structured-sparsity regularisers over the
filters (groups) g of the pruned layers:

* (R21) the l2,1 norm  R(W) = sum_g ||W_g||_2  (group Lasso), and
* (R20) the l2,0 "norm"  R(W) = #{g : ||W_g||_2 != 0}  (number of surviving filters).

AULM (alternating updates with Lagrange multipliers) splits the variable, W = V, and alternates, on the scaled
augmented Lagrangian  L(W) + lambda R(V) + rho/2 ||W - V + U||^2  (U = multiplier / rho):

* (A1) W-step: one SGD step on  L(W) + rho/2 ||W - V + U||^2  (``AULM.add_penalty_grad`` adds
  rho (W - V + U) to the gradient of the grouped parameters before the optimizer step);
* (A2) V-step: the proximal operator of lambda/rho R at W + U, in closed form: group soft-thresholding for
  l2,1, group hard-thresholding (keep g iff ||.||^2 > 2 lambda / rho) for l2,0 (``prox_l21``, ``prox_l20``);
* (A3) multiplier step: U <- U + W - V.

Filters whose V_g is exactly zero are removed with their feature maps and the next layer's kernels
(``finalize``: W_g <- 0, then ``surgery.prune_plan``). ``add_group_lasso_subgradient`` is the baseline the
paper compares its solver with: plain SGD on  L(W) + lambda sum_g ||W_g||_2  (subgradient W_g / ||W_g||).

Deviations
----------
* Equation labels (R21), (R20), (A1)-(A3) are ours: the paper's text was not at hand when this was written, so
  its equation numbers are not quoted.
* A group is a whole output channel: the filter's weights *and* bias plus the scale and shift of the BatchNorm
  that normalises it (the paper's nets have the filter only). With BatchNorm, a zero filter alone still emits
  the constant beta; including gamma and beta makes a zeroed group an exactly zero channel, so removing it does
  not change the network's function.
* Only layers whose output channels are independent (one producing conv/linear, e.g. not residual streams) are
  regularised; ``surgery.channel_groups`` finds their BatchNorms.
* The V- and U-steps run after every W-step (mini-batch), not once per epoch.
* Reproduction is on Fashion-MNIST with a small CNN, not ImageNet/CIFAR with VGG/ResNet/GoogLeNet.

Reproduce: ``python -m scripts.pruning.lin2019_ssr --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import channel_groups, prune_plan, trace, zero_channels
from nn.module import Module

Members = list[tuple[Module, str]]  # (module, parameter name) whose axis-0 rows are the channels


def channel_param_groups(model: Module, layers: list[str], input_shape: tuple[int, ...]) -> dict[str, Members]:
    """{layer: [(module, param name), ...]}: the parameters whose row j belongs to output channel j of layer.

    Every named conv/linear layer must produce an independent channel group (its own BatchNorm at most).
    """
    t = trace(model, input_shape)
    kinds = {n.name: n.kind for n in t.nodes}
    mods = dict(model.named_modules())
    out = {}
    for layer in layers:
        if kinds.get(layer) not in ("conv", "linear"):
            raise ValueError(f"lin2019_ssr: {layer!r} is not a dense Conv2d/Linear layer of the model")
        g = next(g for g in channel_groups(model, input_shape) if layer in g.layers)
        producers = [n for n in g.layers if kinds[n] in ("conv", "gconv", "linear")]
        if len(producers) != 1 or g.fixed:
            raise ValueError(f"lin2019_ssr: the channels of {layer!r} are coupled to {g.layers} or reach the model "
                             "output; only independent layers can be regularised")
        out[layer] = [(mods[n], p) for n in g.layers for p in ("weight", "bias")
                      if mods[n]._parameters.get(p) is not None]
    return out


def group_norms(members: Members, arrays: list[np.ndarray] | None = None) -> np.ndarray:
    """||W_g||_2 of every channel g (C,) float64, over all member rows (or over ``arrays`` shaped like them)."""
    arrs = arrays if arrays is not None else [m._parameters[p] for m, p in members]
    sq = sum(np.square(a.astype(np.float64)).reshape(a.shape[0], -1).sum(axis=1) for a in arrs)
    return np.sqrt(sq)


def _rows(scale: np.ndarray, a: np.ndarray) -> np.ndarray:
    return scale.reshape(-1, *([1] * (a.ndim - 1))).astype(a.dtype)


def prox_l21(arrays: list[np.ndarray], t: float) -> list[np.ndarray]:
    """argmin_V t sum_g ||V_g|| + 1/2 ||V - A||^2: group soft-thresholding of the member arrays A."""
    norms = group_norms([], arrays)
    # (A2, l2,1): V_g = max(0, 1 - t / ||A_g||) A_g
    scale = np.maximum(0.0, 1.0 - t / np.maximum(norms, 1e-300))
    return [a * _rows(scale, a) for a in arrays]


def prox_l20(arrays: list[np.ndarray], t: float) -> list[np.ndarray]:
    """argmin_V t #{g: V_g != 0} + 1/2 ||V - A||^2: keep a group iff ||A_g||^2 > 2 t (hard thresholding)."""
    norms = group_norms([], arrays)
    # (A2, l2,0): V_g = A_g if ||A_g||^2 > 2 t else 0
    keep = (norms ** 2 > 2.0 * t).astype(np.float64)
    return [a * _rows(keep, a) for a in arrays]


class AULM:
    """State of the AULM solver (V, U) for the channel groups of ``layers``.

    Use in a training loop: after ``model.backward``, call ``add_penalty_grad()``; after the optimizer step, call
    ``update()``. ``plan()`` gives the surviving channels (V_g != 0).

    Parameters
    ----------
    lam : regularisation weight lambda;  rho : penalty parameter of the augmented Lagrangian
    reg : ``"l21"`` or ``"l20"``
    """

    def __init__(self, model: Module, layers: list[str], input_shape: tuple[int, ...], lam: float, rho: float,
                 reg: str = "l21") -> None:
        if reg not in ("l21", "l20"):
            raise ValueError(f"lin2019_ssr: reg must be 'l21' or 'l20', got {reg!r}")
        if not lam >= 0 or not rho > 0:
            raise ValueError(f"lin2019_ssr: need lam >= 0 and rho > 0, got lam={lam}, rho={rho}")
        self.lam, self.rho, self.reg = float(lam), float(rho), reg
        self.groups = channel_param_groups(model, layers, input_shape)
        self.V = {k: [m._parameters[p].copy() for m, p in ms] for k, ms in self.groups.items()}
        self.U = {k: [np.zeros_like(v) for v in vs] for k, vs in self.V.items()}
        self.update(multipliers=False)

    def add_penalty_grad(self) -> None:
        """(A1): grad(W) += rho (W - V + U) for every grouped parameter (call between backward and step)."""
        for k, ms in self.groups.items():
            for (m, p), v, u in zip(ms, self.V[k], self.U[k]):
                # (A1): d/dW [rho/2 ||W - V + U||^2] = rho (W - V + U)
                m._grads[p] += self.rho * (m._parameters[p] - v + u)

    def update(self, multipliers: bool = True) -> None:
        """(A2) V <- prox_{lambda/rho R}(W + U), then (A3) U <- U + W - V."""
        prox = prox_l21 if self.reg == "l21" else prox_l20
        for k, ms in self.groups.items():
            w = [m._parameters[p] for m, p in ms]
            self.V[k] = prox([wi + ui for wi, ui in zip(w, self.U[k])], self.lam / self.rho)
            if multipliers:
                for ui, wi, vi in zip(self.U[k], w, self.V[k]):
                    # (A3): U <- U + W - V
                    ui += wi - vi

    def plan(self) -> dict[str, np.ndarray]:
        """{layer: indices of the channels with V_g != 0} (at least the largest one is kept)."""
        out = {}
        for k, vs in self.V.items():
            n = group_norms([], vs)
            keep = np.flatnonzero(n > 0)
            out[k] = keep if keep.size else np.array([int(np.argmax(group_norms(self.groups[k])))])
        return out

    def sparsity(self) -> float:
        """Fraction of all regularised channels whose V_g is exactly zero."""
        tot = sum(len(group_norms([], vs)) for vs in self.V.values())
        return 1.0 - sum(len(k) for k in self.plan().values()) / tot


def add_group_lasso_subgradient(groups: dict[str, Members], lam: float) -> None:
    """Baseline solver: grad(W_g) += lam W_g / ||W_g|| (the l2,1 subgradient, 0 at W_g = 0)."""
    for ms in groups.values():
        n = group_norms(ms)
        inv = np.where(n > 0, 1.0 / np.maximum(n, 1e-300), 0.0)
        for m, p in ms:
            w = m._parameters[p]
            m._grads[p] += lam * w * _rows(inv, w)


def norm_plan(groups: dict[str, Members], n_removed: dict[str, int]) -> dict[str, np.ndarray]:
    """{layer: kept channels} removing the ``n_removed[layer]`` smallest ||W_g|| (for the baseline solver)."""
    out = {}
    for k, ms in groups.items():
        n = group_norms(ms)
        m = min(int(n_removed.get(k, 0)), len(n) - 1)
        out[k] = np.sort(np.argsort(n, kind="stable")[m:])
    return out


def finalize(model: Module, plan: dict[str, np.ndarray], input_shape: tuple[int, ...]) -> Module:
    """Zero the removed groups (W_g <- V_g = 0, whole channel incl. BatchNorm) and remove them by surgery."""
    zero_channels(model, plan, input_shape)
    return prune_plan(model, plan, input_shape)
