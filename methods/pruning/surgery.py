"""Structural surgery: remove filters, channels or neurons so that the model really shrinks.

Structured pruning papers (Li 2017 L1-filter, Network Slimming, ThiNet, He 2017, SSL, APoZ, SFP) decide *which*
channels to drop; this module makes the smaller dense model: new, smaller ``Conv2d`` / ``Linear`` /
``BatchNorm`` arrays, with every coupled layer edited consistently.

How the couplings are found
---------------------------
``trace`` runs the model once, in eval mode, on a zero input of ``input_shape`` and walks the container
structure itself (``Sequential``, ``Residual``, ``Concat``, ``ChannelSplit``; leaves are called one by one).
Every channel of every tensor carries an integer *atom*: a dense conv or linear layer creates new atoms for its
outputs; channel-wise layers (BatchNorm, activations, pooling, dropout, identity, a depthwise conv) pass their
input atoms through (a depthwise conv with multiplier m repeats each input atom m times); ``Concat`` and
``ChannelSplit`` concatenate/slice the atom lists, ``ChannelShuffle`` permutes them, ``Flatten`` repeats each
channel's atom over its H*W features. A residual add *unifies* the atoms of its two branches elementwise
(union-find): channel i of the body and channel i of the shortcut must be removed together. One union-find class
is one removable channel; removing it edits every layer that produces, normalises or consumes it.

Coupling rules and what is refused (ValueError naming the layer):

* dense conv / linear: output rows (weight, bias) and input columns are sliced; after ``Flatten`` a channel's
  H*W block of inputs goes with it;
* BatchNorm: weight, bias, running_mean, running_var;
* depthwise conv (groups == in_channels): its channels follow its input, groups shrinks with them;
* grouped conv (1 < groups < in_channels): allowed only if every group keeps the same number of input channels
  and of output channels;
* ``ChannelSplit`` sections are recomputed (a section may not become empty); ``ChannelShuffle(g)`` requires the
  same within-group positions to be removed from all g groups;
* ``ShortcutA`` (ResNet option A: subsample + zero channels padded on both sides): its input channels and its
  zero channels follow the residual streams they are added to;
* channels that reach the model input or the model output cannot be removed.

The masked equivalent
---------------------
``zero_channels`` keeps the shapes but zeroes, for the same removed channels, every output row and bias of the
producing convs/linears (depthwise included) and the BatchNorm weight *and* bias, so each removed channel is
exactly 0 wherever it is consumed (the activations used must map 0 to 0: ReLU, ReLU6, LeakyReLU, Hardswish,
Tanh, max/avg pooling). The shrunk model then computes the same function as the masked one (tested to float64
tolerance: the dropped terms are exact zeros, only the summation order of the GEMM changes).

Optimizer state (momentum) keyed to the old shapes is stale after surgery: build a new optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn.module import Module

# Parameter-free layers that act on each channel separately (matched by class name along the MRO, so subclasses
# such as a quantised activation are accepted without importing every nn module here).
CHANNELWISE = ("ReLU", "ReLU6", "LeakyReLU", "Tanh", "Sigmoid", "Hardsigmoid", "Hardswish", "MaxPool2d",
               "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "Identity")
_CONTAINERS = ("Sequential", "Residual", "Concat", "ChannelSplit")


def _is(m: Module, *names: str) -> bool:
    return any(c.__name__ in names for c in type(m).__mro__)


@dataclass
class Node:
    """One leaf module met by ``trace``: its kind and the atom of each input / output channel."""

    name: str
    module: Module
    kind: str  # conv | gconv | dwconv | linear | bn | flatten | shuffle | split | shortcut_a | channelwise
    in_atoms: np.ndarray  # (C_in,) int64, or (F,) after Flatten
    out_atoms: np.ndarray  # (C_out,) int64
    out_shape: tuple[int, ...] = ()  # output shape for one sample, (1, C, H, W) or (1, F)


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels are tied index by index (residual adds), and how many channels they share.

    ``fixed`` channels reach the model input or output and cannot be removed; ``channels - fixed`` can.
    """

    layers: tuple[str, ...]
    channels: int
    fixed: int


class Trace:
    """Result of ``trace``: nodes in execution order and the union-find over channel atoms."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.parent: list[int] = []
        self.fixed: set[int] = set()  # atoms of the model input and output (roots resolved lazily)

    def new_atoms(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def classes(self, atoms: np.ndarray) -> np.ndarray:
        return np.array([self.find(int(a)) for a in atoms], dtype=np.int64)

    def fixed_classes(self) -> set[int]:
        return {self.find(a) for a in self.fixed}

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        prunable = [n.name for n in self.nodes if n.kind in ("conv", "gconv", "dwconv", "linear", "bn")]
        raise ValueError(f"surgery: no layer named {name!r}; layers with prunable output channels: {prunable}")


# ----------------------------------------------------------------------------------- tracing


def trace(model: Module, input_shape: tuple[int, ...]) -> Trace:
    """Run ``model`` once in eval mode on zeros of shape (1, *input_shape) and record the channel couplings.

    Parameters
    ----------
    model : the model, built from ``Sequential`` / ``Residual`` / ``Concat`` / ``ChannelSplit`` and leaf layers.
    input_shape : (C, H, W) for an image model or (F,) for an MLP (no batch axis).
    """
    modes = {id(m): m.training for m in model.modules()}
    model.eval()
    t = Trace()
    try:
        x = np.zeros((1, *input_shape), dtype=model.dtype or np.float64)
        atoms = t.new_atoms(x.shape[1])
        t.fixed.update(int(a) for a in atoms)
        _, out = _trace(model, "", x, atoms, t)
        t.fixed.update(int(a) for a in out)
    finally:
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
            object.__setattr__(m, "_cache", None)
    return t


def _trace(m: Module, name: str, x: np.ndarray, atoms: np.ndarray, t: Trace) -> tuple[np.ndarray, np.ndarray]:
    child = (lambda k: f"{name}.{k}" if name else k)
    where = name or "<model>"
    if _is(m, "Sequential"):
        for k, layer in m.named_children():
            x, atoms = _trace(layer, child(k), x, atoms, t)
        return x, atoms
    if _is(m, "Residual"):
        yb, ab = _trace(m.body, child("body"), x, atoms, t)
        if m.shortcut is None:
            ys, a_s = x, atoms
        else:
            ys, a_s = _trace(m.shortcut, child("shortcut"), x, atoms, t)
        if len(ab) != len(a_s):
            raise ValueError(f"surgery: Residual {where!r} adds {len(ab)} body channels to {len(a_s)} shortcut "
                             "channels; only channel-preserving adds are supported")
        for a, b in zip(ab, a_s):
            t.union(a, b)
        return yb + ys, ab
    if _is(m, "Concat"):
        outs = [_trace(b, child(k), x, atoms, t) for k, b in m.named_children()]
        return np.concatenate([o[0] for o in outs], axis=1), np.concatenate([o[1] for o in outs])
    if _is(m, "ChannelSplit"):
        cuts = np.cumsum(m.sections)[:-1]
        outs = [_trace(b, child(k), xp, ap, t) for (k, b), xp, ap in
                zip(m.named_children(), np.split(x, cuts, axis=1), np.split(atoms, cuts))]
        t.nodes.append(Node(name, m, "split", atoms, atoms))
        return np.concatenate([o[0] for o in outs], axis=1), np.concatenate([o[1] for o in outs])
    if m._modules:
        raise ValueError(f"surgery: cannot walk {type(m).__name__} {where!r}: only Sequential, Residual, Concat and "
                         "ChannelSplit containers are understood (its forward may wire children differently)")
    y = m(x)
    kind, out = _leaf(m, where, x, y, atoms, t)
    t.nodes.append(Node(name, m, kind, atoms, out, y.shape))
    return y, out


def _leaf(m: Module, where: str, x: np.ndarray, y: np.ndarray, atoms: np.ndarray, t: Trace) -> tuple[str, np.ndarray]:
    if _is(m, "Conv2d"):
        g, ci, co = int(m.groups), x.shape[1], y.shape[1]
        if g == 1:
            return "conv", t.new_atoms(co)
        if g == ci and co % ci == 0:
            return "dwconv", np.repeat(atoms, co // ci)
        return "gconv", t.new_atoms(co)
    if _is(m, "Linear"):
        if x.ndim != 2:
            raise ValueError(f"surgery: Linear {where!r} gets a {x.ndim}-d input {x.shape}; only (N, F) is supported")
        return "linear", t.new_atoms(y.shape[1])
    if _is(m, "BatchNorm1d", "BatchNorm2d"):
        return "bn", atoms
    if _is(m, "Flatten"):
        if y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"surgery: Flatten {where!r} maps {x.shape} to {y.shape}; only (N, C, ...) -> (N, F) "
                             "is supported")
        # torch flattens channel-major: feature c*H*W + p belongs to channel c.
        return "flatten", np.repeat(atoms, int(np.prod(x.shape[2:], dtype=np.int64)))
    if _is(m, "ChannelShuffle"):
        perm = atoms.reshape(1, -1)  # (1, C): shuffle the atom list exactly as the tensor
        from nn.containers import channel_shuffle
        return "shuffle", channel_shuffle(perm, m.groups).reshape(-1)
    if _is(m, "ShortcutA"):
        # He et al. 2016 option A: subsample and zero-pad channels on both sides; the padded channels are new
        # (always zero) atoms that a residual add ties to the body's channels.
        lo, hi = m.pad
        return "shortcut_a", np.concatenate([t.new_atoms(lo), atoms, t.new_atoms(hi)])
    if _is(m, *CHANNELWISE) and not m._parameters:
        if y.ndim < 2 or y.shape[1] != x.shape[1]:
            raise ValueError(f"surgery: {type(m).__name__} {where!r} changed the channel count {x.shape} -> {y.shape}")
        return "channelwise", atoms
    raise ValueError(f"surgery: layer {where!r} ({type(m).__name__}) is not supported: its channel coupling is "
                     f"unknown (supported: Conv2d, Linear, BatchNorm1d/2d, Flatten, ChannelShuffle, ShortcutA, "
                     f"{CHANNELWISE})")


# ----------------------------------------------------------------------------------- groups


def channel_groups(model: Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """Which layers' output channels are coupled (must be pruned together), in execution order.

    A layer with an independent output (e.g. the first conv of a residual block) is a group of its own with
    its conv and BatchNorm; a residual stream groups every conv/BatchNorm whose output is added into it.
    """
    return _groups(trace(model, input_shape))


def _groups(t: Trace) -> list[ChannelGroup]:
    fixed = t.fixed_classes()
    groups: list[tuple[list[str], set[int]]] = []
    for n in t.nodes:
        if n.kind not in ("conv", "gconv", "dwconv", "linear", "bn"):
            continue
        cls = set(t.classes(n.out_atoms).tolist())
        hit = [g for g in groups if g[1] & cls]
        merged = ([n.name], cls)
        for g in hit:
            merged = (g[0] + merged[0], g[1] | merged[1])
            groups.remove(g)
        groups.append(merged)
    order = {n.name: i for i, n in enumerate(t.nodes)}
    out = [ChannelGroup(tuple(sorted(names, key=order.get)), len(cls), len(cls & fixed)) for names, cls in groups]
    return sorted(out, key=lambda g: order[g.layers[0]])


def prunable_layers(model: Module, input_shape: tuple[int, ...], independent: bool = True) -> list[str]:
    """Conv/linear layers whose output channels can be removed; with ``independent`` only those coupled to
    nothing but their own BatchNorm / depthwise followers (Li et al. 2017 prune only these in ResNets)."""
    t = trace(model, input_shape)
    kinds = {n.name: n.kind for n in t.nodes}
    names = []
    for g in _groups(t):
        producers = [n for n in g.layers if kinds[n] in ("conv", "gconv", "linear")]
        if g.fixed == g.channels or not producers or (independent and len(producers) > 1):
            continue
        names.extend(producers)
    return names


def layer_macs(model: Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of one sample per Conv2d / Linear layer: Co*(Ci/G)*kH*kW*Ho*Wo and O*I."""
    out = {}
    for n in trace(model, input_shape).nodes:
        if n.kind in ("conv", "gconv", "dwconv"):
            out[n.name] = int(n.module.weight.size * np.prod(n.out_shape[2:]))
        elif n.kind == "linear":
            out[n.name] = int(n.module.weight.size)
    return out


# ----------------------------------------------------------------------------------- plans


def _removed_classes(t: Trace, plan: dict[str, np.ndarray]) -> set[int]:
    """Union-find classes removed by ``plan`` ({layer name: kept output channel indices}), checked."""
    if not plan:
        raise ValueError("surgery: the plan is empty; give {layer_name: keep_indices}")
    removed: set[int] = set()
    kept_by: dict[str, set[int]] = {}
    for name, keep in plan.items():
        node = t.node(name)
        if node.kind not in ("conv", "gconv", "dwconv", "linear", "bn"):
            raise ValueError(f"surgery: layer {name!r} ({type(node.module).__name__}) has no output channels to "
                             "prune; name a Conv2d, Linear or BatchNorm layer")
        c = len(node.out_atoms)
        keep = np.asarray(keep)
        if keep.ndim != 1 or (keep.size and keep.dtype.kind not in "iu"):
            raise ValueError(f"surgery: keep indices for {name!r} must be a 1-d integer array, got {keep!r}")
        if keep.size == 0:
            raise ValueError(f"surgery: empty keep set for {name!r}: a layer must keep at least one of its {c} "
                             "channels")
        if keep.min() < 0 or keep.max() >= c:
            raise ValueError(f"surgery: keep index out of range for {name!r}: it has {c} output channels, got "
                             f"indices in [{keep.min()}, {keep.max()}]")
        if len(np.unique(keep)) != keep.size:
            raise ValueError(f"surgery: keep indices for {name!r} contain duplicates")
        cls = t.classes(node.out_atoms)
        drop = np.ones(c, dtype=bool)
        drop[keep] = False
        removed |= set(cls[drop].tolist())
        kept_by[name] = set(cls[~drop].tolist())
    fixed = t.fixed_classes()
    for name, kept in kept_by.items():
        clash = kept & removed
        if clash:
            raise ValueError(f"surgery: layer {name!r} keeps channels that the plan removes elsewhere through a "
                             f"coupling (residual add / depthwise); prune coupled layers with the same keep set "
                             f"(see channel_groups)")
    if removed & fixed:
        names = [name for name in plan if set(t.classes(t.node(name).out_atoms).tolist()) & removed & fixed]
        raise ValueError(f"surgery: removing channels of {names} would change the model's input or output "
                         "(those channels reach it, directly or through a residual add)")
    return removed


def _keep_mask(t: Trace, atoms: np.ndarray, removed: set[int]) -> np.ndarray:
    return np.array([t.find(int(a)) not in removed for a in atoms], dtype=bool)


# ----------------------------------------------------------------------------------- surgery


def prune_channels(model: Module, layer_name: str, keep_indices, input_shape: tuple[int, ...]) -> Module:
    """Keep only output channels ``keep_indices`` of ``layer_name`` (and everything coupled to them), in place.

    Parameters
    ----------
    model : the model to edit in place (deep-copy it first to keep the original).
    layer_name : dotted name of a Conv2d, Linear or BatchNorm layer (``"features.0"``).
    keep_indices : (K,) int, the output channels (filters / neurons) to keep, 1 <= K <= C.
    input_shape : (C, H, W) or (F,), the model input without the batch axis (used to trace shapes).

    Returns the same (now smaller) model.
    """
    return prune_plan(model, {layer_name: keep_indices}, input_shape)


def prune_plan(model: Module, plan: dict, input_shape: tuple[int, ...]) -> Module:
    """Apply several ``{layer_name: keep_indices}`` at once (one trace); every edit is checked before any is made."""
    t = trace(model, input_shape)
    removed = _removed_classes(t, plan)
    edits = [_edit(t, n, removed) for n in t.nodes]
    for e in edits:
        if e is not None:
            e()
    record_edit(model, "methods.pruning.surgery.prune_plan", plan, input_shape)
    return model


def record_edit(model: Module, fn: str, plan: dict, input_shape: tuple[int, ...]) -> None:
    """Append an edit to ``model.arch["edits"]`` (a zoo model's recipe), so that a checkpoint of the edited model
    can be rebuilt: ``nn.checkpoint.load_checkpoint`` builds the zoo model and replays ``fn(model, plan,
    input_shape)`` for each edit. ``plan`` maps layer names to integer arrays or counts."""
    arch = getattr(model, "arch", None)
    if not (isinstance(arch, dict) and "name" in arch):
        return
    edit = {"fn": fn, "input_shape": [int(d) for d in input_shape],
            "plan": {name: np.asarray(v, dtype=np.int64).tolist() for name, v in plan.items()}}
    model.arch = {**arch, "edits": [*arch.get("edits", []), edit]}


def zero_channels(model: Module, plan: dict, input_shape: tuple[int, ...], as_masks: bool = False) -> Module:
    """The masked equivalent of ``prune_plan``: same shapes, removed channels exactly zero (in place).

    Zeroes the output rows and biases of every conv/linear producing a removed channel (depthwise included) and
    the BatchNorm weight and bias of that channel. With ``as_masks`` the zeros are attached as masks
    (``Module.set_mask``, combined with any existing mask) so that training keeps them at zero; otherwise the
    values are only overwritten (soft filter pruning lets them grow back).
    """
    t = trace(model, input_shape)
    removed = _removed_classes(t, plan)
    for n in t.nodes:
        if n.kind not in ("conv", "gconv", "dwconv", "linear", "bn"):
            continue
        keep = _keep_mask(t, n.out_atoms, removed)
        if keep.all():
            continue
        m = n.module
        for pname, p in list(m._parameters.items()):
            mask = np.ones_like(p)
            mask[~keep] = 0
            if as_masks:
                old = m._masks.get(pname)
                m.set_mask(pname, mask if old is None else mask * old)
            else:
                p *= mask
    return model


def _edit(t: Trace, n: Node, removed: set[int]):
    """Check the edit of node ``n`` and return a closure that applies it (None: nothing to do)."""
    where = n.name or "<model>"
    ik = _keep_mask(t, n.in_atoms, removed)
    ok = _keep_mask(t, n.out_atoms, removed)
    if ik.all() and ok.all():
        return None
    m = n.module
    if n.kind in ("conv", "linear", "gconv", "dwconv", "bn") and not ok.any():
        raise ValueError(f"surgery: the plan removes every output channel of {where!r}")
    if n.kind in ("conv", "linear", "gconv") and not ik.any():
        raise ValueError(f"surgery: the plan removes every input channel of {where!r}")
    if n.kind in ("conv", "linear"):
        attrs = ("in_channels", "out_channels") if n.kind == "conv" else ("in_features", "out_features")
        return lambda: _apply(m, {"weight": lambda w: w[ok][:, ik], "bias": lambda b: b[ok]},
                              {attrs[0]: int(ik.sum()), attrs[1]: int(ok.sum())})
    if n.kind == "dwconv":
        return lambda: _apply(m, {"weight": lambda w: w[ok], "bias": lambda b: b[ok]},
                              {"in_channels": int(ik.sum()), "out_channels": int(ok.sum()), "groups": int(ik.sum())})
    if n.kind == "gconv":
        g = int(m.groups)
        ikg, okg = ik.reshape(g, -1), ok.reshape(g, -1)  # (G, Ci/G), (G, Co/G)
        if len(set(ikg.sum(1))) != 1 or len(set(okg.sum(1))) != 1:
            raise ValueError(f"surgery: grouped conv {where!r} (groups={g}) would keep unequal channel counts per "
                             f"group (inputs {ikg.sum(1).tolist()}, outputs {okg.sum(1).tolist()}); remove the "
                             "same number of channels from every group")

        def gw(w):
            wg = w.reshape(g, w.shape[0] // g, *w.shape[1:])  # (G, Co/G, Ci/G, kH, kW)
            return np.concatenate([wg[j][okg[j]][:, ikg[j]] for j in range(g)])

        return lambda: _apply(m, {"weight": gw, "bias": lambda b: b[ok]},
                              {"in_channels": int(ik.sum()), "out_channels": int(ok.sum())})
    if n.kind == "bn":
        return lambda: _apply(m, {"weight": lambda a: a[ok], "bias": lambda a: a[ok], "running_mean": lambda a: a[ok],
                                  "running_var": lambda a: a[ok]}, {"num_features": int(ok.sum())})
    if n.kind == "split":
        cuts = np.cumsum(m.sections)[:-1]
        sections = [int(s.sum()) for s in np.split(ik, cuts)]
        if min(sections) == 0:
            raise ValueError(f"surgery: the plan empties a section of ChannelSplit {where!r} (sections {m.sections} "
                             f"-> {sections})")
        return lambda: setattr(m, "sections", sections)
    if n.kind == "shortcut_a":
        lo, ci = m.pad[0], len(ik)
        pad = (int(ok[:lo].sum()), int(ok[lo + ci:].sum()))
        return lambda: _apply(m, {}, {"pad": pad, "in_channels": int(ik.sum()), "out_channels": int(ok.sum())})
    if n.kind == "shuffle":
        rows = ik.reshape(m.groups, -1)  # (G, Cg)
        if not (rows == rows[0]).all():
            raise ValueError(f"surgery: ChannelShuffle {where!r} (groups={m.groups}) needs the same within-group "
                             "channels removed from every group; this plan removes different ones")
        return None
    return None  # channel-wise layers and Flatten carry no channel-sized state


def _apply(m: Module, slicers: dict, attrs: dict) -> None:
    """Replace parameters / buffers by new, smaller contiguous arrays (masks sliced alongside)."""
    for name, f in slicers.items():
        if name in m._parameters and m._parameters[name] is not None:
            mask = m._masks.get(name)
            m.register_parameter(name, np.ascontiguousarray(f(m._parameters[name])))
            if mask is not None:
                m.set_mask(name, np.ascontiguousarray(f(mask)))
        elif name in m._buffers and m._buffers[name] is not None:
            m.register_buffer(name, np.ascontiguousarray(f(np.asarray(m._buffers[name]))))
    for k, v in attrs.items():
        prop = getattr(type(m), k, None)
        if isinstance(prop, property) and prop.fset is None:
            continue  # derived from other attributes (ShortcutA.out_channels)
        if hasattr(m, k):
            setattr(m, k, v)


# ----------------------------------------------------------------------------------- activations on sample data


def next_consumer(model: Module, layer_name: str, input_shape: tuple[int, ...]) -> str:
    """Name of the conv/linear layer that reads ``layer_name``'s output channels, one to one and in order
    (through BatchNorm, activations and pooling only); ValueError if there is no such single consumer."""
    t = trace(model, input_shape)
    node = t.node(layer_name)
    cls = t.classes(node.out_atoms).tolist()
    readers = [n for n in t.nodes if n.kind in ("conv", "gconv", "linear", "dwconv", "flatten", "shortcut_a",
                                                   "split", "shuffle") and n is not node
               and set(t.classes(n.in_atoms).tolist()) & set(cls)]
    if len(readers) != 1 or readers[0].kind not in ("conv", "linear") or t.classes(readers[0].in_atoms).tolist() != cls:
        raise ValueError(f"surgery: the output of {layer_name!r} is not read by exactly one conv/linear layer "
                         f"channel for channel (readers: {[(n.name, n.kind) for n in readers]})")
    return readers[0].name


def capture(model: Module, names: list[str], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (input, output)} of the named layers for one eval-mode forward of ``x``; the model is restored."""
    mods = dict(model.named_modules())
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    modes = {id(m): m.training for m in model.modules()}

    def wrap(name, fwd):
        def forward(inp):
            out = fwd(inp)
            seen[name] = (inp, out)
            return out
        return forward

    try:
        model.eval()
        for n in names:
            object.__setattr__(mods[n], "forward", wrap(n, mods[n].forward))
        model(x)
    finally:
        for n in names:
            mods[n].__dict__.pop("forward", None)
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
            object.__setattr__(m, "_cache", None)
    return seen


def conv_patches(conv: Module, x: np.ndarray, n: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The receptive fields a (groups=1) conv reads at output positions (n, h, w): (M, Ci, kH, kW).

    x is the conv's input (N, Ci, H, W); n, h, w are (M,) int arrays of sample index and output row/column.
    """
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    (pt, pl), (pb, pr) = conv._pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))  # (N, Ci, Hp, Wp)
    rows = h[:, None] * sh + np.arange(kh)[None, :] * dh  # (M, kH)
    cols = w[:, None] * sw + np.arange(kw)[None, :] * dw  # (M, kW)
    # xp[n, :, rows, cols] gathered to (M, kH, kW, Ci), then moved to (M, Ci, kH, kW)
    p = xp[n[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return np.ascontiguousarray(p.transpose(0, 3, 1, 2))
