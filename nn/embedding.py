"""Lookup table: y = W[idx] for integer indices of any shape, as torch.nn.Embedding.

The input is integer, so there is no input gradient: ``Embedding.backward`` returns ``None``. That keeps it
usable as the first layer of a ``Sequential`` (whose backward returns what its first layer returns); any
container that would add ``None`` to an array fails loudly. ``max_norm``, ``scale_grad_by_freq`` and
``sparse`` of torch are not supported (``from_torch`` refuses them by name).
"""
from __future__ import annotations

import numpy as np

from nn import init
from nn.module import Module


def embedding_forward(idx: np.ndarray, W: np.ndarray) -> np.ndarray:
    """idx (...) integer in [0, V), W (V, D) -> y (..., D)."""
    return W[idx]


def embedding_backward(g: np.ndarray, idx: np.ndarray, num_embeddings: int, padding_idx: int | None) -> np.ndarray:
    """dW (V, D) = sum of g's rows per index (repeated indices accumulate); the padding row gets zero."""
    d = g.shape[-1]
    dW = np.zeros((num_embeddings, d), g.dtype)
    np.add.at(dW, idx.reshape(-1), g.reshape(-1, d))  # (V, D) += (N, D) scattered by idx (N,)
    if padding_idx is not None:
        dW[padding_idx] = 0
    return dW


class Embedding(Module):
    """``num_embeddings`` vectors of size ``embedding_dim``; weight (V, D) ~ N(0, 1) with the padding row zero.

    Input: integer array (...) with values in [0, num_embeddings); output (..., D) in the weight's dtype.
    ``padding_idx`` (negative counts from the end, as torch) names a row that is zero at init and never gets a
    gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 rng: np.random.Generator | int | None = None, dtype=np.float32) -> None:
        super().__init__()
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Embedding: {name} must be a positive int, got {v!r}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be an int within num_embeddings={num_embeddings}, "
                                 f"got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        W = init.default_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            W[padding_idx] = 0
        self.register_parameter("weight", W)

    def _check_indices(self, idx) -> None:
        if not isinstance(idx, np.ndarray):
            raise TypeError(f"Embedding expects a numpy.ndarray of integer indices, got {type(idx).__name__}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding expects integer indices (int32/int64), got {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): index out of range "
                             f"[0, {self.num_embeddings}): got values in [{idx.min()}, {idx.max()}]")

    def forward(self, idx: np.ndarray) -> np.ndarray:
        self._check_indices(idx)
        self._save(idx=idx.copy())
        return embedding_forward(idx, self.weight)

    def backward(self, grad_output: np.ndarray) -> None:
        """Adds dW into ``weight``'s gradient and returns ``None``: integer indices have no gradient."""
        idx = self._take()["idx"]
        want = idx.shape + (self.embedding_dim,)
        if grad_output.shape != want:
            raise ValueError(f"Embedding.backward: grad_output shape {grad_output.shape} != output shape {want}")
        self._grads["weight"] += embedding_backward(grad_output.astype(self.weight.dtype, copy=False), idx,
                                                    self.num_embeddings, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"
