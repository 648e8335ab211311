"""Learnable per-weight gates with a bimodal regulariser, trained with straight-through gradients.

Suraj Srinivas, Akshayvarun Subramanya, R. Venkatesh Babu. "Training Sparse Neural Networks". CVPR Workshops
(Embedded Vision) 2017. arXiv:1611.06694.

Implements
----------
* Sec. 3, gating: every weight w_i gets a gate parameter g_i in [0, 1]; the network computes with
  w_i * z_i, z_i ~ Bernoulli(g_i) while training (the spike-and-slab reading: g_i is the probability that w_i
  is "on"), z_i = [g_i > 0.5] at test time (``Gates.sample`` / ``Gates.deterministic``).
* Sec. 3, straight-through estimator: dL/dg_i := dL/dz_i = dL/d(w_i z_i) * w_i, the Bernoulli sampling is
  treated as the identity in the backward pass; dL/dw_i = dL/d(w_i z_i) * z_i (``Gates.backward``).
* Sec. 3.1, the regulariser on the gates: lambda1 * sum g_i (1 - g_i) (bimodal: pushes every gate to 0 or 1)
  + lambda2 * sum g_i (sparsity), with the gates clipped to [0, 1] after each update (``gate_penalty``).
* Weights and gates are trained jointly (``train_gated``); at the end the weights with closed gates are
  removed (``Gates.freeze``: fixed Module masks, deployable with ``common.deploy_sparse``).

Deviations
----------
* The test starts from a trained LeNet-300-100 with all gates at ``init`` (the paper also starts from
  pre-trained networks for AlexNet / VGG); LeNet-5 (the paper's small model) is too slow to train inside a test
  on the shared 2-core machine. The penalty strengths are ours; the paper's values are not known to us.
* Gates are updated by SGD with momentum without weight decay; only weights with >= 2 dims are gated (biases
  are not), as in magnitude pruning.

Reproduce: ``python -m scripts.pruning.srinivas2017_gates --seed 0``.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from methods.pruning.common import _resolve, apply_masks
from nn.module import Module


class GateBank(Module):
    """Holds one gate array per gated weight as parameters (names: the weight's name with "." -> "/")."""

    def forward(self, x):  # pragma: no cover - a parameter holder, never called
        raise TypeError("GateBank holds gate parameters; it has no forward")

    backward = forward


def gate_penalty(g: np.ndarray, lambda1: float, lambda2: float) -> tuple[float, np.ndarray]:
    """(value, gradient) of lambda1 * sum g (1 - g) + lambda2 * sum g."""
    # Sec. 3.1: R(g) = lambda1 * sum g(1-g) + lambda2 * sum g
    value = float(lambda1 * np.sum(g * (1.0 - g)) + lambda2 * np.sum(g))
    grad = lambda1 * (1.0 - 2.0 * g) + lambda2
    return value, grad.astype(g.dtype)


class Gates:
    """Per-weight gates for the named weights of ``model`` (default: every weight with >= 2 dims).

    The model's parameters hold w * z for forward/backward; ``dense`` keeps w. Call ``sample(rng)`` before a
    training forward, ``backward(lambda1, lambda2)`` after the model's backward, and ``step(opt_w, opt_g)``
    to update weights and gates.
    """

    def __init__(self, model: Module, init: float = 0.9, names: Iterable[str] | None = None) -> None:
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"srinivas2017_gates: gate init must be in [0, 1], got {init}")
        self.model = model
        names = _resolve(model, names)
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.dense = {n: p.copy() for n, p in self.params.items()}
        self.bank = GateBank()
        for n, p in self.params.items():
            self.bank.register_parameter(n.replace(".", "/"), np.full_like(p, init))
        self.z = {n: np.ones_like(p) for n, p in self.params.items()}

    def gate(self, name: str) -> np.ndarray:
        return dict(self.bank.named_parameters())[name.replace(".", "/")]

    def sample(self, rng: np.random.Generator) -> None:
        """Training forward: z ~ Bernoulli(g), parameters <- w * z."""
        for n, p in self.params.items():
            g = self.gate(n)
            self.z[n] = (rng.random(g.shape) < g).astype(p.dtype)
            np.multiply(self.dense[n], self.z[n], out=p)

    def deterministic(self) -> None:
        """Test-time network: z = [g > 0.5], parameters <- w * z."""
        for n, p in self.params.items():
            self.z[n] = (self.gate(n) > 0.5).astype(p.dtype)
            np.multiply(self.dense[n], self.z[n], out=p)

    def backward(self, lambda1: float, lambda2: float) -> float:
        """Straight-through gate gradients plus the penalty; weight gradients scaled by z. Returns the penalty."""
        grads = dict(self.model.named_grads())
        bank_grads = dict(self.bank.named_grads())
        total = 0.0
        for n in self.params:
            g = self.gate(n)
            gw = grads[n]
            pen, dpen = gate_penalty(g, lambda1, lambda2)
            total += pen
            # STE: dL/dg = dL/dz = dL/d(w z) * w
            bank_grads[n.replace(".", "/")] += gw * self.dense[n] + dpen
            gw *= self.z[n]
        return total

    def step(self, opt_w, opt_g) -> None:
        """Update the dense weights (opt_w over the model) and the gates (opt_g over ``bank``), clip g to [0, 1]."""
        for n, p in self.params.items():
            p[...] = self.dense[n]
        opt_w.step()
        for n, p in self.params.items():
            self.dense[n][...] = p
        opt_g.step()
        for _, g in self.bank.named_parameters():
            np.clip(g, 0.0, 1.0, out=g)

    def open_fraction(self) -> float:
        """Fraction of gates with g > 0.5 (weights kept at test time)."""
        gs = [g for _, g in self.bank.named_parameters()]
        return float(sum(int((g > 0.5).sum()) for g in gs) / sum(g.size for g in gs))

    def undecided_fraction(self, lo: float = 0.1, hi: float = 0.9) -> float:
        """Fraction of gates strictly between lo and hi (small when the gates are bimodal)."""
        gs = [g for _, g in self.bank.named_parameters()]
        return float(sum(int(((g > lo) & (g < hi)).sum()) for g in gs) / sum(g.size for g in gs))

    def freeze(self) -> dict[str, np.ndarray]:
        """End of training: weights <- w * [g > 0.5] with fixed Module masks. Returns the masks."""
        self.deterministic()
        for n, p in self.params.items():
            p[...] = self.dense[n]
        masks = {n: (self.gate(n) > 0.5).astype(p.dtype) for n, p in self.params.items()}
        apply_masks(self.model, masks)
        return masks


def train_gated(model: Module, gates: Gates, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                lr: float, lr_gate: float, lambda1: float, lambda2: float, rng: np.random.Generator,
                momentum: float = 0.9) -> list[dict]:
    """Joint training of weights and gates; one row per epoch (loss, penalty, open and undecided fractions)."""
    from nn.data import batches
    from nn.losses import CrossEntropyLoss
    from nn.optim import SGD

    opt_w = SGD(model, lr=lr, momentum=momentum)
    opt_g = SGD(gates.bank, lr=lr_gate, momentum=momentum)
    ce = CrossEntropyLoss()
    hist = []
    for ep in range(int(epochs)):
        model.train()
        tot, pen, n = 0.0, 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            opt_w.zero_grad()
            opt_g.zero_grad()
            gates.sample(rng)
            loss = ce(model(xb), yb)
            model.backward(ce.backward())
            pen = gates.backward(lambda1, lambda2)
            gates.step(opt_w, opt_g)
            tot += loss * len(xb)
            n += len(xb)
        hist.append({"epoch": ep, "loss": tot / max(n, 1), "penalty": pen, "open": gates.open_fraction(),
                     "undecided": gates.undecided_fraction()})
    gates.deterministic()
    model.eval()
    return hist
