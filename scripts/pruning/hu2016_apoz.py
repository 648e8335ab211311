"""Reproduce Network Trimming (Hu et al. 2016) at Fashion-MNIST scale: iterative APoZ trimming + retraining.

    python -m scripts.pruning.hu2016_apoz --seed 0                          # LeNet-5, 60k training images
    python -m scripts.pruning.hu2016_apoz --seed 0 --n-train 12000 --epochs 2   # a shorter run
    python -m scripts.pruning.hu2016_apoz --smoke

Data: Fashion-MNIST. Steps: train LeNet-5 (Caffe's: ReLU only after fc1, so fc1's 500 neurons are the units
APoZ can judge); ``passes`` times: APoZ of fc1 on ``n_apoz_images`` training images, remove neurons above
mean + std, retrain ``retrain_epochs``. Reported per pass: APoZ statistics, neurons kept, accuracy, params,
MACs, latency.

Paper (LeNet on MNIST, trimming ip1): 500 -> 252 neurons after iterations with accuracy unchanged or better,
about 2x fewer parameters in that layer; VGG-16: 2-3x fewer parameters in conv5/fc. Ours: papers/pruning/hu2016_apoz.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click

from methods.pruning.hu2016_apoz import trim_plan
from methods.pruning.surgery import prune_plan
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    layers: tuple = ("5",)  # fc1
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4
    lr: float = 0.01
    passes: int = 2
    n_apoz_images: int = 2000
    retrain_epochs: int = 1
    retrain_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "passes": 1, "n_apoz_images": 64}


@click.command()
@paper_options("hu2016_apoz")
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "n_train": n_train, "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("hu2016_apoz", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke)}]
    for p in range(cfg.passes):
        plan, scores = trim_plan(model, list(cfg.layers), xtr[:cfg.n_apoz_images], shape)
        if plan:
            prune_plan(model, plan, shape)
        run.train(model, xtr, ytr, cfg.retrain_epochs, cfg.retrain_lr, cfg.seed + 1 + p)
        stats = {f"apoz_mean_{n}": float(s.mean()) for n, s in scores.items()}
        kept = {f"kept_{n}": len(plan[n]) if n in plan else len(scores[n]) for n in scores}
        rows.append({"model": f"pass {p + 1}, retrained", **stats, **kept,
                     **run.measures(model, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows)
    run.echo_rows(rows, out)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: trim the fc1 neurons (the one layer followed by a ReLU) whose
    APoZ on 2000 training images is above the mean (k_std = 0), then 1 epoch of retraining on 10k images."""
    from methods.pruning.hu2016_apoz import trim
    from scripts.compare import retrain
    x, _ = data.subset(2000)
    trim(model, ["5"], x, data.input_shape, k_std=0.0)
    return retrain(model, data, rng, 1, n=10000)


if __name__ == "__main__":
    main()
