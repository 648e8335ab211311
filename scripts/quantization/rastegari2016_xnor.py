"""XNOR-Net and BWN (Rastegari et al. 2016) on LeNet-5: float, BWN, XNOR-Net and plain sign in one seeded run.

    python -m scripts.quantization.rastegari2016_xnor --seed 0                  # full run (see the note)
    python -m scripts.quantization.rastegari2016_xnor --smoke --run-dir /tmp/xnor   # seconds

Data: Fashion-MNIST (standardised by the training set's mean and std); the first 20k training images by default.
Paper (AlexNet, ImageNet top-1 / top-5): full precision 56.6 / 80.2, BWN 56.8 / 79.4, XNOR-Net 44.2 / 69.2;
32x smaller weights and ~58x fewer operations in the binary convolutions (an operation count, not a measurement).
Ours: see papers/quantization/rastegari2016_xnor.md.

Steps: every variant of ``xnor_lenet5`` (LeNet-5 with BatchNorm before the binarized conv2 and fc1; conv1 and fc2
float) from the same initialisation and data order: (1) float, (2) BWN (alpha sign(W)), (3) XNOR-Net (alpha
sign(W) and K sign(I)), (4) plain sign (no scales); (5) each deployed (BWN on packed signs, XNOR and sign on the
XNOR-popcount ``nn.binary`` layers), checked against its simulation, with its weight storage and its batch-64
latency against the float model (one thread, paired samples). Writes config.json, results.json, variants.csv.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.quantization import rastegari2016_xnor as xn
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    latency_threads: int = 1
    threads: int | None = None  # BLAS threads (None: library default)
    train_limit: int | None = 20000
    test_limit: int | None = None


SMOKE = {"epochs": 1, "train_limit": 1000, "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from threadpoolctl import threadpool_limits

    from kernels._config import get_num_threads, set_num_threads
    from methods.pruning import report
    from nn.models import build
    from nn.profile import paired_latency
    from nn.train import evaluate
    from scripts.compare import weight_storage
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("rastegari2016_xnor", run_dir)
    rows, models = [], {}
    for variant in xn.VARIANTS:
        model = xn.xnor_lenet5(build("lenet5", in_channels=x.shape[1], image_size=x.shape[2],
                                     rng=np.random.default_rng(seed)), variant)
        latent = xn.latent_weights(model, variant)
        losses = xn.train(model, latent, x, y, cfg.epochs, np.random.default_rng(seed + 1), cfg.lr, cfg.batch_size)
        acc = evaluate(model, xt, yt)[1]
        deployed = xn.deploy(model, latent, variant)
        sim, dep = model(xt[:1000]), deployed(xt[:1000])
        w = weight_storage(deployed)
        row = {"variant": variant, "acc_simulated": acc, "acc_deployed": evaluate(deployed, xt, yt)[1],
               "agree_top1": float((sim.argmax(1) == dep.argmax(1)).mean()),
               "max_abs_diff": float(np.abs(sim - dep).max()), "bits_per_weight": w["bits_per_weight"],
               "weight_bytes": w["weight_bytes"], "train_loss": losses[-1],
               "kinds": " ".join(type(deployed[i]).__name__ for i in (3, 7))}
        models[variant] = deployed
        rows.append(row)
        click.echo(f"{variant}: test accuracy {acc:.4f} simulated, {row['acc_deployed']:.4f} deployed "
                   f"({row['kinds']}; top-1 agreement {row['agree_top1']:.1%}), {w['bits_per_weight']:.2f} bits per "
                   f"weight ({w['weight_bytes']:,} bytes)")
    before = get_num_threads()
    set_num_threads(cfg.latency_threads)
    try:
        with threadpool_limits(cfg.latency_threads):
            for row in rows[1:]:
                t = paired_latency(models[row["variant"]], models["float"], 64, tuple(x.shape[1:]))
                row.update(latency_b64_ms=t["ms"], float_b64_ms=t["reference_ms"], speedup_b64=t["speedup"],
                           stable=t["stable"])
                click.echo(f"{row['variant']}: batch 64 {t['ms']:.2f} ms against float {t['reference_ms']:.2f} ms "
                           f"(speed-up {t['speedup']:.2f}x{'' if t['stable'] else ', unstable'})")
    finally:
        set_num_threads(before)
    results = {"variants": rows, "seed": seed}
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results,
                    {"variants": rows})
    click.echo(f"results in {out}")
    return results


@click.command(context_settings={"terminal_width": 120})  # the long paper id fits in --help
@paper_options("rastegari2016_xnor")
@click.option("--epochs", type=int, default=None)
@click.option("--train-limit", type=int, default=None, help="first N training images (default 20000)")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, epochs, train_limit, threads) -> None:
    cfg = Defaults(dataset=dataset)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    over = {"epochs": epochs, "train_limit": train_limit, "threads": threads}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in over.items() if v is not None})
    from threadpoolctl import threadpool_limits
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: XNOR-Net on conv2 and fc1 (conv1 and fc2 stay float, Sec. 4),
    with BatchNorm inserted before each (the paper's BN -> BinActiv -> BinConv -> Pool order; LeNet-5 has none),
    trained from the baseline's weights for 1 epoch on 10k images (Adam 1e-3), deployed on ``BinaryConv2d`` /
    ``BinaryLinear`` (XNOR-popcount with alpha and K)."""
    model = xn.xnor_lenet5(model, "xnor")
    latent = xn.latent_weights(model, "xnor")
    x, y = data.subset(10000)
    xn.train(model, latent, x, y, data.epochs(1), rng)
    return xn.deploy(model, latent, "xnor")


if __name__ == "__main__":
    main()
