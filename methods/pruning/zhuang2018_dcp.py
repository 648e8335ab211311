"""Discrimination-aware Channel Pruning (DCP).

Zhuang Zhuangwei, Mingkui Tan, Bohan Zhuang, Jing Liu, Yong Guo, Qingyao Wu, Junzhou Huang, Jinhui Zhu.
"Discrimination-aware Channel Pruning for Deep Neural Networks". NeurIPS 2018. arXiv:1810.11809.

Implements
----------
* Sec. 3.1, discrimination-aware loss at stage p: an auxiliary classifier (average pooling for conv
  features, then one fully connected layer) on the output of the stage's last layer, L_S^p = cross-entropy
  of its softmax (Eq. (2); the paper adds an L2 term on the classifier weights, which is weight decay here).
  ``AuxHead``, ``train_aux_head``.
* Eq. (4), reconstruction loss of layer l: L_M(W) = 1/(2Q) ||F(W) - F^b||^2 with F the output of the pruned
  layer computed from the *pruned* network's input and F^b the baseline's output, Q the elements per sample.
* Eq. (5), the joint loss L(W) = L_M(W) + lambda * L_S^p(W), minimised subject to ||W||_{2,0} <= kappa
  (at most kappa input channels of layer l keep non-zero weights).
* Algorithm 2, greedy channel selection: from A = {} (W = 0), repeatedly compute G = dL/dW, add the channel
  k = argmax_{j not in A} ||G_j||_F to A, re-optimise W_A by SGD with W_{A^c} = 0; stop when kappa channels are
  selected or the relative decrease of L falls below epsilon (``select_channels``).
* Algorithm 1, stage-wise pruning from shallow to deep (``dcp_prune``): each pruned layer uses the loss of the
  stage it belongs to; the pruned channels are then removed for real (``surgery.prune_plan``).
* lambda = 0 gives the reconstruction-only selection (ThiNet / channel pruning style) the paper compares with.

Deviations
----------
* The auxiliary heads are trained on the frozen baseline (``train_aux_head``); the paper also fine-tunes the
  network with L_f + L_S^p before and after each stage. A caller can fine-tune with ``common.train_epochs``.
* Channels are added ``step`` at a time (paper: one) and the subproblem gets a fixed number of SGD steps; the
  newly selected channels start from their baseline weights instead of 0, so a few steps suffice.
* Plain chains only (a flat ``Sequential``), with "channels" = the input channels of a conv, or the input
  neurons of a linear layer (an input channel after ``Flatten`` is its H*W block of features). The test uses
  LeNet-300-100, where channels are neurons; the paper uses ResNet / VGG on CIFAR-10 and ImageNet.

Reproduce: ``python -m scripts.pruning.zhuang2018_dcp --seed 0``.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from methods.pruning.surgery import prune_plan, trace
from nn.linear import Linear
from nn.losses import CrossEntropyLoss
from nn.module import Module
from nn.optim import SGD


class AuxHead(Module):
    """Auxiliary classifier of a stage: global average pooling of (N, C, H, W) features (or the (N, F) features
    as they are), then Linear(C, classes)."""

    def __init__(self, features: int, classes: int, rng, dtype=np.float32) -> None:
        super().__init__()
        self.fc = Linear(features, classes, rng=rng, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._save(shape=x.shape)
        return self.fc(x.mean(axis=(2, 3)) if x.ndim == 4 else x)

    def backward(self, g: np.ndarray) -> np.ndarray:
        shape = self._take()["shape"]
        gx = self.fc.backward(g)
        if len(shape) == 4:
            return np.broadcast_to(gx[:, :, None, None] / (shape[2] * shape[3]), shape).astype(gx.dtype)
        return gx


@dataclass(frozen=True)
class Layer:
    """Layer l of Eq. (4): child ``index`` of the chain, whose ``channels`` input channels come from ``producer``."""

    index: int
    name: str
    producer: str
    channels: int
    group: int  # input features per channel: kH*kW for a conv, H*W after Flatten, 1 for a linear


def chain(model: Module, input_shape: tuple[int, ...]) -> list[Layer]:
    """The prunable layers of a flat Sequential chain (every conv/linear but the first), in order."""
    t = trace(model, input_shape)
    dense = [n for n in t.nodes if n.kind in ("conv", "linear", "gconv", "dwconv")]
    if any(n.kind not in ("conv", "linear") for n in dense) or any("." in n.name for n in dense):
        raise ValueError("zhuang2018_dcp: only flat Sequential chains of ungrouped Conv2d/Linear layers are supported")
    names = [k for k, _ in model.named_children()]
    out = []
    for p, c in itertools.pairwise(dense):
        w = c.module.weight
        cin = len(p.out_atoms)
        out.append(Layer(names.index(c.name), c.name, p.name, cin,
                         int(np.prod(w.shape[2:])) if w.ndim == 4 else w.shape[1] // cin))
    return out


@contextmanager
def _in_eval_mode(*nets: Module) -> Iterator[None]:
    """Run the block with ``nets`` in eval mode and give every module its train/eval mode back afterwards."""
    modes = [(m, m.training) for net in nets for m in net.modules()]
    try:
        for net in nets:
            net.eval()
        yield
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)


def _run(layers: list[Module], x: np.ndarray) -> np.ndarray:
    for m in layers:
        x = m(x)
    return x


def _back(layers: list[Module], g: np.ndarray) -> np.ndarray:
    for m in reversed(layers):
        g = m.backward(g)
    return g


def train_aux_head(model: Module, stage_end: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                   epochs: int = 2, lr: float = 0.05, batch_size: int = 128) -> AuxHead:
    """Fit the auxiliary classifier of a stage ending after child ``stage_end - 1`` (network frozen, run in eval
    mode; its train/eval mode is restored)."""
    from nn.data import batches
    mods = list(model._modules.values())[:stage_end]
    with _in_eval_mode(model):
        feats = _run(mods, x[:2])
        head = AuxHead(feats.shape[1], int(y.max()) + 1, rng, feats.dtype)
        opt = SGD(head, lr=lr, momentum=0.9, weight_decay=1e-4)
        ce = CrossEntropyLoss()
        for _ in range(epochs):
            for xb, yb in batches(x, y, batch_size, rng):
                head.zero_grad()
                ce(head(_run(mods, xb)), yb)
                head.backward(ce.backward())
                opt.step()
    return head


def _channel_cols(layer: Layer, keep: np.ndarray, w_shape: tuple[int, ...]) -> np.ndarray:
    """0/1 mask of the layer's weight for the kept input channels."""
    co = w_shape[0]
    m = np.zeros((co, layer.channels, int(np.prod(w_shape[1:])) // layer.channels))
    m[:, keep] = 1.0
    return m.reshape(w_shape)


def joint_loss_grad(model: Module, layer: Layer, head: Module | None, stage_end: int, x_in: np.ndarray,
                    f_b: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, float, np.ndarray]:
    """(L_M, L_S, dL/dW) of Eq. (5) for the layer's current weights on one batch.

    x_in : the layer's input in the pruned network;  f_b : the baseline layer output (same images)
    head : the stage's auxiliary classifier, or None when the stage ends at the network output
    """
    mods = list(model._modules.values())
    conv, rest = mods[layer.index], mods[layer.index + 1:stage_end]
    ce = CrossEntropyLoss()
    with _in_eval_mode(model):
        return _joint_loss_grad(conv, rest, head, x_in, f_b, y, lam, ce)


def _joint_loss_grad(conv: Module, rest: list[Module], head: Module | None, x_in: np.ndarray, f_b: np.ndarray,
                     y: np.ndarray, lam: float, ce: CrossEntropyLoss) -> tuple[float, float, np.ndarray]:
    """``joint_loss_grad`` with the network already in eval mode."""
    conv.zero_grad()
    f = conv(x_in)
    logits = _run(rest, f)
    if head is not None:
        logits = head(logits)
    l_s = ce(logits, y)
    g = ce.backward()
    if head is not None:
        g = head.backward(g)
    g_f = lam * _back(rest, g)
    q = f[0].size
    # Eq. (4): L_M = 1/(2Q) ||F - F^b||^2, averaged over the batch
    diff = (f - f_b).astype(np.float64)
    l_m = float((diff ** 2).sum() / (2 * q * len(f)))
    g_f = g_f + (diff / (q * len(f))).astype(f.dtype)
    conv.backward(g_f)
    for m in rest:
        m.zero_grad()
    return l_m, l_s, dict(conv.named_grads())["weight"].copy()


def select_channels(model: Module, baseline: Module, layer: Layer, head: Module | None, stage_end: int,
                    x: np.ndarray, y: np.ndarray, kappa: int, lam: float, rng: np.random.Generator,
                    step: int = 1, sgd_steps: int = 20, lr: float = 0.01, batch_size: int = 256,
                    epsilon: float = 0.0) -> tuple[np.ndarray, list[dict]]:
    """Algorithm 2 on ``model``'s layer (edited in place: W_A re-optimised, W_{A^c} = 0). Both networks run in
    eval mode; their train/eval modes are restored.

    Returns the sorted selected channels A and one row per greedy iteration (|A|, L_M, L_S).
    """
    mods = list(model._modules.values())
    base_mods = list(baseline._modules.values())
    conv = mods[layer.index]
    w_b = base_mods[layer.index].weight.copy()
    with _in_eval_mode(model, baseline):
        x_in = _run(mods[:layer.index], x)  # the pruned network's input to layer l
        f_b = _run(base_mods[:layer.index + 1], x)  # F^b: baseline output of layer l
    conv.set_mask("weight", None)
    conv.weight[...] = 0.0  # Algorithm 2: W = 0, A = {}
    selected = np.zeros(layer.channels, bool)
    co = conv.weight.shape[0]
    opt = SGD(conv, lr=lr, momentum=0.9)
    hist, prev = [], None
    while selected.sum() < kappa:
        idx = rng.choice(len(x), min(batch_size, len(x)), replace=False)
        l_m, l_s, g = joint_loss_grad(model, layer, head, stage_end, x_in[idx], f_b[idx], y[idx], lam)
        loss = l_m + lam * l_s
        if prev is not None and (prev - loss) / max(prev, 1e-12) <= epsilon and epsilon > 0:
            break
        prev = loss
        # Algorithm 2: k = argmax_{j not in A} ||G_j||_F
        norms = np.sqrt((g.astype(np.float64).reshape(co, layer.channels, -1) ** 2).sum(axis=(0, 2)))  # (C,)
        norms[selected] = -np.inf
        new = np.argsort(-norms, kind="stable")[:min(step, kappa - int(selected.sum()))]
        selected[new] = True
        mask = _channel_cols(layer, np.flatnonzero(selected), conv.weight.shape).astype(conv.weight.dtype)
        new_cols = _channel_cols(layer, new, conv.weight.shape) != 0
        conv.weight[new_cols] = w_b[new_cols]  # warm start (see Deviations)
        conv.set_mask("weight", mask)
        opt.state.clear()
        for _ in range(sgd_steps):  # min_{W_A} L(W_A) by SGD, W_{A^c} = 0 through the mask
            idx = rng.choice(len(x), min(batch_size, len(x)), replace=False)
            _, _, _ = joint_loss_grad(model, layer, head, stage_end, x_in[idx], f_b[idx], y[idx], lam)
            opt.step()
        hist.append({"layer": layer.name, "selected": int(selected.sum()), "L_M": l_m, "L_S": l_s})
    conv.set_mask("weight", None)
    return np.flatnonzero(selected), hist


def dcp_prune(model: Module, input_shape: tuple[int, ...], keep: dict[str, float], stages: dict[str, int],
              heads: dict[str, Module | None], x: np.ndarray, y: np.ndarray, lam: float,
              rng: np.random.Generator, **kw) -> tuple[Module, dict]:
    """Algorithm 1: prune the named layers from shallow to deep, then remove the channels.

    keep : {layer name: fraction of its input channels kept}
    stages : {layer name: index of the child after which its stage's loss is taken} (len(model) = output)
    heads : {layer name: the auxiliary classifier of its stage, or None at the network output}

    Returns (the pruned, smaller copy, {"selected": {layer: channels}, "history": rows}).
    """
    baseline = model
    pruned = copy.deepcopy(model)
    plan, hist, sel = {}, [], {}
    for layer in chain(model, input_shape):
        if layer.name not in keep:
            continue
        kappa = max(1, round(keep[layer.name] * layer.channels))
        a, h = select_channels(pruned, baseline, layer, heads[layer.name], stages[layer.name], x, y, kappa, lam,
                               rng, **kw)
        plan[layer.producer] = a
        sel[layer.name] = a.tolist()
        hist += h
    return prune_plan(pruned, plan, input_shape), {"selected": sel, "history": hist}
