"""Optimal Brain Damage vs magnitude pruning on LeNet-300-100, before retraining (LeCun et al. 1989).

    python -m scripts.pruning.lecun1989_obd --seed 0 --threads 1                 # full run (papers/pruning/lecun1989_obd.md)
    python -m scripts.pruning.lecun1989_obd --smoke --run-dir /tmp/obd           # seconds, on a data subset

Data: Fashion-MNIST, standardised. The paper (zip-code digits, MSE loss) shows the objective increase against
the number of deleted parameters: OBD's saliency deletes far more parameters than magnitude for the same
increase. Ours: one trained LeNet-300-100, the fraction of weights deleted (global ranking) swept, training
loss / test loss / test accuracy recorded for OBD (the paper's diagonal), the exact Gauss-Newton diagonal and
magnitude, plus OBD's predicted loss increase (sum of deleted saliencies). Writes sweep.csv, sweep.png,
results.json, config.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import numpy as np

from methods.pruning import common, report
from methods.pruning import lecun1989_obd as obd
from scripts._cli import paper_options


@dataclass(frozen=True)
class Defaults:
    dataset: str = "fashion-mnist"
    model: str = "lenet_300_100"
    epochs: int = 15
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    hessian_samples: int = 3000  # training images averaged into h_kk
    loss_samples: int = 10000  # training images for the training loss after deletion
    ratios: tuple = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    threads: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None


SMOKE = {"epochs": 1, "hessian_samples": 300, "loss_samples": 500, "ratios": (0.5, 0.9), "train_limit": 1000,
         "test_limit": 500}


def run(cfg: Defaults, data_dir, seed: int, run_dir) -> dict:
    from nn.models import build
    from nn.optim import SGD
    from nn.train import evaluate
    from scripts.lwnn import load_data

    (x, y), (xt, yt), _, _ = load_data(cfg.dataset, data_dir, cfg.train_limit, cfg.test_limit)
    out = report.run_folder("lecun1989_obd", run_dir)
    model = build(cfg.model, rng=np.random.default_rng(seed))
    opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    common.train_epochs(model, opt, x, y, cfg.epochs, cfg.batch_size, np.random.default_rng(seed))
    state = model.state_dict()
    xs, ys = x[:cfg.loss_samples], y[:cfg.loss_samples]
    base_train_loss = evaluate(model, xs, ys)[0]
    base_test = evaluate(model, xt, yt)
    click.echo(f"dense: train loss {base_train_loss:.4f}, test accuracy {base_test[1]:.4f}")
    sal = {m: obd.saliency(model, obd.diag_hessian(model, x[:cfg.hessian_samples], method=m)) for m in ("obd", "gn")}

    rows = []
    for ratio in cfg.ratios:
        for crit in ("obd", "gn", "magnitude"):
            model.load_state_dict(state)
            masks = common.global_magnitude_masks(model, ratio) if crit == "magnitude" else \
                common.score_masks(sal[crit], ratio)
            predicted = float(sum((sal["obd"][n] * (1 - masks[n])).sum() for n in masks))
            common.apply_masks(model, masks)
            tl = evaluate(model, xs, ys)[0]
            te = evaluate(model, xt, yt)
            common.remove_masks(model)
            rows.append({"ratio": ratio, "criterion": crit, "train_loss": tl, "train_loss_increase": tl - base_train_loss,
                         "obd_predicted_increase": predicted, "test_loss": te[0], "test_acc": te[1]})
            click.echo(f"{ratio:.0%} deleted, {crit:9s}: train loss +{tl - base_train_loss:.4f} "
                       f"(OBD predicts +{predicted:.4f}), test accuracy {te[1]:.4f}")
    _plot(rows, out / "sweep.png", base_test[0])
    results = {"dense_train_loss": base_train_loss, "dense_test_loss": base_test[0], "dense_test_acc": base_test[1],
               "sweep": rows, "seed": seed}
    report.save_run(out, {**dataclasses.asdict(cfg), "seed": seed, "data_dir": data_dir}, results, {"sweep": rows})
    click.echo(f"results in {out}")
    return results


def _plot(rows, path, dense_test_loss) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for crit in dict.fromkeys(r["criterion"] for r in rows):
        pts = [(100 * r["ratio"], r["test_loss"]) for r in rows if r["criterion"] == crit]
        ax.plot(*zip(*pts), marker="o", label=crit)
    ax.axhline(dense_test_loss, color="gray", ls="--", lw=0.8, label="dense")
    ax.set_xlabel("weights deleted (%), no retraining")
    ax.set_ylabel("test cross-entropy")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@paper_options("lecun1989_obd")
@click.option("--epochs", type=int, default=None, help="dense training epochs")
@click.option("--threads", type=int, default=None, help="BLAS threads (1 on a busy shared machine)")
def main(dataset, data_dir, seed, run_dir, smoke, epochs, threads) -> None:
    from threadpoolctl import threadpool_limits
    cfg = Defaults(dataset=dataset)
    if smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in {"epochs": epochs, "threads": threads}.items() if v is not None})
    with threadpool_limits(cfg.threads):
        run(cfg, data_dir, seed, run_dir)


def fc_features(model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """LeNet-5's conv part (children "0".."4", eval mode) as a fixed feature extractor: (N, 1, 28, 28) -> (N, 800)."""
    convs = model[:5]  # shares the modules
    convs.eval()
    return np.concatenate([convs(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def retrain_head(head, feats: np.ndarray, y: np.ndarray, rng, epochs: int = 1, lr: float = 0.005) -> None:
    """The demo's fine-tuning (SGD momentum 0.9, weight decay 5e-4, batch 64), on cached fc-head features."""
    from scripts._structured_run import train
    train(head, feats, y, epochs, lr, rng)


def demo(model, data, rng):
    """The demo's budget on the trained LeNet-5: OBD on the fully connected layers fc1 "5" and fc2 "7" (93% of
    the weights), the conv part a fixed feature extractor whose 800 features are computed once for 10k images.
    Adaptation: the paper's second-derivative back-propagation (Eqs. (5)-(6), Gauss-Newton, softmax
    cross-entropy boundary) runs on the fc head only, h_kk averaged over 2000 images; saliencies
    s_k = h_kk u_k^2 / 2 ranked globally over fc1+fc2; the paper's procedure (delete the lowest, retrain,
    iterate) in 2 rounds, 80% then 92% of the fc weights deleted, each followed by 1 epoch of fc-head
    retraining on the 10k cached features. The convolutions are kept dense."""
    x, y = data.subset(10000)
    feats = fc_features(model, x)  # (N, 800)
    head = model[5:]  # Sequential(Linear(800, 500), ReLU, Linear(500, 10)), shares the modules
    names = {"0.weight": "5.weight", "2.weight": "7.weight"}  # head name -> model name
    for ratio in (0.8, 0.92):
        masks = obd.obd_masks(head, feats[:2000], ratio)
        common.apply_masks(model, {names[n]: m for n, m in masks.items()})
        retrain_head(head, feats, y, rng, data.epochs(1))
    return model


if __name__ == "__main__":
    main()
