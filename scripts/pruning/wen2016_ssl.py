"""Reproduce Structured Sparsity Learning (Wen et al. 2016) at Fashion-MNIST scale: neuron-wise group Lasso.

    python -m scripts.pruning.wen2016_ssl --seed 0                         # MLP 784-300-100-10, 60k images
    python -m scripts.pruning.wen2016_ssl --seed 0 --n-train 10000 --epochs 3   # the run in papers/pruning/wen2016_ssl.md
    python -m scripts.pruning.wen2016_ssl --smoke

Data: Fashion-MNIST. Steps: train the MLP twice from the same initialisation, with and without the group
Lasso on the rows of each hidden Linear ("filters") and the columns of the next Linear ("channels"),
optimised by proximal SGD; remove the all-zero groups by surgery. Reported: removed neurons, accuracy before
and after removal, parameters, MACs, latency.

Paper (MNIST MLP 784-500-300-10, Table 2): the input layer shrinks to 231 of 784 features (and LeNet conv
filters 20-50 -> 3-12) at about the baseline error. Ours: papers/pruning/wen2016_ssl.md.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.wen2016_ssl import group_prox, remove_zero_groups, ssl_plan
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 10
    lr: float = 0.05
    lam: float = 0.05  # lambda_n = lambda_c for every group
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1}


def mlp(seed: int):
    from nn.activations import ReLU
    from nn.basic import Flatten
    from nn.containers import Sequential
    from nn.linear import Linear
    r = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(784, 300, rng=r), ReLU(), Linear(300, 100, rng=r), ReLU(),
                      Linear(100, 10, rng=r))


@click.command()
@paper_options("wen2016_ssl")
@click.option("--lam", default=Defaults.lam, show_default=True)
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, lam, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "lam": lam, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    out = run.run_dir_for("wen2016_ssl", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    rows = []
    for penalty in (0.0, cfg.lam):
        model = mlp(cfg.seed)
        groups = {("1", "filter"): penalty, ("3", "channel"): penalty, ("3", "filter"): penalty,
                  ("5", "channel"): penalty}

        def step(opt, model=model, groups=groups):
            opt.step()
            group_prox(model, groups, cfg.lr)

        run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=0.0, step=step)
        plan = ssl_plan(model, ["1", "3"], shape)
        tag = f"lambda={penalty:g}"
        rows.append({"model": f"{tag}, dense", **run.measures(model, shape, xte, yte, latency=not smoke)})
        slim = remove_zero_groups(copy.deepcopy(model), ["1", "3"], shape)
        rows.append({"model": f"{tag}, zero groups removed", "hidden": f"{slim[1].weight.shape[0]}-"
                     f"{slim[3].weight.shape[0]}", "removed_neurons": (300 - len(plan.get("1", range(300))))
                     + (100 - len(plan.get("3", range(100)))),
                     **run.measures(slim, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows)
    run.echo_rows(rows, out)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: Eq. (3) group Lasso on the filters of conv1, conv2 and fc1
    (rows) and the channels of conv2 and fc2 (columns reading conv1's maps / fc1's neurons), optimised by the
    proximal step after every SGD step for 1 epoch on 6k images (lr 0.01; lambda 0.1 on the conv groups, 0.3 on
    fc1's rows, 0.25 on fc2's columns). The groups that reached exactly zero are removed by surgery (a zero
    filter, or a zero channel of the next layer, removes the neuron/map): in one epoch these are fc2 columns,
    i.e. fc1 neurons; the conv groups shrink but do not reach zero. Then 1 epoch of fine-tuning on 4k images.
    The quick budget (1500 images) multiplies lambda by 4: the same total shrinkage lr * lambda * steps."""
    from scripts.compare import retrain
    lr, n = 0.01, 1500 if data.quick else 6000
    groups = {k: lam * 6000 / n for k, lam in {("0", "filter"): 0.1, ("2", "channel"): 0.1, ("2", "filter"): 0.1,
                                                 ("5", "filter"): 0.3, ("7", "channel"): 0.25}.items()}
    retrain(model, data, rng, 1, lr=lr, n=n,
            step=lambda opt: (opt.step(), group_prox(model, groups, lr)))
    model = remove_zero_groups(model, ["0", "2", "5"], data.input_shape)
    return retrain(model, data, rng, 1, n=1000 if data.quick else 4000)


if __name__ == "__main__":
    main()
