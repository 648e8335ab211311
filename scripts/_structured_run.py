"""Plumbing shared by the structured-pruning scripts (li2017_l1filter, liu2017_slimming, luo2017_thinet, ...):
data loading, the run folder, baseline training, the measures every paper reports, and result files.

Not a paper: each ``scripts/<family>/<id>.py`` holds its own defaults and its method's steps and calls these helpers.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from methods.pruning.common import train_epochs
from nn.module import Module
from nn.optim import SGD
from nn.profile import model_latency, profile, totals
from nn.train import evaluate


def run_dir_for(paper_id: str, run_dir: str | None) -> Path:
    path = Path(run_dir) if run_dir else Path("runs") / f"{paper_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_data(dataset: str, data_dir: str | None, n_train: int, n_test: int):
    """(x_train, y_train, x_test, y_test) float32, standardised with the training set's mean and std."""
    from nn.data import load_dataset
    xtr, ytr = load_dataset(dataset, data_dir, "train")
    xte, yte = load_dataset(dataset, data_dir, "test")
    mean, std = np.float32(xtr.mean(dtype=np.float64)), np.float32(xtr.std(dtype=np.float64))
    return ((xtr[:n_train] - mean) / std).astype(np.float32), ytr[:n_train], \
        ((xte[:n_test] - mean) / std).astype(np.float32), yte[:n_test]


def build(arch: str, x_shape: tuple[int, ...], seed: int) -> Module:
    from nn.models import build as zoo
    kw = {"in_channels": x_shape[0]}
    if arch in ("vgg_small", "lenet5", "lenet_300_100"):
        kw["image_size"] = x_shape[1]
    return zoo(arch, rng=np.random.default_rng(seed), **kw)


def train(model: Module, x, y, epochs: int, lr: float, seed, weight_decay: float = 5e-4,
          batch_size: int = 64, step=None) -> list[float]:
    """SGD (momentum 0.9) for ``epochs``; ``seed`` is an int or a Generator (used as is); ``step(opt)`` replaces
    ``opt.step()`` (e.g. to add a penalty's gradient first)."""
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return train_epochs(model, opt, x, y, epochs, batch_size, np.random.default_rng(seed),
                        step=None if step is None else (lambda: step(opt)))


def accuracy(model: Module, x, y) -> float:
    return evaluate(model, x, y)[1]


def measures(model: Module, input_shape: tuple[int, ...], x_test, y_test, latency: bool = True) -> dict:
    """Accuracy, parameters, MACs and (optionally) measured latency at batch 1 and 64 (nn.profile)."""
    t = totals(profile(model, (1, *input_shape), latency=False))
    out = {"accuracy": accuracy(model, x_test, y_test), "params": t["params"], "macs": t["macs"]}
    if latency:
        out["latency_ms_b1"] = model_latency(model, 1, input_shape)["median_ms"]
        out["latency_ms_b64"] = model_latency(model, 64, input_shape)["median_ms"]
    return out


def write_results(run_dir: Path, cfg, rows: list[dict], extra: dict | None = None) -> None:
    """config.json (resolved defaults), results.json and results.csv (one row per model variant)."""
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1, default=str))
    (run_dir / "results.json").write_text(json.dumps({"rows": rows, **(extra or {})}, indent=1, default=str))
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(run_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def echo_rows(rows: list[dict], out: Path) -> None:
    import click
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def relative_error(model: Module, ref: Module, layer: str, x) -> float:
    """||y - y_ref||^2 / ||y_ref||^2 of ``layer``'s output on x (the next-layer reconstruction error)."""
    from methods.pruning.surgery import capture
    y, y0 = capture(model, [layer], x)[layer][1], capture(ref, [layer], x)[layer][1]
    return float(np.sum((y.astype(np.float64) - y0) ** 2) / np.sum(y0.astype(np.float64) ** 2))


def reconstruction_experiment(paper_id: str, cfg, methods: dict, dataset: str, data_dir, run_dir, smoke: bool):
    """Train a baseline, then prune layer ``cfg.layer`` with each of ``methods`` ({name: fn(model, x_sample) ->
    pruned model}) at the same ratio: next-layer reconstruction error, accuracy before/after fine-tuning."""
    import copy

    from methods.pruning.surgery import next_consumer
    out = run_dir_for(paper_id, run_dir)
    xtr, ytr, xte, yte = load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = build(cfg.arch, shape, cfg.seed)
    train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    nxt = next_consumer(model, cfg.layer, shape)
    rows = [{"model": "baseline", **measures(model, shape, xte, yte, latency=not smoke)}]
    xs, xh = xtr[:cfg.n_sample_images], xte[:cfg.n_sample_images]
    for name, fn in methods.items():
        pruned = fn(copy.deepcopy(model), xs)
        err = relative_error(pruned, model, nxt, xh)
        rows.append({"model": f"{name}, no fine-tuning", "next_layer_rel_error": err,
                     **measures(pruned, shape, xte, yte, latency=False)})
        train(pruned, xtr, ytr, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed + 1)
        rows.append({"model": f"{name}, fine-tuned", **measures(pruned, shape, xte, yte, latency=not smoke)})
    write_results(out, cfg, rows, {"layer": cfg.layer, "next_layer": nxt})
    echo_rows(rows, out)
    return rows
