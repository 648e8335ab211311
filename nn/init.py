"""Parameter initialisation with an explicit ``np.random.Generator`` (no global seeding).

The defaults reproduce the *distributions* of torch's defaults (kaiming_uniform with a=sqrt(5) for weights,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for biases); the draws differ from torch's, so cross-checks copy weights.
"""
from __future__ import annotations

import math

import numpy as np


def fan_in_and_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fans as torch computes them: weight (out, in, *kernel) -> (in * prod(kernel), out * prod(kernel))."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight of at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform(rng: np.random.Generator, shape, bound: float, dtype=np.float32) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(rng: np.random.Generator, shape, a: float = math.sqrt(5.0), dtype=np.float32) -> np.ndarray:
    """torch.nn.init.kaiming_uniform_(w, a) with leaky_relu gain: bound = gain * sqrt(3 / fan_in)."""
    fan_in, _ = fan_in_and_out(tuple(shape))
    gain = math.sqrt(2.0 / (1 + a * a))
    return uniform(rng, shape, gain * math.sqrt(3.0 / fan_in) if fan_in else 0.0, dtype)


def kaiming_normal(rng: np.random.Generator, shape, mode: str = "fan_out", dtype=np.float32) -> np.ndarray:
    """He et al. 2015 normal init for ReLU networks: std = sqrt(2 / fan)."""
    fan_in, fan_out = fan_in_and_out(tuple(shape))
    fan = fan_in if mode == "fan_in" else fan_out
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan)).astype(dtype)


def bias_uniform(rng: np.random.Generator, weight_shape, n: int, dtype=np.float32) -> np.ndarray:
    fan_in, _ = fan_in_and_out(tuple(weight_shape))
    return uniform(rng, (n,), 1.0 / math.sqrt(fan_in) if fan_in else 0.0, dtype)


def default_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator or a seed; ``None`` means seed 0 so that a model is reproducible by default."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)
