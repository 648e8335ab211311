"""Reproduce He et al. 2018 (AMC: AutoML for Model Compression) at Fashion-MNIST scale.

    python -m scripts.pruning.he2018_amc --seed 0                   # full run (LeNet-300-100, see papers/pruning/he2018_amc.md)
    python -m scripts.pruning.he2018_amc --seed 0 --arch lenet5     # the same on the Caffe LeNet-5 (slow on 2 cores)
    python -m scripts.pruning.he2018_amc --smoke                    # seconds-long check on a data subset

Data: Fashion-MNIST (``--dataset``/``--data-dir``); the baseline trains on the first 55k training images, the
agent's reward is the accuracy on 1,000 held-out training images (55k-56k), the reconstruction uses 1,000
training images, and the test set is only used for the final table. Steps: train the baseline; search the
per-layer preserve ratios with the DDPG agent under a MAC budget; prune with the searched ratios and with one
uniform ratio at the same budget (both with least-squares reconstruction, no fine-tuning); report accuracy,
parameters, MACs and measured latency.

Paper (VGG-16 on ImageNet, 4x FLOPs): the searched policy is 2.7% more accurate than the hand-crafted one
before fine-tuning. Ours: see papers/pruning/he2018_amc.md (filled from the run folder's results.json).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import click
import numpy as np

from methods.pruning import he2018_amc as amc
from methods.pruning.report import write_csv
from methods.pruning.surgery import layer_macs
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet_300_100"
    n_train: int = 55000
    n_val: int = 1000  # held-out training images for the reward (paper: a held-out part of the training set)
    n_calib: int = 1000  # images for the least-squares reconstruction
    n_test: int = 10000
    epochs: int = 6
    lr: float = 0.01
    budget: float = 0.2  # fraction of conv/linear MACs kept (paper: 0.25 for VGG-16, 0.5 for MobileNet)
    search: amc.SearchCfg = field(default_factory=amc.SearchCfg)
    seed: int = 0


SMOKE = {"n_train": 1000, "n_val": 200, "n_calib": 300, "n_test": 500, "epochs": 1,
         "search": amc.SearchCfg(episodes=6, warmup=3, batch_size=4)}


@click.command()
@paper_options("he2018_amc")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
@click.option("--arch", default=Defaults.arch, show_default=True, help="lenet_300_100 or lenet5")
@click.option("--budget", default=Defaults.budget, show_default=True, help="fraction of MACs kept")
@click.option("--episodes", default=amc.SearchCfg.episodes, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs, arch, budget, episodes):
    cfg = replace(Defaults(), seed=seed, n_train=n_train, epochs=epochs, arch=arch, budget=budget,
                  search=amc.SearchCfg(episodes=episodes))
    cfg = replace(cfg, **SMOKE) if smoke else cfg
    out = run.run_dir_for("he2018_amc", run_dir)
    n_all = cfg.n_train + cfg.n_val
    xall, yall, xte, yte = run.load_data(dataset, data_dir, n_all, cfg.n_test)
    xtr, ytr, xv, yv = xall[:cfg.n_train], yall[:cfg.n_train], xall[cfg.n_train:], yall[cfg.n_train:]
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=1e-4)
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke)}]

    res = amc.search(copy.deepcopy(model), shape, cfg.budget, lambda m: run.accuracy(m, xv, yv),
                     xtr[:cfg.n_calib], np.random.default_rng(cfg.seed), cfg.search)
    layers = res["layers"]
    _, uniform = amc.uniform_counts(layer_macs(model, shape), layers, res["budget"])
    for name, counts in (("uniform", uniform), ("AMC search", res["counts"])):
        pruned = amc.prune_with_ratios(model, layers, counts, res["reg"], shape)
        rows.append({"model": name, "keep": counts, "val_accuracy": run.accuracy(pruned, xv, yv),
                     **run.measures(pruned, shape, xte, yte, latency=not smoke)})
    write_csv(out / "episodes.csv", res["history"])
    run.write_results(out, cfg, rows, {"layers": [pl.__dict__ for pl in layers], "budget_macs": res["budget"],
                                       "dense_macs": res["dense_macs"]})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: AMC's resource-constrained search (Algorithm 1, DDPG agent of
    Sec. 3.4, state Eq. (1), action wall) for the preserve ratios of conv1's filters, conv2's filters and fc1's
    neurons under a 50% conv/linear MAC budget, with a tiny search: 16 episodes (8 random warm-up ones), reward
    = accuracy without fine-tuning on the last 1,000 training images (the baseline saw them, but nothing else in
    the demo does: the reconstruction uses the first 1,000 images), each policy pruned by sum |W| with a
    least-squares refit; the best policy is applied and the net retrained 1 epoch on 6k images."""
    from nn.train import evaluate
    from scripts.compare import retrain
    n_val = 300 if data.quick else 1000
    xv, yv = data.x_train[-n_val:], data.y_train[-n_val:]
    x_cal, _ = data.subset(1000 if not data.quick else 300)
    cfg = amc.SearchCfg(episodes=8 if data.quick else 16, warmup=4 if data.quick else 8, batch_size=8)
    res = amc.search(model, data.input_shape, 0.5, lambda m: evaluate(m, xv, yv)[1], x_cal, rng, cfg)
    pruned = amc.prune_with_ratios(model, res["layers"], res["counts"], res["reg"], data.input_shape)
    return retrain(pruned, data, rng, 1, n=6000)


if __name__ == "__main__":
    main()
