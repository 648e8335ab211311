"""Network Trimming: remove the neurons / channels whose ReLU output is mostly zero (APoZ).

Hengyuan Hu, Rui Peng, Yu-Wing Tai, Chi-Keung Tang. "Network Trimming: A Data-Driven Neuron Pruning
Approach towards Efficient Deep Architectures". arXiv:1607.03250, 2016.

Implements
----------
* Eq. (1): APoZ_c^(i) = sum_k^N sum_j^M f(O_(c,j)^(i)(k) = 0) / (N x M), the fraction of exact zeros in
  channel c's post-ReLU output over N sample images and M spatial positions (``apoz``).
* Sec. 3, trimming: neurons whose APoZ is above the layer's mean + std are removed (``trim_plan``), with their
  incoming filter and the next layer's outgoing weights (``surgery``); the trimmed network is then retrained
  from the surviving weights (the caller's loop), and trimming can be iterated.

Deviations
----------
* The activation measured is the first ReLU-like layer after the pruned layer (through BatchNorm / pooling),
  found on the model's channel trace; the paper measures ReLU outputs of VGG-16 conv/fc layers directly.
* Every layer keeps at least one channel.

Reproduce: ``python -m scripts.pruning.hu2016_apoz --seed 0``.
"""
from __future__ import annotations

import numpy as np

from methods.pruning.surgery import capture, prune_plan, trace
from nn.module import Module

RELUS = ("ReLU", "ReLU6", "LeakyReLU")


def activation_after(model: Module, layer: str, input_shape: tuple[int, ...]) -> str:
    """Name of the first ReLU that carries ``layer``'s output channels, in order."""
    t = trace(model, input_shape)
    cls = t.classes(t.node(layer).out_atoms).tolist()
    for n in t.nodes:
        if any(c.__name__ in RELUS for c in type(n.module).__mro__) and t.classes(n.in_atoms).tolist() == cls:
            return n.name
    raise ValueError(f"hu2016_apoz: no ReLU reads the channels of {layer!r} one to one")


def apoz(model: Module, activation: str, x: np.ndarray) -> np.ndarray:
    """Eq. (1): fraction of exact zeros per channel of ``activation``'s output on images x -> (C,) float64."""
    out = capture(model, [activation], x)[activation][1]  # (N, C, ...) post-ReLU
    z = (out == 0).swapaxes(0, 1).reshape(out.shape[1], -1)  # (C, N*M)
    return z.mean(axis=1, dtype=np.float64)


def trim_plan(model: Module, layers: list[str], x: np.ndarray, input_shape: tuple[int, ...],
              k_std: float = 1.0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({layer: kept channels}, {layer: APoZ per channel}): remove channels with APoZ > mean + k_std * std."""
    plan, scores = {}, {}
    for name in layers:
        a = apoz(model, activation_after(model, name, input_shape), x)
        scores[name] = a
        keep = np.flatnonzero(a <= a.mean() + k_std * a.std())
        if keep.size == 0:
            keep = np.array([int(np.argmin(a))])
        if keep.size < a.size:
            plan[name] = keep
    return plan, scores


def trim(model: Module, layers: list[str], x: np.ndarray, input_shape: tuple[int, ...],
         k_std: float = 1.0) -> Module:
    """One trimming pass (in place): APoZ on x, then surgery on the high-APoZ channels."""
    plan, _ = trim_plan(model, layers, x, input_shape, k_std)
    return prune_plan(model, plan, input_shape) if plan else model
