"""Gupta et al. 2015: an MLP trained in 16-bit fixed point, with stochastic rounding and with round-to-nearest.

    python -m scripts.quantization.gupta2015_fxp16 --seed 0 --threads 1     # full run (see the note)
    python -m scripts.quantization.gupta2015_fxp16 --smoke --run-dir /tmp/fxp   # seconds

Data: Fashion-MNIST (standardised by the training set's mean and std), 60k train / 10k test.
Paper (MNIST, 784-1000-1000-10 MLP and a LeNet-like CNN; CIFAR-10 CNN; WL = 16): with stochastic rounding
training matches float32; with round-to-nearest and a short fractional length training stalls or diverges.
Ours: see papers/quantization/gupta2015_fxp16.md.

Steps: (1) the float MLP (784-256-256-10, ReLU, plain SGD); (2) the same MLP with weights, biases, their
gradients and updates in <IL, FL>, layer outputs and back-propagated errors in fixed point, stochastic rounding;
(3) the same with round-to-nearest at the same <IL, FL>; all from the same initialisation and data order, tested with round-to-nearest
activations. (4) deployment of the stochastic model with int16 codes (``FixedPointLinear``), checked against the
fixed-point float model, with its weight storage. Writes config.json and results.json.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.quantization import gupta2015_fxp16 as fxp
from methods.quantization.common import FixedPoint
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    sizes: tuple = (784, 256, 256, 10)
    IL: int = 8   # weights <IL, FL>, WL = 16
    FL: int = 8
    epochs: int = 4
    lr: float = 0.1
    lr_decay: float = 0.5  # per epoch
    batch_size: int = 64
    threads: int | None = None  # BLAS threads (None: library default)
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "train_limit": 2000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from methods.pruning import report
    from nn.train import evaluate
    from scripts.compare import weight_storage
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("gupta2015_fxp16", run_dir)
    sizes = (int(np.prod(x.shape[1:])), *cfg.sizes[1:])
    fmt = FixedPoint(cfg.IL, cfg.FL)
    results: dict = {"seed": seed, "format": str(fmt)}
    for rounding in (None, "stochastic", "nearest"):
        model = fxp.mlp(sizes, rounding, rng=np.random.default_rng(seed), round_rng=np.random.default_rng(seed + 2))
        fw, losses = fxp.train(model, x, y, cfg.epochs, np.random.default_rng(seed + 1), rounding, fmt, cfg.lr,
                               cfg.batch_size, cfg.lr_decay)
        name = rounding or "float"
        if rounding is not None:
            fxp.set_rounding(model, "nearest")  # a deterministic test-time forward
        acc = evaluate(model, xt, yt)[1]
        results[name] = {"acc": acc, "train_loss": losses}
        line = f"{name} {'' if rounding is None else fmt}: test accuracy {acc:.4f}, training losses " + \
               ", ".join(f"{v:.3f}" for v in losses)
        if fw is not None:
            results[name]["updates_lost"] = fw.lost / max(fw.nonzero, 1)
            line += f"; {fw.lost / max(fw.nonzero, 1):.1%} of the nonzero updates rounded away"
        click.echo(line)
        if rounding == "stochastic":
            simulated = copy.deepcopy(model)
            deployed = fxp.deploy(model, fmt)
            results["max_abs_diff_deployed_vs_simulated"] = float(
                np.abs(deployed(xt[:512]) - simulated(xt[:512])).max())
            results["storage"] = weight_storage(deployed)
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results)
    click.echo(f"deployed int16: {results['storage']['weight_bytes']:,} bytes, "
               f"{results['storage']['bits_per_weight']:.1f} bits per weight; results in {out}")
    return results


@click.command(context_settings={"terminal_width": 120})
@paper_options("gupta2015_fxp16")
@click.option("--epochs", type=int, default=None)
@click.option("--fl", "FL", type=int, default=None, help="fractional bits of the weights (IL = 16 - FL)")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, epochs, FL, threads) -> None:
    cfg = Defaults(dataset=dataset)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    over = {"epochs": epochs, "threads": threads, "FL": FL, "IL": None if FL is None else 16 - FL}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in over.items() if v is not None})
    from threadpoolctl import threadpool_limits
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: its weights and biases Converted to <4, 12> (stochastic
    rounding), then 1 epoch of SGD (lr 0.01) on 10k images with the parameters kept in <4, 12> by stochastic
    rounding after every update (the activations stay float: LeNet-5 has no Convert layers), deployed with the
    weights and biases as int16 codes (``FixedPointConv2d`` / ``FixedPointLinear``: 16 bits per weight, decoded to
    float32 for the float arithmetic)."""
    x, y = data.subset(10000)
    fmt = FixedPoint(4, 12)
    fxp.train(model, x, y, data.epochs(1), rng, "stochastic", fmt, lr=0.01)
    return fxp.deploy(model, fmt)


if __name__ == "__main__":
    main()
