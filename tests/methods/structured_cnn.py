"""A small trained CNN shared by the structured-pruning tests (Li 2017, slimming, ThiNet, He 2017, SSL, APoZ, SFP).

LeNet-5-shaped but narrow, with BatchNorm so that Network Slimming has scale factors to penalise:
conv5x5 8 - BN - ReLU - maxpool 2 - conv5x5 16 - BN - ReLU - maxpool 2 - fc 256->64 - ReLU - fc 64->10
(~23K parameters, ~0.33M MACs per 28x28 image). Trained on the first ``N_TRAIN`` Fashion-MNIST training
images; accuracy is measured on the first ``N_TEST`` test images. The trained state is cached on disk
(pytest's cache folder) under a key that hashes the configuration and the engine sources it depends on.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
INPUT_SHAPE = (1, 28, 28)
N_TEST = 2000
CONVS = ("0", "4")  # the two conv layers; their BatchNorms are "1" and "5"


@dataclass(frozen=True)
class CnnCfg:
    seed: int = 0
    n_train: int = 6000
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4


CFG = CnnCfg()


def small_cnn(rng, dtype=np.float32):
    from nn.activations import ReLU
    from nn.basic import Flatten
    from nn.containers import Sequential
    from nn.conv import Conv2d
    from nn.linear import Linear
    from nn.norm import BatchNorm2d
    from nn.pooling import MaxPool2d
    rng = np.random.default_rng(rng)
    return Sequential(Conv2d(1, 8, 5, rng=rng, dtype=dtype), BatchNorm2d(8, dtype=dtype), ReLU(), MaxPool2d(2),
                      Conv2d(8, 16, 5, rng=rng, dtype=dtype), BatchNorm2d(16, dtype=dtype), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(256, 64, rng=rng, dtype=dtype), ReLU(), Linear(64, 10, rng=rng, dtype=dtype))


def _key(cfg: CnnCfg) -> str:
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for rel in ("nn/conv.py", "nn/norm.py", "nn/linear.py", "nn/module.py", "nn/optim.py", "nn/losses.py",
                "nn/pooling.py", "nn/containers.py", "nn/init.py", "methods/pruning/common.py",
                "tests/methods/structured_cnn.py"):
        p = ROOT / rel
        h.update(rel.encode() + (p.read_bytes() if p.exists() else b"-"))
    return h.hexdigest()[:16]


def trained_cnn(data, cache_dir: Path, cfg: CnnCfg = CFG) -> tuple[dict, float]:
    """(state dict, test accuracy on the first N_TEST test images) of the trained small CNN."""
    from methods.pruning.common import train_epochs
    from nn.optim import SGD
    from nn.train import evaluate

    model = small_cnn(cfg.seed)
    path = Path(cache_dir) / f"small_cnn-{_key(cfg)}.npz"
    if path.exists():
        model.load_state_dict(dict(np.load(path)))
    else:
        opt = SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        train_epochs(model, opt, data.x_train[:cfg.n_train], data.y_train[:cfg.n_train], cfg.epochs,
                     cfg.batch_size, np.random.default_rng(cfg.seed))
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **model.state_dict())
        os.replace(tmp, path)
    _, acc = evaluate(model, data.x_test[:N_TEST], data.y_test[:N_TEST])
    return model.state_dict(), acc


def load(state: dict):
    model = small_cnn(CFG.seed)
    model.load_state_dict(state)
    return model


def latency_ms(model, batch: int = 64, repeat: int = 7) -> float:
    """Median whole-model forward time (ms) at ``batch`` in eval mode (nn.profile.model_latency)."""
    from nn.profile import model_latency
    return model_latency(model, batch, INPUT_SHAPE, repeat=repeat)["median_ms"]


def paired_speedup(model, reference, batch: int = 64, input_shape=INPUT_SHAPE) -> dict:
    """``nn.profile.paired_latency`` of a pruned model against its dense original: interleaved samples, so a
    loaded machine (another xdist worker) slows both alike. Tests assert ``ms < reference_ms`` only where the
    MACs fall by 2.5x or more, a margin no CPU's fixed per-layer cost closes; smaller cuts are reported and
    measured by the demo comparison and the benchmarks instead."""
    from nn.profile import paired_latency
    return paired_latency(model, reference, batch, input_shape)


def speed_line(r: dict) -> str:
    return (f"latency@64 {r['reference_ms']:.2f} -> {r['ms']:.2f} ms (paired speed-up "
            f"{'unstable' if r['speedup'] is None else format(r['speedup'], '.2f') + 'x'}, spread {r['spread']:.2f})")


def macs(model) -> int:
    from nn.profile import profile, totals
    return totals(profile(model, (1, *INPUT_SHAPE), latency=False))["macs"]
