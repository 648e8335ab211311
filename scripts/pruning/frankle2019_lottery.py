"""Lottery tickets on LeNet-300-100 (Frankle & Carbin 2019): rewound ticket vs random re-initialisation.

    python -m scripts.pruning.frankle2019_lottery --seed 0 --threads 1           # full run (papers/pruning/frankle2019_lottery.md)
    python -m scripts.pruning.frankle2019_lottery --smoke --run-dir /tmp/lt      # seconds, on a data subset

Data: Fashion-MNIST, standardised. Paper (MNIST, Fig. 3/4): LeNet-300-100 winning tickets at 10-20% of the
weights match or beat the dense net and learn faster; randomly re-initialised tickets do worse. Ours: iterative
pruning with rewinding to theta_0 down to ~10% of the weights, then the ticket and the same mask with a fresh
init trained with the same budget and batch order. Writes results.json, config.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import click
import numpy as np

from methods.pruning import common, report
from methods.pruning import frankle2019_lottery as lt
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    model: str = "lenet_300_100"
    epochs: int = 4  # training per round and for the final comparison
    rounds: int = 3
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    keep: dict = field(default_factory=lambda: {"1.weight": 0.09, "3.weight": 0.10, "5.weight": 0.5})
    threads: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "rounds": 1, "train_limit": 1000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from nn.models import build
    from nn.optim import SGD
    from nn.train import evaluate
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("frankle2019_lottery", run_dir)
    model = build(cfg.model, rng=np.random.default_rng(seed))
    theta0 = model.state_dict()
    dense = build(cfg.model, rng=np.random.default_rng(seed))
    common.train_epochs(dense, SGD(dense, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay), x, y,
                        cfg.epochs, cfg.batch_size, np.random.default_rng(seed + 1))
    dense_acc = evaluate(dense, xt, yt)[1]
    masks = lt.find_ticket(model, theta0, x, y, cfg.keep, cfg.rounds, cfg.epochs, np.random.default_rng(seed + 2),
                           cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size)
    sparsity = common.mask_sparsity(masks)
    accs = {"dense": dense_acc}
    for kind in ("ticket", "random_reinit"):
        m = build(cfg.model, rng=np.random.default_rng(seed))
        if kind == "ticket":
            lt.rewind(m, theta0, masks)
        else:
            lt.random_reinit(m, build(cfg.model, rng=np.random.default_rng(seed + 1000)), masks)
        common.train_epochs(m, SGD(m, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay), x, y,
                            cfg.epochs, cfg.batch_size, np.random.default_rng(seed + 1))
        accs[kind] = evaluate(m, xt, yt)[1]
    click.echo(f"sparsity {sparsity:.1%}: dense {accs['dense']:.4f}, ticket {accs['ticket']:.4f}, "
               f"random re-init {accs['random_reinit']:.4f}")
    results = {"sparsity": sparsity, "test_acc": accs, "seed": seed}
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results)
    click.echo(f"results in {out}")
    return results


@click.command()
@paper_options("frankle2019_lottery")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, threads) -> None:
    from threadpoolctl import threadpool_limits
    cfg = Defaults(dataset=dataset, threads=threads)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: one-shot pruning (the paper's Sec. 1 steps 1-4 with one round;
    the baseline's 3 epochs are step 2): keep the largest 50% / 20% / 10% / 30% of conv1 / conv2 / fc1 / fc2
    weights of the trained baseline, rewind the survivors to their initial values theta_0, and train the ticket
    (lr 0.01, 3 epochs on 20k images, about one epoch of the full set). The iterative search with the random
    re-initialisation control is ``python -m scripts.pruning.frankle2019_lottery`` and
    tests/methods/pruning/test_frankle2019_lottery.py."""
    from scripts.compare import retrain
    if data.theta0 is None:
        raise ValueError("the lottery ticket needs the baseline's initial weights (DemoData.theta0)")
    masks = lt.prune_masks(model, {"0.weight": 0.5, "2.weight": 0.2, "5.weight": 0.1, "7.weight": 0.3})
    lt.rewind(model, data.theta0, masks)
    return retrain(model, data, rng, 3, lr=0.01, n=20000)

if __name__ == "__main__":
    main()
