"""Reproduce Anwar et al. 2017 (Structured Pruning of Deep CNNs) at Fashion-MNIST scale.

    python -m scripts.pruning.anwar2017_structprune --seed 0 --n-train 12000 --epochs 2   # the run in the note
    python -m scripts.pruning.anwar2017_structprune --smoke                               # seconds-long check

Data: Fashion-MNIST; the Caffe LeNet-5 of the zoo (``--arch``). Steps: train the baseline; on the second conv
layer choose kernel-wise masks by the particle filter (scored on held-out training images) and at random, at
the same kernel sparsity; retrain the particle-filter mask and round it to fixed point; prune whole input
channels (particle filter, then real surgery) and an intra-kernel stride-2 pattern, retrain each; report
accuracy, MACs, the lowered GEMM shape (M, K, N) of the layer and latency.

Paper (CIFAR-10 / MNIST CNNs): particle-filter masks beat random ones; storage and compute drop with a small
accuracy loss; exact figures not known to us. Ours: see papers/pruning/anwar2017_structprune.md.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning import anwar2017_structprune as an
from methods.pruning.common import apply_masks
from methods.pruning.surgery import prune_plan
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet5"
    layer: int = 2  # child index of the pruned conv (lenet5: the 20 -> 50 conv)
    n_train: int = 60000
    n_val: int = 500  # held-out training images scoring the particles
    n_test: int = 10000
    epochs: int = 2
    lr: float = 0.01
    kernel_keep: float = 0.375  # fraction of kernels kept
    channel_keep: float = 0.5  # fraction of input maps kept
    stride: int = 2  # intra-kernel stride
    particles: int = 16
    iterations: int = 4
    retrain_epochs: int = 1
    retrain_lr: float = 0.005
    bits: int = 6  # fixed-point word length after retraining
    seed: int = 0


SMOKE = {"n_train": 200, "n_val": 50, "n_test": 100, "epochs": 1, "particles": 3, "iterations": 1}


@click.command()
@paper_options("anwar2017_structprune")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "n_train": n_train, "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("anwar2017_structprune", run_dir)
    xall, yall, xte, yte = run.load_data(dataset, data_dir, cfg.n_train + cfg.n_val, cfg.n_test)
    xtr, ytr, xv, yv = xall[:cfg.n_train], yall[:cfg.n_train], xall[cfg.n_train:], yall[cfg.n_train:]
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed)
    model.eval()
    li = cfg.layer
    conv = model[li]
    name = list(dict(model.named_children()))[li]
    w0 = conv.weight.copy()
    out_hw = int(np.prod(conv(model[0:li](xv[:1])).shape[2:]))
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=not smoke),
             "gemm_MKN": an.gemm_shape(w0, np.ones_like(w0), out_hw)}]
    head, rest = model[0:li], model[li:]
    fv = head(xv)

    def mcr_with(mask_fn):
        def mcr(p):
            conv.weight[...] = w0 * mask_fn(p)
            e = float((rest(fv).argmax(1) != yv).mean())
            conv.weight[...] = w0
            return e
        return mcr

    def masked_row(label, mask, retrain):
        m = copy.deepcopy(model)
        apply_masks(m, {f"{name}.weight": mask.astype(w0.dtype)})
        if retrain:
            run.train(m, xtr, ytr, cfg.retrain_epochs, cfg.retrain_lr, cfg.seed + 1)
        rows.append({"model": label, **run.measures(m, shape, xte, yte, latency=False),
                     "gemm_MKN": an.gemm_shape(w0, mask, out_hw)})
        return m

    rng = np.random.default_rng(cfg.seed)
    co, ci = w0.shape[:2]
    n_keep = max(1, round(cfg.kernel_keep * co * ci))
    kmask = lambda p: an.kernel_mask(w0.shape, p)
    masked_row("kernel-wise, random", kmask(an._random_particle(co * ci, n_keep, rng)), False)
    pf = an.particle_filter(co * ci, n_keep, mcr_with(kmask), rng, cfg.particles, cfg.iterations,
                            swaps=max(1, co * ci // 50))
    masked_row("kernel-wise, particle filter", kmask(pf["best"]), False)
    m = masked_row("kernel-wise, particle filter, retrained", kmask(pf["best"]), True)
    for _, p in m.named_parameters():
        p[...] = an.fixed_point(p, cfg.bits)
    rows.append({"model": f"kernel-wise, retrained, {cfg.bits}-bit fixed point",
                 "accuracy": run.accuracy(m, xte, yte)})

    cmask = lambda p: an.channel_mask(w0.shape, p)
    pc = an.particle_filter(ci, max(1, round(cfg.channel_keep * ci)), mcr_with(cmask), rng, cfg.particles,
                            cfg.iterations, swaps=1)
    producer = list(dict(model.named_children()))[[i for i in range(li) if hasattr(model[i], "weight")][-1]]
    small = prune_plan(copy.deepcopy(model), {producer: np.flatnonzero(pc["best"])}, shape)
    run.train(small, xtr, ytr, cfg.retrain_epochs, cfg.retrain_lr, cfg.seed + 1)
    rows.append({"model": "channel-wise, particle filter, surgery, retrained",
                 **run.measures(small, shape, xte, yte, latency=not smoke),
                 "gemm_MKN": an.gemm_shape(w0, cmask(pc["best"]), out_hw)})

    offs = [mcr_with(lambda o: an.intra_kernel_mask(w0.shape, cfg.stride, int(o)))(o) for o in range(cfg.stride)]
    masked_row(f"intra-kernel stride {cfg.stride}, retrained",
               an.intra_kernel_mask(w0.shape, cfg.stride, int(np.argmin(offs))), True)
    run.write_results(out, cfg, rows, {"pf_kernel_history": pf["history"], "pf_random_mcr": pf["first"],
                                       "pf_channel_history": pc["history"]})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5, Sec. 4's particle filter (8 particles, 3 iterations, each
    particle scored by its misclassification rate on 300 held-out training images, no retraining inside):
    (1) channel-wise on conv2's input maps, keeping 10 of conv1's 20 maps, (2) channel-wise on fc1's input maps
    (fc1 is a 4x4 convolution over conv2's 50 maps), keeping 25, both removed by surgery; (3) kernel-wise on
    the remaining 25 x 10 conv2 kernels, keeping 60%, deployed as a sparse mask; then 1 epoch of retraining
    on 10k images with the mask fixed (Sec. 5). Quick budget: 4 particles, 1 iteration, 1500 images."""
    from scripts.compare import retrain
    shape = data.input_shape
    xv, yv = data.x_train[-300:], data.y_train[-300:]
    parts, iters = (4, 1) if data.quick else (8, 3)
    model.eval()

    def search(li, n_units, n_keep, to_mask, swaps):
        """Particle filter over the units of child ``li``: its weight times to_mask(particle) is scored."""
        layer, w0 = model[li], model[li].weight.copy()
        head, rest = model[0:li], model[li:]
        fv = head(xv)

        def mcr(p):
            layer.weight[...] = w0 * to_mask(p)
            e = float((rest(fv).argmax(1) != yv).mean())
            layer.weight[...] = w0
            return e

        return an.particle_filter(n_units, n_keep, mcr, rng, parts, iters, swaps=swaps)["best"]

    def cmask2(p):
        return an.channel_mask(model[2].weight.shape, p)

    def cmask5(p):  # fc1 weight (500, 800) seen as (500, 50, 4, 4): whole input maps
        w = model[5].weight
        return an.channel_mask((w.shape[0], len(p), 4, 4), p).reshape(w.shape)

    def kmask(p):
        return an.kernel_mask(model[2].weight.shape, p)

    keep = search(2, model[2].weight.shape[1], 10, cmask2, 1)
    prune_plan(model, {"0": np.flatnonzero(keep)}, shape)
    keep = search(5, model[2].weight.shape[0], 25, cmask5, 2)
    prune_plan(model, {"2": np.flatnonzero(keep)}, shape)
    co, ci = model[2].weight.shape[:2]
    best = search(2, co * ci, round(0.6 * co * ci), kmask, max(1, co * ci // 50))
    apply_masks(model, {"2.weight": kmask(best).astype(model[2].weight.dtype)})
    return retrain(model, data, rng, 1, n=1500 if data.quick else 10000)


if __name__ == "__main__":
    main()
