"""Reproduce SSR (Lin et al. 2019, structure-sparsity regularised filter pruning) at Fashion-MNIST scale.

    python -m scripts.pruning.lin2019_ssr --seed 0                            # LeNet-5, 60k training images
    python -m scripts.pruning.lin2019_ssr --seed 0 --n-train 6000 --epochs 2    # the run in papers/pruning/lin2019_ssr.md
    python -m scripts.pruning.lin2019_ssr --smoke

Data: Fashion-MNIST. Steps: train the baseline; from it, run the same number of regularised SGD iterations with
two solvers, (a) AULM (alternating W-step / closed-form proximal V-step / multiplier step) with the l2,0 or l2,1
regulariser over the conv filters, (b) plain SGD on the l2,1 (group-Lasso) penalty; remove the filters AULM set
to exactly zero (surgery), and as many smallest-norm filters from (b); fine-tune the AULM-pruned model briefly.
Reported: accuracy, parameters, MACs, latency at batch 1 and 64, filters removed, smallest group norm of (b).

Paper: the AULM solver is about 2.5x faster than directly optimising the group-sparsity regulariser; LeNet,
AlexNet, VGG, ResNet, GoogLeNet tables not reproduced here. Ours: papers/pruning/lin2019_ssr.md.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning.lin2019_ssr import (
    AULM,
    add_group_lasso_subgradient,
    channel_param_groups,
    finalize,
    group_norms,
    norm_plan,
)
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
    reg: str = "l20"
    lam: float = 0.18  # AULM lambda (l2,0: a filter survives iff ||W_g + U_g||^2 > 2 lam / rho); LeNet-5 filter
    # norms are ~0.4-0.8 after 2 epochs, so the threshold sqrt(2 lam / rho) = 0.6 cuts a fair part of them
    rho: float = 1.0
    lam_gl: float = 0.1  # group-Lasso SGD baseline
    reg_epochs: int = 1  # regularised iterations, the same for both solvers
    reg_lr: float = 0.01
    finetune_epochs: int = 1
    finetune_lr: float = 0.005
    seed: int = 0


SMOKE = {"n_train": 256, "n_test": 128, "epochs": 1, "lam": 0.5}  # larger lambda: a barely trained net must still lose filters


@click.command()
@paper_options("lin2019_ssr")
@click.option("--arch", default=Defaults.arch, show_default=True, help="lenet5 or vgg_small")
@click.option("--reg", default=Defaults.reg, show_default=True, type=click.Choice(["l20", "l21"]))
@click.option("--lam", default=Defaults.lam, show_default=True)
@click.option("--n-train", default=Defaults.n_train, show_default=True)
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
@click.option("--reg-epochs", default=Defaults.reg_epochs, show_default=True)
def main(dataset, data_dir, seed, run_dir, smoke, arch, reg, lam, n_train, epochs, reg_epochs):
    cfg = replace(Defaults(), **{"seed": seed, "arch": arch, "reg": reg, "lam": lam, "n_train": n_train,
                                 "epochs": epochs, "reg_epochs": reg_epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("lin2019_ssr", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    base = run.build(cfg.arch, shape, cfg.seed)
    run.train(base, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    rows = [{"model": "baseline", **run.measures(base, shape, xte, yte, latency=not smoke)}]
    layers = [n for n in prunable_layers(base, shape) if base.state_dict()[n + ".weight"].ndim == 4]

    model = copy.deepcopy(base)
    aulm = AULM(model, layers, shape, cfg.lam, cfg.rho, cfg.reg)
    run.train(model, xtr, ytr, cfg.reg_epochs, cfg.reg_lr, cfg.seed + 1, weight_decay=0.0,
              step=lambda opt: (aulm.add_penalty_grad(), opt.step(), aulm.update()))
    plan = aulm.plan()
    pruned = finalize(copy.deepcopy(model), plan, shape)
    rows.append({"model": "AULM, pruned", **run.measures(pruned, shape, xte, yte, latency=not smoke)})

    gl = copy.deepcopy(base)
    groups = channel_param_groups(gl, layers, shape)
    run.train(gl, xtr, ytr, cfg.reg_epochs, cfg.reg_lr, cfg.seed + 1, weight_decay=0.0,
              step=lambda opt: (add_group_lasso_subgradient(groups, cfg.lam_gl), opt.step()))
    removed = {k: len(group_norms(groups[k])) - len(plan[k]) for k in layers}
    gl_rel = {k: float(np.min(group_norms(ms) / group_norms(ms).max())) for k, ms in groups.items()}
    gl_pruned = finalize(copy.deepcopy(gl), norm_plan(groups, removed), shape)
    rows.append({"model": "group-Lasso SGD, same removal", **run.measures(gl_pruned, shape, xte, yte,
                                                                          latency=False)})

    run.train(pruned, xtr, ytr, cfg.finetune_epochs, cfg.finetune_lr, cfg.seed + 2)
    rows.append({"model": "AULM, pruned, fine-tuned", **run.measures(pruned, shape, xte, yte, latency=not smoke)})
    run.write_results(out, cfg, rows, {"removed": removed, "kept": {k: v.tolist() for k, v in plan.items()},
                                       "group_lasso_min_relative_norm": gl_rel})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"removed {removed}; group-Lasso smallest relative norms {gl_rel}; results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: AULM with the l2,0 regulariser on the conv1 and conv2 filters
    (one solver per layer, lambda 0.36 / 0.33, rho 1: a filter survives iff ||W_g + U_g||^2 > 2 lambda / rho),
    W-step (A1) + V-step (A2) + multiplier step (A3) after every SGD step for 1 epoch on 6k images (lr 0.01,
    no weight decay); the filters with V_g = 0 are removed with their maps and the next layer's kernels
    (``finalize``), then 1 epoch of fine-tuning on 4k images."""
    from methods.pruning.common import train_epochs
    from nn.optim import SGD
    from scripts.compare import retrain
    shape = data.input_shape
    solvers = [AULM(model, [layer], shape, lam, 1.0, "l20") for layer, lam in (("0", 0.36), ("2", 0.33))]

    def step():
        for s in solvers:
            s.add_penalty_grad()
        opt.step()
        for s in solvers:
            s.update()

    x, y = data.subset(6000)
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=0.0)
    train_epochs(model, opt, x, y, data.epochs(1), 64, rng, step=step)
    plan = {k: v for s in solvers for k, v in s.plan().items()}
    finalize(model, plan, shape)
    return retrain(model, data, rng, 1, n=1000 if data.quick else 4000)


if __name__ == "__main__":
    main()
