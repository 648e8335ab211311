"""Neural-network feature selection: a penalised one-hidden-layer MLP, then backward elimination of inputs.

Rudy Setiono, Huan Liu. "Neural-Network Feature Selector". IEEE Transactions on Neural Networks 8(3):654-662,
1997. doi:10.1109/72.572104 (no arXiv id).

Implements
----------
* The penalty function added to the training loss (Sec. II):
  P(w) = eps1 * sum beta w^2 / (1 + beta w^2) + eps2 * sum w^2 over every weight of the network; the first
  term drives small weights to zero and saturates for large ones, the second keeps all weights small
  (``penalty``).
* The feature-selection algorithm (Sec. III): train the network with all N inputs; for every remaining input k,
  compute the accuracy of the network with the weights out of input k set to zero (no retraining); remove the
  input whose removal costs least, retrain the network on the remaining inputs, and accept the removal while the
  accuracy of the retrained network stays within ``tolerance`` of the full network's; otherwise stop and keep
  the last accepted set (``backward_elimination``).
* Removal is pruning: the input's column of the first layer's weight is masked to zero (``Module.set_mask``),
  so the retrained network never uses it again.
* Optional input groups (``groups``): several inputs that form one feature (e.g. the flattened outputs of one
  conv channel feeding a fully connected head) are scored and removed together; ``max_removed`` caps the
  number of accepted removals (a time budget).

Deviations
----------
* Training is mini-batch SGD on the mean cross-entropy plus P(w) / N_train (the paper minimises the summed
  error with a quasi-Newton method); eps1, eps2 and beta are our values (the paper's are not known to us).
* The paper measures the accuracy on the training set (and checks it on a test set); we use a held-out
  validation subset for the removal decisions and report the test set.
* Fashion-MNIST replaces the UCI tables: the inputs are the 16 means of 7x7 pixel blocks plus added Gaussian
  noise features (the "irrelevant attributes" of the paper's experiments), so that the test can check that the
  noise inputs are the ones removed.

Reproduce: ``python -m scripts.pruning.setiono1997_nnfs --seed 0``.
"""
from __future__ import annotations

import numpy as np

from nn.activations import Tanh
from nn.containers import Sequential
from nn.linear import Linear
from nn.module import Module


def block_features(x: np.ndarray, block: int = 7) -> np.ndarray:
    """(N, 1, H, W) images -> (N, (H/block)*(W/block)) block means, float32."""
    n, c, h, w = x.shape
    v = x.reshape(n, c, h // block, block, w // block, block).mean(axis=(3, 5))  # (N, C, H/b, W/b)
    return v.reshape(n, -1).astype(np.float32)


def with_noise(x: np.ndarray, n_noise: int, rng: np.random.Generator) -> np.ndarray:
    """Append ``n_noise`` standard-normal columns (irrelevant inputs) to (N, F) features."""
    return np.concatenate([x, rng.standard_normal((len(x), n_noise)).astype(x.dtype)], axis=1)


def mlp(n_in: int, hidden: int, classes: int, rng) -> Sequential:
    """The paper's network: one hidden layer of tanh units."""
    return Sequential(Linear(n_in, hidden, rng=rng), Tanh(), Linear(hidden, classes, rng=rng))


def penalty(w: np.ndarray, eps1: float, eps2: float, beta: float) -> tuple[float, np.ndarray]:
    """(P(w), dP/dw) for one weight array."""
    w2 = w.astype(np.float64) ** 2
    # P(w) = eps1 * sum beta w^2 / (1 + beta w^2) + eps2 * sum w^2
    value = float(eps1 * np.sum(beta * w2 / (1.0 + beta * w2)) + eps2 * np.sum(w2))
    grad = eps1 * 2.0 * beta * w / (1.0 + beta * w2) ** 2 + 2.0 * eps2 * w
    return value, grad.astype(w.dtype)


def train(model: Module, x: np.ndarray, y: np.ndarray, epochs: int, rng: np.random.Generator, lr: float = 0.05,
          batch_size: int = 64, eps1: float = 0.1, eps2: float = 1e-4, beta: float = 10.0) -> list[float]:
    """Mini-batch SGD on mean cross-entropy + P(w) / N (weights only). Returns the loss of each epoch."""
    from nn.data import batches
    from nn.losses import CrossEntropyLoss
    from nn.optim import SGD
    opt = SGD(model, lr=lr, momentum=0.9)
    ce = CrossEntropyLoss()
    out = []
    model.train()
    for _ in range(int(epochs)):
        tot, n = 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            opt.zero_grad()
            loss = ce(model(xb), yb)
            model.backward(ce.backward())
            grads = dict(model.named_grads())
            for name, w in model.named_parameters():
                if name.endswith("weight"):
                    p, g = penalty(w, eps1, eps2, beta)
                    grads[name] += g / len(x)
                    loss += p / len(x)
            opt.step()
            tot += loss * len(xb)
            n += len(xb)
        out.append(tot / max(n, 1))
    model.eval()
    return out


def _accuracy(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    return float((model(x).argmax(axis=1) == y).mean())


def input_mask(model: Module) -> np.ndarray:
    """(F,) 0/1: the inputs still connected (columns of the first layer not masked)."""
    first = model[0]
    m = dict(first.named_masks()).get("weight")
    return np.ones(first.weight.shape[1]) if m is None else (m.sum(axis=0) > 0).astype(float)


def remove_input(model: Module, k) -> None:
    """Prune input k (an int, or an index array for a group of inputs): mask column(s) k of the first layer."""
    first = model[0]
    m = dict(first.named_masks()).get("weight")
    m = np.ones_like(first.weight) if m is None else m.copy()
    m[:, k] = 0
    first.set_mask("weight", m)


def backward_elimination(model: Module, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                         tolerance: float, retrain_epochs: int, rng: np.random.Generator,
                         groups: list[np.ndarray] | None = None, max_removed: int | None = None,
                         **train_kw) -> dict:
    """Sec. III: remove inputs one at a time while the retrained accuracy stays within ``tolerance``.

    ``model`` must be trained already (with the penalty); it is left with the accepted inputs only.
    ``groups`` (optional): index arrays of inputs removed together as one feature (e.g. the flattened outputs
    of one conv channel); the returned indices are then group indices. ``max_removed`` caps the accepted
    removals (a time budget). Returns {"removed": inputs in removal order, "kept": remaining inputs,
    "history": one row per step}.
    """
    if groups is None:
        groups = [np.array([k]) for k in range(model[0].weight.shape[1])]
    acc_full = _accuracy(model, x_val, y_val)
    history = [{"step": 0, "removed": None, "acc_without": None, "acc_retrained": acc_full}]
    removed = []
    while len(_alive_groups(model, groups)) > 1 and (max_removed is None or len(removed) < max_removed):
        alive = _alive_groups(model, groups)
        w1 = model[0].weight
        scores = []
        for k in alive:  # accuracy with input k cut off, no retraining
            saved = w1[:, groups[k]].copy()
            w1[:, groups[k]] = 0
            scores.append(_accuracy(model, x_val, y_val))
            w1[:, groups[k]] = saved
        k = int(alive[int(np.argmax(scores))])
        state = {n: v.copy() for n, v in model.state_dict().items()}
        masks = {n: m.copy() for n, m in model.named_masks()}
        remove_input(model, groups[k])
        train(model, x, y, retrain_epochs, rng, **train_kw)
        acc = _accuracy(model, x_val, y_val)
        history.append({"step": len(removed) + 1, "removed": k, "acc_without": float(max(scores)),
                        "acc_retrained": acc})
        if acc < acc_full - tolerance:  # reject: restore the network before this removal and stop
            model[0].set_mask("weight", masks.get("0.weight"))
            model.load_state_dict(state)
            history[-1]["accepted"] = False
            break
        history[-1]["accepted"] = True
        removed.append(k)
    return {"removed": removed, "kept": [int(k) for k in _alive_groups(model, groups)], "history": history,
            "acc_full": acc_full}


def _alive_groups(model: Module, groups: list[np.ndarray]) -> np.ndarray:
    """Indices of the groups with at least one input still connected."""
    m = input_mask(model)
    return np.array([k for k, g in enumerate(groups) if m[g].any()], dtype=int)
