"""Dynamic network surgery on LeNet-300-100 (Guo et al. 2016): prune and splice during training.

    python -m scripts.pruning.guo2016_dns --seed 0 --threads 1            # full run (papers/pruning/guo2016_dns.md)
    python -m scripts.pruning.guo2016_dns --smoke --run-dir /tmp/dns      # seconds, on a data subset

Data: Fashion-MNIST, standardised. Paper (MNIST): LeNet-300-100 compressed 56x and LeNet-5 108x with no
accuracy loss. Ours: a dense baseline, then DNS surgery epochs with c per layer; compression, accuracy and
the counts of pruned / spliced connections. Writes results.json, config.json, layers.csv.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import click
import numpy as np

from methods.pruning import common, report
from methods.pruning import guo2016_dns as dns
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    model: str = "lenet_300_100"
    baseline_epochs: int = 15
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    c: dict = field(default_factory=lambda: {"1.weight": 1.6, "3.weight": 1.2, "5.weight": 0.6})
    dns_epochs: int = 4
    dns_lr: float = 0.005
    gamma: float = 1e-4
    power: float = 1.0
    threads: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"baseline_epochs": 1, "dns_epochs": 1, "train_limit": 1000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from nn.models import build
    from nn.optim import SGD
    from nn.train import evaluate
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("guo2016_dns", run_dir)
    model = build(cfg.model, rng=np.random.default_rng(seed))
    opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    common.train_epochs(model, opt, x, y, cfg.baseline_epochs, cfg.batch_size, np.random.default_rng(seed))
    dense_acc = evaluate(model, xt, yt)[1]
    reference = build(cfg.model, rng=np.random.default_rng(seed))
    reference.load_state_dict(model.state_dict())
    click.echo(f"dense {cfg.model}: test accuracy {dense_acc:.4f}")
    stats = dns.surgery(model, x, y, dns.DNSCfg(c=cfg.c, epochs=cfg.dns_epochs, lr=cfg.dns_lr,
                                                momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                                batch_size=cfg.batch_size, gamma=cfg.gamma, power=cfg.power),
                        np.random.default_rng(seed + 1))
    acc = evaluate(model, xt, yt)[1]
    comp = common.compression_ratio(model)
    click.echo(f"DNS: {comp:.2f}x fewer weights, test accuracy {acc:.4f}; spliced back {stats['spliced']}")
    layers = report.layer_table(model, (1, 1, 28, 28), reference=reference)
    results = {"dense_acc": dense_acc, "dns_acc": acc, "compression": comp, "stats": stats, "seed": seed}
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results,
                    {"layers": layers})
    click.echo(f"results in {out}")
    return results


@click.command()
@paper_options("guo2016_dns")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, threads) -> None:
    from threadpoolctl import threadpool_limits
    cfg = Defaults(dataset=dataset, threads=threads)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: one epoch of dynamic surgery on 10k images; the threshold
    t = mean|W| + c std|W| prunes conv layers gently and the 400K-weight fc1 hard (Guo et al. Table 1)."""
    x, y = data.subset(10000)
    dns.surgery(model, x, y, dns.DNSCfg(c={"0.weight": -0.3, "2.weight": 0.4, "5.weight": 1.0, "7.weight": 0.3},
                                        epochs=data.epochs(1)), rng)
    return model


if __name__ == "__main__":
    main()
