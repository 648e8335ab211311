"""Binarized Neural Networks (Courbariaux et al. 2016): an MLP with +-1 weights and activations, deployed on XNOR.

    python -m scripts.quantization.courbariaux2016_bnn --seed 0 --threads 1         # full run (see the note)
    python -m scripts.quantization.courbariaux2016_bnn --smoke --run-dir /tmp/bnn     # seconds

Data: Fashion-MNIST (standardised by the training set's mean and std), 60k train / 10k test.
Paper (test error, BNN with binary weights and activations): MNIST MLP (3 hidden layers) 0.96% (Theano) /
1.40% (Torch7); CIFAR-10 11.40% (Theano) / 10.15% (Torch7); SVHN 2.80% / 2.53%; the MNIST MLP ran 7x faster
on their binary GPU kernel than on an unoptimised baseline GPU kernel. Ours: see papers/quantization/courbariaux2016_bnn.md.

Steps: (1) the real-valued twin (784-512-512-10, BatchNorm after every layer, hard-tanh where BNN has Sign, Adam);
(2) the BNN from the same initialisation and data order (Algorithm 1: Sign weights and activations, the
hard-tanh STE, latent weights clipped to [-1, 1], the last BatchNorm output real);
(3) its deployment (first layer ``PackedSignLinear``, the others ``BinaryLinear`` XNOR-popcount), checked against
the float +-1 simulation, with its weight storage and its batch-64 latency against the real-valued twin (one
thread, paired samples). Writes config.json and results.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.quantization import courbariaux2016_bnn as bn
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    sizes: tuple = (784, 512, 512, 10)
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    latency_threads: int = 1
    threads: int | None = None  # BLAS threads (None: library default)
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "train_limit": 2000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from threadpoolctl import threadpool_limits

    from kernels._config import get_num_threads, set_num_threads
    from methods.pruning import report
    from nn.profile import paired_latency
    from nn.train import evaluate
    from scripts.compare import weight_storage
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("courbariaux2016_bnn", run_dir)
    sizes = (int(np.prod(x.shape[1:])), *cfg.sizes[1:])
    results: dict = {"seed": seed, "sizes": sizes}
    models = {}
    for binary in (False, True):
        name = "bnn" if binary else "float"
        model = bn.binarized(bn.mlp(sizes, rng=np.random.default_rng(seed)), binary)
        latent = bn.latent_weights(model) if binary else None
        losses = bn.train(model, latent, x, y, cfg.epochs, np.random.default_rng(seed + 1), cfg.lr, cfg.batch_size)
        row = {"acc": evaluate(model, xt, yt)[1], "train_loss": losses}
        models[name] = model
        if binary:
            deployed = bn.deploy(model, latent)
            sim, dep = model(xt), deployed(xt)
            w = weight_storage(deployed)
            row.update(acc_deployed=evaluate(deployed, xt, yt)[1], agree_top1=float((sim.argmax(1) == dep.argmax(1)).mean()),
                       max_abs_diff=float(np.abs(sim - dep).max()), bits_per_weight=w["bits_per_weight"],
                       weight_bytes=w["weight_bytes"], kinds=[type(m).__name__ for m in deployed])
            models["deployed"] = deployed
        else:
            w = weight_storage(model)
            row.update(weight_bytes=w["weight_bytes"], bits_per_weight=w["bits_per_weight"])
        results[name] = row
        click.echo(f"{name}: test accuracy {row['acc']:.4f}, {row['weight_bytes']:,} bytes of parameters"
                   + (f"; deployed {row['acc_deployed']:.4f} ({' '.join(row['kinds'])}), top-1 agreement with the "
                      f"simulation {row['agree_top1']:.2%}, max |logit diff| {row['max_abs_diff']:.1e}" if binary else ""))
    before = get_num_threads()
    set_num_threads(cfg.latency_threads)
    try:
        with threadpool_limits(cfg.latency_threads):
            t = paired_latency(models["deployed"], models["float"], 64, tuple(x.shape[1:]))
    finally:
        set_num_threads(before)
    results["latency_b64"] = {k: t[k] for k in ("ms", "reference_ms", "speedup", "spread", "stable")}
    ratio = f"speed-up {t['speedup']:.2f}x" if t["stable"] else "speed-up not quoted: the samples spread too much"
    click.echo(f"deployed BNN: batch 64 {t['ms']:.2f} ms against the float twin {t['reference_ms']:.2f} ms "
               f"({ratio}; spread {t['spread']:.0%}, {cfg.latency_threads} thread)")
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results)
    click.echo(f"results in {out}")
    return results


@click.command(context_settings={"terminal_width": 120})  # the long paper id fits in --help
@paper_options("courbariaux2016_bnn")
@click.option("--epochs", type=int, default=None)
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, epochs, threads) -> None:
    cfg = Defaults(dataset=dataset)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in {"epochs": epochs, "threads": threads}.items() if v is not None})
    from threadpoolctl import threadpool_limits
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5 in BNN's order (conv1 -> pool -> BN -> Sign -> conv2 -> pool -> BN
    -> Sign -> fc1 -> BN -> Sign -> fc2 -> BN; the ReLU dropped): all four weights and every hidden activation
    binary, the first layer's input real, trained from the baseline's weights (clipped to [-1, 1]) for 1 epoch on
    10k images (Adam 1e-3); deployed with conv1 on ``PackedSignConv2d`` and conv2, fc1, fc2 on
    the XNOR-popcount ``BinaryConv2d`` / ``BinaryLinear``."""
    model = bn.binarized(model)
    latent = bn.latent_weights(model)
    x, y = data.subset(10000)
    bn.train(model, latent, x, y, data.epochs(1), rng)
    return bn.deploy(model, latent)


if __name__ == "__main__":
    main()
