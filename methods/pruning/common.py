"""Mask utilities shared by the unstructured pruning papers (Han 2015, OBD, OBS, DNS, lottery tickets...).

A *mask* is a 0/1 array of a parameter's shape; a *mask dict* maps torch-style dotted parameter names
(``"0.weight"``, ``"features.3.weight"``) to masks. Masks are computed by pure functions of the weights
(``magnitude_mask``, ``std_threshold_mask``, ``global_magnitude_masks``) and attached to a model with
``apply_masks``, which calls ``Module.set_mask``: the optimizer then keeps pruned weights at exactly zero.

Two ways to hold a mask:

* **fixed** (``apply_masks``): the weights under the mask are zeroed and stay zero (Han 2015 retraining,
  lottery tickets);
* **revivable** (``RevivableMask``): the model computes with ``W * T`` but a dense shadow copy of ``W`` keeps
  receiving the gradient, so a pruned weight can grow back when the mask is recomputed (Guo 2016 DNS,
  He 2018 SFP recompute masks during training).

``deploy_sparse`` swaps masked ``Linear``/``Conv2d`` layers for ``nn.sparse.SparseLinear``/``SparseConv2d``.
``ratio`` always means the fraction of weights *pruned* (set to zero), in [0, 1).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np

from nn.module import Module

Masks = dict[str, np.ndarray]


# ----------------------------------------------------------------------------------- names


def prunable_names(model: Module) -> list[str]:
    """Names of the weights pruning applies to by default: every parameter called ``weight`` with >= 2 dims.

    That is Linear (O, I) and Conv2d (Co, Ci/G, kH, kW) weights; biases and BatchNorm scales are left alone,
    as in Han et al. 2015.
    """
    return [n for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "weight" and p.ndim >= 2]


def _params(model: Module) -> dict[str, np.ndarray]:
    return dict(model.named_parameters())


def _resolve(model: Module, names: Iterable[str] | None) -> list[str]:
    """Check that every name is a parameter of ``model``; the error lists the valid (prunable) names."""
    params = _params(model)
    if names is None:
        return prunable_names(model)
    names = list(names)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise KeyError(f"unknown parameter name(s) {unknown}; the prunable weights of this "
                       f"{type(model).__name__} are {prunable_names(model)} (all parameters: {sorted(params)})")
    return names


def _check_ratio(ratio: float, what: str) -> float:
    r = float(ratio)
    if not 0.0 <= r < 1.0 or not np.isfinite(r):
        raise ValueError(f"pruning ratio for {what} must be in [0, 1) (fraction of weights set to zero), got {ratio!r}")
    return r


def _layer_module(model: Module, name: str) -> tuple[Module, str]:
    """``"features.3.weight"`` -> (the module ``features.3``, ``"weight"``)."""
    mod_name, _, pname = name.rpartition(".")
    mods = dict(model.named_modules())
    if mod_name not in mods:
        raise KeyError(f"{type(model).__name__} has no module {mod_name!r} (for parameter {name!r})")
    return mods[mod_name], pname


# ----------------------------------------------------------------------------------- mask rules


def magnitude_mask(w: np.ndarray, ratio: float) -> np.ndarray:
    """Keep the largest-|w| weights, prune the fraction ``ratio`` with the smallest magnitude.

    Parameters
    ----------
    w : (...) float array
    ratio : fraction of entries to zero, in [0, 1). Exactly ``floor(ratio * w.size)`` entries are pruned;
        ties at the threshold are broken by position (stable argsort), so the count is exact.

    Returns
    -------
    mask : (...) array of w.dtype, 1 = kept, 0 = pruned.
    """
    ratio = _check_ratio(ratio, f"an array of shape {w.shape}")
    k = int(np.floor(ratio * w.size))
    flat = np.ones(w.size, dtype=w.dtype)
    if k:
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        flat[order[:k]] = 0
    return flat.reshape(w.shape)


def threshold_mask(w: np.ndarray, threshold: float) -> np.ndarray:
    """mask = |w| > threshold (1 kept, 0 pruned), in w's dtype."""
    if not threshold >= 0:
        raise ValueError(f"pruning threshold must be >= 0, got {threshold!r}")
    return (np.abs(w) > threshold).astype(w.dtype)


def std_threshold_mask(w: np.ndarray, quality: float) -> np.ndarray:
    """Han et al. 2015 rule as usually implemented: prune |w| <= quality * std(w) (std over the layer)."""
    return threshold_mask(w, float(quality) * float(np.std(w)))


def layer_masks(model: Module, ratios: float | dict[str, float], names: Iterable[str] | None = None) -> Masks:
    """Per-layer magnitude masks: each named weight loses the fraction ``ratios[name]`` (or ``ratios``).

    A dict of ratios names its own layers; unknown names raise a KeyError listing the valid ones.
    Existing masks are taken into account only through the weights (pruned weights are zero, so they are
    pruned first).
    """
    params = _params(model)
    if isinstance(ratios, dict):
        names = _resolve(model, ratios.keys())
        return {n: magnitude_mask(params[n], _check_ratio(ratios[n], n)) for n in names}
    names = _resolve(model, names)
    return {n: magnitude_mask(params[n], _check_ratio(ratios, n)) for n in names}


def std_threshold_masks(model: Module, quality: float | dict[str, float],
                        names: Iterable[str] | None = None) -> Masks:
    """Per-layer Han 2015 masks: |w| > quality * std(w), with one quality factor per layer or one for all.

    The std is taken over the layer's *surviving* weights when the layer already has a mask, so that a second
    round prunes further instead of repeating the first threshold.
    """
    params = _params(model)
    current = dict(model.named_masks())
    qs = quality if isinstance(quality, dict) else None
    names = _resolve(model, qs.keys() if qs is not None else names)
    out = {}
    for n in names:
        w = params[n]
        q = float(qs[n] if qs is not None else quality)
        alive = w[current[n] != 0] if n in current else w.ravel()
        std = float(np.std(alive)) if alive.size else 0.0
        out[n] = threshold_mask(w, q * std)
        if n in current:
            out[n] *= current[n]
    return out


def global_magnitude_masks(model: Module, ratio: float, names: Iterable[str] | None = None) -> Masks:
    """One magnitude threshold across all named weights: the fraction ``ratio`` of them (pooled) is pruned."""
    names = _resolve(model, names)
    params = _params(model)
    masks = score_masks({n: np.abs(params[n]) for n in names}, ratio)
    return {n: m.astype(params[n].dtype) for n, m in masks.items()}


def score_masks(scores: dict[str, np.ndarray], ratio: float, scope: str = "global") -> Masks:
    """Prune the lowest ``scores`` (any saliency: |w|, OBD's h w^2/2...) globally or per layer.

    Parameters
    ----------
    scores : name -> array of the weight's shape (higher = more important)
    ratio : fraction of entries pruned, in [0, 1)
    scope : ``"global"`` (one threshold over all arrays) or ``"layer"`` (the same fraction in each)
    """
    ratio = _check_ratio(ratio, "score pruning")
    if scope == "layer":
        return {n: magnitude_mask(s, ratio) for n, s in scores.items()}
    if scope != "global":
        raise ValueError(f"score_masks scope must be 'global' or 'layer', got {scope!r}")
    names = list(scores)
    if not names:
        return {}
    flat = np.concatenate([np.asarray(scores[n], np.float64).ravel() for n in names])
    pooled = magnitude_mask(flat, ratio)
    out, start = {}, 0
    for n in names:
        s = scores[n]
        out[n] = pooled[start:start + s.size].reshape(s.shape)
        start += s.size
    return out


# ----------------------------------------------------------------------------------- attaching masks


def apply_masks(model: Module, masks: Masks) -> None:
    """Attach each mask to its parameter with ``Module.set_mask`` (zeroes the pruned weights now).

    Raises KeyError for a name that is not a parameter (listing the prunable ones) and ValueError for a mask
    whose shape differs from its parameter's.
    """
    params = _params(model)
    _resolve(model, masks.keys())
    for n, m in masks.items():
        m = np.asarray(m)
        if m.shape != params[n].shape:
            raise ValueError(f"mask for {n!r} has shape {m.shape}, the parameter has shape {params[n].shape}")
    for n, m in masks.items():
        mod, pname = _layer_module(model, n)
        mod.set_mask(pname, m)


def remove_masks(model: Module) -> None:
    """Detach every mask (the weights keep their current, possibly zero, values)."""
    for mod in model.modules():
        for pname in list(mod._masks):
            mod.set_mask(pname, None)


def get_masks(model: Module) -> Masks:
    """Copies of the masks attached to ``model``."""
    return {n: m.copy() for n, m in model.named_masks()}


def zero_by_masks(model: Module, masks: Masks) -> None:
    """Multiply weights by masks *without* attaching them (soft pruning: the zeros may be trained back)."""
    params = _params(model)
    _resolve(model, masks.keys())
    for n, m in masks.items():
        params[n] *= np.asarray(m, dtype=params[n].dtype)


class RevivableMask:
    """Masks that can be recomputed during training, with a dense shadow copy of the weights.

    The model's parameters hold ``W * T`` for forward and backward. ``step(fn)`` puts the dense ``W`` back,
    runs ``fn`` (an optimizer step using the gradient of the *masked* weights, Guo et al. 2016 Eq. (3)),
    stores the updated dense ``W`` and re-applies ``T``. ``update(rule)`` recomputes ``T`` from ``W``;
    a weight pruned earlier is *spliced* back when the rule keeps it.

    Parameters
    ----------
    model : the network; no ``Module`` masks may be attached to the managed weights (they would re-zero ``W``)
    masks : name -> initial 0/1 mask (T)
    """

    def __init__(self, model: Module, masks: Masks) -> None:
        self.model = model
        params = _params(model)
        _resolve(model, masks.keys())
        attached = dict(model.named_masks())
        clash = [n for n in masks if n in attached]
        if clash:
            raise ValueError(f"RevivableMask: parameters {clash} already carry a fixed Module mask; remove it first")
        self.params = {n: params[n] for n in masks}
        self.dense = {n: params[n].copy() for n in masks}
        self.masks: Masks = {}
        self._set(masks)

    def _set(self, masks: Masks) -> None:
        for n, m in masks.items():
            m = np.asarray(m)
            if m.shape != self.params[n].shape:
                raise ValueError(f"mask for {n!r} has shape {m.shape}, the parameter has {self.params[n].shape}")
            self.masks[n] = (m != 0).astype(self.params[n].dtype)
            np.multiply(self.dense[n], self.masks[n], out=self.params[n])

    def step(self, optimizer_step: Callable[[], None]) -> None:
        """Run ``optimizer_step`` on the dense weights, then mask them again for the next forward."""
        for n, p in self.params.items():
            p[...] = self.dense[n]
        optimizer_step()
        for n, p in self.params.items():
            self.dense[n][...] = p
            p *= self.masks[n]

    def update(self, rule: Callable[[str, np.ndarray, np.ndarray], np.ndarray]) -> dict[str, tuple[int, int]]:
        """T <- rule(name, W_dense, T_old) for every managed weight.

        Returns name -> (pruned now, spliced back now): entries going 1 -> 0 and 0 -> 1.
        """
        changes, new = {}, {}
        for n, w in self.dense.items():
            old = self.masks[n]
            t = np.asarray(rule(n, w, old))
            changes[n] = (int(((old != 0) & (t == 0)).sum()), int(((old == 0) & (t != 0)).sum()))
            new[n] = t
        self._set(new)
        return changes

    def freeze(self) -> None:
        """End of training: attach the current masks as fixed Module masks (weights = W * T)."""
        apply_masks(self.model, self.masks)


# ----------------------------------------------------------------------------------- statistics


def sparsity_stats(model: Module, names: Iterable[str] | None = None) -> list[dict]:
    """One row per named weight (default: the prunable ones) plus a final ``"total"`` row.

    Each row: ``name``, ``shape``, ``numel``, ``nonzero``, ``sparsity`` (fraction of zeros),
    ``compression`` (numel / nonzero).
    """
    names = _resolve(model, names)
    params = _params(model)
    rows, tot, nz = [], 0, 0
    for n in names:
        p = params[n]
        k = int(np.count_nonzero(p))
        rows.append({"name": n, "shape": tuple(p.shape), "numel": int(p.size), "nonzero": k,
                         "sparsity": 1.0 - k / p.size if p.size else 0.0,
                         "compression": p.size / k if k else float("inf")})
        tot += p.size
        nz += k
    rows.append({"name": "total", "shape": (), "numel": tot, "nonzero": nz, "sparsity": 1.0 - nz / tot if tot else 0.0,
                     "compression": tot / nz if nz else float("inf")})
    return rows


def compression_ratio(model: Module, names: Iterable[str] | None = None) -> float:
    """numel / nonzero over the named weights (default: prunable weights), as Han 2015 counts it."""
    return sparsity_stats(model, names)[-1]["compression"]


def mask_sparsity(masks: Masks) -> float:
    """Fraction of zeros over all masks."""
    tot = sum(m.size for m in masks.values())
    return 1.0 - sum(int(np.count_nonzero(m)) for m in masks.values()) / tot if tot else 0.0


# ----------------------------------------------------------------------------------- deployment


def deploy_sparse(model: Module, inplace: bool = False, min_sparsity: float = 0.0) -> Module:
    """Replace masked (or zero-heavy) ``Linear``/``Conv2d`` layers by ``SparseLinear``/``SparseConv2d``.

    Each layer whose weight sparsity is > ``min_sparsity`` is swapped for ``Sparse*.from_dense(layer)`` in its
    parent container, under the same child name (the CSR arrays become buffers ``<layer>.weight_data`` etc.).
    Grouped/depthwise convolutions stay dense. Returns the new model (a deep copy unless ``inplace``).
    """
    from nn.conv import Conv2d
    from nn.linear import Linear
    from nn.sparse import SparseConv2d, SparseLinear

    pairs = [(Linear, SparseLinear), (Conv2d, SparseConv2d)]
    out = model if inplace else copy.deepcopy(model)
    nnz = {}
    for parent_name, parent in list(out.named_modules()):
        for child_name, child in list(parent._modules.items()):
            for dense_cls, sparse_cls in pairs:
                if type(child) is dense_cls:
                    w = child.weight
                    if getattr(child, "groups", 1) != 1:  # SparseConv2d is groups=1 only: leave it dense
                        break
                    if 1.0 - np.count_nonzero(w) / w.size > min_sparsity:
                        sparse = sparse_cls.from_dense(child)
                        setattr(parent, child_name, sparse)
                        nnz[f"{parent_name}.{child_name}" if parent_name else child_name] = sparse.nnz()
                    break
    if nnz:
        from methods.pruning.surgery import record_edit
        record_edit(out, "methods.pruning.common.sparse_placeholders", nnz, ())
    return out


def sparse_placeholders(model: Module, plan: dict[str, np.ndarray], input_shape: tuple[int, ...] = ()) -> Module:
    """Replay of ``deploy_sparse`` for checkpoint loading: swap each named dense layer for a Sparse* layer with
    ``plan[name]`` nonzeros (placeholder values and positions, which the checkpoint's CSR arrays then replace).
    ``input_shape`` is unused (the edit signature of ``surgery.record_edit``)."""
    from nn.sparse import SparseConv2d, SparseLinear
    mods = dict(model.named_modules())
    for name, nnz in plan.items():
        layer = mods.get(name)
        cls = {"Linear": SparseLinear, "Conv2d": SparseConv2d}.get(type(layer).__name__)
        if cls is None:
            raise ValueError(f"sparse_placeholders: {name!r} is not a Linear or Conv2d layer of this model")
        if np.ndim(nnz) != 0:
            raise ValueError(f"sparse_placeholders: the nonzero count of {name!r} must be one integer, got {nnz!r}")
        n = int(nnz)
        if not 0 <= n <= layer.weight.size:
            raise ValueError(f"sparse_placeholders: {name!r} cannot hold {n} nonzeros ({layer.weight.size} weights)")
        mask = np.zeros(layer.weight.size, layer.weight.dtype)
        mask[:n] = 1
        layer.weight[...] = 1  # every kept position nonzero
        parent_name, _, child = name.rpartition(".")
        setattr(mods[parent_name] if parent_name else model, child,
                cls.from_dense(layer, mask.reshape(layer.weight.shape)))
    from methods.pruning.surgery import record_edit
    record_edit(model, "methods.pruning.common.sparse_placeholders", plan, ())  # the rebuilt recipe = the saved one
    return model


# ----------------------------------------------------------------------------------- training loop


def train_epochs(model: Module, optimizer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                 rng: np.random.Generator, step: Callable[[], None] | None = None,
                 after_step: Callable[[int], None] | None = None) -> list[float]:
    """Plain mini-batch training with cross-entropy, with the two hooks pruning methods need.

    Parameters
    ----------
    x : float (N, ...) inputs of the model's dtype;  y : int64 (N,) class labels
    step : what one update does (default ``optimizer.step``); ``RevivableMask`` passes
        ``lambda: rev.step(optimizer.step)`` so the update lands on the dense shadow weights
    after_step : called with the global iteration count after every update (DNS mask updates)

    Returns
    -------
    mean training loss of each epoch
    """
    from nn.data import batches
    from nn.losses import CrossEntropyLoss

    loss_fn = CrossEntropyLoss()
    step = step or optimizer.step
    it, losses = 0, []
    model.train()
    for _ in range(int(epochs)):
        tot, n = 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            step()
            it += 1
            if after_step is not None:
                after_step(it)
            tot += loss * len(xb)
            n += len(xb)
        losses.append(tot / max(n, 1))
    model.eval()
    return losses
