"""Optimal Brain Surgeon vs OBD vs magnitude on a small MLP, without retraining (Hassibi & Stork 1993).

    python -m scripts.hassibi1993_obs --seed 0 --threads 1            # full run (papers/hassibi1993_obs.md)
    python -m scripts.hassibi1993_obs --smoke --run-dir /tmp/obs      # seconds, on a data subset

Data: Fashion-MNIST average-pooled 4x4 to 7x7 (49 inputs), a 49-16-10 ReLU MLP (944 weights, so the inverse
Hessian is a dense 944 x 944 matrix). The paper (MONK's problems) reports OBS removing 90% / 76% / 62% more
weights than back-prop with weight decay at equal error; here we delete the same number of weights with each
criterion and compare training loss and test accuracy, no retraining. Writes sweep.csv, results.json,
config.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.pruning import common, report
from methods.pruning import hassibi1993_obs as obs


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    hidden: int = 16
    epochs: int = 4
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    train_samples: int = 20000
    hessian_samples: int = 400  # patterns in the outer-product Hessian (x 10 classes)
    alpha: float = 1e-4  # H_0 = alpha I
    fractions: tuple = (0.25, 0.5, 0.75, 0.9)
    threads: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "train_samples": 2000, "hessian_samples": 30, "fractions": (0.5,), "test_limit": 500}


def pool7(x: np.ndarray) -> np.ndarray:
    """(N, 1, 28, 28) -> (N, 1, 7, 7) by 4x4 average pooling."""
    return x.reshape(len(x), x.shape[1], 7, 4, 7, 4).mean(axis=(3, 5)).astype(np.float32)


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from nn.activations import ReLU
    from nn.basic import Flatten
    from nn.containers import Sequential
    from nn.linear import Linear
    from nn.optim import SGD
    from nn.train import evaluate
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_samples, cfg.test_limit)
    x, xt = pool7(x), pool7(xt)
    out = report.run_folder("hassibi1993_obs", run_dir)
    rng = np.random.default_rng(seed)
    model = Sequential(Flatten(), Linear(x[0].size, cfg.hidden, rng=rng), ReLU(), Linear(cfg.hidden, 10, rng=rng))
    common.train_epochs(model, SGD(model, lr=cfg.lr, momentum=cfg.momentum), x, y, cfg.epochs, cfg.batch_size, rng)
    w0, layout = obs.weight_vector(model)
    X = obs.gn_vectors(model, x[:cfg.hessian_samples], layout)
    Hinv = obs.inverse_hessian(X, cfg.hessian_samples, cfg.alpha)
    h_diag = (X * X).sum(axis=0) / cfg.hessian_samples
    xs, ys = x[:5000], y[:5000]
    dense = (evaluate(model, xs, ys)[0], evaluate(model, xt, yt)[1])
    click.echo(f"dense MLP ({len(w0)} weights): train loss {dense[0]:.4f}, test accuracy {dense[1]:.4f}")
    rows = []
    for frac in cfg.fractions:
        k = int(frac * len(w0))
        w_obs, _, _ = obs.obs_prune(w0, Hinv, k)
        for name, w in (("obs", w_obs), ("obd", obs.obd_prune(w0, h_diag, k)), ("magnitude", obs.magnitude_prune(w0, k))):
            obs.set_weight_vector(model, w.astype(np.float32), layout)
            tl, acc = evaluate(model, xs, ys)[0], evaluate(model, xt, yt)[1]
            rows.append({"fraction_deleted": frac, "deleted": k, "criterion": name, "train_loss": tl, "test_acc": acc})
            click.echo(f"{frac:.0%} deleted ({k}), {name:9s}: train loss {tl:.4f}, test accuracy {acc:.4f}")
        obs.set_weight_vector(model, w0.astype(np.float32), layout)
    results = {"weights": len(w0), "dense_train_loss": dense[0], "dense_test_acc": dense[1], "sweep": rows,
               "seed": seed}
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results, {"sweep": rows})
    click.echo(f"results in {out}")
    return results


@click.command()
@click.option("--dataset", default=Defaults.dataset, show_default=True)
@click.option("--data-dir", default=None, help="folder with the dataset (default: system/cache locations)")
@click.option("--seed", default=0, show_default=True)
@click.option("--run-dir", default=None, help="output folder (default runs/hassibi1993_obs-<timestamp>)")
@click.option("--smoke", is_flag=True, help="seconds-long run on a data subset")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, threads) -> None:
    from threadpoolctl import threadpool_limits
    cfg = Defaults(dataset=dataset, threads=threads)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


if __name__ == "__main__":
    main()
