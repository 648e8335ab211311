"""Reproduce ThiNet (Luo et al. 2017) at Fashion-MNIST scale: next-layer-driven filter selection vs L1.

    python -m scripts.pruning.luo2017_thinet --seed 0                     # LeNet-5, 60k training images
    python -m scripts.pruning.luo2017_thinet --seed 0 --n-train 12000 --epochs 2   # the run in papers/pruning/luo2017_thinet.md
    python -m scripts.pruning.luo2017_thinet --smoke

Data: Fashion-MNIST. Steps: train LeNet-5; remove ``ratio`` of conv1's filters by (a) L1 norm, (b) ThiNet
greedy selection without and (c) with the least-squares rescaling of conv2 (Eq. 7), from patches sampled on
``n_sample_images`` training images; report conv2's relative reconstruction error on held-out images and the
accuracy before/after one fine-tuning epoch.

Paper (ImageNet VGG-16, ThiNet-Conv): 3.31x fewer FLOPs, 16.63x compression, +0.52% top-5 error; greedy
selection beats random and weight-sum (L1) selection (Fig. 4). Ours: papers/pruning/luo2017_thinet.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.li2017_l1filter import prune_filters
from methods.pruning.luo2017_thinet import thinet_prune
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    layer: str = "0"  # conv1; layer i+1 is conv2
    ratio: float = 0.5  # fraction of filters removed (paper: compression rate r = 0.5 kept)
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4
    lr: float = 0.01
    n_sample_images: int = 300
    n_samples: int = 3000  # sampled (image, location, channel) triples (paper: 10 per image over 100k images)
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "n_sample_images": 32, "n_samples": 300}


@click.command()
@paper_options("luo2017_thinet")
@click.option("--ratio", default=Defaults.ratio, show_default=True)
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, ratio, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "ratio": ratio, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    shape = (1, 28, 28) if dataset != "cifar10" else (3, 32, 32)

    def thin(rescale):
        return lambda m, xs: thinet_prune(m, cfg.layer, xs, cfg.ratio, shape, cfg.n_samples,
                                          np.random.default_rng(cfg.seed), rescale=rescale)

    methods = {"L1": lambda m, xs: prune_filters(m, {cfg.layer: cfg.ratio}, shape),
               "ThiNet selection": thin(False), "ThiNet + least squares": thin(True)}
    run.reconstruction_experiment("luo2017_thinet", cfg, methods, dataset, data_dir, run_dir, smoke)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: ThiNet's greedy channel selection removes half of conv1's
    filters (the channels conv2 reconstructs best without, 500 sampled images) with the least-squares rescaling
    of conv2, then 1 epoch of retraining on 10k images."""
    from scripts.compare import retrain
    x, _ = data.subset(2000)
    thinet_prune(model, "0", x[:500], 0.5, data.input_shape, rng=rng)
    return retrain(model, data, rng, 1, n=10000)


if __name__ == "__main__":
    main()
