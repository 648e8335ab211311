"""Deployed sparse layers: a pruned Linear / Conv2d stored as CSR and run with ``kernels.sparse``.

Inference only: the weight lives in three buffers -- ``weight_data`` (nnz,) float, ``weight_indices`` (nnz,)
int32 column indices and ``weight_indptr`` (rows + 1,) int32 -- plus ``bias`` (float) if the layer had one,
so ``state_dict`` and HDF5 checkpoints hold exactly the compressed arrays and ``storage_bytes`` counts them.
Build them with ``from_dense``; ``backward`` raises. Outputs equal the dense layer with the pruned
weights zeroed, to float tolerance.
"""
from __future__ import annotations

import numpy as np

from kernels.sparse import check_csr, csr_from_dense, sparse_conv2d, spmm
from nn.module import Module


class _SparseBase(Module):
    """CSR weight buffers, dtype checks, ``storage_bytes`` and the inference-only ``backward``."""

    def _set_weight(self, W2: np.ndarray, mask: np.ndarray | None, bias: np.ndarray | None) -> None:
        data, indices, indptr, shape = csr_from_dense(W2, mask)
        self.weight_shape = shape
        self.register_buffer("weight_data", data)
        self.register_buffer("weight_indices", indices)
        self.register_buffer("weight_indptr", indptr)
        self.register_buffer("bias", None if bias is None else np.array(bias, copy=True))

    @property
    def dtype(self) -> np.dtype:
        return self.weight_data.dtype

    def _csr(self):
        """The CSR tuple, checked once per set of buffers (again only after ``load_state_dict`` replaced them),
        so every forward passes it to the kernel as trusted: the O(nnz) checks would cost as much as the
        product at batch 1."""
        b = self._buffers
        csr = self.__dict__.get("_checked")
        if (csr is None or csr[0] is not b["weight_data"] or csr[1] is not b["weight_indices"]
                or csr[2] is not b["weight_indptr"]):
            csr = check_csr((b["weight_data"], b["weight_indices"], b["weight_indptr"], self.weight_shape),
                            f"{type(self).__name__} weight")
            self._checked = csr
        return csr

    def nnz(self) -> int:
        return int(self.weight_data.size)

    def sparsity(self) -> float:
        rows, cols = self.weight_shape
        return 1.0 - self.nnz() / max(rows * cols, 1)

    def storage_bytes(self) -> int:
        """Bytes of the arrays really stored: the sum of the buffers' ``nbytes``."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values()))

    def macs(self, in_shape, out_shape) -> int:
        """Multiply-adds the sparse kernel really does: nonzeros x output positions (``nn.profile`` rule)."""
        positions = int(np.prod(out_shape)) // max(self.weight_shape[0], 1)  # N*Ho*Wo (conv) or N (linear)
        return self.nnz() * positions

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is a deployed inference-only layer and has no backward; "
                           "fine-tune the dense masked layer instead and convert it again")


class SparseLinear(_SparseBase):
    """y = x W^T + b with W (O, I) in CSR. Input (..., I), output (..., O), same dtype as the weights."""

    def __init__(self, W: np.ndarray, mask: np.ndarray | None = None, bias: np.ndarray | None = None) -> None:
        super().__init__()
        if not isinstance(W, np.ndarray) or W.ndim != 2:
            raise ValueError(f"SparseLinear: weight must be a 2-d (out, in) array, got {getattr(W, 'shape', W)}")
        self.out_features, self.in_features = W.shape
        self._set_weight(W, mask, bias)

    @classmethod
    def from_dense(cls, linear, mask: np.ndarray | None = None) -> SparseLinear:
        """From an ``nn.linear.Linear``: keep the nonzero weights not removed by ``mask`` (default: the
        layer's own pruning mask, if it has one)."""
        if mask is None:
            mask = linear._masks.get("weight")
        return cls(linear.weight, mask, linear.bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        csr = self._csr()
        if type(x) is not np.ndarray or x.dtype != csr[0].dtype:
            self._check_input(x)  # raises, naming the problem
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear expects input (..., {self.in_features}), got shape {x.shape}")
        lead = x.shape[:-1]
        xT = np.ascontiguousarray(x.reshape(-1, self.in_features).T)  # (I, M)
        y = spmm(csr, xT, trusted=True).T  # (O, I) @ (I, M) -> (O, M) -> (M, O)
        if self.bias is not None:
            y = y + self.bias
        return np.ascontiguousarray(y).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz()}, "
                f"sparsity={self.sparsity():.3f}, bias={self.bias is not None}")


class SparseConv2d(_SparseBase):
    """Conv2d (groups=1, zero padding) with the weight (Co, Ci, kH, kW) stored as CSR (Co, Ci*kH*kW).

    Padding is a pair per side ``pads = ((top, left), (bottom, right))`` so torch's padding='same' with an
    even kernel works: the extra bottom/right row and column are zero-padded here."""

    def __init__(self, W: np.ndarray, mask: np.ndarray | None = None, bias: np.ndarray | None = None, stride=1,
                 padding=0, dilation=1, pads=None) -> None:
        super().__init__()
        if not isinstance(W, np.ndarray) or W.ndim != 4:
            raise ValueError(f"SparseConv2d: weight must be 4-d (Co, Ci, kH, kW), got {getattr(W, 'shape', W)}")
        self.out_channels, self.in_channels, kH, kW = W.shape
        self.kernel_size = (kH, kW)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        self.padding = padding
        self._pads = pads if pads is not None else (_pair(padding), _pair(padding))
        flat_mask = None if mask is None else np.asarray(mask).reshape(self.out_channels, -1)
        self._set_weight(W.reshape(self.out_channels, -1), flat_mask, bias)  # (Co, Ci*kH*kW)

    @classmethod
    def from_dense(cls, conv, mask: np.ndarray | None = None) -> SparseConv2d:
        """From an ``nn.conv.Conv2d`` (groups=1 only): keep the nonzero weights not removed by ``mask``
        (default: the layer's own pruning mask)."""
        if conv.groups != 1:
            raise ValueError(f"SparseConv2d supports groups=1 only, got groups={conv.groups}")
        if mask is None:
            mask = conv._masks.get("weight")
        return cls(conv.weight, mask, conv.bias, conv.stride, conv.padding, conv.dilation,
                   getattr(conv, "_pads", None))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        if x4.shape[1] != self.in_channels:
            raise ValueError(f"SparseConv2d({self.in_channels}, {self.out_channels}) got {x4.shape[1]} input "
                             f"channels (input shape {x.shape})")
        before, after = self._pads
        extra = (after[0] - before[0], after[1] - before[1])
        if extra != (0, 0):
            x4 = np.pad(x4, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        x4 = np.ascontiguousarray(x4)
        y = sparse_conv2d(x4, self._csr(), self.kernel_size, self.stride, before, self.dilation, trusted=True)
        if self.bias is not None:
            y += self.bias[:, None, None]
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, nnz={self.nnz()}, "
                f"sparsity={self.sparsity():.3f}, bias={self.bias is not None}")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))
