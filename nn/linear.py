"""Fully connected layer: y = x W^T + b on any number of leading dimensions, as torch.nn.Linear."""
from __future__ import annotations

import numpy as np

from nn import init
from nn.module import Module


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x (..., I), W (O, I), b (O,) -> y (..., O)."""
    y = x @ W.T  # (..., I) @ (I, O) -> (..., O)
    if b is not None:
        y += b
    return y


def linear_backward(g: np.ndarray, x: np.ndarray, W: np.ndarray, has_bias: bool):
    """g (..., O) -> (dx (..., I), dW (O, I), db (O,) or None)."""
    g2 = g.reshape(-1, g.shape[-1])  # (N, O)
    x2 = x.reshape(-1, x.shape[-1])  # (N, I)
    dx = g @ W  # (..., O) @ (O, I) -> (..., I)
    dW = g2.T @ x2  # (O, N) @ (N, I)
    db = g2.sum(axis=0) if has_bias else None
    return dx, dW, db


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear features must be non-negative, got ({in_features}, {out_features})")
        rng = init.default_rng(rng)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_parameter("weight", init.kaiming_uniform(rng, (out_features, in_features), dtype=dtype))
        self.register_parameter("bias", init.bias_uniform(rng, (out_features, in_features), out_features, dtype)
                                if bias else None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input (..., {self.in_features}), got shape {x.shape}")
        self._save(x=x)
        return linear_forward(x, self.weight, self.bias)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x = self._take()["x"]
        dx, dW, db = linear_backward(grad_output, x, self.weight, self.bias is not None)
        self._grads["weight"] += dW
        if db is not None:
            self._grads["bias"] += db
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
