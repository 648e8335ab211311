"""Reproduce Jia et al. 2018 (DropPruning) at Fashion-MNIST scale: LeNet-300-100, iterative pruning to ~22x.

    python -m scripts.pruning.jia2018_droppruning --seed 0     # full run (see papers/pruning/jia2018_droppruning.md)
    python -m scripts.pruning.jia2018_droppruning --smoke      # seconds-long check on a data subset

Data: Fashion-MNIST. Steps: train the dense baseline; prune it in ``stages`` prune/retrain rounds to the same
per-layer sparsities three times: deterministic magnitude pruning, drop-away only, and DropPruning (drop-away +
drop-back); report test accuracy and compression of each (same seed).

Paper: LeNet-5 on MNIST ~14.3x and VGG-16 on CIFAR-10 ~11.1x without accuracy loss; drop-back helps.
Ours: see papers/pruning/jia2018_droppruning.md (filled from the run folder's results.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import click
import numpy as np

from methods.pruning import jia2018_droppruning as dp
from methods.pruning.common import compression_ratio, train_epochs
from methods.pruning.report import write_csv
from nn.optim import SGD
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet_300_100"
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 6
    lr: float = 0.01
    final: dict = field(default_factory=lambda: {"1.weight": 0.96, "3.weight": 0.93, "5.weight": 0.75})
    stages: int = 3
    retrain_epochs: int = 1
    retrain_lr: float = 0.01
    pool: float = 0.1  # extra drop-away candidates, as a fraction of the survivors
    back: float = 0.02  # fraction of pruned weights revived per stage
    seed: int = 0


SMOKE = {"n_train": 1000, "n_test": 500, "epochs": 1, "stages": 2}


@click.command()
@paper_options("jia2018_droppruning")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "n_train": n_train, "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("jia2018_droppruning", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=1e-4)
    dense = model.state_dict()
    rows = [{"model": "baseline", "accuracy": run.accuracy(model, xte, yte), "compression": 1.0}]
    hist = []
    for label, pool, back in (("magnitude (deterministic)", 0.0, 0.0), ("drop-away only", cfg.pool, 0.0),
                              ("DropPruning", cfg.pool, cfg.back)):
        m = run.build(cfg.arch, shape, cfg.seed)
        m.load_state_dict(dense)
        rng = np.random.default_rng(cfg.seed + 1)

        def retrain(rev, m=m, rng=rng):
            opt = SGD(m, lr=cfg.retrain_lr, momentum=0.9)
            train_epochs(m, opt, xtr, ytr, cfg.retrain_epochs, 64, rng, step=lambda: rev.step(opt.step))
        rev, h = dp.drop_pruning(m, cfg.final, cfg.stages, retrain, pool, back, np.random.default_rng(cfg.seed + 2))
        rev.freeze()
        hist += [{"method": label, **r} for r in h]
        rows.append({"model": label, "accuracy": run.accuracy(m, xte, yte), "compression": compression_ratio(m)})
    write_csv(out / "history.csv", hist)
    run.write_results(out, cfg, rows)
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: 2 DropPruning rounds towards Han et al.'s LeNet-5 keep ratios
    (drop-away pool 10%, drop-back 2%), each followed by half an epoch of retraining on 10k images."""
    x, y = data.subset(10000)

    def retrain(rev):
        opt = SGD(model, lr=0.005, momentum=0.9)
        train_epochs(model, opt, x, y, data.epochs(0.5) or 1, 64, rng, step=lambda: rev.step(opt.step))
    final = {"0.weight": 0.34, "2.weight": 0.88, "5.weight": 0.92, "7.weight": 0.81}
    rev, _ = dp.drop_pruning(model, final, 2, retrain, pool=0.1, back=0.02, rng=rng)
    rev.freeze()
    return model


if __name__ == "__main__":
    main()
