"""Reproduce Soft Filter Pruning (He et al. 2018) at Fashion-MNIST scale: soft vs hard pruning, same schedule.

    python -m scripts.pruning.he2018_sfp --seed 0                          # LeNet-5, 60k training images
    python -m scripts.pruning.he2018_sfp --seed 0 --n-train 12000 --epochs 4   # a shorter run
    python -m scripts.pruning.he2018_sfp --smoke                           # seconds-long check on a data subset

Data: Fashion-MNIST (``--dataset``/``--data-dir``). Steps, all three from the same initialisation and the same
data order (seed): train LeNet-5 dense (baseline); train it with SFP, i.e. after every epoch zero the
``rate`` smallest-L2 filters of every conv layer and keep training them (Algorithm 1); train it with hard
pruning on the same schedule (zeroed filters masked and frozen). Remove the zero filters of both (the compact
models, no fine-tuning) and report accuracy, parameters, MACs and measured latency at batch 1 and 64, plus how
many zeroed filters grew back in each SFP epoch.

Paper (CIFAR-10 ResNet-20/56/110, P = 30% per layer, pruned every epoch, from scratch): ~40-50% fewer FLOPs,
accuracy drop 0.2-1.4 points, soft better than hard at the same rate; ImageNet ResNet-101: 42% fewer FLOPs,
top-5 +0.2%. Ours: papers/pruning/he2018_sfp.md (filled from the run folder's results.json).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.common import train_epochs
from methods.pruning.he2018_sfp import filter_l2_norms, remove_zero_filters, soft_prune_step
from nn.optim import SGD
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    layers: tuple = ("0", "2")  # both conv layers (the paper prunes every conv layer)
    rate: float = 0.3  # P_i, the same for every layer (paper's CIFAR-10 setting)
    prune_every: int = 1  # epochs between pruning steps (paper: every epoch)
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4  # from scratch, for all three models
    lr: float = 0.01
    weight_decay: float = 5e-4  # paper: 5e-4, momentum 0.9
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 2}


def train_pruned(model, x, y, cfg, hard: bool) -> list[dict]:
    """Train ``cfg.epochs`` epochs (one optimizer, one data-order rng: with rate 0 this is the baseline run),
    pruning every ``cfg.prune_every`` epochs. Returns per pruning step {epoch, zeroed indices, revived count}."""
    opt = SGD(model, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    rng, mods, steps = np.random.default_rng(cfg.seed), dict(model.named_modules()), []
    for epoch in range(1, cfg.epochs + 1):
        train_epochs(model, opt, x, y, 1, 64, rng)
        if epoch % cfg.prune_every:
            continue
        # filters zeroed at the previous step that this epoch's updates made nonzero again (0 for hard)
        revived = sum(int((filter_l2_norms(mods[n].weight)[steps[-1]["zeroed"][n]] > 0).sum())
                      for n in cfg.layers) if steps else 0
        steps.append({"epoch": epoch, "revived": revived,
                      "zeroed": soft_prune_step(model, list(cfg.layers), cfg.rate, hard=hard)})
    return steps


@click.command()
@paper_options("he2018_sfp")
@click.option("--rate", default=Defaults.rate, show_default=True, help="fraction of filters zeroed per conv layer")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="training epochs (all three models)")
def main(dataset, data_dir, seed, run_dir, smoke, rate, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "rate": rate, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    out = run.run_dir_for("he2018_sfp", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    init = run.build(cfg.arch, shape, cfg.seed)
    dense, soft, hard = copy.deepcopy(init), copy.deepcopy(init), copy.deepcopy(init)
    run.train(dense, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=cfg.weight_decay)
    rows = [{"model": "baseline", **run.measures(dense, shape, xte, yte, latency=not smoke)}]

    steps = {"soft": train_pruned(soft, xtr, ytr, cfg, hard=False),
             "hard": train_pruned(hard, xtr, ytr, cfg, hard=True)}
    rows.append({"model": "SFP, zero filters in place", "revived_total": sum(s["revived"] for s in steps["soft"]),
                 **run.measures(soft, shape, xte, yte, latency=False)})
    for name, model in (("SFP", soft), ("hard", hard)):
        remove_zero_filters(model, list(cfg.layers), shape)
        filters = {f"filters_{n}": int(dict(model.named_modules())[n].weight.shape[0]) for n in cfg.layers}
        rows.append({"model": f"{name}, compact", **filters, **run.measures(model, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows, {"steps": {k: [{**s, "zeroed": {n: i.tolist() for n, i in s["zeroed"].items()}}
                                                      for s in v] for k, v in steps.items()}})
    run.echo_rows(rows, out)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: soft filter pruning of 30% of conv1 and conv2 filters, zeroed
    after every one of 2 epochs on 10k images and kept trainable (He et al. Alg. 1), then removed."""
    x, y = data.subset(10000)
    layers = ["0", "2"]
    opt = SGD(model, lr=0.005, momentum=0.9, weight_decay=5e-4)
    for _ in range(max(data.epochs(2), 1)):
        soft_prune_step(model, layers, 0.3)
        train_epochs(model, opt, x, y, 1, 64, rng)
    soft_prune_step(model, layers, 0.3)
    return remove_zero_filters(model, layers, data.input_shape)


if __name__ == "__main__":
    main()
