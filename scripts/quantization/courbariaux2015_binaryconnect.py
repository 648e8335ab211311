"""BinaryConnect (Courbariaux et al. 2015): a BatchNorm MLP trained with binary weights, deterministic and stochastic.

    python -m scripts.quantization.courbariaux2015_binaryconnect --seed 0          # full run (see the note)
    python -m scripts.quantization.courbariaux2015_binaryconnect --smoke --run-dir /tmp/bc   # seconds

Data: Fashion-MNIST (standardised by the training set's mean and std), 60k train / 10k test.
Paper (test error, permutation-invariant MNIST MLP 3 x 1024, BN, Adam, square hinge loss): no regulariser 1.30%,
BinaryConnect deterministic 1.29%, stochastic 1.18%. Ours: see papers/quantization/courbariaux2015_binaryconnect.md.

Steps: (1) the float MLP (784-256-256-10, BN after every layer, Adam); (2) deterministic and (3) stochastic
BinaryConnect from the same initialisation and data order, each evaluated with sign(w) and with the real-valued w
(Sec. 2.6: the paper tests the stochastic net with w); (4) deployment with the signs bit-packed
(``PackedSignLinear``), checked against the +-1 float model, with its weight storage. Writes config.json and
results.json.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.quantization import courbariaux2015_binaryconnect as bc
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    sizes: tuple = (784, 256, 256, 10)
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    threads: int | None = None  # BLAS threads (None: library default)
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "train_limit": 2000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from methods.pruning import common, report
    from nn.optim import Adam
    from nn.train import evaluate
    from scripts.compare import weight_storage
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("courbariaux2015_binaryconnect", run_dir)
    sizes = (int(np.prod(x.shape[1:])), *cfg.sizes[1:])

    def acc(m):
        return evaluate(m, xt, yt)[1]

    model = bc.mlp(sizes, rng=np.random.default_rng(seed))
    common.train_epochs(model, Adam(model, lr=cfg.lr), x, y, cfg.epochs, cfg.batch_size, np.random.default_rng(seed + 1))
    results = {"float_acc": acc(model), "seed": seed}
    click.echo(f"float MLP {sizes}: test accuracy {results['float_acc']:.4f}")
    for mode in ("deterministic", "stochastic"):
        model = bc.mlp(sizes, rng=np.random.default_rng(seed))
        latent, losses = bc.train(model, x, y, mode, cfg.epochs, np.random.default_rng(seed + 1), cfg.lr,
                                  cfg.batch_size)
        bc.finish(latent, "real")
        acc_real = acc(model)
        bc.finish(latent, "binary")
        acc_bin = acc(model)
        simulated = copy.deepcopy(model)  # float layers holding sign(w)
        deployed = bc.deploy(model, latent)  # the same signs, bit-packed
        max_diff = float(np.abs(deployed(xt[:512]) - simulated(xt[:512])).max())
        w = weight_storage(deployed)
        results[mode] = {"acc_binary": acc_bin, "acc_real_weights": acc_real, "train_loss": losses,
                         "bits_per_weight": w["bits_per_weight"], "weight_bytes": w["weight_bytes"],
                         "params": w["params"], "max_abs_diff_deployed_vs_simulated": max_diff}
        click.echo(f"BinaryConnect {mode}: test accuracy with sign(w) {acc_bin:.4f}, with the real-valued w "
                   f"{acc_real:.4f}; deployed {w['bits_per_weight']:.2f} bits per weight ({w['weight_bytes']:,} bytes), max |deployed - simulated| {max_diff:.1e}")
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results)
    click.echo(f"results in {out}")
    return results


@click.command(context_settings={"terminal_width": 120})  # the long paper id fits in --help
@paper_options("courbariaux2015_binaryconnect")
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
    """The demo's budget on the trained LeNet-5: BatchNorm inserted after every layer (BinaryConnect's nets have
    it; LeNet-5 has none), then deterministic BinaryConnect on all four weights (Adam 1e-3, Glorot-scaled rates,
    latent weights clipped to [-1, 1]) for 1 epoch on 10k images, deployed with bit-packed signs
    (``PackedSignConv2d`` / ``PackedSignLinear``: 1 bit per weight, float arithmetic on the decoded +-1)."""
    model = bc.with_batchnorm(model)
    x, y = data.subset(10000)
    latent, _ = bc.train(model, x, y, "deterministic", data.epochs(1), rng)
    return bc.deploy(model, latent)


if __name__ == "__main__":
    main()
