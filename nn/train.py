"""The training loop: mini-batch SGD-style training, evaluation, per-epoch checkpoints, metrics and resume.

``fit`` runs ``epochs`` passes over the training set. Each epoch draws its batch order (and any augmentation)
from the one ``rng`` passed in, then evaluates on ``val``, steps the scheduler, appends a row to the metrics
log and writes ``run_dir/last.h5`` with the model, optimizer, scheduler, epoch count and the rng state.

Resume and interruption. ``last.h5`` always holds the state at the *start* of an epoch: it is written before
the first epoch and after each finished one. Ctrl-C (KeyboardInterrupt) during an epoch discards that partial
epoch: the checkpoint on disk is left as it is (the state at the start of the interrupted epoch), the
interruption is recorded in ``run_dir/interrupted.json``, and the exception is re-raised. ``fit(...,
resume=True)`` restores everything from ``last.h5``, including the rng, so the continued run draws the same
batches and ends with bit-identical weights to an uninterrupted run.

Files in ``run_dir``: ``last.h5``, ``metrics.json`` (list of per-epoch rows) and ``metrics.csv`` (same rows).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nn.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from nn.data import batches, num_batches
from nn.module import Module

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s")


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000,
             loss=None) -> tuple[float, float]:
    """Mean loss and accuracy (fraction in [0, 1]) of ``model`` on (x, y), in eval mode.

    ``x`` is cast batch by batch to the model's dtype; ``loss`` defaults to cross-entropy. The model's
    train/eval mode is restored afterwards.
    """
    if loss is None:
        from nn.losses import CrossEntropyLoss
        loss = CrossEntropyLoss()
    was_training = model.training
    model.eval()
    dtype = model.dtype or x.dtype
    total, correct, n = 0.0, 0, len(x)
    try:
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size].astype(dtype, copy=False), y[start:start + batch_size]
            logits = model(xb)
            total += loss.forward(logits, yb) * len(yb)
            correct += int((logits.argmax(axis=1) == yb).sum())
    finally:
        model.train(was_training)
    return total / max(n, 1), correct / max(n, 1)


class _Progress:
    """One status line per epoch: redrawn in place on a terminal, printed once when not (logs stay short)."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, total: int) -> None:
        self.enabled, self.epoch, self.epochs, self.total = enabled, epoch, epochs, total
        self.tty = enabled and sys.stderr.isatty()
        self.last = 0.0

    def line(self, done: int, loss: float, acc: float, ips: float, extra: str = "") -> str:
        width = 24
        fill = width * done // max(self.total, 1)
        return (f"epoch {self.epoch}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
                f"loss {loss:.4f} acc {100 * acc:.2f}% {ips:,.0f} img/s{extra}")

    def update(self, done: int, loss: float, acc: float, ips: float) -> None:
        now = time.perf_counter()
        if self.tty and (now - self.last > 0.1 or done == self.total):
            self.last = now
            sys.stderr.write("\r" + self.line(done, loss, acc, ips))
            sys.stderr.flush()

    def finish(self, done: int, loss: float, acc: float, ips: float, extra: str) -> None:
        if self.enabled:
            sys.stderr.write(("\r" if self.tty else "") + self.line(done, loss, acc, ips, extra) + "\n")
            sys.stderr.flush()


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(run_dir / "metrics.json")
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)


def _read_metrics(run_dir: Path, upto: int) -> list[dict]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text()) if row["epoch"] <= upto]


def fit(model: Module, loss, optimizer, train: tuple[np.ndarray, np.ndarray], epochs: int, batch_size: int,
        rng: np.random.Generator, val: tuple[np.ndarray, np.ndarray] | None = None, scheduler=None,
        run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        on_batch: Callable[[int, int], None] | None = None, metadata: dict | None = None,
        eval_batch_size: int = 1000) -> list[dict]:
    """Train ``model`` for ``epochs`` epochs (in total, counting epochs done before a resume).

    Parameters
    ----------
    model : the lwnn model; inputs are cast to its dtype batch by batch.
    loss : object with ``forward(logits, target) -> float`` and ``backward() -> d loss / d logits``.
    optimizer : with ``zero_grad()``, ``step()``, ``lr``, ``state_dict()``/``load_state_dict()``.
    train : (x (N, ...) float, y (N,) int64).
    rng : the only source of randomness (batch order, augmentation); its state is checkpointed.
    val : evaluated after every epoch (loss, accuracy); None skips evaluation.
    scheduler : stepped once per epoch after the evaluation.
    run_dir : folder for ``last.h5`` and the metrics log; None keeps nothing on disk.
    resume : continue from ``run_dir/last.h5`` (model, optimizer, scheduler, rng and epoch count).
    augment : ``augment(xb, rng) -> xb`` applied to each training batch (e.g. ``nn.data.cifar_augment``).
    on_batch : called as ``on_batch(epoch, step)`` after each optimizer step (1-based epoch, 0-based step).
    metadata : extra JSON-able entries stored in every checkpoint.

    Returns
    -------
    The metrics history: one dict per finished epoch with the keys of ``METRIC_FIELDS``.
    """
    x, y = train
    if len(x) != len(y):
        raise ValueError(f"fit: {len(x)} training inputs but {len(y)} targets")
    run_dir = Path(run_dir) if run_dir is not None else None
    meta = dict(metadata or {})
    start_epoch, history = 0, []
    if resume:
        if run_dir is None or not (run_dir / "last.h5").is_file():
            raise FileNotFoundError(f"fit(resume=True): no checkpoint {run_dir}/last.h5 to resume from")
        ckpt = load_checkpoint(run_dir / "last.h5", model, optimizer, scheduler)
        if ckpt.rng_state is None:
            raise ValueError(f"{run_dir}/last.h5 holds no rng state; cannot resume with the same data order")
        restore_rng(ckpt.rng_state, rng)
        start_epoch = ckpt.epoch
        history = _read_metrics(run_dir, start_epoch)
        if progress:
            print(f"resuming from {run_dir / 'last.h5'} after epoch {start_epoch}", file=sys.stderr)

    def checkpoint(epoch: int) -> None:
        if run_dir is not None:
            save_checkpoint(run_dir / "last.h5", model, optimizer, scheduler, epoch=epoch, rng=rng, metadata=meta)

    if run_dir is not None and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint(0)
    dtype = model.dtype or x.dtype
    total_batches = num_batches(len(x), batch_size)
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        lr = float(optimizer.lr)
        bar = _Progress(progress, epoch, epochs, total_batches)
        seen = correct = 0
        loss_sum = 0.0
        t0 = time.perf_counter()
        done = 0
        try:
            for step, (xb, yb) in enumerate(batches(x, y, batch_size, rng)):
                xb = xb.astype(dtype, copy=False)
                if augment is not None:
                    xb = augment(xb, rng)
                optimizer.zero_grad()
                logits = model(xb)
                batch_loss = loss.forward(logits, yb)
                model.backward(loss.backward())
                optimizer.step()
                done, seen = done + 1, seen + len(yb)
                loss_sum += batch_loss * len(yb)
                correct += int((logits.argmax(axis=1) == yb).sum())
                bar.update(done, loss_sum / seen, correct / seen, seen / (time.perf_counter() - t0))
                if on_batch is not None:
                    on_batch(epoch, step)
        except KeyboardInterrupt:
            if progress:
                print(f"\ninterrupted in epoch {epoch} after {done} batches; "
                      + (f"{run_dir / 'last.h5'} holds the state after epoch {epoch - 1} (resume continues from there)"
                         if run_dir is not None else "nothing saved (no run_dir)"), file=sys.stderr)
            if run_dir is not None:
                (run_dir / "interrupted.json").write_text(json.dumps(
                    {"epoch": epoch, "batches_done": done, "resume_from_epoch": epoch - 1,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
            raise
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
               "val_loss": None, "val_acc": None, "seconds": seconds, "images_per_s": seen / seconds}
        extra = f" ({seconds:.1f} s)"
        if val is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, val[0], val[1], eval_batch_size, loss)
            extra = f" | val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}%" + extra
        bar.finish(done, row["train_loss"], row["train_acc"],
                   row["images_per_s"], extra)
        if scheduler is not None:
            scheduler.step()
        history.append(row)
        if run_dir is not None:  # metrics first: a log row without its checkpoint is dropped on resume
            _write_metrics(run_dir, history)
            checkpoint(epoch)
            (run_dir / "interrupted.json").unlink(missing_ok=True)
    return history
