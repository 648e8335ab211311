"""Reproduce channel pruning (He et al. 2017) at Fashion-MNIST scale: LASSO selection + least squares vs L1.

    python -m scripts.pruning.he2017_channelprune --seed 0                     # LeNet-5, 60k training images
    python -m scripts.pruning.he2017_channelprune --seed 0 --n-train 12000 --epochs 2   # the run in papers/pruning/he2017_channelprune.md
    python -m scripts.pruning.he2017_channelprune --smoke

Data: Fashion-MNIST. Steps: train LeNet-5; remove ``ratio`` of conv1's channels by (a) L1 norm, (b) LASSO
selection on conv2 (Eq. 2) with conv2's kernels kept, (c) LASSO + least-squares reconstruction of conv2
(Eq. 3), from patches sampled on ``n_sample_images`` training images; report conv2's relative reconstruction
error on held-out images and accuracy before/after one fine-tuning epoch.

Paper (ImageNet VGG-16): 5x speed-up with +0.3% top-5 error (with fine-tuning); without fine-tuning the
reconstruction beats first-k and max-response selection (Fig. 3). Ours: papers/pruning/he2017_channelprune.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.he2017_channelprune import channel_prune
from methods.pruning.li2017_l1filter import prune_filters
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    layer: str = "0"  # conv1; layer i+1 is conv2
    ratio: float = 0.5  # fraction of channels removed
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4
    lr: float = 0.01
    n_sample_images: int = 300
    n_samples: int = 3000  # sampled positions (paper: 10 per image on 5000 images)
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "n_sample_images": 32, "n_samples": 300}


@click.command()
@paper_options("he2017_channelprune")
@click.option("--ratio", default=Defaults.ratio, show_default=True)
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, ratio, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "ratio": ratio, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    shape = (1, 28, 28) if dataset != "cifar10" else (3, 32, 32)

    def he(rec):
        return lambda m, xs: channel_prune(m, cfg.layer, xs, cfg.ratio, shape, cfg.n_samples,
                                           np.random.default_rng(cfg.seed), reconstruct_weights=rec)

    methods = {"L1": lambda m, xs: prune_filters(m, {cfg.layer: cfg.ratio}, shape),
               "LASSO selection": he(False), "LASSO + least squares": he(True)}
    run.reconstruction_experiment("he2017_channelprune", cfg, methods, dataset, data_dir, run_dir, smoke)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: LASSO channel selection and least-squares reconstruction of
    conv2 removes half of conv1's filters (500 sampled images), then 1 epoch of retraining on 10k images."""
    from scripts.compare import retrain
    x, _ = data.subset(2000)
    channel_prune(model, "0", x[:500], 0.5, data.input_shape, rng=rng)
    return retrain(model, data, rng, 1, n=10000)


if __name__ == "__main__":
    main()
