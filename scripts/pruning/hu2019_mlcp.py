"""Reproduce multi-loss-aware channel pruning (Hu et al. 2019) at Fashion-MNIST scale.

    python -m scripts.pruning.hu2019_mlcp --seed 0                            # LeNet-5, 60k training images
    python -m scripts.pruning.hu2019_mlcp --seed 0 --n-train 6000 --epochs 2    # the run in papers/pruning/hu2019_mlcp.md
    python -m scripts.pruning.hu2019_mlcp --smoke

Data: Fashion-MNIST. Steps: train the baseline; prune ``ratio`` of the filters of conv ``layer`` twice from
the same model, with greedy channel selection on sampled training images under (a) the reconstruction error of
layer i+1 alone and (b) the multi-loss criterion (reconstruction + alpha * distribution gap + beta *
classification loss), each followed by the same least-squares refit of layer i+1; fine-tune (b) briefly.
Reported: accuracy, parameters, MACs, latency, and the three losses of the selected sets.

Paper: improvements over reconstruction-only channel pruning on CIFAR-10/ImageNet; its numbers are not
known to us (PAPERS.md). Ours: papers/pruning/hu2019_mlcp.md.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click

from methods.pruning.hu2019_mlcp import mlcp_prune
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 4
    lr: float = 0.01
    layer: str = "0"  # first conv of LeNet-5; layer i+1 is conv "2"
    ratio: float = 0.75
    alpha: float = 1.0
    beta: float = 1.0
    n_sample_images: int = 500
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "n_sample_images": 64}


@click.command()
@paper_options("hu2019_mlcp")
@click.option("--ratio", default=Defaults.ratio, show_default=True, help="fraction of the layer's filters removed")
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, ratio, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "ratio": ratio, "n_train": n_train, "epochs": epochs,
                                 **(SMOKE if smoke else {})})
    out = run.run_dir_for("hu2019_mlcp", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke)}]
    xs, ys = xtr[:cfg.n_sample_images], ytr[:cfg.n_sample_images]
    for name, (a, b) in (("reconstruction only", (0.0, 0.0)), ("multi-loss", (cfg.alpha, cfg.beta))):
        pruned = mlcp_prune(copy.deepcopy(model), cfg.layer, xs, ys, cfg.ratio, shape, alpha=a, beta=b,
                            reference=model)
        rows.append({"model": name, **run.measures(pruned, shape, xte, yte, latency=False)})
    run.train(pruned, xtr, ytr, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed + 1)
    rows.append({"model": "multi-loss, fine-tuned", **run.measures(pruned, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows)
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: remove 75% of conv1's filters (15 of 20), chosen by greedy
    backward elimination under the multi-loss criterion L(S) = L_rec + alpha * L_dist + beta * L_cls (alpha = beta
    = 1; L_rec on conv2's output) on 100 training images with the baseline as the reference, refit conv2 by least
    squares on 3,000 sampled output positions, then retrain 1 epoch on 6k images (quick: 32 images, 1,000
    positions)."""
    from scripts.compare import retrain
    xs, ys = data.subset(32 if data.quick else 100)
    reference = copy.deepcopy(model)
    mlcp_prune(model, "0", xs, ys, 0.75, data.input_shape, n_samples=1000 if data.quick else 3000, rng=rng,
               reference=reference)
    return retrain(model, data, rng, 1, n=6000)


if __name__ == "__main__":
    main()
