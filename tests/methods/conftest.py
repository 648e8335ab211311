"""Session fixtures shared by the pruning (and other method) tests: real Fashion-MNIST and trained baselines.

Stable API (other helpers' tests use it; change only additively):

* ``fmnist`` -> ``Data`` with ``x_train`` float32 (60000, 1, 28, 28), ``y_train`` int64 (60000,), ``x_test``
  float32 (10000, 1, 28, 28), ``y_test`` int64 (10000,); standardised with the training set's mean and std
  (one scalar each, as PERFORMANCE.md section 6). Loaded once per session (per xdist worker).
* ``lenet300_baseline`` -> ``Baseline`` for LeNet-300-100 trained on all of ``x_train`` (``BASELINE_CFG``):
  ``build()`` returns a fresh float32 model holding the trained weights, ``build_init()`` the same model at
  its initialisation (lottery-ticket rewinding), ``state`` / ``init_state`` the two state dicts,
  ``test_acc`` the dense test accuracy in [0, 1], ``cfg`` the training configuration.

Training is deterministic (seeded); the trained weights are cached on disk in pytest's cache folder under a
key that hashes the training configuration and the source of every file the training depends on, so a
change to the engine retrains instead of reusing stale weights. Both xdist workers may train concurrently
the first time; the write is atomic.

Every test under tests/methods runs with numpy's BLAS and numba limited to one thread (autouse
``_one_thread``): on the shared 2-core machine, with two xdist workers, a 2-thread OpenBLAS spins and made a
LeNet-300-100 batch 15x slower (330 ms instead of 20 ms wall), and a 2-thread numba SpMM took 36 ms instead
of 0.56 ms. Latency comparisons in these tests are therefore single-threaded on both sides.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class TrainCfg:
    seed: int = 0
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4


BASELINE_CFG = TrainCfg()


@dataclass
class Baseline:
    state: dict
    init_state: dict
    test_acc: float
    cfg: TrainCfg
    arch: str = "lenet_300_100"
    extra: dict = field(default_factory=dict)

    def build(self):
        model = build_model(self.arch, self.cfg.seed)
        model.load_state_dict(self.state)
        return model

    def build_init(self):
        model = build_model(self.arch, self.cfg.seed)
        model.load_state_dict(self.init_state)
        return model


def build_model(arch: str, seed: int):
    """A float32 model from ``nn.models.build`` when available, else the LeNet-300-100 Sequential."""
    try:
        from nn.models import build
    except ImportError:
        build = None
    if build is not None:
        return build(arch, rng=np.random.default_rng(seed))
    if arch != "lenet_300_100":
        raise RuntimeError(f"nn.models is not available to build {arch!r}")
    from nn.activations import ReLU
    from nn.basic import Flatten
    from nn.containers import Sequential
    from nn.linear import Linear
    rng = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(784, 300, rng=rng), ReLU(), Linear(300, 100, rng=rng), ReLU(),
                      Linear(100, 10, rng=rng))


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    from kernels._config import get_num_threads, set_num_threads
    before = get_num_threads()
    set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        set_num_threads(before)


@pytest.fixture(scope="session")
def fmnist() -> Data:
    from nn.data import load_dataset
    xtr, ytr = load_dataset("fashion-mnist", split="train")
    xte, yte = load_dataset("fashion-mnist", split="test")
    mean, std = float(xtr.mean(dtype=np.float64)), float(xtr.std(dtype=np.float64))
    f = np.float32
    return Data(((xtr - f(mean)) / f(std)).astype(f), ytr, ((xte - f(mean)) / f(std)).astype(f), yte)


def _source_key(cfg: TrainCfg, arch: str) -> str:
    h = hashlib.sha256(json.dumps({"arch": arch, **asdict(cfg)}, sort_keys=True).encode())
    for rel in ("nn/linear.py", "nn/module.py", "nn/optim.py", "nn/losses.py", "nn/data.py", "nn/init.py",
                "nn/activations.py", "nn/basic.py", "nn/containers.py", "nn/models.py"):
        p = ROOT / rel
        h.update(rel.encode() + (p.read_bytes() if p.exists() else b"-"))
    from methods.pruning.common import train_epochs
    for fn in (train_epochs, build_model, train_baseline):  # not the whole files: unrelated edits keep the cache
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:16]


def train_baseline(data: Data, arch: str, cfg: TrainCfg, cache_dir: Path | None = None) -> Baseline:
    """Train (or load from ``cache_dir``) a baseline; deterministic given ``cfg``."""
    from methods.pruning.common import train_epochs
    from nn.optim import SGD
    from nn.train import evaluate

    model = build_model(arch, cfg.seed)
    init_state = model.state_dict()
    path = cache_dir / f"{arch}-{_source_key(cfg, arch)}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        state = dict(np.load(path))
        model.load_state_dict(state)
    else:
        opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        train_epochs(model, opt, data.x_train, data.y_train, cfg.epochs, cfg.batch_size,
                     np.random.default_rng(cfg.seed))
        state = model.state_dict()
        if path is not None:
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **state)
            os.replace(tmp, path)
    _, acc = evaluate(model, data.x_test, data.y_test)
    return Baseline(state=state, init_state=init_state, test_acc=acc, cfg=cfg, arch=arch)


def cache_folder(request, tmp_path_factory, name: str) -> Path:
    """pytest's cache folder ``name`` (kept between runs), or a fresh temporary one when the cache plugin is
    disabled (``-p no:cacheprovider``): the baselines are then trained again, never skipped."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def lenet300_baseline(fmnist, request, tmp_path_factory) -> Baseline:
    from threadpoolctl import threadpool_limits
    cache_dir = cache_folder(request, tmp_path_factory, "lwnn-baselines")
    with threadpool_limits(1):  # session fixtures are set up before the autouse function fixture
        return train_baseline(fmnist, "lenet_300_100", BASELINE_CFG, cache_dir)


@pytest.fixture(scope="session")
def base(fmnist, request, tmp_path_factory):
    """The small BatchNorm CNN of ``tests/methods/structured_cnn.py``, trained once: (state, test accuracy)."""
    from tests.methods.structured_cnn import trained_cnn
    return trained_cnn(fmnist, cache_folder(request, tmp_path_factory, "lwnn-structured"))
