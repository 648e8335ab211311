"""The surveys' comparison: one baseline, every implemented paper of every family at its demo setting, one table.

    python -m scripts.lwnn demo                                # every family (make demo)
    python -m scripts.lwnn demo --family pruning               # some families (repeatable, or a comma list)
    python -m scripts.lwnn demo --full                         # longer baseline training and retraining
    python -m scripts.lwnn compare RUN_DIR --method han2015_prune --family quantization   # rows on a finished run

A LeNet-5 (Caffe variant) is trained on Fashion-MNIST; each selected paper then compresses a copy of it with the
small, fixed budget written in its script, and every result goes through the one measurement routine,
``measure``, so a quantized, shared, factorised, distilled or searched model is measured exactly like a pruned
one. The table is printed (aligned, thousands separators, a family column; the notes below it) and written to the
run folder: ``comparison.md``, ``comparison.csv``, ``comparison.json``, ``comparison.png`` (every row) and one
``comparison_<family>.png`` per family in the table, each with two panels: accuracy against compression on disk
and accuracy against measured batch-64 latency.

Which rows
    ``demo_methods()`` lists every implemented paper (method module and script) whose script defines
    ``demo(``, in catalogue order (so grouped by family): a new family's papers join the table by writing their
    ``demo`` -- nothing here names them. ``select(families, methods)`` picks rows (``--family`` / ``--method``;
    both together: the union). Each row's random stream is seeded by ``(seed, crc32(paper id))``, so a row does
    not change when other rows are added or left out.

What a paper's script provides (``scripts/<family>/<paper_id>.py``)
    ``demo(model, data, rng) -> Module`` receives a deep copy of the trained baseline and a ``DemoData`` and
    returns the compressed model *as deployed*: a masked float model (measured on the CSR kernel, below), a
    smaller dense model (surgery, factorisation, a student), or one built of the deployed layers of
    ``nn/quant.py`` (int8), ``nn/binary.py`` (packed signs), ``nn/shift.py`` (power-of-two codes) or
    ``nn/sparse.py``. ``data.quick`` selects the smoke budget and ``data.full`` the longer one. Where the paper
    needs something LeNet-5 lacks, the demo states its adaptation in its docstring.

    A paper compared against another reference than the trained LeNet-5 (distillation: the student trained
    alone; architectures: the small model they train themselves) also defines ``demo_baseline(data, rng) ->
    Module`` and may describe it in a module-level ``DEMO_BASELINE = "..."``. That reference gets its own row,
    ``<paper_id>.baseline`` (kind "own baseline", measured against the LeNet-5 baseline), and the paper's row is
    measured against it: its change in accuracy, compression, disk ratio and speed-ups are relative to its own
    baseline, and its note says so.

The columns (``measure``)
    test accuracy and its change (points); ``params``: logical weights (entries of every float parameter, and of
    the dense weight and bias each compressed layer stands for); ``nonzeros`` of those; ``bits_per_weight``: 8 x
    the bytes the deployed model stores for them (float parameters; a compressed layer's ``storage_bytes()``,
    i.e. CSR values and indices, int8 weights with their scales, packed bits with their alphas, biases) over
    ``params`` -- 32 for a dense float32 model; ``compression``: the baseline's nonzeros over the row's (the
    pruning papers' figure); ``bytes_on_disk``: the HDF5 checkpoint of the deployed model (an unstructured-pruned
    model is saved with CSR arrays for its layers that are at least half zeros) and ``disk_ratio`` against the
    baseline's; MACs (``nn.profile``); batch-1 / batch-64 latency with the speed-up over the reference from
    ``nn.profile.paired_latency`` (interleaved samples; a speed-up whose samples spread too much is printed
    "unstable").
"""
from __future__ import annotations

import copy
import csv
import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nn.checkpoint import save_checkpoint
from nn.module import Module
from nn.profile import paired_latency, profile, totals
from nn.train import evaluate

COLUMNS = ["family", "method", "kind", "test_acc", "delta_acc", "params", "nonzeros", "bits_per_weight",
           "compression", "bytes_on_disk", "disk_ratio", "MACs", "latency_b1_ms", "latency_b64_ms", "speedup_b1",
           "speedup_b64", "spread_b1", "spread_b64", "seconds", "note"]
BASELINE_SUFFIX = ".baseline"  # the row of a paper's own reference model: "<paper_id>.baseline"


@dataclass
class DemoData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    theta0: dict | None = None  # the baseline's initial weights (lottery-ticket rewinding)
    quick: bool = False      # smoke budgets (tests)
    full: bool = False       # longer budgets (--full)

    def epochs(self, default: float) -> int:
        """Retraining epochs: 1 in quick mode, 3x the default with --full."""
        return 1 if self.quick else round(default * (3 if self.full else 1))

    def subset(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n if not self.quick else min(n, 2000), len(self.x_train))
        return self.x_train[:n], self.y_train[:n]


def retrain(model: Module, data: DemoData, rng: np.random.Generator, epochs: float = 1, lr: float = 0.005,
            n: int = 20000, step: Callable | None = None) -> Module:
    """The demo's common fine-tuning: SGD (momentum 0.9, weight decay 5e-4, batch 64) on the first ``n`` images
    (``scripts._structured_run.train``). ``step(opt)`` replaces ``opt.step()``, e.g. to add a penalty first."""
    from scripts._structured_run import train
    x, y = data.subset(n)
    train(model, x, y, data.epochs(epochs), lr, rng, step=step)
    return model


# ----------------------------------------------------------------------------------------------- which rows
def demo_methods(family: str | None = None) -> tuple[str, ...]:
    """Ids of the implemented papers whose script defines ``demo(``, in catalogue order (of one family)."""
    from scripts import catalogue
    return tuple(p.id for p in catalogue.implemented(family) if "\ndef demo(" in p.path("script").read_text())


METHODS: tuple[str, ...] = demo_methods()  # the default demo: every implemented paper with a demo()


def _split(values: Iterable[str]) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``: options may be repeated or comma lists."""
    return [v.strip() for s in values for v in s.split(",") if v.strip()]


def select(families: Iterable[str] = (), methods: Iterable[str] = ()) -> tuple[tuple[str, ...], list[str]]:
    """The rows ``--family`` / ``--method`` pick: ``(paper ids, messages)``.

    No selection: every demo method. Families give their demo methods in catalogue order, then the named methods
    follow (the union, without repeats). An unknown family raises a ValueError listing the families; a family
    with no demo method yet gives a message, not an error. Methods are checked later by ``demo_fn``.
    """
    from scripts import catalogue
    families, methods = _split(families), _split(methods)
    unknown = [f for f in families if f not in catalogue.FAMILIES]
    if unknown:
        raise ValueError(f"unknown family {', '.join(map(repr, unknown))}; families: {', '.join(catalogue.FAMILIES)}")
    if not families and not methods:
        return METHODS, []
    ids, messages = [], []
    for f in dict.fromkeys(families):
        found = demo_methods(f)
        if not found:
            n = len(catalogue.implemented(f))
            messages.append(f"{f}: no paper of this family has a demo() yet ({n} of {len(catalogue.family(f))} "
                            "implemented); no rows from it")
        ids += found
    ids += methods
    return tuple(dict.fromkeys(ids)), messages


def _module(paper_id: str):
    """The imported ``scripts.<family>.<paper_id>`` (ValueError naming the problem if it cannot be)."""
    from scripts import catalogue
    try:
        main = catalogue.script_main(paper_id)
    except (KeyError, FileNotFoundError) as e:
        raise ValueError(f"unknown method: {e.args[0]}") from e
    return sys.modules[main.callback.__module__]


def demo_fn(paper_id: str) -> Callable:
    """``scripts.<family>.<paper_id>.demo``: the paper's method at its demo budget on a copy of the baseline."""
    from scripts import catalogue
    module = _module(paper_id)
    if not hasattr(module, "demo"):
        raise ValueError(f"{catalogue.get(paper_id).path('script').relative_to(catalogue.ROOT)} has no "
                         "demo(model, data, rng) function")
    return module.demo


def own_baseline(paper_id: str) -> tuple[Callable, str] | None:
    """``(demo_baseline, DEMO_BASELINE description)`` if the paper's script brings its own reference, else None."""
    module = _module(paper_id)
    fn = getattr(module, "demo_baseline", None)
    if fn is None:
        if hasattr(module, "DEMO_BASELINE"):
            raise ValueError(f"{paper_id}: DEMO_BASELINE is set but there is no demo_baseline(data, rng) function")
        return None
    return fn, str(getattr(module, "DEMO_BASELINE", "its own reference model"))


def _rng(seed: int, name: str, stream: int = 0) -> np.random.Generator:
    """A row's generator from the seed and its paper id alone, so it is the same in any selection of rows."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), stream])


# ----------------------------------------------------------------------------------------------- measuring
def _family(name: str) -> str:
    from scripts import catalogue
    name = name.removesuffix(BASELINE_SUFFIX)
    return catalogue.BY_ID[name].family if name in catalogue.BY_ID else "-"


# What the deployed layers are called in the kind column (a compressed layer is one defining storage_bytes());
# a layer class outside nn/ names itself with a class attribute ``KIND``.
KINDS = {"SparseLinear": "sparse (CSR)", "SparseConv2d": "sparse (CSR)", "QuantLinear": "int8",
         "QuantConv2d": "int8", "BinaryLinear": "binary", "BinaryConv2d": "binary", "ShiftLinear": "shift",
         "ShiftConv2d": "shift"}


def _compressed(model: Module) -> list[Module]:
    """The compressed layers of ``model``, outermost first (their subtree is theirs)."""
    out = []
    def visit(m: Module) -> None:
        if hasattr(m, "storage_bytes"):
            out.append(m)
            return
        for c in m.children():
            visit(c)
    visit(model)
    return out


def kind(model: Module) -> str:
    """'dense', or the deployed layer types present ('sparse (CSR)', 'int8', 'binary', 'shift', or a class name)."""
    names = dict.fromkeys(getattr(type(m), "KIND", None) or KINDS.get(type(m).__name__, type(m).__name__)
                          for m in _compressed(model))
    return " + ".join(names) or "dense"


def _layer_weights(m: Module) -> tuple[int, int]:
    """``(logical weights, nonzeros)`` of one compressed layer: its dense weight's entries, plus its bias."""
    stored = getattr(m, "weight", None)
    if hasattr(m, "weight_shape"):  # CSR, shift codes
        n = math.prod(m.weight_shape)
    elif isinstance(stored, np.ndarray):  # int8
        n = stored.size
    elif hasattr(m, "out_features"):
        n = m.out_features * m.in_features
    elif hasattr(m, "out_channels"):
        n = m.out_channels * m.in_channels // getattr(m, "groups", 1) * math.prod(m.kernel_size)
    else:
        raise ValueError(f"{type(m).__name__} defines storage_bytes() but no weight_shape, weight, "
                         "out_features/in_features or out_channels/in_channels/kernel_size to count its weights")
    if hasattr(m, "decoded_weight"):
        nz = int(np.count_nonzero(m.decoded_weight()))
    elif hasattr(m, "weight_data"):
        nz = int(np.count_nonzero(m.weight_data))
    elif isinstance(stored, np.ndarray):
        nz = int(np.count_nonzero(stored))
    else:
        nz = n  # packed signs: every weight is +-alpha
    bias = getattr(m, "bias", None)
    if bias is not None:
        n, nz = n + np.asarray(bias).size, nz + int(np.count_nonzero(bias))
    return n, nz


def weight_storage(model: Module) -> dict:
    """``params``, ``nonzeros``, ``weight_bytes`` and ``bits_per_weight`` of a deployed model.

    A float module counts its parameters (buffers such as BatchNorm's running statistics are not weights); a
    compressed layer counts the entries of the dense weight and bias it stands for, and all it stores
    (``storage_bytes()``: values, indices, scales, packed bits, bias). bits_per_weight = 8 * weight_bytes / params.
    """
    params = nonzeros = nbytes = 0
    def visit(m: Module) -> None:
        nonlocal params, nonzeros, nbytes
        if hasattr(m, "storage_bytes"):
            n, nz = _layer_weights(m)
            params, nonzeros, nbytes = params + n, nonzeros + nz, nbytes + int(m.storage_bytes())
            return
        for p in m._parameters.values():
            if p is not None:
                params, nonzeros, nbytes = params + p.size, nonzeros + int(np.count_nonzero(p)), nbytes + p.nbytes
        for c in m.children():
            visit(c)
    visit(model)
    return {"params": int(params), "nonzeros": int(nonzeros), "weight_bytes": int(nbytes),
            "bits_per_weight": 8 * nbytes / max(params, 1)}


def _has_masks(model: Module) -> bool:
    return any(True for _ in model.named_masks())


def measure(name: str, model: Module, data: DemoData, run_dir: Path, baseline: dict | None,
            seconds: float, note: str = "", reference: Module | None = None, metadata: dict | None = None,
            kind_: str | None = None) -> dict:
    """Every row of the table comes from here: accuracy, counts, bits per weight, bytes on disk, MACs, latency.

    ``baseline`` is the row the change, compression, disk ratio and speed-ups are relative to (None: this is the
    baseline) and ``reference`` its model. With ``reference`` the latencies and speed-ups come from
    ``nn.profile.paired_latency`` (interleaved short samples; the speed-up is the median per-pair ratio, so a
    row's figures agree with each other); a speed-up whose samples spread too much under machine load is left
    empty and the row's note says so. ``kind_`` overrides the kind column (the own-baseline rows).
    """
    from methods.pruning.common import deploy_sparse
    deployed = model
    if _has_masks(model):
        # CSR costs 8 bytes per nonzero (value + int32 column): a layer less than half zeros stays dense
        deployed = deploy_sparse(model, min_sparsity=0.5)
    _, acc = evaluate(deployed, data.x_test, data.y_test)
    tot = totals(profile(deployed, (1, *data.input_shape), latency=False))
    w = weight_storage(deployed)
    path = save_checkpoint(run_dir / "models" / f"{name}.h5", deployed, metadata={**(metadata or {}), "method": name})
    nbytes = path.stat().st_size
    timing = {}
    for b in (1, 64):
        t = paired_latency(deployed, deployed if reference is None else reference, b, data.input_shape)
        timing.update({f"latency_b{b}_ms": t["ms"], f"reference_b{b}_ms": t["reference_ms"],
                       f"speedup_b{b}": t["speedup"], f"spread_b{b}": t["spread"]})
        if reference is not None and not t["stable"]:
            note = (note + "; " if note else "") + f"batch-{b} speed-up not quoted (spread {t['spread']:.0%})"
    row = {"family": _family(name), "method": name, "kind": kind_ or kind(deployed), "test_acc": acc,
           "params": w["params"], "nonzeros": w["nonzeros"], "bits_per_weight": w["bits_per_weight"],
           "bytes_on_disk": nbytes, "MACs": int(tot.get("macs", 0)), "seconds": seconds, "note": note, **timing}
    if baseline is None:
        row.update(delta_acc=0.0, compression=1.0, disk_ratio=1.0, speedup_b1=1.0, speedup_b64=1.0)
    else:
        row.update(delta_acc=acc - baseline["test_acc"],
                   compression=baseline["nonzeros"] / max(w["nonzeros"], 1),
                   disk_ratio=baseline["bytes_on_disk"] / nbytes)
    return row


# ----------------------------------------------------------------------------------------------- the table
HEADINGS = {"family": "family", "method": "method", "kind": "kind", "test_acc": "acc %", "delta_acc": "change pt",
            "params": "params", "nonzeros": "nonzeros", "bits_per_weight": "bits/w", "compression": "compression",
            "bytes_on_disk": "bytes", "disk_ratio": "disk ratio", "MACs": "MACs", "latency_b1_ms": "ms b1",
            "latency_b64_ms": "ms b64", "speedup_b1": "speed-up b1", "speedup_b64": "speed-up b64",
            "spread_b1": "spread b1", "spread_b64": "spread b64", "seconds": "s", "note": "note"}
assert set(HEADINGS) == set(COLUMNS) and len(set(HEADINGS.values())) == len(COLUMNS), "one heading per column"
NUMERIC = {c for c in COLUMNS if c not in ("family", "method", "kind", "note")}
# The terminal leaves out the spreads (an unstable speed-up prints "unstable") and puts the notes below.
TERMINAL = [c for c in COLUMNS if c not in ("spread_b1", "spread_b64", "note")]


def _cell(c: str, r: dict) -> str:
    v = r.get(c)
    if c.startswith("speedup") and v is None and "test_acc" in r:
        return "unstable"  # nn.profile.paired_latency: the samples spread too much to quote a ratio
    if v is None or v == "":
        return ""
    if c == "test_acc":
        return f"{100 * v:.2f}"
    if c == "delta_acc":
        return f"{100 * v:+.2f}"
    if c in ("params", "nonzeros", "bytes_on_disk", "MACs"):
        return f"{int(v):,}"
    if c == "bits_per_weight":
        return f"{v:.3g}"
    if c in ("compression", "disk_ratio") or c.startswith("speedup"):
        return f"{v:.2f}x"
    if c.startswith("spread"):
        return f"{100 * v:.0f}%"
    if c == "seconds":
        return f"{v:.0f}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def format_rows(rows: list[dict]) -> str:
    """The table as markdown (comparison.md)."""
    out = ["| " + " | ".join(HEADINGS[c] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_cell(c, r) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(out)


def format_terminal(rows: list[dict]) -> str:
    """The table for a terminal: aligned columns, numbers right-aligned, the notes below the table."""
    body = [[_cell(c, r) for c in TERMINAL] for r in rows]
    widths = [max(len(HEADINGS[c]), *(len(b[i]) for b in body)) for i, c in enumerate(TERMINAL)]
    def line(cells):
        return "  ".join(x.rjust(w) if c in NUMERIC or x == "unstable" else x.ljust(w)
                         for c, x, w in zip(TERMINAL, cells, widths)).rstrip()
    out = [line([HEADINGS[c] for c in TERMINAL]), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    out += [f"{r['method']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out)


def plot(rows: list[dict], path: Path, title: str = "every family") -> None:
    """Two panels: test accuracy against compression on disk (the LeNet-5 baseline's bytes over the row's) and
    against measured batch-64 latency; the baseline is a black cross, each family its own colour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    measured = [r for r in rows if r.get("test_acc") is not None]
    base = next((r for r in measured if r["method"] == "baseline"), None)
    colours = {f: f"C{i}" for i, f in enumerate(dict.fromkeys(r["family"] for r in measured if r is not base))}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, x_of, xlabel in (
            (axes[0], lambda r: base["bytes_on_disk"] / r["bytes_on_disk"] if base else r["disk_ratio"],
             "compression on disk (baseline bytes / deployed model's bytes)"),
            (axes[1], lambda r: r["latency_b64_ms"], "measured batch-64 latency (ms)")):
        for f, c in colours.items():
            pts = [r for r in measured if r["family"] == f and r is not base]
            ax.scatter([x_of(r) for r in pts], [100 * r["test_acc"] for r in pts], s=36, color=c, label=f,
                       marker="o")
        if base is not None:
            ax.scatter([x_of(base)], [100 * base["test_acc"]], s=70, color="black", marker="x", label="baseline")
        for r in measured:
            ax.annotate(r["method"], (x_of(r), 100 * r["test_acc"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"LeNet-5 on Fashion-MNIST, {title}: accuracy against compression and latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plots(rows: list[dict], run_dir: Path) -> list[Path]:
    """``comparison.png`` (every row) and ``comparison_<family>.png`` (the baseline and that family's rows)."""
    paths = [run_dir / "comparison.png"]
    plot(rows, paths[0])
    families = dict.fromkeys(r["family"] for r in rows if r.get("test_acc") is not None and r["method"] != "baseline")
    for f in families:
        paths.append(run_dir / f"comparison_{f}.png")
        plot([r for r in rows if r["method"] == "baseline" or r["family"] == f], paths[-1], title=f)
    return paths


# ----------------------------------------------------------------------------------------------- running
def compare(baseline_model: Module, data: DemoData, run_dir: Path, seed: int = 0,
            methods: tuple[str, ...] | list[str] | None = None, echo=print, metadata: dict | None = None) -> list[dict]:
    """Compress copies of ``baseline_model`` with every method (default ``METHODS``); write the comparison.

    ``metadata`` (e.g. the dataset and its normalisation) goes into every saved model, so ``lwnn evaluate``
    can score it; a structurally pruned zoo model records its surgery and is rebuilt on load.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    methods = METHODS if methods is None else tuple(dict.fromkeys(methods))
    fns = {name: (demo_fn(name), own_baseline(name)) for name in methods}  # an unknown name fails before any work
    base = measure("baseline", baseline_model, data, run_dir, None, 0.0, metadata=metadata)
    rows = [base]
    echo(f"baseline: test accuracy {100 * base['test_acc']:.2f}%")
    for name in methods:
        fn, own = fns[name]
        try:
            ref_row, ref_model = base, baseline_model
            if own is not None:
                t = time.perf_counter()
                ref_model = own[0](data, _rng(seed, name, 1))
                ref_name = name + BASELINE_SUFFIX
                ref_row = measure(ref_name, ref_model, data, run_dir, base, time.perf_counter() - t,
                                  note=f"own baseline of {name}: {own[1]}", reference=baseline_model,
                                  metadata=metadata, kind_="own baseline")
                rows.append(ref_row)
                _echo_row(ref_row, echo)
            t = time.perf_counter()
            model = fn(copy.deepcopy(baseline_model), data, _rng(seed, name))
            note = "" if own is None else f"change, compression, disk ratio, speed-ups against {ref_name}"
            rows.append(measure(name, model, data, run_dir, ref_row, time.perf_counter() - t, note=note,
                                reference=ref_model, metadata=metadata))
        except KeyboardInterrupt:
            echo("interrupted: writing the rows finished so far")
            break
        except Exception as e:  # noqa: BLE001 - one failing method must not lose the others' results
            rows.append({"family": _family(name), "method": name, "kind": "-",
                         "note": f"FAILED: {type(e).__name__}: {e}"})
        _echo_row(rows[-1], echo)
        _write(rows, run_dir)
    _write(rows, run_dir)
    plots(rows, run_dir)
    echo(format_terminal(rows))
    return rows


def _echo_row(r: dict, echo) -> None:
    echo(f"{r['method']}: " + (f"acc {_cell('test_acc', r)}% ({_cell('delta_acc', r)}), "
                               f"compression {_cell('compression', r)}, {_cell('bits_per_weight', r)} bits/weight, "
                               f"speed-up {_cell('speedup_b1', r)} / {_cell('speedup_b64', r)} (batch 1 / 64), "
                               f"{r['seconds']:.0f}s" if "test_acc" in r else r["note"]))


def _write(rows: list[dict], run_dir: Path) -> None:
    (run_dir / "comparison.md").write_text(format_rows(rows) + "\n")
    (run_dir / "comparison.json").write_text(json.dumps(rows, indent=1, default=float))
    with open(run_dir / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
