"""Reproduce Deep LDA-pruned nets (Tian et al. 2017) at Fashion-MNIST scale, on a 2-class task.

    python -m scripts.pruning.tian2017_ldaprune --seed 0                           # LeNet-5, 60k training images
    python -m scripts.pruning.tian2017_ldaprune --seed 0 --n-train 6000 --epochs 2    # the run in papers/
    python -m scripts.pruning.tian2017_ldaprune --smoke

Data: Fashion-MNIST; the task is one pair of classes (``--pair``, default Pullover vs Coat), standing in for
the paper's male/female. Steps: train the 10-class baseline on the first ``n_train`` images; on held-out
training images of the two classes, rank the last conv layer's channels by their Fisher ratio (LDA with the
decorrelation assumption), keep ``keep_top`` of them, back-track the first conv to ``keep_low`` filters by
their connections to the kept ones, remove the rest (surgery), and replace the FC head by a linear SVM or a
Gaussian Bayes classifier on the kept features. Compared with the baseline's FC head restricted to the two
classes and with the same counts of random channels. Reported: accuracy, parameters, MACs, latency.

Paper (VGG-16, LFW gender): four conv5_3 neurons suffice, about 70x smaller and 11x faster at comparable
accuracy. Ours: papers/pruning/tian2017_ldaprune.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.tian2017_ldaprune import lda_prune
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"  # Conv(20) - pool - Conv(50) - pool - Flatten - FC 500 - ReLU - FC 10
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4
    lr: float = 0.01
    pair: tuple = (2, 4)  # Pullover, Coat
    n_fit: int = 6000  # held-out training images (after n_train) for LDA and the new head
    keep_top: int = 4  # paper: 4 conv5_3 neurons on LFW
    keep_low: int = 8  # first-conv filters kept by back-tracking
    top: str = "2"  # LeNet-5 layer names: last conv, its pooling (the summary), the Flatten
    summary: str = "3"
    feature_end: str = "4"
    low: str = "0"
    seed: int = 0


SMOKE = {"n_train": 512, "n_test": 512, "epochs": 1, "n_fit": 1000}


def pair_subset(x, y, pair):
    sel = np.isin(y, pair)
    return x[sel], (y[sel] == pair[1]).astype(np.int64), y[sel]


@click.command()
@paper_options("tian2017_ldaprune")
@click.option("--pair", default=Defaults.pair, nargs=2, type=int, show_default=True, help="the two classes")
@click.option("--keep-top", default=Defaults.keep_top, show_default=True)
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, pair, keep_top, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "pair": tuple(pair), "keep_top": keep_top, "n_train": n_train,
                                 "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("tian2017_ldaprune", run_dir)
    n_all = min(cfg.n_train + cfg.n_fit, 60000)
    xall, yall, xte, yte = run.load_data(dataset, data_dir, n_all, cfg.n_test)
    xtr, ytr = xall[:cfg.n_train], yall[:cfg.n_train]
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    x, y, _ = pair_subset(xall[cfg.n_train:], yall[cfg.n_train:], cfg.pair)
    xt, yt, _ = pair_subset(xte, yte, cfg.pair)
    base = run.measures(model, shape, xt, yt, latency=not smoke)
    base["accuracy"] = float((model.eval()(xt)[:, list(cfg.pair)].argmax(1) == yt).mean())
    rows = [{"model": "baseline (FC head, 2 classes)", **base}]
    args = {"top": cfg.top, "keep_top": cfg.keep_top, "backtrack": {cfg.low: cfg.keep_low},
            "feature_end": cfg.feature_end, "x": x, "y": y, "input_shape": shape, "n_classes": 2, "summary": cfg.summary}
    plans = {}
    for name, kw in (("LDA + SVM", {}), ("LDA + Bayes", {"head": "bayes"}),
                     ("random + SVM", {"scores": "random", "rng": np.random.default_rng(cfg.seed)})):
        pruned, plan = lda_prune(model, **args, **kw)
        plans[name] = {k: v.tolist() for k, v in plan.items()}
        rows.append({"model": name, **run.measures(pruned, shape, xt, yt, latency=not smoke)})
    run.write_results(out, cfg, rows, {"kept": plans, "n_fit_pair": len(x), "n_test_pair": len(xt)})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5, adapted from the paper's 2-class task to the demo's 10 classes:
    rank fc1's 500 neurons (LeNet-5's top hidden layer, standing in for VGG-16's conv5_3) by their 10-class
    Fisher ratio J = S_b / S_w (LDA with diagonal within-class scatter) on 3,000 training images and keep 150;
    back-track conv2 to the 40 filters and conv1 to the 16 filters most strongly connected (sum |W|) to the kept
    units; remove the rest (surgery) and replace fc2 by a one-vs-rest linear SVM on the 150 kept neurons; then
    retrain the whole net 1 epoch on 10k images (lr 0.01), which the paper does not do."""
    from scripts.compare import retrain
    x, y = data.subset(1000 if data.quick else 3000)
    pruned, _ = lda_prune(model, "5", 150, {"2": 40, "0": 16}, "6", x, y, data.input_shape, 10, summary="6")
    return retrain(pruned, data, rng, 1, lr=0.01, n=10000)


if __name__ == "__main__":
    main()
