"""The surveys' comparison: one baseline, every implemented method at its default setting, one table.

    python -m scripts.lwnn demo            # default: ~10 minutes on 2 cores
    python -m scripts.lwnn demo --full     # longer baseline training and retraining

A LeNet-5 (Caffe variant) is trained on Fashion-MNIST; each method of ``METHODS`` then compresses a copy of it
with the small, fixed budget written in its script, and every result goes through the same measurement code:
test accuracy and its change, parameters, nonzero weights, bytes on disk (the HDF5 checkpoint of the *deployed*
model: CSR arrays for the layers of an unstructured-pruned model that are at least half zeros, a smaller dense
model for structured pruning), MACs, and batch-1 / batch-64 latency with the speed-up over the baseline
(alternating samples of both models). The table is printed and written to the run folder (``comparison.md``,
``comparison.csv``, ``comparison.json``) with ``comparison.png`` (accuracy against compression).

Each paper's script owns its demo budget: ``scripts/<family>/<paper_id>.py`` defines ``demo(model, data, rng)``, which
receives a deep copy of the trained baseline and a ``DemoData`` and returns the compressed model. It may mask it
(then it is deployed on the sparse kernel) or shrink it by surgery; ``data.quick`` selects the smoke budget and
``data.full`` the longer one. Where the paper needs something LeNet-5 lacks (BatchNorm for network slimming, an
MLP for OBS's full Hessian), the demo states its adaptation in its docstring.
"""
from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nn.checkpoint import save_checkpoint
from nn.module import Module
from nn.profile import paired_latency, profile, totals
from nn.train import evaluate

COLUMNS = ["family", "method", "kind", "test_acc", "delta_acc", "params", "nonzeros", "compression",
           "bytes_on_disk", "disk_ratio", "MACs", "latency_b1_ms", "latency_b64_ms", "speedup_b1", "speedup_b64",
           "spread_b1", "spread_b64", "seconds", "note"]


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


def _has_masks(model: Module) -> bool:
    return any(True for _ in model.named_masks())


def retrain(model: Module, data: DemoData, rng: np.random.Generator, epochs: float = 1, lr: float = 0.005,
            n: int = 20000, step: Callable | None = None) -> Module:
    """The demo's common fine-tuning: SGD (momentum 0.9, weight decay 5e-4, batch 64) on the first ``n`` images
    (``scripts._structured_run.train``). ``step(opt)`` replaces ``opt.step()``, e.g. to add a penalty first."""
    from scripts._structured_run import train
    x, y = data.subset(n)
    train(model, x, y, data.epochs(epochs), lr, rng, step=step)
    return model


# ----------------------------------------------------------------------------------------------- methods
# Every paper's script (scripts/<family>/<paper_id>.py) owns its demo budget: ``demo(model, data, rng) -> model``.
METHODS: tuple[str, ...] = (
    "lecun1989_obd", "hassibi1993_obs", "han2015_prune", "guo2016_dns", "wen2016_ssl", "li2017_l1filter",
    "luo2017_thinet", "he2017_channelprune", "liu2017_slimming", "hu2016_apoz", "he2018_sfp", "zhuang2018_dcp",
    "he2018_amc", "frankle2019_lottery", "setiono1997_nnfs", "srinivas2017_gates", "anwar2017_structprune",
    "lin2019_ssr", "jia2018_droppruning", "tian2017_ldaprune", "hu2019_mlcp",
)


def demo_fn(paper_id: str) -> Callable:
    """``scripts.<family>.<paper_id>.demo``: the paper's method at its demo budget on a copy of the baseline."""
    from scripts import catalogue
    try:
        main = catalogue.script_main(paper_id)
    except (KeyError, FileNotFoundError) as e:
        raise ValueError(f"unknown method: {e.args[0]}") from e
    import sys
    module = sys.modules[main.callback.__module__]
    if not hasattr(module, "demo"):
        raise ValueError(f"{catalogue.get(paper_id).path('script').relative_to(catalogue.ROOT)} has no "
                         "demo(model, data, rng) function")
    return module.demo


# ----------------------------------------------------------------------------------------------- measuring

def _family(name: str) -> str:
    from scripts import catalogue
    return catalogue.BY_ID[name].family if name in catalogue.BY_ID else "-"


def measure(name: str, model: Module, data: DemoData, run_dir: Path, baseline: dict | None,
            seconds: float, note: str = "", reference: Module | None = None, metadata: dict | None = None) -> dict:
    """Every row of the table comes from here: accuracy, counts, deployed bytes on disk, MACs, latency.

    With ``reference`` (the baseline model) the latencies and speed-ups come from ``nn.profile.paired_latency``
    (interleaved short samples; each model's lowest sample; the speed-up is the ratio of the two, so a row's
    figures agree with each other); a speed-up whose samples spread too much under machine load is left empty
    and the row's note says so.
    """
    from methods.pruning.common import deploy_sparse
    kind = "dense"
    deployed = model
    if _has_masks(model):
        # CSR costs 8 bytes per nonzero (value + int32 column): a layer less than half zeros stays dense
        deployed = deploy_sparse(model, min_sparsity=0.5)
        kind = "sparse (CSR)"
    _, acc = evaluate(deployed, data.x_test, data.y_test)
    rows = profile(deployed, (1, *data.input_shape), latency=False)
    tot = totals(rows)
    params = int(sum(p.size for _, p in model.named_parameters()))
    nonzeros = int(sum(np.count_nonzero(p) for _, p in model.named_parameters()))
    path = save_checkpoint(run_dir / "models" / f"{name}.h5", deployed, metadata={**(metadata or {}), "method": name})
    nbytes = path.stat().st_size
    timing = {}
    for b in (1, 64):
        t = paired_latency(deployed, deployed if reference is None else reference, b, data.input_shape)
        timing.update({f"latency_b{b}_ms": t["ms"], f"reference_b{b}_ms": t["reference_ms"],
                       f"speedup_b{b}": t["speedup"], f"spread_b{b}": t["spread"]})
        if reference is not None and not t["stable"]:
            note = (note + "; " if note else "") + f"batch-{b} speed-up not quoted (spread {t['spread']:.0%})"
    row = {"family": _family(name), "method": name, "kind": kind, "test_acc": acc,
           "params": params, "nonzeros": nonzeros, "bytes_on_disk": nbytes, "MACs": int(tot.get("macs", 0)),
           "seconds": seconds, "note": note, **timing}
    if baseline is None:
        row.update(delta_acc=0.0, compression=1.0, disk_ratio=1.0, speedup_b1=1.0, speedup_b64=1.0)
    else:
        row.update(delta_acc=acc - baseline["test_acc"],
                   compression=baseline["nonzeros"] / max(nonzeros, 1),
                   disk_ratio=baseline["bytes_on_disk"] / nbytes)
    return row


HEADINGS = {"family": "family", "method": "method", "kind": "kind", "test_acc": "acc %", "delta_acc": "change pt",
            "params": "params", "nonzeros": "nonzeros", "compression": "compression", "bytes_on_disk": "bytes",
            "disk_ratio": "disk ratio", "MACs": "MACs", "latency_b1_ms": "ms b1", "latency_b64_ms": "ms b64",
            "speedup_b1": "speed-up b1", "speedup_b64": "speed-up b64", "spread_b1": "spread b1",
            "spread_b64": "spread b64", "seconds": "s", "note": "note"}
NUMERIC = {c for c in COLUMNS if c not in ("family", "method", "kind", "note")}


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
    cols = [c for c in COLUMNS if c != "note"]
    body = [[_cell(c, r) for c in cols] for r in rows]
    widths = [max(len(HEADINGS[c]), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    def line(cells):
        return "  ".join(x.rjust(w) if c in NUMERIC or x == "unstable" else x.ljust(w)
                         for c, x, w in zip(cols, cells, widths)).rstrip()
    out = [line([HEADINGS[c] for c in cols]), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    out += [f"{r['method']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r.get("test_acc") is None:
            continue
        ax.scatter(r["compression"], 100 * r["test_acc"], s=40)
        ax.annotate(r["method"], (r["compression"], 100 * r["test_acc"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("compression (baseline nonzero weights / nonzero weights)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-5 on Fashion-MNIST: accuracy against compression")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(baseline_model: Module, data: DemoData, run_dir: Path, seed: int = 0,
            methods: tuple[str, ...] | list[str] | None = None, echo=print, metadata: dict | None = None) -> list[dict]:
    """Compress copies of ``baseline_model`` with every method and write the comparison to ``run_dir``.

    ``metadata`` (e.g. the dataset and its normalisation) goes into every saved model, so ``lwnn evaluate``
    can score it; a structurally pruned zoo model records its surgery and is rebuilt on load.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    methods = METHODS if methods is None else tuple(methods)
    fns = {name: demo_fn(name) for name in methods}  # an unknown name fails before any work
    base = measure("baseline", baseline_model, data, run_dir, None, 0.0, metadata=metadata)
    rows = [base]
    echo(f"baseline: test accuracy {100 * base['test_acc']:.2f}%")
    for name in methods:
        t = time.perf_counter()
        rng = np.random.default_rng([seed, 1 + METHODS.index(name) if name in METHODS else 0])  # same for a subset
        try:
            model = fns[name](copy.deepcopy(baseline_model), data, rng)
            rows.append(measure(name, model, data, run_dir, base, time.perf_counter() - t, reference=baseline_model,
                                metadata=metadata))
        except KeyboardInterrupt:
            echo("interrupted: writing the rows finished so far")
            break
        except Exception as e:  # noqa: BLE001 - one failing method must not lose the others' results
            rows.append({"family": _family(name), "method": name, "kind": "-",
                         "note": f"FAILED: {type(e).__name__}: {e}"})
        r = rows[-1]
        echo(f"{name}: " + (f"acc {_cell('test_acc', r)}% ({_cell('delta_acc', r)}), "
                            f"compression {_cell('compression', r)}, speed-up {_cell('speedup_b1', r)} / "
                            f"{_cell('speedup_b64', r)} (batch 1 / 64), "
                            f"{r['seconds']:.0f}s" if "test_acc" in r else r["note"]))
        _write(rows, run_dir)
    _write(rows, run_dir)
    plot(rows, run_dir / "comparison.png")
    echo(format_terminal(rows))
    return rows


def _write(rows: list[dict], run_dir: Path) -> None:
    (run_dir / "comparison.md").write_text(format_rows(rows) + "\n")
    (run_dir / "comparison.json").write_text(json.dumps(rows, indent=1, default=float))
    with open(run_dir / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
