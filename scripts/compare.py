"""The surveys' comparison: one baseline, every implemented method at its default setting, one table.

    python -m scripts.lwnn demo            # default: ~10 minutes on 2 cores
    python -m scripts.lwnn demo --full     # longer baseline training and retraining

A LeNet-5 (Caffe variant) is trained on Fashion-MNIST; each method of ``METHODS`` then compresses a copy of it
with the small, fixed budget written in its entry, and every result goes through the same measurement code:
test accuracy and its change, parameters, nonzero weights, bytes on disk (the HDF5 checkpoint of the *deployed*
model: CSR arrays for unstructured pruning, a smaller dense model for structured pruning), MACs, and measured
batch-1 / batch-64 latency with the speed-up over the baseline. The table is printed and written to the run
folder (``comparison.md``, ``comparison.csv``, ``comparison.json``) with ``comparison.png`` (accuracy against
compression).

A method entry is ``(paper_id, needs, fn)`` with ``fn(model, data, rng) -> compressed model``: it receives a
deep copy of the baseline, may mask it (then it is deployed on the sparse kernel) or shrink it by surgery, and
must stay within its budget (data.quick selects the smoke budget). Methods whose paper needs something LeNet-5
lacks (``needs``, e.g. BatchNorm for network slimming) are reported as such, not silently dropped.
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
from nn.profile import model_latency, profile, totals
from nn.train import evaluate

COLUMNS = ["method", "paper", "kind", "test_acc", "delta_acc", "params", "nonzeros", "compression",
           "bytes_on_disk", "disk_ratio", "MACs", "latency_b1_ms", "latency_b64_ms", "speedup_b64", "seconds",
           "note"]


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


# ----------------------------------------------------------------------------------------------- methods
# Each function documents its budget; the papers' own scripts run the full experiments.

def _han2015(model, data, rng):
    from methods.pruning.han2015_prune import RetrainCfg, iterative_prune
    # Han et al. Table 2 keeps 66% / 12% / 8% / 19% of LeNet-5's conv1 / conv2 / fc1 / fc2 weights.
    keep = {"0.weight": 0.66, "2.weight": 0.12, "5.weight": 0.08, "7.weight": 0.19}
    x, y = data.subset(20000)
    iterative_prune(model, x, y, keep, rounds=2, retrain=RetrainCfg(epochs=data.epochs(1)), rng=rng)
    return model


def _li2017(model, data, rng):
    from methods.pruning.common import train_epochs
    from methods.pruning.li2017_l1filter import prune_filters
    from nn.optim import SGD
    prune_filters(model, {"0": 0.5, "2": 0.5}, data.input_shape)
    x, y = data.subset(20000)
    train_epochs(model, SGD(model, lr=0.005, momentum=0.9, weight_decay=5e-4), x, y, data.epochs(1), 64, rng)
    return model


def _retrain(model, data, rng, epochs: float = 1, lr: float = 0.005):
    from methods.pruning.common import train_epochs
    from nn.optim import SGD
    x, y = data.subset(20000)
    train_epochs(model, SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4), x, y, data.epochs(epochs), 64, rng)
    return model


def _dns(model, data, rng):
    from methods.pruning.guo2016_dns import DNSCfg, surgery
    x, y = data.subset(20000)
    # c of t = mean|W| + c std|W| per layer: conv layers gently, the 400K-weight fc1 hard (Guo et al. Table 1)
    surgery(model, x, y, DNSCfg(c={"0.weight": -0.3, "2.weight": 0.4, "5.weight": 1.0, "7.weight": 0.3},
                                epochs=data.epochs(1)), rng)
    return model


def _lottery(model, data, rng):
    from methods.pruning.frankle2019_lottery import find_ticket, rewind
    if data.theta0 is None:
        raise ValueError("the lottery ticket needs the baseline's initial weights (DemoData.theta0)")
    trained = model
    x, y = data.subset(20000)
    keep = {"0.weight": 0.5, "2.weight": 0.2, "5.weight": 0.1, "7.weight": 0.3}
    rewind(trained, data.theta0, {})
    find_ticket(trained, data.theta0, x, y, keep, rounds=2, epochs=data.epochs(1), rng=rng)
    return _retrain(trained, data, rng, 2, lr=0.01)


def _thinet(model, data, rng):
    from methods.pruning.luo2017_thinet import thinet_prune
    x, _ = data.subset(2000)
    thinet_prune(model, "0", x[:500], 0.5, data.input_shape, rng=rng)
    return _retrain(model, data, rng)


def _he2017(model, data, rng):
    from methods.pruning.he2017_channelprune import channel_prune
    x, _ = data.subset(2000)
    channel_prune(model, "0", x[:500], 0.5, data.input_shape, rng=rng)
    return _retrain(model, data, rng)


def _apoz(model, data, rng):
    from methods.pruning.hu2016_apoz import trim
    x, _ = data.subset(2000)
    trim(model, ["5"], x, data.input_shape, k_std=0.0)  # fc1 is the only layer followed by a ReLU
    return _retrain(model, data, rng)


def _sfp(model, data, rng):
    from methods.pruning.common import train_epochs
    from methods.pruning.he2018_sfp import remove_zero_filters, soft_prune_step
    from nn.optim import SGD
    x, y = data.subset(20000)
    layers = ["0", "2"]
    opt = SGD(model, lr=0.005, momentum=0.9, weight_decay=5e-4)
    for _ in range(max(data.epochs(2), 1)):  # He et al.: zero the smallest filters after every epoch, keep training them
        soft_prune_step(model, layers, 0.3)
        train_epochs(model, opt, x, y, 1, 64, rng)
    soft_prune_step(model, layers, 0.3)
    return remove_zero_filters(model, layers, data.input_shape)


def _droppruning(model, data, rng):
    from methods.pruning.common import train_epochs
    from methods.pruning.jia2018_droppruning import drop_pruning
    from nn.optim import SGD
    x, y = data.subset(20000)

    def retrain(rev):
        opt = SGD(model, lr=0.005, momentum=0.9)
        train_epochs(model, opt, x, y, data.epochs(0.5) or 1, 64, rng, step=lambda: rev.step(opt.step))
    final = {"0.weight": 0.34, "2.weight": 0.88, "5.weight": 0.92, "7.weight": 0.81}  # as Han's keep ratios
    rev, _ = drop_pruning(model, final, 2, retrain, pool=0.1, back=0.02, rng=rng)
    rev.freeze()
    return model


METHODS: list[tuple[str, str, Callable]] = [
    ("han2015_prune", "", _han2015),
    ("guo2016_dns", "", _dns),
    ("frankle2019_lottery", "", _lottery),
    ("li2017_l1filter", "", _li2017),
    ("luo2017_thinet", "", _thinet),
    ("he2017_channelprune", "", _he2017),
    ("hu2016_apoz", "", _apoz),
    ("he2018_sfp", "", _sfp),
    ("jia2018_droppruning", "", _droppruning),
    ("lecun1989_obd", "mlp", None),
    ("hassibi1993_obs", "mlp", None),
    ("liu2017_slimming", "batchnorm", None),
    # Not yet given a demo budget: each runs its own experiment (the reproduction rows in papers/README.md).
    ("wen2016_ssl", "own run: group-Lasso training of LeNet-300-100", None),
    ("zhuang2018_dcp", "own run: auxiliary-head channel selection", None),
    ("he2018_amc", "own run: DDPG search over per-layer ratios", None),
    ("srinivas2017_gates", "own run: gated training of LeNet-300-100", None),
    ("setiono1997_nnfs", "own run: input-feature selection on a small MLP", None),
    ("anwar2017_structprune", "own run: particle-filter kernel-mask search", None),
    ("lin2019_ssr", "own run: AULM structured-sparsity training", None),
    ("tian2017_ldaprune", "own run: 2-class LDA channel selection", None),
    ("hu2019_mlcp", "own run: multi-loss channel selection", None),
]


# ----------------------------------------------------------------------------------------------- measuring

def measure(name: str, model: Module, data: DemoData, run_dir: Path, baseline: dict | None,
            seconds: float, note: str = "") -> dict:
    """Every row of the table comes from here: accuracy, counts, deployed bytes on disk, MACs, latency."""
    from methods.pruning.common import deploy_sparse
    kind = "dense"
    deployed = model
    if _has_masks(model):
        deployed = deploy_sparse(model)
        kind = "sparse (CSR)"
    _, acc = evaluate(deployed, data.x_test, data.y_test)
    rows = profile(deployed, (1, *data.input_shape), latency=False)
    tot = totals(rows)
    params = int(sum(p.size for _, p in model.named_parameters()))
    nonzeros = int(sum(np.count_nonzero(p) for _, p in model.named_parameters()))
    path = save_checkpoint(run_dir / "models" / f"{name}.h5", deployed, metadata={"method": name})
    nbytes = path.stat().st_size
    lat1 = model_latency(deployed, 1, data.input_shape)["median_ms"]
    lat64 = model_latency(deployed, 64, data.input_shape)["median_ms"]
    row = {"method": name, "paper": name if name != "baseline" else "-", "kind": kind, "test_acc": acc,
           "params": params, "nonzeros": nonzeros, "bytes_on_disk": nbytes, "MACs": int(tot.get("macs", 0)),
           "latency_b1_ms": lat1, "latency_b64_ms": lat64, "seconds": seconds, "note": note}
    if baseline is None:
        row.update(delta_acc=0.0, compression=1.0, disk_ratio=1.0, speedup_b64=1.0)
    else:
        row.update(delta_acc=acc - baseline["test_acc"],
                   compression=baseline["nonzeros"] / max(nonzeros, 1),
                   disk_ratio=baseline["bytes_on_disk"] / nbytes,
                   speedup_b64=baseline["latency_b64_ms"] / lat64)
    return row


def format_rows(rows: list[dict]) -> str:
    def fmt(c, v):
        if v is None or v == "":
            return ""
        if c in ("test_acc", "delta_acc"):
            return f"{100 * v:+.2f}" if c == "delta_acc" else f"{100 * v:.2f}"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(fmt(c, r.get(c)) for c in COLUMNS) + " |" for r in rows]
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
            methods: list[tuple[str, str, Callable]] | None = None, echo=print) -> list[dict]:
    """Compress copies of ``baseline_model`` with every method and write the comparison to ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    methods = METHODS if methods is None else methods
    base = measure("baseline", baseline_model, data, run_dir, None, 0.0)
    rows = [base]
    echo(f"baseline: test accuracy {100 * base['test_acc']:.2f}%")
    has_bn = any(type(m).__name__.startswith("BatchNorm") for m in baseline_model.modules())
    for i, (name, needs, fn) in enumerate(methods):
        if (needs == "batchnorm" and not has_bn) or needs == "mlp" or fn is None:
            why = {"batchnorm": "needs BatchNorm; LeNet-5 has none",
                   "mlp": "second-order pass written for MLPs"}.get(needs, needs)
            rows.append({"method": name, "paper": name, "kind": "-", "note": f"{why}: python -m scripts.{name}"})
            continue
        t = time.perf_counter()
        try:
            model = fn(copy.deepcopy(baseline_model), data, np.random.default_rng(seed + 1 + i))
            rows.append(measure(name, model, data, run_dir, base, time.perf_counter() - t))
        except KeyboardInterrupt:
            echo("interrupted: writing the rows finished so far")
            break
        except Exception as e:  # noqa: BLE001 - one failing method must not lose the others' results
            rows.append({"method": name, "paper": name, "kind": "-", "note": f"FAILED: {type(e).__name__}: {e}"})
        r = rows[-1]
        echo(f"{name}: " + (f"acc {100 * r['test_acc']:.2f}% ({100 * r['delta_acc']:+.2f}), "
                            f"compression {r['compression']:.1f}x, speed-up {r['speedup_b64']:.2f}x, "
                            f"{r['seconds']:.0f}s" if "test_acc" in r else r["note"]))
        _write(rows, run_dir)
    _write(rows, run_dir)
    plot(rows, run_dir / "comparison.png")
    echo(format_rows(rows))
    return rows


def _write(rows: list[dict], run_dir: Path) -> None:
    (run_dir / "comparison.md").write_text(format_rows(rows) + "\n")
    (run_dir / "comparison.json").write_text(json.dumps(rows, indent=1, default=float))
    with open(run_dir / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
