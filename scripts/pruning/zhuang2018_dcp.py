"""Reproduce Zhuang et al. 2018 (Discrimination-aware Channel Pruning) at Fashion-MNIST scale.

    python -m scripts.pruning.zhuang2018_dcp --seed 0      # full run (LeNet-300-100, see papers/pruning/zhuang2018_dcp.md)
    python -m scripts.pruning.zhuang2018_dcp --smoke       # seconds-long check on a data subset

Data: Fashion-MNIST (``--dataset``/``--data-dir``). Steps: train the baseline; fit the auxiliary classifier of
stage 1 (after fc2); prune fc1's outputs (inputs of fc2) and fc2's outputs (inputs of fc3) by the greedy
selection of Algorithm 2 with lambda = 1 (DCP) and lambda = 0 (reconstruction only, the ThiNet-style
comparison); report accuracy before and after one fine-tuning epoch, parameters, MACs and latency.

Paper (ResNet-50, ImageNet, 30% channels removed): top-1 0.39% better than the baseline; on CIFAR-10 ResNet-56
(~50% channels) better than ThiNet and channel pruning. Ours: see papers/pruning/zhuang2018_dcp.md.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import click
import numpy as np

from methods.pruning import zhuang2018_dcp as dcp
from methods.pruning.report import write_csv
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet_300_100"
    n_train: int = 60000
    n_select: int = 3000  # images used by the channel selection (the paper uses the training set)
    n_test: int = 10000
    epochs: int = 6
    lr: float = 0.01
    keep: dict = field(default_factory=lambda: {"3": 0.2, "5": 0.5})  # input channels kept per layer
    stages: dict = field(default_factory=lambda: {"3": 5, "5": 6})  # stage end (child index) of each layer
    lam: float = 1.0  # lambda of Eq. (5) (paper: 1)
    step: int = 6  # channels added per greedy iteration (paper: 1)
    sgd_steps: int = 20
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 1000, "n_select": 500, "n_test": 500, "epochs": 1, "step": 30, "sgd_steps": 2}


@click.command()
@paper_options("zhuang2018_dcp")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "n_train": n_train, "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("zhuang2018_dcp", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=1e-4)
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke)}]
    xs, ys = xtr[:cfg.n_select], ytr[:cfg.n_select]
    heads = {name: (dcp.train_aux_head(model, end, xs, ys, np.random.default_rng(cfg.seed))
                    if end < len(model) else None) for name, end in cfg.stages.items()}
    pruned, hist = {}, []
    for label, lam in (("reconstruction only", 0.0), ("DCP", cfg.lam)):
        p, info = dcp.dcp_prune(model, shape, cfg.keep, cfg.stages, heads, xs, ys, lam,
                                np.random.default_rng(cfg.seed), step=cfg.step, sgd_steps=cfg.sgd_steps)
        hist += [{"method": label, **h} for h in info["history"]]
        pruned[label] = p
        rows.append({"model": label, **run.measures(p, shape, xte, yte, latency=not smoke)})
    for label, p in pruned.items():
        p = copy.deepcopy(p)
        run.train(p, xtr, ytr, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed + 1, weight_decay=1e-4)
        rows.append({"model": f"{label}, fine-tuned", **run.measures(p, shape, xte, yte, latency=False)})
    write_csv(out / "selection.csv", hist)
    run.write_results(out, cfg, rows)
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: DCP (Algorithms 1-2, joint loss Eq. (5) with lambda = 1) keeps
    50% of conv2's input channels (conv1 filters), 50% of fc1's input channels (conv2 filters, 4x4 blocks after
    Flatten) and 30% of fc2's inputs (fc1 neurons), greedily selected on 1,000 training images (5 channels per
    iteration, 8 SGD steps of batch 128 each); stage 1 ends after conv2's pooling with an auxiliary head (global
    average pooling + Linear(50, 10), Eq. (2)) fitted 1 epoch on the frozen baseline, stage 2 ends at the
    network's own loss; the channels are then removed (surgery) and the net retrained 1 epoch on 6k images."""
    from scripts.compare import retrain
    x, y = data.subset(500 if data.quick else 1000)
    keep = {"2": 0.5, "5": 0.5, "7": 0.3}
    stages = {"2": 4, "5": len(model), "7": len(model)}  # stage 1 = conv1 .. pool2, stage 2 = the rest
    heads = {"2": dcp.train_aux_head(model, 4, x, y, rng, epochs=1), "5": None, "7": None}
    sel = {"step": 10, "sgd_steps": 3} if data.quick else {"step": 5, "sgd_steps": 8}
    pruned, _ = dcp.dcp_prune(model, data.input_shape, keep, stages, heads, x, y, 1.0, rng, batch_size=128, **sel)
    return retrain(pruned, data, rng, 1, n=6000)


if __name__ == "__main__":
    main()
