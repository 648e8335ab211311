"""Reproduce Srinivas et al. 2017 (Training Sparse Neural Networks: per-weight gates) at Fashion-MNIST scale.

    python -m scripts.pruning.srinivas2017_gates --seed 0      # full run (LeNet-300-100, see papers/pruning/srinivas2017_gates.md)
    python -m scripts.pruning.srinivas2017_gates --smoke       # seconds-long check on a data subset

Data: Fashion-MNIST (``--dataset``/``--data-dir``). Steps: train the dense baseline; train weights and gates
jointly (Bernoulli gates, straight-through gradients, bimodal + sparsity penalty); remove the closed gates;
compare with magnitude pruning at the same per-layer sparsity, one-shot and after retraining for the same
number of epochs; plot the gate histogram.

Paper (LeNet-5 on MNIST): ~95.8% (?) of the parameters removed; the exact table is not known to us.
Ours: see papers/pruning/srinivas2017_gates.md (filled from the run folder's results.json).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from methods.pruning import srinivas2017_gates as sg
from methods.pruning.common import apply_masks, layer_masks, sparsity_stats
from methods.pruning.report import write_csv
from scripts import _structured_run as run
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    arch: str = "lenet_300_100"
    n_train: int = 60000
    n_test: int = 10000
    epochs: int = 6  # baseline
    lr: float = 0.01
    gate_train: int = 8000  # images used for the joint weight/gate training
    gate_epochs: int = 2
    gate_init: float = 0.6
    lr_gate: float = 30.0
    lambda1: float = 5e-5  # bimodal term sum g(1-g)
    lambda2: float = 3e-5  # sparsity term sum g
    seed: int = 0


SMOKE = {"n_train": 1000, "n_test": 500, "epochs": 1, "gate_train": 500, "gate_epochs": 1}


def _plot(gates: sg.Gates, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = np.concatenate([p.ravel() for _, p in gates.bank.named_parameters()])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(g, bins=50, log=True)
    ax.set_xlabel("gate value g")
    ax.set_ylabel("weights (log)")
    ax.set_title("gates after training (bimodal: at 0 or 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@paper_options("srinivas2017_gates")
@click.option("--n-train", default=Defaults.n_train, show_default=True, help="first N training images")
@click.option("--epochs", default=Defaults.epochs, show_default=True, help="baseline training epochs")
def main(dataset, data_dir, seed, run_dir, smoke, n_train, epochs):
    cfg = replace(Defaults(), **{"seed": seed, "n_train": n_train, "epochs": epochs, **(SMOKE if smoke else {})})
    out = run.run_dir_for("srinivas2017_gates", run_dir)
    xtr, ytr, xte, yte = run.load_data(dataset, data_dir, cfg.n_train, cfg.n_test)
    shape = xtr.shape[1:]
    model = run.build(cfg.arch, shape, cfg.seed)
    run.train(model, xtr, ytr, cfg.epochs, cfg.lr, cfg.seed, weight_decay=1e-4)
    dense = model.state_dict()
    rows = [{"model": "baseline", **run.measures(model, shape, xte, yte, latency=False), "sparsity": 0.0}]
    gates = sg.Gates(model, init=cfg.gate_init)
    xg, yg = xtr[:cfg.gate_train], ytr[:cfg.gate_train]
    hist = sg.train_gated(model, gates, xg, yg, cfg.gate_epochs, 64, cfg.lr, cfg.lr_gate, cfg.lambda1, cfg.lambda2,
                          np.random.default_rng(cfg.seed))
    _plot(gates, out / "gates.png")
    masks = gates.freeze()
    rows.append({"model": "gates", "accuracy": run.accuracy(model, xte, yte),
                 "sparsity": sparsity_stats(model)[-1]["sparsity"], "undecided": hist[-1]["undecided"]})
    mag = run.build(cfg.arch, shape, cfg.seed)
    mag.load_state_dict(dense)
    apply_masks(mag, layer_masks(mag, {n: 1.0 - float(m.mean()) for n, m in masks.items()}))
    rows.append({"model": "magnitude one-shot", "accuracy": run.accuracy(mag, xte, yte),
                 "sparsity": sparsity_stats(mag)[-1]["sparsity"]})
    run.train(mag, xg, yg, cfg.gate_epochs, cfg.lr, cfg.seed + 1, weight_decay=0.0)
    rows.append({"model": "magnitude + retraining", "accuracy": run.accuracy(mag, xte, yte),
                 "sparsity": sparsity_stats(mag)[-1]["sparsity"]})
    write_csv(out / "history.csv", hist)
    run.write_results(out, cfg, rows, {"layers": sparsity_stats(model)})
    for r in rows:
        click.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    click.echo(f"results in {out}")


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: per-weight gates (Sec. 3: z ~ Bernoulli(g), straight-through
    gradients; Sec. 3.1: bimodal + sparsity regulariser, lambda1 5e-5, lambda2 2e-5, gates initialised at 0.6,
    gate lr 30, scaled up on a smaller subset) on the weights of the fully connected layers fc1 "5" and fc2 "7"
    (93% of the weights), trained jointly with the fc weights (SGD lr 0.01) for 1 epoch on 10k images. Adaptation: the conv part is a fixed
    feature extractor whose 800 features are computed once (the paper gates every layer); the convolutions stay
    dense. The closed gates (g <= 0.5) become fixed masks, then the fc head is fine-tuned 1 epoch with the
    demo's common retraining (SGD momentum 0.9, weight decay 5e-4, lr 0.005) on the same cached features."""
    from scripts.pruning.lecun1989_obd import fc_features, retrain_head
    x, y = data.subset(10000)
    feats = fc_features(model, x)  # (N, 800)
    head = model[5:]  # Sequential(Linear(800, 500), ReLU, Linear(500, 10)), shares the modules
    gates = sg.Gates(head, init=0.6, names=["0.weight", "2.weight"])
    lr_gate = 30.0 * max(1.0, 10000 / len(x))  # on a smaller subset (quick) the gates move as far in fewer steps
    sg.train_gated(head, gates, feats, y, data.epochs(1), 64, 0.01, lr_gate, 5e-5, 2e-5, rng)
    gates.freeze()  # masks on the shared fc modules: model "5.weight", "7.weight"
    retrain_head(head, feats, y, rng, data.epochs(1))
    return model


if __name__ == "__main__":
    main()
