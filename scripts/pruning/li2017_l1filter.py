"""Reproduce Li et al. 2017 (Pruning Filters for Efficient ConvNets) at Fashion-MNIST scale.

    python -m scripts.pruning.li2017_l1filter --seed 0                 # full run (LeNet-5, 60k training images)
    python -m scripts.pruning.li2017_l1filter --seed 0 --n-train 12000 --epochs 2   # the run in papers/pruning/li2017_l1filter.md
    python -m scripts.pruning.li2017_l1filter --smoke                  # seconds-long check on a data subset

Data: Fashion-MNIST (``--dataset``/``--data-dir``). Steps: train the baseline; scan each conv layer's
sensitivity (prune it alone by L1 rank at each ratio, no retraining: the paper's Fig. 2(b)); prune the chosen
ratios one-shot by L1 and, for comparison, at random; retrain the L1-pruned model briefly (Sec. 3.4); report
accuracy, parameters, MACs and measured latency at batch 1 and 64.

Paper (CIFAR-10 VGG-16): 34% fewer FLOPs, 64% fewer parameters, accuracy 93.25% -> 93.40% after retraining.
Ours: see papers/pruning/li2017_l1filter.md (filled from the run folder's results.json).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.li2017_l1filter import prune_filters, sensitivity
from methods.pruning.report import write_sensitivity
from methods.pruning.surgery import prunable_layers
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4  # baseline training
    lr: float = 0.01
    ratio: float = 0.5  # fraction of filters removed from every conv layer (paper: per-layer from the scan)
    scan_ratios: tuple = (0.25, 0.5, 0.75, 0.9)
    scan_test: int = 2000  # test images used by the sensitivity scan
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "scan_ratios": (0.5,), "scan_test": 128}


@click.command()
@paper_options("li2017_l1filter")
@click.option("--arch", default=Defaults.arch, show_default=True, help="lenet5 or vgg_small")
@click.option("--ratio", default=Defaults.ratio, show_default=True, help="fraction of filters pruned per conv layer")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
def main(dataset, data_dir, seed, run_dir, smoke, arch, ratio, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "arch": arch, "ratio": ratio, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    out = run.run_dir_for("li2017_l1filter", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke)}]

    convs = [n for n in prunable_layers(model, shape) if model.state_dict()[n + ".weight"].ndim == 4]
    xs, ys = xte[:cfg.scan_test], yte[:cfg.scan_test]
    sens = sensitivity(model, convs, (0.0, *cfg.scan_ratios), shape, lambda m: run.accuracy(m, xs, ys))
    write_sensitivity([{"layer": n, "ratio": r, "accuracy": a} for n, accs in sens.items()
                       for r, a in zip((0.0, *cfg.scan_ratios), accs)], out, title="L1 filter pruning, one layer")

    ratios = {n: cfg.ratio for n in convs}
    rnd = prune_filters(copy.deepcopy(model), ratios, shape, criterion="random", rng=np.random.default_rng(cfg.seed))
    rows.append({"model": "random, no retraining", **run.measures(rnd, shape, xte, yte, latency=False)})
    pruned = prune_filters(copy.deepcopy(model), ratios, shape)
    rows.append({"model": "L1, no retraining", **run.measures(pruned, shape, xte, yte, latency=False)})
    run.train(pruned, xtr, ytr, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed + 1)
    rows.append({"model": "L1, retrained", **run.measures(pruned, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows, {"sensitivity": sens, "ratios": ratios})
    run.echo_rows(rows, out)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: remove the 50% smallest-L1 filters of conv1 and conv2
    (Li et al. eq. 1, one shot), then retrain 1 epoch on 10k images."""
    from scripts.compare import retrain
    prune_filters(model, {"0": 0.5, "2": 0.5}, data.input_shape)
    return retrain(model, data, rng, 1, n=10000)


if __name__ == "__main__":
    main()
