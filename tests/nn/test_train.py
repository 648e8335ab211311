"""The training loop: evaluation, run-folder contents, and interrupted + resumed == uninterrupted, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nn.activations import ReLU
from nn.basic import Flatten
from nn.checkpoint import read_checkpoint
from nn.containers import Sequential
from nn.data import random_flip
from nn.linear import Linear
from nn.losses import CrossEntropyLoss
from nn.optim import SGD, StepLR
from nn.train import METRIC_FIELDS, evaluate, fit
from tests.helpers import TOL


def toy_data(seed=0, n=90):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 2, 3)) + y[:, None, None, None]  # learnable: mean shifts with the class
    return x, y


def toy_model(seed):
    rng = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(6, 8, rng=rng, dtype=np.float64), ReLU(),
                      Linear(8, 3, rng=rng, dtype=np.float64))


def flip(xb, rng):
    return random_flip(xb, rng)  # consumes the rng every batch, so resume must restore it exactly


def run(run_dir, seed_model, seed_rng, epochs=4, resume=False, on_batch=None):
    model = toy_model(seed_model)
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    history = fit(model, CrossEntropyLoss(), opt, toy_data(), epochs, 16, np.random.default_rng(seed_rng),
                  val=toy_data(1, 30), scheduler=sched, run_dir=run_dir, resume=resume, progress=False,
                  augment=flip, on_batch=on_batch)
    return model, opt, history


def test_evaluate_matches_manual(rng):
    x, y = toy_data()
    model = toy_model(0)
    model.train()
    loss, acc = evaluate(model, x, y, batch_size=7)
    assert model.training  # mode restored
    logits = model(x)
    ce = CrossEntropyLoss().forward(logits, y)
    assert abs(loss - ce) < TOL[np.dtype(np.float64)]["rtol"] * ce  # batch-weighted mean vs one mean
    assert acc == np.mean(logits.argmax(1) == y)


def test_fit_learns_and_writes_run_folder(tmp_path):
    model, _, history = run(tmp_path, 0, 0)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["lr"] for r in history] == [0.1, 0.1, 0.05, 0.05]
    assert history[-1]["train_loss"] < history[0]["train_loss"] and history[-1]["val_acc"] > 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.h5", "metrics.csv", "metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == history
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == list(METRIC_FIELDS) and len(lines) == 5
    ck = read_checkpoint(tmp_path / "last.h5")
    assert ck.epoch == 4 and ck.optimizer_state["lr"] == 0.025 and ck.scheduler_state["last_epoch"] == 4
    for name, p in model.named_parameters():
        assert np.array_equal(ck.state[name], p)


@pytest.mark.parametrize("stop_at", [(1, 0), (2, 3), (4, 5)])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop_at):
    ref, ref_opt, ref_hist = run(tmp_path / "ref", 0, 0)

    def interrupt(epoch, step):
        if (epoch, step) == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", 0, 0, on_batch=interrupt)
    note = json.loads((tmp_path / "cut" / "interrupted.json").read_text())
    assert note["epoch"] == stop_at[0] and note["batches_done"] == stop_at[1] + 1
    assert read_checkpoint(tmp_path / "cut" / "last.h5").epoch == stop_at[0] - 1
    # A fresh process: different initial weights and rng seed; everything must come from last.h5.
    model, opt, hist = run(tmp_path / "cut", 7, 99, resume=True)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert np.array_equal(p, q), name
    for name, st in ref_opt.state.items():
        assert np.array_equal(opt.state[name]["momentum_buffer"], st["momentum_buffer"]), name
    assert opt.lr == ref_opt.lr
    assert [{k: r[k] for k in ("epoch", "train_loss", "val_loss")} for r in hist] == \
        [{k: r[k] for k in ("epoch", "train_loss", "val_loss")} for r in ref_hist]
    assert not (tmp_path / "cut" / "interrupted.json").exists()


def test_resume_needs_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint .*last.h5 to resume from"):
        run(tmp_path, 0, 0, resume=True)


def test_fit_without_run_dir_and_float32_inputs():
    model = toy_model(0)
    x, y = toy_data()
    hist = fit(model, CrossEntropyLoss(), SGD(model, lr=0.05), (x.astype(np.float32), y), 2, 32,
               np.random.default_rng(0), progress=False)
    assert len(hist) == 2 and hist[0]["val_acc"] is None and model.dtype == np.float64
    with pytest.raises(ValueError, match="90 training inputs but 3 targets"):
        fit(model, CrossEntropyLoss(), SGD(model, lr=0.05), (x, y[:3]), 1, 32, np.random.default_rng(0))
