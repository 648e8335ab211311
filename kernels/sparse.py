"""Sparse (CSR) weights times dense activations: SpMM and a sparse 2-D convolution, for pruned inference.

Public: ``spmm(W, X)`` = W @ X with W in CSR (M, K) and X dense (K, N); ``csr_from_dense(W, mask=None)``;
``check_csr(W)`` (the O(nnz) checks, once, for callers that then pass ``trusted=True``);
``sparse_conv2d(x, W, kernel_size, stride, padding, dilation)`` (per image: im2col, then the spmm blocks). Each has a plain
NumPy twin: ``spmm_ref``, ``csr_from_dense_ref``, ``sparse_conv2d_ref``. See kernels/README.md "Sparse".

A CSR matrix is a ``scipy.sparse.csr_matrix`` or a tuple ``(data, indices, indptr, shape)``: ``data`` (nnz,)
float32/float64, ``indices`` (nnz,) and ``indptr`` (M + 1,) int32 or int64. Unsorted column indices and
duplicates are allowed (duplicates add up, as in scipy).

Kernel (three levels): ``_rows32``/``_rows64`` (serial, one block of rows) keeps a chunk of ``CH`` outputs of one row in
registers -- the chunk width is a compile-time constant so LLVM unrolls the column loop and keeps the
accumulators in vector registers (PERFORMANCE.md 3.3: a runtime trip count broke this) -- and walks the
row's nonzeros: acc += W[i, k] * X[k, chunk]. ``_spmm_parallel`` splits the rows into blocks (each output
row is written by one thread, in one fixed order, so 1 and N threads give identical results); the blocks
loop over column chunks outside their rows so one (K, CH) panel of X stays in L2. Products with fewer than
``SERIAL_WORK`` multiply-adds (batch-1 layers) run the same blocks serially: a parallel dispatch costs more.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels._config import njit, pjit
from kernels._intrinsics import _target_features
from kernels.conv import _pair, conv2d_ref  # _pair: the int-or-pair argument check of the float conv

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INTS = (np.dtype(np.int32), np.dtype(np.int64))
# Output chunk held in registers: 8 vector accumulators, enough independent FMA chains to hide the FMA latency
# on two pipes -- 8 ymm on AVX2 (of 16 registers), 8 zmm with AVX-512 (of 32).
_VEC_BYTES = 64 if "avx512f" in _target_features() else 32
CH32 = 8 * _VEC_BYTES // 4   # float32 outputs per chunk
CH64 = 8 * _VEC_BYTES // 8   # float64 outputs per chunk
ROWS = 32   # rows per parallel block
SERIAL_WORK = 1 << 20  # multiply-adds (nnz * N) below which a parallel dispatch costs more than it saves


# ---------------------------------------------------------------------------------------------- CSR input
def _as_csr(W, name: str = "W"):
    """(data, indices, indptr, (M, K)) from a scipy CSR matrix or a tuple, after checking everything."""
    if hasattr(W, "format") and hasattr(W, "indptr"):
        if W.format != "csr":
            raise TypeError(f"{name} must be CSR, got scipy format {W.format!r} (convert with .tocsr())")
        data, indices, indptr, shape = W.data, W.indices, W.indptr, W.shape
    elif isinstance(W, tuple) and len(W) == 4:
        data, indices, indptr, shape = W
    else:
        raise TypeError(f"{name} must be a scipy.sparse.csr_matrix or a tuple (data, indices, indptr, shape), "
                        f"got {type(W).__name__}")
    for nm, a, kinds in (("data", data, _FLOATS), ("indices", indices, _INTS), ("indptr", indptr, _INTS)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}.{nm} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in kinds:
            raise TypeError(f"{name}.{nm} must have dtype in {[str(k) for k in kinds]}, got {a.dtype}")
        if a.ndim != 1 or not a.flags.c_contiguous:
            raise ValueError(f"{name}.{nm} must be a 1-d C-contiguous array, got shape {a.shape}")
    if len(shape) != 2 or any(int(s) < 0 for s in shape):
        raise ValueError(f"{name} shape must be (M, K) with M, K >= 0, got {shape}")
    M, K = int(shape[0]), int(shape[1])
    if indptr.shape[0] != M + 1:
        raise ValueError(f"{name}.indptr must have M + 1 = {M + 1} entries, got {indptr.shape[0]}")
    if indices.shape[0] != data.shape[0]:
        raise ValueError(f"{name}: indices ({indices.shape[0]}) and data ({data.shape[0]}) differ in length")
    if indptr[0] != 0 or indptr[-1] != data.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}.indptr must rise from 0 to nnz={data.shape[0]} without decreasing")
    if indices.size and (indices.min() < 0 or indices.max() >= K):
        raise ValueError(f"{name}.indices must lie in [0, {K}), got [{indices.min()}, {indices.max()}]")
    return data, indices, indptr, (M, K)


def csr_from_dense_ref(W: np.ndarray, mask: np.ndarray | None = None):
    """Plain twin of ``csr_from_dense``: nonzeros of ``W * (mask != 0)`` in row-major order."""
    keep = (W != 0) if mask is None else (W != 0) & (np.asarray(mask) != 0)
    rows, cols = np.nonzero(keep)
    indptr = np.zeros(W.shape[0] + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=W.shape[0]), out=indptr[1:])
    return W[rows, cols].copy(), cols.astype(np.int32), indptr, W.shape


def csr_from_dense(W: np.ndarray, mask: np.ndarray | None = None):
    """Dense (M, K) float -> CSR tuple ``(data (nnz,) W.dtype, indices (nnz,) int32, indptr (M+1,) int32,
    (M, K))`` of the entries that are nonzero and (if ``mask`` is given) not masked out (mask == 0).

    Sorted column indices, no duplicates. Explicit zeros in ``W`` are dropped even where the mask keeps them.
    """
    if not isinstance(W, np.ndarray) or W.dtype not in _FLOATS:
        raise TypeError(f"csr_from_dense: W must be a float32/float64 numpy array, got "
                        f"{getattr(W, 'dtype', type(W).__name__)}")
    if W.ndim != 2:
        raise ValueError(f"csr_from_dense: W must be 2-d (M, K), got shape {W.shape}")
    if W.size >= 2**31:
        raise ValueError("csr_from_dense: int32 indices cannot address a matrix with >= 2**31 entries")
    if mask is not None and np.shape(mask) != W.shape:
        raise ValueError(f"csr_from_dense: mask shape {np.shape(mask)} differs from W shape {W.shape}")
    return csr_from_dense_ref(W, mask)


# ---------------------------------------------------------------------------------------------- kernels
@intrinsic
def _stack_buffer(typingctx, size, dtype):
    """Pointer to ``size`` elements on the stack: with a constant size LLVM promotes them to registers."""
    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=args[0])
    return types.CPointer(dtype.dtype)(types.intp, dtype), codegen


# fastmath "contract" only lets LLVM fuse acc + v * x into one FMA: still one fixed order per output, so
# 1 and N threads agree exactly; the result differs from spmm_ref only by rounding (float tolerance).
@njit(inline="always", fastmath={"contract"})
def _chunk(data, indices, indptr, X, out, i0, i1, j0, acc, width):
    """out[i, j0:j0+width] = sum_p data[p] * X[indices[p], j0:j0+width] for rows i0 <= i < i1.

    Every index is unsigned: numba then emits no negative-index wrap-around, whose per-element select makes
    LLVM's AVX-512 code gather and scatter instead of loading and storing whole vectors (8x slower)."""
    u0 = np.uint64(j0)
    w = np.uint64(width)
    for i in range(np.uint64(i0), np.uint64(i1)):
        for j in range(w):
            acc[j] = 0
        for p in range(np.uint64(indptr[i]), np.uint64(indptr[i + np.uint64(1)])):
            v = data[p]
            k = np.uint64(indices[p])
            for j in range(w):
                acc[j] += v * X[k, u0 + j]
        for j in range(w):
            out[i, u0 + j] = acc[j]


@njit(inline="always", fastmath={"contract"})
def _column(data, indices, indptr, X, out, i0, i1, j, acc):
    """out[i, j] for rows i0 <= i < i1: a sparse dot product with four partial sums (independent FMA chains),
    accumulated in X's dtype (``acc[0]`` only gives the zero of that type)."""
    acc[0] = 0
    u = np.uint64(j)
    one, four = np.uint64(1), np.uint64(4)
    for i in range(np.uint64(i0), np.uint64(i1)):
        s0 = s1 = s2 = s3 = acc[0]
        p, end = np.uint64(indptr[i]), np.uint64(indptr[i + one])
        while p + four <= end:
            s0 += data[p] * X[np.uint64(indices[p]), u]
            s1 += data[p + one] * X[np.uint64(indices[p + one]), u]
            s2 += data[p + np.uint64(2)] * X[np.uint64(indices[p + np.uint64(2)]), u]
            s3 += data[p + np.uint64(3)] * X[np.uint64(indices[p + np.uint64(3)]), u]
            p += four
        while p < end:
            s0 += data[p] * X[np.uint64(indices[p]), u]
            p += one
        out[i, u] = (s0 + s1) + (s2 + s3)


# Half a chunk, as a module constant: a stack buffer's size must be a literal at its call.
CH32_2, CH64_2 = CH32 // 2, CH64 // 2
NARROW = 7  # a tail of at most this many columns runs column by column (each ~8x cheaper than a padded chunk)


@njit(inline="always", fastmath={"contract"})
def _row_block(data, indices, indptr, X, out, Xt, outt, i0, i1, acc, acc2, ch):
    """Rows i0 <= i < i1 of the output, in column chunks of constant width, each with a stack buffer of its
    own so its accumulators live in registers: full chunks of ``ch`` columns, at most one of ``ch/2``, then the
    last r < ch/2 columns. For r <= NARROW (batch 1 to 7) these are sparse dot products, one column at a time;
    wider tails run as one ch/2 chunk over ``Xt``, X's tail columns copied into zero-padded (K, ch/2) storage,
    into ``outt``: a narrow chunk is bound by the FMA latency per nonzero, not by its width, so the padding
    costs nothing, while a runtime or narrow width would leave LLVM's 128-bit or in-memory accumulators."""
    N = X.shape[1]
    j0 = 0
    while j0 + ch <= N:
        _chunk(data, indices, indptr, X, out, i0, i1, j0, acc, ch)
        j0 += ch
    if j0 + ch // 2 <= N:
        _chunk(data, indices, indptr, X, out, i0, i1, j0, acc2, ch // 2)
        j0 += ch // 2
    if N - j0 > NARROW:
        _chunk(data, indices, indptr, Xt, outt, i0, i1, 0, acc2, ch // 2)
        for i in range(i0, i1):
            for j in range(N - j0):
                out[i, j0 + j] = outt[i, j]
    else:
        for j in range(j0, N):
            _column(data, indices, indptr, X, out, i0, i1, j, acc2)


@njit(fastmath={"contract"})
def _rows32(data, indices, indptr, X, out, Xt, outt, i0, i1):
    _row_block(data, indices, indptr, X, out, Xt, outt, i0, i1, numba.carray(_stack_buffer(CH32, X.dtype), CH32),
               numba.carray(_stack_buffer(CH32_2, X.dtype), CH32_2), CH32)


@njit(fastmath={"contract"})
def _rows64(data, indices, indptr, X, out, Xt, outt, i0, i1):
    _row_block(data, indices, indptr, X, out, Xt, outt, i0, i1, numba.carray(_stack_buffer(CH64, X.dtype), CH64),
               numba.carray(_stack_buffer(CH64_2, X.dtype), CH64_2), CH64)


@njit
def _tail(X, out):
    """(Xt, outt): the zero-padded copy of X's last r columns and its output, where ``_row_block`` needs them
    (NARROW < r < ch/2); else empty."""
    ch = CH32 if X.itemsize == 4 else CH64
    N = X.shape[1]
    r = N % ch
    if r >= ch // 2:
        r -= ch // 2
    if r <= NARROW:
        return np.zeros((0, ch // 2), X.dtype), np.empty((0, ch // 2), X.dtype)
    Xt = np.zeros((X.shape[0], ch // 2), X.dtype)
    Xt[:, :r] = X[:, N - r:]
    return Xt, np.empty((out.shape[0], ch // 2), X.dtype)


@njit(inline="always")
def _spmm_block(data, indices, indptr, X, out, Xt, outt, b):
    i0 = b * ROWS
    i1 = min(out.shape[0], i0 + ROWS)
    if X.itemsize == 4:
        _rows32(data, indices, indptr, X, out, Xt, outt, i0, i1)
    else:
        _rows64(data, indices, indptr, X, out, Xt, outt, i0, i1)


@pjit
def _spmm_parallel(data, indices, indptr, X, out):
    Xt, outt = _tail(X, out)
    for b in prange((out.shape[0] + ROWS - 1) // ROWS):
        _spmm_block(data, indices, indptr, X, out, Xt, outt, b)


@njit
def _spmm_serial(data, indices, indptr, X, out):
    """Small products (batch-1 layers): the same blocks on the calling thread, no parallel dispatch."""
    Xt, outt = _tail(X, out)
    for b in range((out.shape[0] + ROWS - 1) // ROWS):
        _spmm_block(data, indices, indptr, X, out, Xt, outt, b)


def spmm_ref(W, X: np.ndarray) -> np.ndarray:
    """Plain twin of ``spmm``: densify W and multiply (float64 accumulation by NumPy, then X.dtype)."""
    data, indices, indptr, (M, K) = _as_csr(W)
    dense = np.zeros((M, K), np.float64)
    rows = np.repeat(np.arange(M), np.diff(indptr))
    np.add.at(dense, (rows, indices), data)  # duplicates add up
    return (dense @ X.astype(np.float64)).astype(X.dtype)


def check_csr(W, name: str = "W"):
    """Check a CSR matrix once (types, dtypes, shapes, indptr monotone, indices in range: O(nnz)) and return it
    as the tuple ``(data, indices, indptr, (M, K))``; raises TypeError/ValueError naming what is wrong."""
    return _as_csr(W, name)


def spmm(W, X: np.ndarray, trusted: bool = False) -> np.ndarray:
    """W @ X for W CSR (M, K) and X dense (K, N), C-contiguous, same float dtype as W.data -> (M, N).

    ``trusted=True`` skips the O(nnz) structure checks of W (its cost is the whole product at batch 1): only
    for a tuple the caller has passed through ``check_csr`` or built with ``csr_from_dense`` and not changed
    since, as the deployed layers do. X is checked either way."""
    if trusted:
        data, indices, indptr, (M, K) = W
    else:
        data, indices, indptr, (M, K) = _as_csr(W)
    if not isinstance(X, np.ndarray):
        raise TypeError(f"spmm: X must be a numpy array, got {type(X).__name__}")
    if X.dtype != data.dtype:
        raise TypeError(f"spmm: X is {X.dtype} but W.data is {data.dtype}; convert one explicitly")
    if X.ndim != 2 or X.shape[0] != K:
        raise ValueError(f"spmm: X must be 2-d (K={K}, N), got shape {X.shape}")
    if not X.flags.c_contiguous:
        raise ValueError("spmm: X must be C-contiguous (use np.ascontiguousarray)")
    out = np.empty((M, X.shape[1]), X.dtype)
    if M and X.shape[1]:
        driver = _spmm_serial if data.size * X.shape[1] < SERIAL_WORK else _spmm_parallel
        driver(data, indices, indptr, X, out)
    return out


# ---------------------------------------------------------------------------------------------- convolution
def _conv_args(x, W, kernel_size, stride, padding, dilation, trusted=False):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"sparse_conv2d: x must be a 4-d array (N, Ci, H, W), got {getattr(x, 'shape', x)}")
    data, indices, indptr, (Co, K) = W if trusted else _as_csr(W, "weight")
    ks = _pair(kernel_size, "kernel_size", 1)
    args = ks, _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    if K != x.shape[1] * ks[0] * ks[1]:
        raise ValueError(f"sparse_conv2d: weight has {K} columns but Ci*kH*kW = {x.shape[1]}*{ks[0]}*{ks[1]} "
                         f"(only groups=1 is supported)")
    return (data, indices, indptr, (Co, K)), args


@njit
def _im2col_image(xp, n, col, kH, kW, sh, sw, dh, dw, Ho, Wo):
    """col (C*kH*kW, Ho*Wo) = the windows of image n of the zero-padded xp (N, C, Hp, Wp), rows (c, i, j)."""
    C = xp.shape[1]
    for c in range(C):
        for i in range(kH):
            for j in range(kW):
                dst = col[(c * kH + i) * kW + j]
                for oh in range(Ho):
                    src = xp[n, c, oh * sh + i * dh]
                    d = dst[oh * Wo:(oh + 1) * Wo]  # zero-based views: no wrap-around code in the copy
                    if sw == 1:
                        s = src[j * dw:j * dw + Wo]
                        for ow in range(Wo):
                            d[ow] = s[ow]
                    else:
                        for ow in range(Wo):
                            d[ow] = src[ow * sw + j * dw]


@pjit
def _sparse_conv_images(data, indices, indptr, xp, y, kH, kW, sh, sw, dh, dw, Ho, Wo):
    """y[n] (Co, Ho*Wo) = W (Co, K) @ col(x[n]) (K, Ho*Wo) for every image, one image per task: the columns of
    one image stay in cache, and the product is written straight into NCHW (no (Co, N*L) intermediate and no
    transpose). The product is the spmm blocks above, on the image's columns."""
    K = xp.shape[1] * kH * kW
    for n in prange(xp.shape[0]):
        col = np.empty((K, Ho * Wo), xp.dtype)
        _im2col_image(xp, n, col, kH, kW, sh, sw, dh, dw, Ho, Wo)
        yn = y[n]
        Xt, outt = _tail(col, yn)
        for b in range((yn.shape[0] + ROWS - 1) // ROWS):
            _spmm_block(data, indices, indptr, col, yn, Xt, outt, b)


def sparse_conv2d(x: np.ndarray, W, kernel_size, stride=1, padding=0, dilation=1, trusted: bool = False
                  ) -> np.ndarray:
    """Convolution with a CSR weight: x (N, Ci, H, W) float, W CSR (Co, Ci*kH*kW) (an OIHW weight flattened
    per output channel) -> (N, Co, Ho, Wo), zero padding, groups=1 only (a grouped weight is block-diagonal:
    give each group its own call). ``trusted`` as in ``spmm``.

    One image per task (``_sparse_conv_images``: that image's im2col, then the CSR product into its NCHW
    output); W is checked by ``_conv_args`` unless trusted."""
    W, args = _conv_args(x, W, kernel_size, stride, padding, dilation, trusted)
    if x.dtype != W[0].dtype:
        raise TypeError(f"sparse_conv2d: x is {x.dtype} but the weight is {W[0].dtype}; convert one explicitly")
    N = x.shape[0]
    (kH, kW), (sh, sw), (ph, pw), (dh, dw) = args
    H, Wd = x.shape[2:]
    Ho = (H + 2 * ph - dh * (kH - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kW - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"sparse_conv2d: dilated kernel larger than the padded input {(H + 2 * ph, Wd + 2 * pw)}")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else np.ascontiguousarray(x)
    y = np.empty((N, W[3][0], Ho * Wo), x.dtype)
    if y.size:
        _sparse_conv_images(*W[:3], xp, y, kH, kW, sh, sw, dh, dw, Ho, Wo)
    return y.reshape(N, -1, Ho, Wo)


def sparse_conv2d_ref(x: np.ndarray, W, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Plain twin: densify W to OIHW and run the reference convolution ``kernels.conv.conv2d_ref``."""
    (data, indices, indptr, (Co, K)), (ks, st, pd, dl) = _conv_args(x, W, kernel_size, stride, padding, dilation)
    dense = np.zeros((Co, K), np.float64)
    np.add.at(dense, (np.repeat(np.arange(Co), np.diff(indptr)), indices), data)
    w = dense.reshape(Co, x.shape[1], *ks)  # (Co, Ci, kH, kW)
    return conv2d_ref(x.astype(np.float64), w, None, st, pd, dl).astype(x.dtype)
