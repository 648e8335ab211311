"""Integer-only int8 GEMM and conv2d with gemmlowp fixed-point requantisation (Jacob et al., CVPR 2018,
arXiv 1712.05877).

Orientation: ``qgemm(A, B, za, zb)`` returns the int32 matrix ``(A - za) @ (B - zb)`` with

* ``A`` (M, K) uint8 or int8 activations, zero point ``za`` in the range of A's dtype,
* ``B`` (K, N) int8 weights, zero point ``zb`` in [-128, 127]; a linear layer passes ``B = W.T``.
  ``B`` may also be a ``PackedWeights`` from ``pack_weights(B, zb)``, packed once for the layer.

Requantisation (gemmlowp, TFLite; worked example in kernels/README.md, "Int8 requantisation"):
``real = M0 * 2**(-31 - shift)`` with ``M0`` in [2**30, 2**31) (``quantize_multiplier``), then
``out = clamp(RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, M0), shift) + zp)``.

Two exact paths compute the same integers (``path=`` 'vnni' | 'int16' | 'auto'):

* 'vnni' (AVX512_VNNI): ``vpdpbusd`` multiplies u8 by s8. int8 activations are mapped to uint8 by adding 128
  (``A ^ 0x80``) with ``za + 128``; zero points are then corrected with row and column sums:
  ``sum (A-za)(B-zb) = sum A B - zb * rowsum(A) - za * colsum(B) + K za zb``.
* 'int16' (AVX2): ``A - za`` fits in int16 and B is sign-extended from int8 in registers; ``vpmaddwd`` sums
  products of pairs in int32 exactly, and ``zb`` is corrected with ``- zb * sum_k (A - za)``.

Accumulation is int32 (wrapping, like the hardware); ``K <= 33025`` guarantees no wrap since
``K * 255 * 255 < 2**31``. Public: ``quantize_multiplier``, ``requantize``, ``pack_weights``, ``qgemm``,
``qgemm_requant``, ``qim2col``, ``qconv2d`` and NumPy ``*_ref`` twins computing in int64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from kernels import _intrinsics as _x
from kernels._config import njit, pjit

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
K_MAX = INT32_MAX // (255 * 255)  # 33025: the largest K whose int32 accumulator cannot wrap
_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}

# Register tiles: MR rows x NR columns of int32 accumulators (16 zmm for VNNI, 12 ymm for AVX2).
VNNI_MR, VNNI_NV = 4, 4
I16_MR, I16_NV = 6, 2
VNNI_NR, I16_NR = 16 * VNNI_NV, 8 * I16_NV
_VNNI_BIG, _VNNI_ONE = _x.vnni_tile(VNNI_MR, VNNI_NV), _x.vnni_tile(1, VNNI_NV)
_I16_BIG, _I16_ONE = _x.i16_tile(I16_MR, I16_NV), _x.i16_tile(1, I16_NV)


# ================================================================================== argument checks
def _int(v, name: str, fn: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    return int(v)


def _zero_point(v, dtype, name: str, fn: str) -> int:
    v = _int(v, name, fn)
    lo, hi = _RANGE[np.dtype(dtype)]
    if not lo <= v <= hi:
        raise ValueError(f"{fn}: {name}={v} is outside the {np.dtype(dtype)} range [{lo}, {hi}]")
    return v


def _array(a, name: str, fn: str, dtypes, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        raise TypeError(f"{fn}: {name} must be {' or '.join(np.dtype(d).name for d in dtypes)}, got {a.dtype} "
                        "(no silent casts: quantise explicitly)")
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-d, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous (np.ascontiguousarray), got strides {a.strides}")
    return a


def _out_dtype(dtype, fn: str) -> np.dtype:
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{fn}: out dtype must be uint8 or int8, got {dtype!r}") from e
    if d not in _RANGE:
        raise TypeError(f"{fn}: out dtype must be uint8 or int8, got {d}")
    return d


def _requant_params(multiplier, shift, fn: str) -> tuple[int, int]:
    m = _int(multiplier, "multiplier", fn)
    s = _int(shift, "shift", fn)
    if not (1 << 30) <= m <= INT32_MAX:
        raise ValueError(f"{fn}: multiplier M0={m} must be a normalised Q31 value in [2**30, 2**31 - 1] "
                         "(use quantize_multiplier(real))")
    if not 0 <= s <= 31:
        raise ValueError(f"{fn}: shift={s} must be in [0, 31]")
    return m, s


def _resolve_path(path: str, fn: str) -> str:
    if path == "auto":
        path = "vnni" if _x.cpu_has("avx512_vnni") else "int16"
    if path not in ("vnni", "int16"):
        raise ValueError(f"{fn}: path must be 'auto', 'vnni' or 'int16', got {path!r}")
    family = "avx512_vnni" if path == "vnni" else "avx2"
    if not _x.cpu_has(family):
        raise RuntimeError(f"{fn}: path {path!r} needs {family}, which this CPU (numba target) lacks")
    return path


# ================================================================================== requantisation
def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Jacob 2018 Eq. (6): ``real = 2**-n * M0'`` with ``M0'`` in [0.5, 1), as ``(M0 = round(M0' * 2**31), n)``.

    ``real_multiplier`` = s_in * s_w / s_out must lie in (0, 1). Rounding is half away from zero (TFLite's
    ``std::round``). A value within 2**-32 of 1 would round ``M0`` up to 2**31 and is refused, as is a value
    below 2**-32 (shift > 31: every output would equal the zero point).
    """
    if isinstance(real_multiplier, bool) or not isinstance(real_multiplier, (float, int, np.floating, np.integer)):
        raise TypeError(f"quantize_multiplier: expected a real number, got {type(real_multiplier).__name__}")
    r = float(real_multiplier)
    if not (math.isfinite(r) and 0.0 < r < 1.0):
        raise ValueError(f"quantize_multiplier: real multiplier {r!r} must lie in (0, 1)")
    q, e = math.frexp(r)  # r = q * 2**e, q in [0.5, 1)
    m0 = math.floor(q * (1 << 31) + 0.5)
    if m0 == 1 << 31:
        raise ValueError(f"quantize_multiplier: {r!r} rounds to 1.0 in Q31; use a multiplier < 1 - 2**-32")
    shift = -e
    if shift > 31:
        raise ValueError(f"quantize_multiplier: {r!r} < 2**-32 needs shift {shift} > 31")
    return int(m0), int(shift)


def srdhm_ref(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul(a, b) on int64 arrays holding int32 values."""
    a = np.asarray(a, np.int64)
    ab = a * np.int64(b)
    s = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C++ integer division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)


def rdpot_ref(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT(x, exponent): x / 2**exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    mask = np.int64((1 << exponent) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize_ref(acc: np.ndarray, multiplier: int, shift: int, out_zero_point: int, dtype) -> np.ndarray:
    """int64 reference of ``requantize``; ``acc`` is first saturated to int32."""
    lo, hi = _RANGE[np.dtype(dtype)]
    acc = np.clip(np.asarray(acc, np.int64), INT32_MIN, INT32_MAX)
    y = rdpot_ref(srdhm_ref(acc, multiplier), shift) + out_zero_point
    return np.clip(y, lo, hi).astype(dtype)


@njit(inline="always")
def _requant1(acc, m0, shift, zp, lo, hi):
    """One value: saturate to int32, SRDHM, RDPOT, + zero point, clamp. All int64 arithmetic."""
    acc = min(max(acc, INT32_MIN), INT32_MAX)
    ab = acc * m0
    s = ab + (1 << 30) if ab >= 0 else ab + (1 - (1 << 30))
    x = s >> 31 if s >= 0 else -((-s) >> 31)
    mask = (np.int64(1) << shift) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    y = (x >> shift) + (1 if (x & mask) > threshold else 0) + zp
    return min(max(y, lo), hi)


@pjit
def _requant_kernel(acc, m0, shift, zp, lo, hi, out):
    for i in prange(acc.size):
        out[i] = _requant1(np.int64(acc[i]), m0, shift, zp, lo, hi)


def requantize(acc: np.ndarray, multiplier: int, shift: int, out_zero_point: int, dtype) -> np.ndarray:
    """int32 accumulators (any shape, C-contiguous) -> uint8/int8 of the same shape (gemmlowp arithmetic)."""
    fn = "requantize"
    if not isinstance(acc, np.ndarray):
        raise TypeError(f"{fn}: acc must be a numpy array, got {type(acc).__name__}")
    _array(acc, "acc", fn, (np.int32,), acc.ndim)
    m0, s = _requant_params(multiplier, shift, fn)
    d = _out_dtype(dtype, fn)
    zp = _zero_point(out_zero_point, d, "out_zero_point", fn)
    out = np.empty(acc.shape, d)
    _requant_kernel(acc.reshape(-1), m0, s, zp, *_RANGE[d], out.reshape(-1))
    return out


# ================================================================================== packing
@dataclass(frozen=True, eq=False)
class PackedWeights:
    """Weights B (K, N) int8 with zero point ``zero_point``, packed for one path.

    'vnni': ``data`` int8 ``[N/64 panels][K4][64 columns][4]`` (raw B, padding 0), ``colsum`` = sum_k B[k, j].
    'int16': ``data`` int8 ``[N/16 panels][K2][16 columns][2]`` (raw B, padding 0); the tile sign-extends it.
    """
    path: str
    K: int
    N: int
    zero_point: int
    data: np.ndarray
    colsum: np.ndarray  # (Np,) int64, zeros for 'int16'

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def pack_weights(B: np.ndarray, b_zero_point: int = 0, path: str = "auto") -> PackedWeights:
    """Pack B (K, N) int8 once (a layer does it at construction); ``qgemm`` accepts the result."""
    fn = "pack_weights"
    _array(B, "B", fn, (np.int8,), 2)
    zb = _zero_point(b_zero_point, np.int8, "b_zero_point", fn)
    path = _resolve_path(path, fn)
    K, N = B.shape
    if K > K_MAX:
        raise ValueError(f"{fn}: K={K} > {K_MAX} could overflow the int32 accumulator")
    if path == "vnni":
        Kp, Np = _ceil(max(K, 1), 4), _ceil(max(N, 1), VNNI_NR)
        Bz = np.zeros((Kp, Np), np.int8)
        Bz[:K, :N] = B
        data = Bz.reshape(Kp // 4, 4, Np // VNNI_NR, VNNI_NR).transpose(2, 0, 3, 1)  # (P, K4, NR, 4)
        colsum = Bz.sum(axis=0, dtype=np.int64)
    else:
        Kp, Np = _ceil(max(K, 1), 2), _ceil(max(N, 1), I16_NR)
        Bz = np.zeros((Kp, Np), np.int8)
        Bz[:K, :N] = B
        data = Bz.reshape(Kp // 2, 2, Np // I16_NR, I16_NR).transpose(2, 0, 3, 1)  # (P, K2, NR, 2)
        colsum = np.zeros(Np, np.int64)
    return PackedWeights(path, K, N, zb, np.ascontiguousarray(data).reshape(-1), colsum)


@pjit
def _pack_a_i16(A, za, Kp, out, rowsum):
    """int16 copy of A - za, K padded with 0, and its row sums."""
    M, K = A.shape
    for i in prange(M):
        s = 0
        for k in range(K):
            v = np.int16(A[i, k]) - za
            out[i, k] = v
            s += np.int64(v)
        for k in range(K, Kp):
            out[i, k] = 0
        rowsum[i] = s


@pjit
def _pack_a_u8(A, flip, Kp, out, rowsum):
    """uint8 copy of A (int8 values + 128 when ``flip``), K padded with 0, and row sums."""
    M, K = A.shape
    for i in prange(M):
        s = 0
        for k in range(K):
            v = np.uint8(A[i, k]) ^ flip
            out[i, k] = v
            s += np.int64(v)
        for k in range(K, Kp):
            out[i, k] = 0
        rowsum[i] = s


# ================================================================================== GEMM drivers
@njit(inline="always")
def _epilogue(Ct, rows, NR, i0, j0, rowterm, colterm, m0, shift, zp, lo, hi, requant, C32, Cq):
    """Add zero-point/bias terms to the tile and write int32 or requantised outputs (columns < N)."""
    ncol = min(NR, max(C32.shape[1], Cq.shape[1]) - j0)
    for r in range(rows):
        rt = rowterm[i0 + r]
        for jj in range(ncol):
            acc = np.int64(Ct[r * NR + jj]) + rt + colterm[j0 + jj]
            if requant:
                Cq[i0 + r, j0 + jj] = _requant1(acc, m0, shift, zp, lo, hi)
            else:
                C32[i0 + r, j0 + jj] = acc


# Two drivers with the same loop, one per instruction family: a function that merely *contains* a vpdpbusd call
# fails to compile for a CPU without AVX512_VNNI, so the VNNI tiles must live in a function of their own.
@pjit
def _drive_vnni(Ap, Bp, K4, rowterm, colterm, m0, shift, zp, lo, hi, requant, C32, Cq):
    M, lda = Ap.shape
    P = colterm.size // VNNI_NR
    for p in prange(P):
        Ct = np.empty(VNNI_MR * VNNI_NR, np.int32)
        boff = p * K4 * 4 * VNNI_NR
        i = 0
        while i + VNNI_MR <= M:
            _VNNI_BIG(Ap, i * lda, lda, Bp, boff, K4, Ct)
            _epilogue(Ct, VNNI_MR, VNNI_NR, i, p * VNNI_NR, rowterm, colterm, m0, shift, zp, lo, hi,
                      requant, C32, Cq)
            i += VNNI_MR
        while i < M:
            _VNNI_ONE(Ap, i * lda, lda, Bp, boff, K4, Ct)
            _epilogue(Ct, 1, VNNI_NR, i, p * VNNI_NR, rowterm, colterm, m0, shift, zp, lo, hi, requant, C32, Cq)
            i += 1


@pjit
def _drive_i16(Ap, Bp, K2, rowterm, colterm, m0, shift, zp, lo, hi, requant, C32, Cq):
    M, lda = Ap.shape
    P = colterm.size // I16_NR
    for p in prange(P):
        Ct = np.empty(I16_MR * I16_NR, np.int32)
        boff = p * K2 * 2 * I16_NR
        i = 0
        while i + I16_MR <= M:
            _I16_BIG(Ap, i * lda, lda, Bp, boff, K2, Ct)
            _epilogue(Ct, I16_MR, I16_NR, i, p * I16_NR, rowterm, colterm, m0, shift, zp, lo, hi,
                      requant, C32, Cq)
            i += I16_MR
        while i < M:
            _I16_ONE(Ap, i * lda, lda, Bp, boff, K2, Ct)
            _epilogue(Ct, 1, I16_NR, i, p * I16_NR, rowterm, colterm, m0, shift, zp, lo, hi, requant, C32, Cq)
            i += 1


def _gemm(fn, A, B, a_zero_point, b_zero_point, bias, requant, path):
    """Shared wrapper: checks, packing, correction terms, driver call. ``requant`` = (m0, shift, zp, dtype)."""
    _array(A, "A", fn, (np.uint8, np.int8), 2)
    za = _zero_point(a_zero_point, A.dtype, "a_zero_point", fn)
    if isinstance(B, PackedWeights):
        pw = B
        if b_zero_point is not None and _int(b_zero_point, "b_zero_point", fn) != pw.zero_point:
            raise ValueError(f"{fn}: b_zero_point={b_zero_point} differs from the packed weights' {pw.zero_point}")
        if path != "auto" and path != pw.path:
            raise ValueError(f"{fn}: weights were packed for path {pw.path!r}, not {path!r}")
        _resolve_path(pw.path, fn)
    else:
        _array(B, "B", fn, (np.int8,), 2)
        pw = pack_weights(B, 0 if b_zero_point is None else b_zero_point, path)
    M, K = A.shape
    if pw.K != K:
        raise ValueError(f"{fn}: A is (M, K) = {A.shape} but B has K = {pw.K} rows")
    N, Np, zb = pw.N, pw.colsum.size, pw.zero_point
    colterm = np.zeros(Np, np.int64)
    if bias is not None:
        _array(bias, "bias", fn, (np.int32,), 1)
        if bias.shape != (N,):
            raise ValueError(f"{fn}: bias must have shape ({N},), got {bias.shape}")
        colterm[:N] = bias
    if requant is None:
        C32, Cq, rq = np.empty((M, N), np.int32), np.empty((0, 0), np.uint8), (1 << 30, 0, 0, 0, 0, False)
    else:
        m0, s, zp, d = requant
        C32, Cq, rq = np.empty((0, 0), np.int32), np.empty((M, N), d), (m0, s, zp, *_RANGE[d], True)
    if M == 0 or N == 0:
        return C32 if requant is None else Cq
    if pw.path == "vnni":
        flip = 0x80 if A.dtype == np.int8 else 0
        za_u = za + (128 if flip else 0)
        Kp = _ceil(max(K, 1), 4)
        Ap, rowsum = np.empty((M, Kp), np.uint8), np.empty(M, np.int64)
        _pack_a_u8(A, np.uint8(flip), Kp, Ap, rowsum)
        # sum (A-za)(B-zb) = sum A B - zb rowsum(A) - za colsum(B) + K za zb
        rowterm = -zb * rowsum
        colterm += -za_u * pw.colsum + K * za_u * zb
        _drive_vnni(Ap, pw.data, Kp // 4, rowterm, colterm, *rq, C32, Cq)
    else:
        Kp = _ceil(max(K, 1), 2)
        Ap, rowsum = np.empty((M, Kp), np.int16), np.empty(M, np.int64)
        _pack_a_i16(A, np.int16(za), Kp, Ap, rowsum)
        # sum (A-za)(B-zb) = sum (A-za) B - zb sum_k (A-za)
        _drive_i16(Ap, pw.data, Kp // 2, -zb * rowsum, colterm, *rq, C32, Cq)
    return C32 if requant is None else Cq


def qgemm(A: np.ndarray, B, a_zero_point: int, b_zero_point: int | None = None, path: str = "auto") -> np.ndarray:
    """``(A - za) @ (B - zb)`` exactly: A (M, K) uint8/int8, B (K, N) int8 or ``PackedWeights`` -> (M, N) int32."""
    return _gemm("qgemm", A, B, a_zero_point, b_zero_point, None, None, path)


def qgemm_requant(A: np.ndarray, B, a_zero_point: int, b_zero_point: int | None, bias: np.ndarray | None,
                  multiplier: int, shift: int, out_zero_point: int, out_dtype=np.uint8,
                  path: str = "auto") -> np.ndarray:
    """Fused ``requantize((A - za) @ (B - zb) + bias, M0, shift, zp, out_dtype)``: (M, N) uint8/int8.

    ``bias`` (N,) int32 is in the accumulator's scale ``s_A * s_B`` with zero point 0 (Jacob 2018 2.4).
    """
    fn = "qgemm_requant"
    m0, s = _requant_params(multiplier, shift, fn)
    d = _out_dtype(out_dtype, fn)
    zp = _zero_point(out_zero_point, d, "out_zero_point", fn)
    return _gemm(fn, A, B, a_zero_point, b_zero_point, bias, (m0, s, zp, d), path)


def qgemm_ref(A: np.ndarray, B: np.ndarray, a_zero_point: int, b_zero_point: int = 0) -> np.ndarray:
    """int64 NumPy reference: (A - za) @ (B - zb)."""
    return (A.astype(np.int64) - a_zero_point) @ (B.astype(np.int64) - b_zero_point)


def qgemm_requant_ref(A, B, a_zero_point, b_zero_point, bias, multiplier, shift, out_zero_point,
                      out_dtype=np.uint8) -> np.ndarray:
    acc = qgemm_ref(A, B, a_zero_point, b_zero_point)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return requantize_ref(acc, multiplier, shift, out_zero_point, out_dtype)


# ================================================================================== conv2d
def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
        return int(v[0]), int(v[1])
    raise TypeError(f"qconv2d: {name} must be an int or a pair of ints, got {v!r}")


@pjit
def _im2col(x, kH, kW, sh, sw, ph, pw, dh, dw, Ho, Wo, pad, cols):
    N, C, H, W = x.shape
    for nh in prange(N * Ho):
        n, oh = nh // Ho, nh % Ho
        for ow in range(Wo):
            row = (n * Ho + oh) * Wo + ow
            for c in range(C):
                for i in range(kH):
                    h = oh * sh - ph + i * dh
                    for j in range(kW):
                        w = ow * sw - pw + j * dw
                        k = (c * kH + i) * kW + j
                        if 0 <= h < H and 0 <= w < W:
                            cols[row, k] = x[n, c, h, w]
                        else:
                            cols[row, k] = pad


def qim2col(x: np.ndarray, kernel_size, stride=1, padding=0, dilation=1, pad_value: int = 0):
    """x (N, C, H, W) uint8/int8 -> (cols (N*Ho*Wo, C*kH*kW) same dtype, (Ho, Wo)).

    Padding writes ``pad_value``; passing the activation zero point makes padding contribute exactly 0 to
    ``(cols - za) @ (B - zb)``, the integer image of float zero padding.
    """
    fn = "qim2col"
    _array(x, "x", fn, (np.uint8, np.int8), 4)
    (kH, kW), (sh, sw), (ph, pw), (dh, dw) = (_pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                                              _pair(padding, "padding"), _pair(dilation, "dilation"))
    if min(kH, kW, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{fn}: kernel/stride/dilation must be >= 1 and padding >= 0")
    pad = _zero_point(pad_value, x.dtype, "pad_value", fn)
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - dh * (kH - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kW - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{fn}: kernel larger than the padded input {x.shape}")
    cols = np.empty((N * Ho * Wo, C * kH * kW), x.dtype)
    _im2col(x, kH, kW, sh, sw, ph, pw, dh, dw, Ho, Wo, x.dtype.type(pad), cols)
    return cols, (Ho, Wo)


def qconv2d(x: np.ndarray, weight: np.ndarray, a_zero_point: int, w_zero_point: int = 0,
            bias: np.ndarray | None = None, stride=1, padding=0, dilation=1, multiplier: int | None = None,
            shift: int | None = None, out_zero_point: int | None = None, out_dtype=np.uint8,
            path: str = "auto") -> np.ndarray:
    """Quantised conv2d (groups=1): x (N, Ci, H, W) uint8/int8, weight (Co, Ci, kH, kW) int8.

    Returns int32 (N, Co, Ho, Wo) accumulators ``sum (x - za)(w - zw) + bias``, or, when ``multiplier``,
    ``shift`` and ``out_zero_point`` are given, their requantised uint8/int8 values.
    """
    fn = "qconv2d"
    _array(weight, "weight", fn, (np.int8,), 4)
    _array(x, "x", fn, (np.uint8, np.int8), 4)
    Co, Ci, kH, kW = weight.shape
    if x.shape[1] != Ci:
        raise ValueError(f"{fn}: x has {x.shape[1]} channels, weight expects {Ci}")
    za = _zero_point(a_zero_point, x.dtype, "a_zero_point", fn)
    cols, (Ho, Wo) = qim2col(x, (kH, kW), stride, padding, dilation, pad_value=za)  # (N*L, K)
    B = np.ascontiguousarray(weight.reshape(Co, -1).T)  # (K, Co)
    if multiplier is None:
        if bias is not None:
            _array(bias, "bias", fn, (np.int32,), 1)
        y = qgemm(cols, B, za, w_zero_point, path).astype(np.int64)
        if bias is not None:
            y += bias
        y = y.astype(np.int32)
    else:
        y = qgemm_requant(cols, B, za, w_zero_point, bias, multiplier, shift, out_zero_point, out_dtype, path)
    N = x.shape[0]
    return np.ascontiguousarray(y.reshape(N, Ho, Wo, Co).transpose(0, 3, 1, 2))  # (N, Co, Ho, Wo)


def qconv2d_ref(x, weight, a_zero_point, w_zero_point=0, bias=None, stride=1, padding=0, dilation=1,
                multiplier=None, shift=None, out_zero_point=None, out_dtype=np.uint8) -> np.ndarray:
    """Direct int64 reference: pad x with its zero point, sum over taps."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    xz = np.pad(x.astype(np.int64) - a_zero_point, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zero pad after shift
    w = weight.astype(np.int64) - w_zero_point
    N, _, H, W = xz.shape
    Co, _, kH, kW = w.shape
    Ho, Wo = (H - dh * (kH - 1) - 1) // sh + 1, (W - dw * (kW - 1) - 1) // sw + 1
    y = np.zeros((N, Co, Ho, Wo), np.int64)
    for i in range(kH):
        for j in range(kW):
            win = xz[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]
            y += np.einsum("nchw,oc->nohw", win, w[:, :, i, j])
    if bias is not None:
        y += bias.astype(np.int64)[None, :, None, None]
    if multiplier is None:
        return y
    return requantize_ref(y, multiplier, shift, out_zero_point, out_dtype)
