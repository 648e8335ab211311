"""Containers that express real topologies: chains, residual adds, concatenation, split and shuffle."""
from __future__ import annotations

import numpy as np

from nn.module import Module


class Sequential(Module):
    """Children named "0", "1", ... as in torch; backward runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {i} is a {type(layer).__name__}, not an lwnn Module")
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self._modules.values())):
            grad_output = layer.backward(grad_output)
        return grad_output
