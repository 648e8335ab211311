"""Reproduce Setiono & Liu 1997 (Neural-Network Feature Selector) on Fashion-MNIST features with noise inputs.

    python -m scripts.pruning.setiono1997_nnfs --seed 0     # full run (see papers/pruning/setiono1997_nnfs.md)
    python -m scripts.pruning.setiono1997_nnfs --smoke      # seconds-long check on a data subset

Data: Fashion-MNIST, each image reduced to the 16 means of its 7x7 pixel blocks (standardised), plus
``n_noise`` standard-normal inputs that carry no information. Steps: train a one-hidden-layer tanh network with
the penalty P(w); backward elimination of inputs (remove the input whose loss costs least, retrain, stop at the
tolerance); report which inputs were removed, in which order, and the test accuracy before and after.

Paper (UCI-type data sets): most inputs removed at similar accuracy; exact figures not known to us. Ours: see
papers/pruning/setiono1997_nnfs.md (filled from the run folder's results.json).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning import setiono1997_nnfs as fs
from methods.pruning.report import write_csv
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    n_train: int = 20000
    n_val: int = 5000
    n_test: int = 10000
    n_noise: int = 8
    hidden: int = 12
    epochs: int = 10
    retrain_epochs: int = 1
    tolerance: float = 0.02  # accuracy drop accepted (validation)
    eps1: float = 0.1
    eps2: float = 1e-4
    beta: float = 10.0
    seed: int = 0


SMOKE = {"n_train": 600, "n_val": 200, "n_test": 300, "epochs": 1, "n_noise": 2}


@click.command()
@paper_options("setiono1997_nnfs")
def main(dataset, data_dir, seed, run_dir, smoke):
    cfg = replace(Defaults(), seed=seed, **(SMOKE if smoke else {}))
    out = run.run_dir_for("setiono1997_nnfs", run_dir)
    rng = np.random.default_rng(cfg.seed)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train + cfg.n_val, cfg.n_test)
    f = fs.block_features(np.concatenate([xtr, xte]))
    f = (f - f[:cfg.n_train].mean(0)) / f[:cfg.n_train].std(0)
    f = fs.with_noise(f, cfg.n_noise, rng)
    n = cfg.n_train
    x, y, xv, yv, xt = f[:n], ytr[:n], f[n:len(xtr)], ytr[n:], f[len(xtr):]
    kw = {"eps1": cfg.eps1, "eps2": cfg.eps2, "beta": cfg.beta}
    model = fs.mlp(f.shape[1], cfg.hidden, 10, rng)
    fs.train(model, x, y, cfg.epochs, rng, **kw)
    col = np.abs(model[0].weight).sum(axis=0)
    rows = [{"model": "all inputs", "inputs": f.shape[1], "accuracy": fs._accuracy(model, xt, yte)}]
    res = fs.backward_elimination(model, x, y, xv, yv, cfg.tolerance, cfg.retrain_epochs, rng, **kw)
    rows.append({"model": "selected inputs", "inputs": len(res["kept"]), "accuracy": fs._accuracy(model, xt, yte)})
    n_real = f.shape[1] - cfg.n_noise
    write_csv(out / "history.csv", res["history"])
    run.write_results(out, cfg, rows, {"removed": res["removed"], "kept": res["kept"],
                                       "noise_inputs": list(range(n_real, f.shape[1])),
                                       "column_l1": col.tolist()})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"removed (in order) {res['removed']}; noise inputs are {n_real}..{f.shape[1] - 1}")
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5. Adaptation: NNFS selects the input features of a one-hidden-layer
    network; LeNet-5's fc head (fc1 "5", ReLU, fc2 "7") is that network and its 800 inputs, computed once by the
    fixed conv part for 10k images, are the features, grouped by conv2 channel (16 per channel), so that
    removing a feature = removing a conv2 filter (structural). Sec. II: 1 epoch of head training with the penalty
    P(w) (eps1 0.1, eps2 1e-4, beta 10, lr 0.005) on 4000 images; Sec. III backward elimination: each step cuts
    off the channel whose removal costs least validation accuracy (the last 500 of the 10k images, not trained
    on; no retraining), then retrains the head 1 epoch on 1000 images; removals are accepted while the accuracy stays
    within 1.5 points of the full head's, at most 25 of the 50 channels (time budget; 5 in quick mode). The
    removed conv2 filters and their fc1 columns are then cut out by surgery."""
    from methods.pruning.common import remove_masks
    from methods.pruning.surgery import prune_channels
    from scripts.pruning.lecun1989_obd import fc_features
    x, y = data.subset(10000)
    feats = fc_features(model, x)  # (N, 800) = (N, C*4*4), channel-major (NCHW flatten)
    head = model[5:]  # the one-hidden-layer network: Sequential(Linear(800, 500), ReLU, Linear(500, 10))
    n_ch = model[2].weight.shape[0]
    per = feats.shape[1] // n_ch
    groups = [np.arange(c * per, (c + 1) * per) for c in range(n_ch)]
    n_val = len(x) // 20
    xv, yv = feats[-n_val:], y[-n_val:]
    kw = {"lr": 0.005, "eps1": 0.1, "eps2": 1e-4, "beta": 10.0}
    fs.train(head, feats[:4000], y[:4000], data.epochs(1), rng, **kw)
    res = fs.backward_elimination(head, feats[:1000], y[:1000], xv, yv, 0.015, 1, rng, groups=groups,
                                  max_removed=5 if data.quick else 25, **kw)
    remove_masks(model)
    return prune_channels(model, "2", np.array(res["kept"]), data.input_shape)


if __name__ == "__main__":
    main()
