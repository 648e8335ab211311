"""Numba kernels as pure functions over arrays. Nothing here imports nn/ or methods/.

Each public kernel has a plain NumPy ``<name>_ref`` twin written to be obviously right; conventions (bit packing,
requantisation, shift codes) are written once in ``kernels/README.md``.
"""
from kernels.binary import binary_conv2d, pack_signs, unpack_signs, xnor_gemm, xnor_gemm_ref
from kernels.conv import conv2d, conv2d_backward, conv2d_backward_ref, conv2d_ref
from kernels.int8 import qconv2d, qgemm, qgemm_ref, qgemm_requant, quantize_multiplier, requantize
from kernels.pool import (
    adaptive_avgpool2d,
    adaptive_avgpool2d_backward,
    avgpool2d,
    avgpool2d_backward,
    maxpool2d,
    maxpool2d_backward,
)
from kernels.shift import shift_gemm, shift_gemv
from kernels.sparse import csr_from_dense, sparse_conv2d, spmm, spmm_ref

__all__ = [
    "adaptive_avgpool2d", "adaptive_avgpool2d_backward", "avgpool2d", "avgpool2d_backward", "binary_conv2d",
    "conv2d", "conv2d_backward", "conv2d_backward_ref", "conv2d_ref", "csr_from_dense", "maxpool2d",
    "maxpool2d_backward", "pack_signs", "qconv2d", "qgemm", "qgemm_ref", "qgemm_requant", "quantize_multiplier",
    "requantize", "shift_gemm", "shift_gemv", "sparse_conv2d", "spmm", "spmm_ref", "unpack_signs", "xnor_gemm",
    "xnor_gemm_ref",
]
