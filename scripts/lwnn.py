"""The ``lwnn`` command line: demo, compare, papers, run, train, evaluate, profile, export.

    python -m scripts.lwnn demo                      # LeNet-5 on Fashion-MNIST, 3 epochs (make demo)
    python -m scripts.lwnn demo --epochs 1 --limit 5000
    python -m scripts.lwnn train --model resnet20 --dataset cifar10 --data-dir ~/data --epochs 30 --scheduler cosine
    python -m scripts.lwnn train --run-dir runs/x --resume      # continue an interrupted run (same options)
    python -m scripts.lwnn demo --family pruning,quantization      # some families only (or --method ID)
    python -m scripts.lwnn compare runs/demo-x --method han2015_prune   # the comparison on a finished run
    python -m scripts.lwnn papers --family pruning               # the catalogue and what exists per paper
    python -m scripts.lwnn run han2015_prune --smoke             # a paper's script (scripts/<family>/<id>.py)
    python -m scripts.lwnn evaluate runs/demo-*/last.h5
    python -m scripts.lwnn profile --model resnet20              # or --checkpoint runs/x/last.h5
    python -m scripts.lwnn export runs/x/last.h5 --onnx model.onnx   # ONNX graph (pip install onnx)

``demo`` trains the Caffe LeNet-5 (431K parameters) with SGD (lr 0.01, momentum 0.9, weight decay 5e-4,
batch 64, seed 0) on inputs standardised by the training-set mean and std, evaluates on the 10,000 test
images after every epoch, and writes to the run folder (default ``runs/demo-<timestamp>``): ``last.h5``
(checkpoint; ``evaluate`` and ``profile`` read it back), ``metrics.json``/``metrics.csv`` (per epoch),
``results.json`` (config, test accuracy, timings, per-layer profile) and ``summary.txt`` (the per-layer
table: parameters, MACs, bytes, latency). The PyTorch twin of this setup reaches 89.4% after 4 epochs.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from nn import data as datasets
from nn.checkpoint import jsonable, load_checkpoint
from nn.losses import CrossEntropyLoss
from nn.train import evaluate, fit
from scripts import catalogue
from scripts.catalogue import FAMILIES

DATASET_NAMES = ("fashion-mnist", "mnist", "cifar10")
MODEL_NAMES = ("lenet5", "lenet_300_100", "vgg_small", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved to results.json and to every checkpoint."""

    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "none"
    step_size: int = 30
    gamma: float = 0.1
    seed: int = 0
    dtype: str = "float32"
    augment: bool = False
    limit: int | None = None
    test_limit: int | None = None


DEMO = TrainConfig()


# ---------------------------------------------------------------------------------------------------- pieces
def load_data(dataset: str, data_dir: str | None, limit: int | None = None, test_limit: int | None = None):
    """Train and test sets standardised by the (full) training set's per-channel mean and std.

    ``limit`` / ``test_limit`` keep only the first N training / test images (smoke runs).
    """
    x, y = datasets.load_dataset(dataset, data_dir, "train")
    xt, yt = datasets.load_dataset(dataset, data_dir, "test")
    mean, std = datasets.channel_stats(x)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if test_limit is not None:
        xt, yt = xt[:test_limit], yt[:test_limit]
    return (datasets.normalize(x, mean, std), y), (datasets.normalize(xt, mean, std), yt), mean, std


def build_model(name: str, input_shape: tuple[int, ...], seed: int, dtype: str = "float32"):
    from nn.models import BUILDERS, build

    c, h, _ = input_shape
    size = {"image_size": h} if "image_size" in inspect.signature(BUILDERS[name]).parameters else {}
    return build(name, in_channels=c, **size, rng=np.random.default_rng(seed), dtype=np.dtype(dtype))


def make_optimizer(cfg: TrainConfig, model):
    from nn.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR

    if cfg.optimizer == "sgd":
        opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = Adam(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = {"none": None,
             "step": lambda: StepLR(opt, cfg.step_size, cfg.gamma),
             "cosine": lambda: CosineAnnealingLR(opt, cfg.epochs)}[cfg.scheduler]
    return opt, (sched() if sched else None)


def profile_table(model, input_shape: tuple[int, ...]) -> tuple[str, list]:
    """The per-layer table of nn.profile for one input of ``input_shape`` (C, H, W), and its rows."""
    from nn.profile import profile, summary_table

    rows = profile(model, (1, *input_shape), dtype=model.dtype)
    return summary_table(rows), rows


def run_training(cfg: TrainConfig, data_dir: str | None, run_dir: Path, resume: bool = False,
                 progress: bool = True) -> dict:
    """Train, evaluate, checkpoint and profile; writes results.json and summary.txt; returns the results."""
    t0 = time.perf_counter()
    train, test, mean, std = load_data(cfg.dataset, data_dir, cfg.limit, cfg.test_limit)
    load_s = time.perf_counter() - t0
    input_shape = train[0].shape[1:]
    model = build_model(cfg.model, input_shape, cfg.seed, cfg.dtype)
    opt, sched = make_optimizer(cfg, model)
    click.echo(f"{cfg.model} ({model.num_parameters():,} parameters) on {cfg.dataset}: {len(train[1])} training / "
               f"{len(test[1])} test images {input_shape}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
               f"{cfg.optimizer} lr {cfg.lr}; run folder {run_dir}")
    meta = {"config": jsonable(cfg), "dataset": cfg.dataset, "mean": mean.tolist(), "std": std.tolist()}
    augment = datasets.cifar_augment if cfg.augment else None
    t1 = time.perf_counter()
    history = fit(model, CrossEntropyLoss(), opt, train, cfg.epochs, cfg.batch_size, np.random.default_rng(cfg.seed),
                  val=test, scheduler=sched, run_dir=run_dir, resume=resume, progress=progress, augment=augment,
                  metadata=meta)
    train_s = time.perf_counter() - t1
    test_loss, test_acc = evaluate(model, *test)
    table, rows = profile_table(model, input_shape)
    results = {"config": jsonable(cfg), "test_loss": test_loss, "test_acc": test_acc, "epochs": history,
               "seconds": {"load_data": load_s, "train_and_eval": train_s},
               "checkpoint": str(run_dir / "last.h5"), "profile": jsonable(rows)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (run_dir / "summary.txt").write_text(table + "\n")
    click.echo(table)
    click.echo(f"test accuracy {100 * test_acc:.2f}% (loss {test_loss:.4f}); "
               f"{train_s:.1f} s for {len(history)} epoch(s) this run; results in {run_dir}")
    return results


def _default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---------------------------------------------------------------------------------------------------- commands
@click.group()
def cli() -> None:
    """lwnn: from-scratch NumPy/Numba DNN compression, checked against PyTorch."""


FAMILY_HELP = f"a family ({', '.join(FAMILIES)}; repeatable or a comma list); default: every family"
METHOD_HELP = "a paper id (repeatable or a comma list), added to the families' rows"


def _select(families, methods) -> tuple[str, ...] | None:
    """The comparison's rows for ``--family`` / ``--method`` (scripts.compare.select), checked before any work;
    None: every method. A family with no demo yet is a message, not an error."""
    from scripts.compare import demo_fn, select

    if not families and not methods:
        return None
    try:
        ids, messages = select(families, methods)
        for name in ids:
            demo_fn(name)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for m in messages:
        click.echo(m)
    if not ids:
        click.echo("no rows selected: the comparison has the baseline row only")
    return ids


@cli.command()
@click.option("--epochs", default=DEMO.epochs, show_default=True, help="training epochs")
@click.option("--limit", type=click.IntRange(1), default=None, help="train on the first N training images only")
@click.option("--test-limit", type=click.IntRange(1), default=None, help="evaluate on the first N test images only")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="folder with the Fashion-MNIST files")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="default: runs/demo-<timestamp>")
@click.option("--seed", default=DEMO.seed, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="after the baseline, compress it with every implemented method and tabulate (scripts/compare.py)")
@click.option("--family", "families", multiple=True, help=FAMILY_HELP)
@click.option("--method", "methods", multiple=True, help=METHOD_HELP)
@click.option("--full", is_flag=True, help="longer settings: 6 baseline epochs, 3x the methods' retraining")
def demo(epochs, limit, test_limit, data_dir, run_dir, seed, quiet, compare, families, methods, full) -> None:
    """Train LeNet-5 on Fashion-MNIST, then compare the compression methods on it (the surveys' table)."""
    if full and epochs == DEMO.epochs:
        epochs = 6
    cfg = dataclasses.replace(DEMO, epochs=epochs, limit=limit, test_limit=test_limit, seed=seed)
    run_dir = Path(run_dir) if run_dir else _default_run_dir("demo")
    rows = _select(families, methods) if compare else None

    def go():
        run_training(cfg, data_dir, run_dir, progress=not quiet)
        if compare:
            run_comparison(cfg, data_dir, run_dir, full=full, quick=limit is not None, methods=rows)
    _guard(go)


def run_comparison(cfg: TrainConfig, data_dir: str | None, run_dir: Path, full: bool = False,
                   quick: bool = False, methods: tuple[str, ...] | None = None,
                   out_dir: Path | None = None) -> list[dict]:
    """The methods (default: every demo method) on copies of the trained baseline in ``run_dir/last.h5``
    (scripts/compare.py)."""
    from scripts.compare import DemoData, compare

    train, test, _, _ = load_data(cfg.dataset, data_dir, cfg.limit, cfg.test_limit)
    input_shape = train[0].shape[1:]
    ck = load_checkpoint(run_dir / "last.h5")
    baseline = ck.model
    meta = {k: ck.metadata[k] for k in ("dataset", "mean", "std") if k in ck.metadata}
    theta0 = build_model(cfg.model, input_shape, cfg.seed, cfg.dtype).state_dict()  # same seed: same init
    data = DemoData(*train, *test, input_shape=input_shape, theta0=theta0, quick=quick, full=full)
    out_dir = Path(out_dir) if out_dir else run_dir / "comparison"
    click.echo(f"comparing compression methods on the trained {cfg.model}; results in {out_dir}")
    return compare(baseline, data, out_dir, seed=cfg.seed, methods=methods, echo=click.echo, metadata=meta)


@cli.command("compare")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--family", "families", multiple=True, help=FAMILY_HELP)
@click.option("--method", "methods", multiple=True, help=METHOD_HELP)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--quick", is_flag=True, help="smoke budgets (seconds per method)")
@click.option("--full", is_flag=True, help="3x the methods' retraining")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="default: RUN_DIR/comparison")
def compare_cmd(run_dir, families, methods, data_dir, quick, full, out) -> None:
    """The comparison table alone, on the baseline a finished ``demo`` or ``train`` run left in RUN_DIR."""
    rows = _select(families, methods)

    def go():
        ck = load_checkpoint(Path(run_dir) / "last.h5")
        cfg = TrainConfig(**ck.metadata["config"])
        run_comparison(cfg, data_dir, Path(run_dir), full=full, quick=quick, methods=rows, out_dir=out)
    _guard(go)


@cli.command("papers")
@click.option("--family", "family_name", type=click.Choice(FAMILIES), default=None, help="one family only")
def papers_cmd(family_name) -> None:
    """Every paper id with its family, tier, year, title and what exists (method, script, note, test, rows)."""
    click.echo(catalogue.table(catalogue.family(family_name) if family_name else list(catalogue.PAPERS)))


@cli.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                      "help_option_names": []})
@click.argument("paper_id")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(paper_id, script_args) -> None:
    """Run a paper's script by its id: ``lwnn run PAPER_ID [script options]`` (``--help`` after the id)."""
    try:
        main = catalogue.script_main(paper_id)
    except (KeyError, FileNotFoundError) as e:
        raise click.ClickException(e.args[0]) from None
    main.main(args=list(script_args), prog_name=f"lwnn run {paper_id}")


@cli.command()
@click.option("--model", type=click.Choice(MODEL_NAMES), default=DEMO.model, show_default=True)
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=DEMO.dataset, show_default=True)
@click.option("--epochs", default=DEMO.epochs, show_default=True)
@click.option("--batch-size", default=DEMO.batch_size, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default=DEMO.optimizer, show_default=True)
@click.option("--lr", default=DEMO.lr, show_default=True)
@click.option("--momentum", default=DEMO.momentum, show_default=True, help="SGD only")
@click.option("--weight-decay", default=DEMO.weight_decay, show_default=True)
@click.option("--scheduler", type=click.Choice(["none", "step", "cosine"]), default=DEMO.scheduler, show_default=True)
@click.option("--step-size", default=DEMO.step_size, show_default=True, help="StepLR period (epochs)")
@click.option("--gamma", default=DEMO.gamma, show_default=True, help="StepLR factor")
@click.option("--seed", default=DEMO.seed, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=DEMO.dtype, show_default=True)
@click.option("--augment/--no-augment", default=None, help="random crop + flip (default: on for cifar10)")
@click.option("--limit", type=click.IntRange(1), default=None, help="train on the first N training images only")
@click.option("--test-limit", type=click.IntRange(1), default=None, help="evaluate on the first N test images only")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="default: runs/<model>-<timestamp>")
@click.option("--resume", is_flag=True, help="continue from RUN_DIR/last.h5 (pass the same options)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train(data_dir, run_dir, resume, quiet, augment, **options) -> None:
    """Train any zoo model on any dataset."""
    cfg = TrainConfig(augment=options["dataset"] == "cifar10" if augment is None else augment, **options)
    if resume and run_dir is None:
        raise click.UsageError("--resume needs --run-dir")
    _guard(lambda: run_training(cfg, data_dir, Path(run_dir) if run_dir else _default_run_dir(cfg.model),
                                resume=resume, progress=not quiet))


@cli.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None, help="default: the one it was trained on")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--batch-size", default=1000, show_default=True)
@click.option("--test-limit", type=click.IntRange(1), default=None, help="evaluate on the first N test images only")
def evaluate_cmd(checkpoint, dataset, data_dir, batch_size, test_limit) -> None:
    """Test loss and accuracy of a checkpoint (its model is rebuilt from the stored architecture)."""
    def go():
        ck = load_checkpoint(checkpoint)
        name = dataset or ck.metadata.get("dataset", "fashion-mnist")
        x, y = datasets.load_dataset(name, data_dir, "test")
        x, y = x[:test_limit], y[:test_limit]
        if "mean" in ck.metadata:
            x = datasets.normalize(x, ck.metadata["mean"], ck.metadata["std"])
        loss, acc = evaluate(ck.model, x, y, batch_size)
        click.echo(json.dumps({"checkpoint": str(checkpoint), "epoch": ck.epoch, "dataset": name,
                               "test_loss": loss, "test_acc": acc}))
    _guard(go)


@cli.command("profile")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="a zoo model (fresh weights)")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="or a checkpoint")
@click.option("--input-shape", default=None, help="C,H,W (default: 1,28,28 for LeNets, 3,32,32 otherwise)")
def profile_cmd(model, checkpoint, input_shape) -> None:
    """Per-layer parameters, MACs, bytes and latency of a model or checkpoint."""
    def go():
        if (model is None) == (checkpoint is None):
            raise click.UsageError("give exactly one of --model and --checkpoint")
        meta, arch = {}, {}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            m, meta, arch = ck.model, ck.metadata, getattr(ck.model, "arch", None) or {}  # no arch: a spec model
        name = model or arch.get("name", "")
        shape = model_input_shape(name, meta, arch.get("kwargs", {}), input_shape)
        if checkpoint is None:
            m = build_model(name, shape, 0)
        click.echo(profile_table(m, shape)[0])
    _guard(go)


def model_input_shape(name: str, meta: dict, kw: dict, input_shape: str | None) -> tuple[int, ...]:
    """(C, H, W) of one input: ``input_shape`` ("C,H,W") if given, else from the zoo kwargs and the dataset."""
    if input_shape:
        return tuple(int(v) for v in input_shape.split(","))
    gray = name.startswith("lenet") if name else "mnist" in meta.get("dataset", "")
    c = kw.get("in_channels", 1 if gray else 3)
    s = kw.get("image_size", 28 if gray else 32)
    return (c, s, s)


@cli.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--onnx", "onnx_out", type=click.Path(dir_okay=False), required=True, help="the .onnx file to write")
@click.option("--input-shape", default=None, help="C,H,W (default: from the checkpoint, as `lwnn profile`)")
def export_cmd(checkpoint, onnx_out, input_shape) -> None:
    """Write a checkpoint's model as an ONNX graph (batch axis free; nn/export.py lists the operators)."""
    def go():
        from nn.export import to_onnx
        try:
            import onnx
        except ImportError as e:
            raise click.ClickException("lwnn export needs the onnx package: pip install onnx (or lwnn[onnx])") from e
        ck = load_checkpoint(checkpoint)
        arch = getattr(ck.model, "arch", None) or {}
        shape = model_input_shape(arch.get("name", ""), ck.metadata, arch.get("kwargs", {}), input_shape)
        try:
            proto = to_onnx(ck.model, onnx_out, (1, *shape))
        except TypeError as e:  # a layer with no ONNX export: one line naming it, not a traceback
            raise click.ClickException(str(e)) from e
        dtype = onnx.helper.tensor_dtype_to_np_dtype(proto.graph.input[0].type.tensor_type.elem_type)
        click.echo(f"wrote {onnx_out}: {type(ck.model).__name__}, {len(proto.graph.node)} nodes, input "
                   f"(N, {', '.join(map(str, shape))}) {dtype}")
    _guard(go)


def _guard(fn) -> None:
    """Turn expected failures (missing data, bad checkpoint) into a one-line error and exit status 1."""
    try:
        fn()
    except KeyboardInterrupt:
        click.echo("interrupted; resume with `lwnn train --resume --run-dir <run folder>`", err=True)
        sys.exit(130)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":
    cli()
