"""Per-layer profile of a model: parameters, nonzeros, MACs, FLOPs, bytes of storage and measured latency.

``profile(model, input_shape)`` runs one forward in eval mode on random input while each recorded module's
``forward`` is temporarily wrapped on the instance (and restored afterwards) to capture its input and output
shapes; then it counts each module by the rules below and, if asked, times each layer's forward alone on the
input it saw. ``summary_table(rows)`` prints the rows with totals; ``model_latency`` times the whole model.

Which modules get a row
    every leaf (a module without children), every module that defines ``macs`` (it then owns its subtree:
    no rows below it), and every ``Residual`` and ``SqueezeExcitation`` (for its add or gate multiply). Rows
    come in execution order; a module called several times in one forward gets one row with its counts summed.

Counting convention (multiply-accumulates and floating-point operations are reported separately)
    * 1 MAC = 2 FLOPs (one multiply, one add). ``flops`` = 2 * ``macs`` + the extra FLOPs listed here.
    * Linear: MACs = prod(out_shape[:-1]) * I * O (any number of leading dims); bias: + numel(out) FLOPs.
    * Conv2d: MACs = N * Co * Ho * Wo * (Ci / G) * kH * kW (grouped and depthwise convs counted correctly,
      from the weight shape (Co, Ci/G, kH, kW)); bias: + numel(out) FLOPs. Conv1d likewise (kH = Ho = 1).
    * ConvTranspose2d: MACs = N * Ci * H * W * (Co / G) * kH * kW (every input element times every tap of its
      group's kernels, weight (Ci, Co/G, kH, kW); products that land in the cropped padding are counted too);
      bias: + numel(out) FLOPs.
    * LayerNorm, GroupNorm (statistics computed at inference): 5 FLOPs per element (sum for the mean, subtract,
      square, sum for the variance, scale by 1/std) + 4 per normalised row (two divides, add eps, rsqrt) + 1 per
      element for each of weight and bias present. Rows: numel / prod(normalized_shape), or N * G.
    * BatchNorm (inference, statistics folded into one scale and one shift): 2 FLOPs per output element.
    * Elementwise activations, FLOPs per output element, counting each add, multiply, divide, comparison
      and transcendental (exp, tanh) as 1: ReLU 1, ReLU6 2, LeakyReLU 2, Tanh 1, Sigmoid 4 (neg, exp, add,
      divide), Hardsigmoid 4 (add, max, min, multiply), Hardswish 5, Softmax 5 (max, subtract, exp, sum,
      divide), SiLU 5 (Sigmoid's 4 and a multiply).
    * MaxPool2d: kH * kW - 1 comparisons per output element. AvgPool2d: kH * kW (kH * kW - 1 adds and one
      multiply). AdaptiveAvgPool2d: the size of each output element's bin (bin - 1 adds, one multiply).
      AdaptiveMaxPool2d: bin - 1 comparisons per output element (N * C * (H * W - 1) for global pooling).
    * Upsample: 'nearest' 0 (a gather); 'bilinear' 9 FLOPs per output element (torch's
      l0 (m0 a + m1 b) + l1 (m0 c + m1 d): 6 multiplies, 3 adds).
    * LSTM, GRU: per time step, sample, direction and layer (input I_l = input_size in layer 0, else
      directions * S): MACs = G S (I_l + S) with G = 4 (LSTM) or 3 (GRU) gates; FLOPs = 2 MACs + LSTM 22 S
      (4 S adds of the input and hidden parts, 3 sigmoids of 4, tanh of g, c = f c + i g 3, tanh(c), h = o
      tanh(c)) or GRU 17 S (r and z: add and sigmoid, 5 each; n = tanh(a + r h_n) 3; h = (1 - z) n + z h 4)
      + per bias vector present one add per gate element (LSTM 8 S, GRU 6 S for both).
    * Residual: 1 add per output element. SqueezeExcitation: its own row holds the gate's 1 multiply per output
      element (its children, pooling, convs and activations, have their rows).
    * Flatten, Identity, Dropout and DropPath (eval), Concat, ChannelSplit, ChannelShuffle, ShortcutA, Embedding
      (a row lookup), LastStep: 0 (data movement).
    * Deployed QuantLinear/QuantConv2d, BinaryLinear/BinaryConv2d, ShiftLinear/ShiftConv2d: the float layer's
      MACs, done as int8 multiply-adds, XNOR-popcount bit operations or shift-adds (bias: + numel(out)).
    * Any module may define ``macs(in_shape, out_shape)`` and ``flops(in_shape, out_shape)``; with ``macs``
      only, FLOPs = 2 * MACs. A leaf of any other type counts 0 and its row has ``counted=False`` (marked
      ``?`` in the table).

Storage: ``bytes`` = sum of ``nbytes`` of the parameters and buffers (masks excluded), unless the module
defines ``storage_bytes()`` (compressed layers do). ``nonzeros`` counts nonzero parameter entries.
Latency: median milliseconds of the layer's forward alone on its recorded input, after a warm-up.
"""
from __future__ import annotations

import math
import time

import numpy as np

from nn.module import Module

_ELEMENTWISE_FLOPS = {"ReLU": 1, "ReLU6": 2, "LeakyReLU": 2, "Tanh": 1, "Sigmoid": 4, "Hardsigmoid": 4,
                      "Hardswish": 5, "Softmax": 5, "SiLU": 5}
_FREE = {"Flatten", "Identity", "Dropout", "Concat", "ChannelSplit", "ChannelShuffle", "Sequential", "DropPath",
         "Embedding", "LastStep"}
_GATED = ("Residual", "SqueezeExcitation")  # containers with a row of their own: the add, the gate multiply
_RNN_FLOPS = {"LSTM": (4, 22), "GRU": (3, 17)}  # gates, FLOPs per hidden unit besides the matmuls and biases


def _rule_name(m: Module) -> str | None:
    """The first class in the MRO with a counting rule, so a subclass (e.g. a quantised Conv2d) inherits it."""
    known = {"Linear", "Conv2d", "Conv1d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "_BatchNorm",
             "LayerNorm", "GroupNorm", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample",
             } | set(_GATED) | set(_RNN_FLOPS) | set(_ELEMENTWISE_FLOPS) | _FREE
    for klass in type(m).__mro__:
        if klass.__name__ in known:
            return klass.__name__
    return None


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _adaptive_bins(n_in: int, n_out: int) -> int:
    """Total size of torch's adaptive bins [floor(i n / o), ceil((i + 1) n / o)) along one axis."""
    return sum(-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out for i in range(n_out))


def count(m: Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int, bool]:
    """``(macs, flops, counted)`` of one call of ``m`` mapping ``in_shape`` to ``out_shape`` (rules above)."""
    out_n = math.prod(out_shape)
    if hasattr(m, "macs"):
        macs = int(m.macs(in_shape, out_shape))
        flops = int(m.flops(in_shape, out_shape)) if hasattr(m, "flops") else 2 * macs
        return macs, flops, True
    rule = _rule_name(m)
    bias = out_n if getattr(m, "bias", None) is not None and rule in ("Linear", "Conv2d", "Conv1d",
                                                                      "ConvTranspose2d") else 0
    if rule == "Linear":
        O, I = m.weight.shape
        macs = math.prod(out_shape[:-1]) * I * O
        return macs, 2 * macs + bias, True
    if rule in ("Conv2d", "Conv1d"):
        macs = out_n * math.prod(m.weight.shape[1:])  # (N*Co*Ho*Wo) * (Ci/G * kH * kW)
        return macs, 2 * macs + bias, True
    if rule == "ConvTranspose2d":
        macs = math.prod(in_shape) * math.prod(m.weight.shape[1:])  # (N*Ci*H*W) * (Co/G * kH * kW)
        return macs, 2 * macs + bias, True
    if rule in ("LayerNorm", "GroupNorm"):
        rows = (out_n // math.prod(m.normalized_shape) if rule == "LayerNorm" else in_shape[0] * m.num_groups)
        affine = (m.weight is not None) + (m.bias is not None)
        return 0, (5 + affine) * out_n + 4 * rows, True
    if rule in _RNN_FLOPS:
        return _rnn_count(m, rule, in_shape)
    if rule in ("BatchNorm1d", "BatchNorm2d", "_BatchNorm"):
        return 0, 2 * out_n, True
    if rule in _ELEMENTWISE_FLOPS:
        return 0, _ELEMENTWISE_FLOPS[rule] * out_n, True
    if rule in ("MaxPool2d", "AvgPool2d"):
        kk = math.prod(_pair(m.kernel_size))
        return 0, (kk - 1 if rule == "MaxPool2d" else kk) * out_n, True
    if rule in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
        lead = math.prod(out_shape[:-2])
        per = _adaptive_bins(in_shape[-2], out_shape[-2]) * _adaptive_bins(in_shape[-1], out_shape[-1])
        return 0, lead * (per if rule == "AdaptiveAvgPool2d" else per - math.prod(out_shape[-2:])), True
    if rule == "Upsample":
        return 0, (9 * out_n if m.mode == "bilinear" else 0), True
    if rule in _GATED:
        return 0, out_n, True
    if rule in _FREE:
        return 0, 0, True
    return _deployed_count(m, out_shape, out_n)


def _deployed_count(m: Module, out_shape: tuple[int, ...], out_n: int) -> tuple[int, int, bool]:
    """The deployed int8 / binary / shift layers: the logical multiply-adds of the float layer they replace,
    done in their own arithmetic (int8 MACs, XNOR-popcount bit MACs, shift-adds), + 1 FLOP per output for a
    bias. Recognised by the ``in_features``/``out_features`` or ``in_channels``/``out_channels``/``kernel_size``
    they keep; anything else is uncounted."""
    bias = out_n if getattr(m, "bias", None) is not None else 0
    if hasattr(m, "in_features") and hasattr(m, "out_features"):
        macs = math.prod(out_shape[:-1]) * m.in_features * m.out_features
    elif all(hasattr(m, a) for a in ("in_channels", "out_channels", "kernel_size")):
        macs = out_n * m.in_channels // getattr(m, "groups", 1) * math.prod(_pair(m.kernel_size))
    else:
        return 0, 0, False
    return macs, 2 * macs + bias, True


def _rnn_count(m: Module, rule: str, in_shape: tuple[int, ...]) -> tuple[int, int, bool]:
    """(macs, flops, True) of an LSTM / GRU call on input (T, N, I), (N, T, I) with batch_first, or (T, I)."""
    if len(in_shape) == 2:
        T, N = in_shape[0], 1
    else:
        T, N = (in_shape[1], in_shape[0]) if m.batch_first else in_shape[:2]
    gates, per_unit = _RNN_FLOPS[rule]
    S, dirs = m.hidden_size, m.num_directions
    macs = flops = 0
    for layer in range(m.num_layers):
        I_l = m.input_size if layer == 0 else dirs * S
        step_macs = gates * S * (I_l + S)  # W_ih x + W_hh h per step, sample, direction
        macs += T * N * dirs * step_macs
        flops += T * N * dirs * (2 * step_macs + per_unit * S + (2 * gates * S if m.bias else 0))
    return macs, flops, True


def storage_bytes(m: Module) -> int:
    """Bytes ``m`` (and its subtree) stores: ``m.storage_bytes()`` if defined, else parameters + buffers."""
    if hasattr(m, "storage_bytes"):
        return int(m.storage_bytes())
    arrays = [p for _, p in m.named_parameters()] + [np.asarray(b) for _, b in m.named_buffers()]
    return int(sum(a.nbytes for a in arrays))


def _median_ms(fn, repeat: int, warmup: float, min_time: float) -> float:
    """Median milliseconds per call over ``repeat`` samples, each looping until ``min_time``, after warm-up."""
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < warmup:
        fn()
    samples = []
    for _ in range(repeat):
        n, t = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t
            if el >= min_time:
                break
        samples.append(el / n)
    return 1e3 * float(np.median(samples))


def _recorded(model: Module) -> list[tuple[str, Module, bool]]:
    """(name, module, owns_subtree) for every module that gets a row (see the module docstring)."""
    out, owned, seen = [], [], set()
    for name, m in model.named_modules():
        if id(m) in seen or any(o == "" or name.startswith(o + ".") for o in owned):
            continue  # a module reachable under two names (shared) is recorded once, under the first
        seen.add(id(m))
        leaf = not m._modules
        if leaf or hasattr(m, "macs"):
            out.append((name, m, True))
            if not leaf:
                owned.append(name)
        elif _rule_name(m) in _GATED:
            out.append((name, m, False))
    return out


def _own_or_subtree(m: Module, subtree: bool) -> tuple[int, int, int]:
    """(params, nonzeros, bytes) of ``m`` alone or of its subtree."""
    if subtree:
        params = [p for _, p in m.named_parameters()]
        nbytes = storage_bytes(m)
    else:
        params = list(m._parameters.values())
        nbytes = int(sum(p.nbytes for p in params) + sum(np.asarray(b).nbytes for b in m._buffers.values()))
    return int(sum(p.size for p in params)), int(sum(np.count_nonzero(p) for p in params)), nbytes


def profile(model: Module, input_shape: tuple[int, ...], dtype=np.float32, latency: bool = True, repeat: int = 5,
            warmup: float = 0.01, min_time: float = 1e-3, rng: np.random.Generator | None = None,
            x: np.ndarray | None = None) -> list[dict]:
    """Profile ``model`` on a random (standard normal) input of ``input_shape`` (batch included) in eval mode.

    Parameters
    ----------
    model : Module, whose parameters have dtype ``dtype``.
    input_shape : full input shape, e.g. (1, 3, 32, 32).
    latency : time each recorded layer's forward (median ms of ``repeat`` samples of at least ``min_time`` s,
        after ``warmup`` s); ``latency_ms`` is None when False and for ``Residual`` and ``SqueezeExcitation`` rows.
    x : the input to run instead of the random one (e.g. integer indices for a model that starts with an
        Embedding); ``input_shape`` must then be its shape.

    Returns
    -------
    rows : list of dicts in execution order with keys name, type, in_shape, out_shape, params, nonzeros, macs,
        flops, bytes, latency_ms, counted, calls. Training flags and forward caches are restored afterwards.
    """
    if x is None:
        rng = np.random.default_rng(0) if rng is None else rng
        x = rng.standard_normal(input_shape).astype(dtype)
    elif tuple(x.shape) != tuple(input_shape):
        raise ValueError(f"profile: input_shape {tuple(input_shape)} differs from the given input's {x.shape}")
    recorded = _recorded(model)
    saved = [(m, m.training, m._cache) for m in model.modules()]
    rows = []
    try:
        model.eval()
        calls, order = _trace(model, x, recorded, latency)
        by_name = {name: (m, subtree) for name, m, subtree in recorded}
        for name in order:
            m, subtree = by_name[name]
            macs = flops = 0
            counted = True
            for in_shape, out_shape, _ in calls[name]:
                a, b, ok = count(m, tuple(in_shape), tuple(out_shape))
                macs, flops, counted = macs + a, flops + b, counted and ok
            params, nonzeros, nbytes = _own_or_subtree(m, subtree)
            lat = None
            if latency and subtree:
                lat = sum(_median_ms(lambda xi=xi, f=m.forward: f(xi), repeat, warmup, min_time)
                          for _, _, xi in calls[name])
            rows.append({"name": name or "(model)", "type": type(m).__name__, "in_shape": tuple(calls[name][0][0]),
                         "out_shape": tuple(calls[name][-1][1]), "params": params, "nonzeros": nonzeros,
                         "macs": macs, "flops": flops, "bytes": nbytes, "latency_ms": lat, "counted": counted,
                         "calls": len(calls[name])})
    finally:
        _restore(saved)
    return rows


def _trace(model: Module, x: np.ndarray, recorded, keep_inputs: bool):
    """One forward with each recorded module's ``forward`` wrapped on the instance (always unwrapped again).

    Returns ``calls`` (name -> list of (in_shape, out_shape, input copy or None)) and the names in the order
    their first call completed (execution order; a Residual completes after its branches).
    """
    calls: dict[str, list] = {name: [] for name, _, _ in recorded}
    order, patched = [], []

    def wrap(name, fwd, keep):
        def forward(*args, **kwargs):
            y = fwd(*args, **kwargs)
            if not calls[name]:
                order.append(name)
            calls[name].append((args[0].shape, y.shape, args[0].copy() if keep else None))
            return y
        return forward

    try:
        for name, m, subtree in recorded:
            had = "forward" in m.__dict__
            patched.append((m, had, m.__dict__.get("forward")))
            object.__setattr__(m, "forward", wrap(name, m.forward, keep_inputs and subtree))
        model(x)
    finally:
        for m, had, old in reversed(patched):
            if had:
                object.__setattr__(m, "forward", old)
            else:
                del m.__dict__["forward"]
    return calls, order


def _restore(saved) -> None:
    """Put back each module's training flag and forward cache."""
    for m, training, cache in saved:
        object.__setattr__(m, "training", training)
        object.__setattr__(m, "_cache", cache)


def totals(rows: list[dict]) -> dict:
    """Sums of params, nonzeros, MACs, FLOPs, bytes and per-layer latencies over ``rows``."""
    out = {k: int(sum(r[k] for r in rows)) for k in ("params", "nonzeros", "macs", "flops", "bytes")}
    lats = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    out["latency_ms"] = float(sum(lats)) if lats else None
    return out


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def summary_table(rows: list[dict]) -> str:
    """Aligned text table of ``rows`` with a totals line; exact integers, plus K/M/G for the totals."""
    cols = ["name", "type", "output", "params", "MACs", "FLOPs", "bytes", "ms"]
    body = []
    for r in rows:
        body.append([r["name"], r["type"] + ("" if r["counted"] else " ?"), "x".join(map(str, r["out_shape"])),
                     f"{r['params']:,}", f"{r['macs']:,}", f"{r['flops']:,}", f"{r['bytes']:,}",
                     "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}"])
    t = totals(rows)
    body.append(["total", "", "", f"{t['params']:,}", f"{t['macs']:,}", f"{t['flops']:,}", f"{t['bytes']:,}",
                 "-" if t["latency_ms"] is None else f"{t['latency_ms']:.3f}"])
    body.append(["", "", "", _human(t["params"]), _human(t["macs"]), _human(t["flops"]), _human(t["bytes"]), ""])
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    left = {0, 1, 2}

    def fmt(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [fmt(cols), fmt(["-" * w for w in widths])] + [fmt(b) for b in body[:-2]]
    lines += [fmt(["-" * w for w in widths]), fmt(body[-2]), fmt(body[-1])]
    if not all(r["counted"] for r in rows):
        lines.append("? = layer type without a counting rule: 0 MACs and FLOPs assumed")
    lines.append("1 MAC = 2 FLOPs; ms = median forward latency of the layer alone (total = sum of layers)")
    return "\n".join(lines)


def model_latency(model: Module, batch, input_shape: tuple[int, ...] | None = None, dtype=np.float32,
                  repeat: int = 7, warmup: float = 0.1, min_time: float = 0.01,
                  rng: np.random.Generator | None = None) -> dict:
    """Whole-model forward latency in eval mode.

    ``batch`` is an input array, or a batch size with ``input_shape`` the per-sample shape (e.g. (3, 32, 32)).
    Returns ``{"batch", "median_ms", "per_sample_ms", "repeat"}``; training flags and caches are restored.
    """
    if isinstance(batch, np.ndarray):
        x = batch
    else:
        if input_shape is None:
            raise ValueError("model_latency: give an input array, or a batch size and the per-sample input_shape")
        rng = np.random.default_rng(0) if rng is None else rng
        x = rng.standard_normal((int(batch), *input_shape)).astype(dtype)
    saved = [(m, m.training, m._cache) for m in model.modules()]
    try:
        model.eval()
        ms = _median_ms(lambda: model(x), repeat, warmup, min_time)
    finally:
        _restore(saved)
    return {"batch": int(x.shape[0]), "median_ms": ms, "per_sample_ms": ms / x.shape[0], "repeat": repeat}


SPREAD_LIMIT = 0.25  # relative spread of the per-pair ratios above which a speed-up is not quoted


def paired_latency(model: Module, reference: Module, batch, input_shape: tuple[int, ...] | None = None,
                   dtype=np.float32, pairs: int = 21, min_time: float = 0.005, warmup: float = 0.05,
                   spread_limit: float = SPREAD_LIMIT) -> dict:
    """Latency of ``model`` against ``reference`` from interleaved short samples, so load drift cancels.

    Each of ``pairs`` rounds times one short sample (``min_time`` of repeated calls) of each model back to back,
    in alternating order, so the two samples of a pair see the same machine load. Reported: ``speedup``, the
    median over the pairs of reference time / model time (drift and bursts of load cancel within a pair),
    ``ms`` and ``reference_ms``, each model's median sample (their ratio is close to ``speedup``; a row's figures
    cannot contradict each other the way two separately timed medians can), and ``spread``, the interquartile
    range of the per-pair ratios over their median. When the spread exceeds ``spread_limit`` the machine's load
    decided the samples: ``speedup`` is None and ``stable`` False, and the caller prints that instead of a
    number.
    """
    if isinstance(batch, np.ndarray):
        x = batch
    else:
        if input_shape is None:
            raise ValueError("paired_latency: give an input array, or a batch size and the per-sample input_shape")
        x = np.random.default_rng(0).standard_normal((int(batch), *input_shape)).astype(dtype)
    if pairs < 4:
        raise ValueError(f"paired_latency: need at least 4 pairs for a spread, got {pairs}")
    saved = [(m, m.training, m._cache) for mod in (model, reference) for m in mod.modules()]
    try:
        model.eval()
        reference.eval()
        ours, ref = [], []
        def sample(m: Module, warm: float) -> float:
            return _median_ms(lambda: m(x), 1, warm, min_time)
        sample(model, warmup)  # warm-up (JIT, caches) before any sample counts
        sample(reference, warmup)
        for r in range(pairs):
            order = ((model, ours), (reference, ref)) if r % 2 == 0 else ((reference, ref), (model, ours))
            for m, out in order:
                out.append(sample(m, 0.0))
    finally:
        _restore(saved)
    ratios = np.asarray(ref) / np.asarray(ours)
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    spread = float((q75 - q25) / q50)
    ms, reference_ms = float(np.median(ours)), float(np.median(ref))
    stable = spread <= spread_limit
    return {"batch": int(x.shape[0]), "ms": ms, "reference_ms": reference_ms,
            "speedup": float(q50) if stable else None, "spread": spread, "stable": stable,
            "samples_ms": ours, "reference_samples_ms": ref}
