"""Reports shared by the pruning papers: per-layer table, model summary, sensitivity analysis (CSV + PNG).

* ``layer_table(model, input_shape, reference=None)``: one row per layer with weights (from ``nn.profile``):
  weight shape before (in ``reference``, the unpruned model) and after, parameters, nonzeros, sparsity,
  dense MACs, *effective* MACs (MACs x nonzero fraction of the weight: what a sparse kernel must do),
  bytes as stored densely and as CSR (float values + int32 column indices + int32 row pointers).
* ``model_summary``: the totals of that table, plus compression (params / nonzeros) and the
  MAC ratio against the reference.
* ``sensitivity(...)``: prune one layer at a time by magnitude at each ratio, with no retraining, and record
  the accuracy (Han et al. 2015 Fig. 6, Li et al. 2017 Fig. 2); ``write_sensitivity`` saves CSV and PNG.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from methods.pruning.common import magnitude_mask, prunable_names
from nn.checkpoint import jsonable
from nn.module import Module
from nn.profile import profile

TABLE_COLS = ("name", "type", "shape_before", "shape_after", "params", "nonzeros", "sparsity", "macs",
              "effective_macs", "bytes_dense", "bytes_csr")


def _weight(m: Module) -> np.ndarray | None:
    w = m._parameters.get("weight")
    return w if w is not None and w.ndim >= 2 else None


def csr_bytes(w: np.ndarray) -> int:
    """Bytes of ``w`` stored as CSR over its rows (out channels): nnz values + nnz int32 indices + row pointers."""
    nnz = int(np.count_nonzero(w))
    return nnz * (w.dtype.itemsize + 4) + 4 * (w.shape[0] + 1)


def layer_table(model: Module, input_shape: tuple[int, ...], reference: Module | None = None) -> list[dict]:
    """Rows for every layer with a >= 2-d ``weight`` (Linear, Conv2d), in execution order.

    Parameters
    ----------
    model : the pruned (masked, or physically smaller) model
    input_shape : full input shape with batch, e.g. (1, 1, 28, 28); MACs are per this batch
    reference : the model before pruning (for ``shape_before``); defaults to ``model`` itself
    """
    ref_w = {n: _weight(m).shape for n, m in (reference or model).named_modules() if _weight(m) is not None}
    mods = dict(model.named_modules())
    rows = []
    for r in profile(model, input_shape, dtype=model.dtype or np.float32, latency=False):
        m = mods.get(r["name"] if r["name"] != "(model)" else "")
        w = _weight(m) if m is not None else None
        if w is None:
            continue
        nz = int(np.count_nonzero(w))
        rows.append({"name": r["name"], "type": r["type"], "shape_before": tuple(ref_w.get(r["name"], w.shape)),
                     "shape_after": tuple(w.shape), "params": int(w.size), "nonzeros": nz,
                     "sparsity": 1.0 - nz / w.size if w.size else 0.0, "macs": int(r["macs"]),
                     "effective_macs": round(r["macs"] * nz / w.size) if w.size else 0,
                     "bytes_dense": int(w.nbytes), "bytes_csr": csr_bytes(w)})
    return rows


def model_summary(model: Module, input_shape: tuple[int, ...], reference: Module | None = None) -> dict:
    """Totals over ``layer_table`` rows plus ``compression`` (weights / nonzeros, Han 2015's measure),
    ``mac_ratio`` (reference dense MACs / effective MACs) and all-parameter counts from ``nn.profile``."""
    rows = layer_table(model, input_shape, reference)
    ref_rows = layer_table(reference, input_shape) if reference is not None else rows
    out = {k: int(sum(r[k] for r in rows)) for k in ("params", "nonzeros", "macs", "effective_macs",
                                                      "bytes_dense", "bytes_csr")}
    ref_params = sum(r["params"] for r in ref_rows)
    out["compression"] = ref_params / out["nonzeros"] if out["nonzeros"] else float("inf")
    out["sparsity"] = 1.0 - out["nonzeros"] / ref_params if ref_params else 0.0
    ref_macs = sum(r["macs"] for r in ref_rows)
    out["mac_ratio"] = ref_macs / out["effective_macs"] if out["effective_macs"] else float("inf")
    all_rows = profile(model, input_shape, dtype=model.dtype or np.float32, latency=False)
    out["all_params"] = int(sum(r["params"] for r in all_rows))
    out["all_nonzeros"] = int(sum(r["nonzeros"] for r in all_rows))
    return out


def format_table(rows: list[dict], cols: Iterable[str] = TABLE_COLS) -> str:
    """Markdown table of ``rows``; sparsity as a percentage, shapes as AxB."""
    cols = list(cols)

    def fmt(c, v):
        if c == "sparsity":
            return f"{100 * v:.1f}%"
        if isinstance(v, tuple):
            return "x".join(map(str, v))
        if isinstance(v, float):
            return f"{v:.4g}"
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(c, r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(path: str | Path, rows: list[dict], cols: Iterable[str] | None = None) -> Path:
    """Rows as CSV (tuples written as AxB)."""
    path = Path(path)
    cols = list(cols or (rows[0].keys() if rows else []))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["x".join(map(str, r[c])) if isinstance(r.get(c), tuple) else r.get(c, "") for c in cols])
    return path


# ----------------------------------------------------------------------------------- sensitivity


def sensitivity(model: Module, ratios: Iterable[float], evaluate: Callable[[Module], float],
                names: Iterable[str] | None = None) -> list[dict]:
    """Accuracy when one layer alone is magnitude-pruned at each ratio (no retraining).

    The weights are restored after each point, so ``model`` is unchanged on return.

    Parameters
    ----------
    evaluate : model -> accuracy (or any score) on held-out data
    names : weights to analyse (default: all prunable weights)

    Returns
    -------
    rows ``{"layer", "ratio", "accuracy"}``, plus one ``layer="(dense)"``, ``ratio=0`` row
    """
    params = dict(model.named_parameters())
    names = list(names) if names is not None else prunable_names(model)
    rows = [{"layer": "(dense)", "ratio": 0.0, "accuracy": float(evaluate(model))}]
    for n in names:
        w = params[n]
        saved = w.copy()
        for r in ratios:
            w *= magnitude_mask(saved, r)
            rows.append({"layer": n, "ratio": float(r), "accuracy": float(evaluate(model))})
            w[...] = saved
    return rows


def write_sensitivity(rows: list[dict], out_dir: str | Path, stem: str = "sensitivity",
                      title: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and a ``<stem>.png`` plot (accuracy vs pruned fraction, one line per layer)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(out_dir / f"{stem}.csv", rows, ["layer", "ratio", "accuracy"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    dense = [r["accuracy"] for r in rows if r["layer"] == "(dense)"]
    for layer in dict.fromkeys(r["layer"] for r in rows if r["layer"] != "(dense)"):
        pts = [(r["ratio"], r["accuracy"]) for r in rows if r["layer"] == layer]
        ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=layer)
    if dense:
        ax.axhline(100 * dense[0], color="gray", ls="--", lw=0.8, label="dense")
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "sensitivity: one layer pruned at a time, no retraining")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png_path = out_dir / f"{stem}.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return csv_path, png_path


# ----------------------------------------------------------------------------------- run folders


def run_folder(paper_id: str, run_dir: str | Path | None = None) -> Path:
    """``run_dir`` or ``runs/<paper_id>-<timestamp>``, created."""
    import time
    path = Path(run_dir) if run_dir else Path("runs") / f"{paper_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run(run_dir: Path, config, results: dict, tables: dict[str, list[dict]] | None = None) -> None:
    """``config.json`` (resolved configuration), ``results.json`` and one ``<name>.csv`` per table."""
    import json
    (run_dir / "config.json").write_text(json.dumps(jsonable(config), indent=1))
    (run_dir / "results.json").write_text(json.dumps(jsonable(results), indent=1))
    for name, rows in (tables or {}).items():
        if rows:
            write_csv(run_dir / f"{name}.csv", [{k: (v if not isinstance(v, dict) else jsonable(v))
                                                 for k, v in r.items()} for r in rows])
