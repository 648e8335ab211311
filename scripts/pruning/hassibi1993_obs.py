"""Optimal Brain Surgeon vs OBD vs magnitude on a small MLP, without retraining (Hassibi & Stork 1993).

    python -m scripts.pruning.hassibi1993_obs --seed 0 --threads 1            # full run (papers/pruning/hassibi1993_obs.md)
    python -m scripts.pruning.hassibi1993_obs --smoke --run-dir /tmp/obs      # seconds, on a data subset

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
from scripts._cli import paper_options


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
@paper_options("hassibi1993_obs")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, threads) -> None:
    from threadpoolctl import threadpool_limits
    cfg = Defaults(dataset=dataset, threads=threads)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: OBS on the fully connected layers, the conv part a fixed feature
    extractor (its 800 features computed once for 10k images). Adaptation: the full inverse Hessian of all fc
    weights (405k) is unaffordable, so each layer uses the paper's outer-product Hessian of one linear unit,
    H = (1/P) sum_k X_k X_k^T + alpha I with X_k = d a_i / d w_i = the layer's input for pattern k (the same
    for every output row i; P = 2000 images), inverted by the paper's recursion (``inverse_hessian``).
    fc2 "7" (10 rows x 500 weights): full OBS per output row, 70% of each row deleted one weight at a time with
    the saliency L_q = w_q^2 / (2 [H^-1]_qq), the correction dw = -(w_q / [H^-1]_qq) H^-1 e_q of the remaining
    weights and the Schur update of H^-1 -- no retraining. fc1 "5" (500 rows x 800) is *not* OBS: sequential
    OBS would take ~6 s per row (~50 min), so its weights are ranked once by the first-step OBS saliency
    L_q = w_q^2 / (2 [H^-1]_qq) and the lowest 92% deleted at once with no correction of the others (OBD's
    one-shot rule, ``obd_prune``, with h = 1 / diag(H^-1)); then the fc head is retrained 1 epoch on the cached
    features (before fc2's H is taken). The convolutions are kept dense."""
    from scripts.pruning.lecun1989_obd import fc_features, retrain_head
    x, y = data.subset(10000)
    feats = fc_features(model, x).astype(np.float64)  # (N, 800)
    head = model[5:]  # Sequential(Linear(800, 500), ReLU, Linear(500, 10)), shares the modules
    n_h, alpha = min(2000, len(x)), 1e-4
    fc1, fc2 = model[5], model[7]
    hinv = obs.inverse_hessian(feats[:n_h], n_h, alpha)  # (800, 800)
    w1 = obs.obd_prune(fc1.weight.ravel(), np.tile(1.0 / np.diag(hinv), fc1.weight.shape[0]),
                       round(0.92 * fc1.weight.size))
    common.apply_masks(model, {"5.weight": (w1 != 0).reshape(fc1.weight.shape).astype(fc1.weight.dtype)})
    retrain_head(head, feats.astype(x.dtype), y, rng, data.epochs(1))
    hid = head[:2](feats[:n_h].astype(x.dtype)).astype(np.float64)  # (P, 500): fc2's input
    hinv = obs.inverse_hessian(hid, n_h, alpha)  # (500, 500)
    k = round((0.5 if data.quick else 0.7) * fc2.weight.shape[1])
    mask = np.ones_like(fc2.weight)
    for i in range(fc2.weight.shape[0]):
        w, order, _ = obs.obs_prune(fc2.weight[i], hinv, k)
        fc2.weight[i] = w
        mask[i, order] = 0
    common.apply_masks(model, {"7.weight": mask})
    model.eval()
    return model


if __name__ == "__main__":
    main()
