"""Power-of-two (shift) weights: ShiftCNN codes, packing, and shift GEMM/GEMV on integer activations.

ShiftCNN (Gudovskiy & Rigazio 2017, arXiv 1706.02393) approximates each weight by a sum of ``N`` terms, each
from the codebook ``{0, +-2**0, +-2**-1, ..., +-2**-6}`` (B = 4 bits: 15 values). We store the codebook
scaled by 2**6 so that terms are integers, with one power-of-two scale per tensor:

    W ~= scale * sum_n decode(codes[n]),   decode(s << 3 | m) = 0 if m == 0 else (-1)**s * 2**(m - 1)

so a term is a 4-bit nibble (sign bit, 3-bit exponent index, index 0 = zero; code 8 = "-0" also decodes to
0) and a product ``x * term`` is ``+-(x << (m - 1))``. Storage is 4 bits per term: ``pack_codes`` puts 8
nibbles in one int32 word (two codes per byte); see kernels/README.md, "Shift encoding".

``shift_gemm(packed, X)`` computes the exact int32 ``X @ W_int.T`` for integer activations X (M, K) and
W_int (O, K) = sum_n decode(codes[n]), by variable shifts (``vpsllvd``) and sign (``vpsignd``), in int32
lanes. ``shift_gemv`` is the batch-1 case. A CPU shifts no faster than it multiplies (one shift + one sign
+ one add per term against one FMA per weight), so the GEMM is not expected to beat an fp32 BLAS; the win is
the GEMV, which is memory-bound and reads 8x (one term) or 4x (two terms) fewer bytes than fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from kernels import _intrinsics as _x
from kernels._config import pjit

N_EXPONENTS = 7       # m = 1..7 -> 2**0 .. 2**6
MAX_TERM = 1 << (N_EXPONENTS - 1)  # 64
INT32_MAX = (1 << 31) - 1
MR, NV = 4, 2         # register tile: 4 rows x 16 outputs (8 int32 lanes per ymm)
NR = 8 * NV
_TILES = {nt: (_x.shift_tile(MR, NV, nt), _x.shift_tile(1, NV, nt)) for nt in (1, 2, 4)}
_BIG1, _ONE1 = _TILES[1]
_BIG2, _ONE2 = _TILES[2]
_BIG4, _ONE4 = _TILES[4]
_INTS = (np.int8, np.uint8, np.int16, np.int32)


# ================================================================================== codes
def decode(codes: np.ndarray) -> np.ndarray:
    """uint8 codes (any shape, values 0..15) -> int64 term values 0 or +-2**(m-1)."""
    codes = _check_codes(codes, "decode")
    m = (codes & 7).astype(np.int64)
    mag = np.where(m > 0, np.left_shift(np.int64(1), np.maximum(m - 1, 0)), 0)
    return np.where(codes & 8, -mag, mag)


def _nearest_term(r: np.ndarray) -> np.ndarray:
    """Code of the codebook value nearest to each r (linear distance, ties to the larger magnitude).

    ShiftCNN Algorithm 1 rounds |r| to 2**floor(log2(|r| * 4/3)); we use the same rule (computed exactly
    with frexp: p = floor(log2|r|), plus one when the mantissa >= 0.75), send |r| < 0.5 to 0 and saturate
    at 2**6.
    """
    a = np.abs(r)
    mant, e = np.frexp(a)  # a = mant * 2**e, mant in [0.5, 1): exact, no log2 rounding at the ties
    p = np.clip(e.astype(np.int64) - 1 + (mant >= 0.75), -1, N_EXPONENTS - 1)
    m = np.where(a >= 0.5, np.maximum(p, 0) + 1, 0)
    return (np.where((r < 0) & (m > 0), 8, 0) + m).astype(np.uint8)


def encode(W: np.ndarray, n_terms: int = 1, scale: float | None = None) -> tuple[np.ndarray, float]:
    """ShiftCNN quantisation: ``W ~= scale * sum_n decode(codes[n])`` with greedy residual terms.

    Parameters
    ----------
    W : float32/float64 array, any shape.
    n_terms : number of terms N (1 = plain power-of-two weights).
    scale : power of two; by default the largest |W| maps to the top level 2**6.

    Returns
    -------
    codes : (n_terms, *W.shape) uint8, scale : float (a power of two).
    """
    if not isinstance(W, np.ndarray) or W.dtype not in (np.float32, np.float64):
        raise TypeError(f"encode: W must be a float32/float64 array, got {getattr(W, 'dtype', type(W))}")
    if isinstance(n_terms, bool) or not isinstance(n_terms, (int, np.integer)) or not 1 <= n_terms <= 4:
        raise ValueError(f"encode: n_terms must be 1, 2, 3 or 4, got {n_terms!r}")
    if not np.all(np.isfinite(W)):
        raise ValueError("encode: W has non-finite values")
    if scale is None:
        top = float(np.abs(W).max(initial=0.0))
        scale = 2.0 ** (np.floor(np.log2(top * 4.0 / 3.0)) - (N_EXPONENTS - 1)) if top > 0 else 1.0
    elif not (scale > 0 and float(np.log2(scale)).is_integer()):
        raise ValueError(f"encode: scale must be a positive power of two, got {scale!r}")
    r = W.astype(np.float64) / scale
    codes = np.empty((n_terms,) + W.shape, np.uint8)
    for n in range(n_terms):
        codes[n] = _nearest_term(r)
        r = r - decode(codes[n])
    return codes, float(scale)


def _check_codes(codes, fn: str) -> np.ndarray:
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
        raise TypeError(f"{fn}: codes must be a uint8 array, got {getattr(codes, 'dtype', type(codes))}")
    if codes.size and codes.max() > 15:
        raise ValueError(f"{fn}: codes are 4-bit (0..15), got a value {int(codes.max())}")
    return codes


# ================================================================================== packing
@dataclass(frozen=True, eq=False)
class PackedShift:
    """Codes for W (O, K), ``n_terms`` terms, packed as int32 words ``[O/NR panels][K8][NR lanes]`` (NR = 16).

    Nibble ``j`` of a word (bits 4j..4j+3) is term ``j % n_terms`` of input ``k8 * (8 / n_terms) + j //
    n_terms`` for output ``panel * NR + lane``; padding nibbles are 0 (= weight 0).
    """
    O: int
    K: int
    n_terms: int
    data: np.ndarray  # int32, 1-d

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def pack_codes(codes: np.ndarray) -> PackedShift:
    """codes (n_terms, O, K) uint8 -> ``PackedShift`` (4 bits per term; n_terms in {1, 2, 4})."""
    fn = "pack_codes"
    _check_codes(codes, fn)
    if codes.ndim != 3 or codes.shape[0] not in (1, 2, 4):
        raise ValueError(f"{fn}: codes must be (n_terms, O, K) with n_terms in (1, 2, 4), got {codes.shape}")
    nt, O, K = codes.shape
    per = 8 // nt
    Kp, Op = _ceil(max(K, 1), per), _ceil(max(O, 1), NR)
    c = np.zeros((nt, Op, Kp), np.uint32)
    c[:, :O, :K] = codes
    c = c.reshape(nt, Op // NR, NR, Kp // per, per).transpose(1, 3, 2, 4, 0)  # (P, K8, NR, per, nt)
    c = c.reshape(Op // NR, Kp // per, NR, 8)  # nibble j = per_index * nt + term
    words = np.zeros(c.shape[:3], np.uint32)
    for j in range(8):
        words |= c[..., j] << np.uint32(4 * j)
    return PackedShift(O, K, nt, words.view(np.int32).reshape(-1))


def unpack_codes(packed: PackedShift) -> np.ndarray:
    """Inverse of ``pack_codes``: (n_terms, O, K) uint8."""
    nt, O, K = packed.n_terms, packed.O, packed.K
    per = 8 // nt
    Kp, Op = _ceil(max(K, 1), per), _ceil(max(O, 1), NR)
    words = packed.data.view(np.uint32).reshape(Op // NR, Kp // per, NR)
    c = np.stack([(words >> np.uint32(4 * j)) & np.uint32(15) for j in range(8)], axis=-1)
    c = c.reshape(Op // NR, Kp // per, NR, per, nt).transpose(4, 0, 2, 1, 3).reshape(nt, Op, Kp)
    return np.ascontiguousarray(c[:, :O, :K]).astype(np.uint8)


# ================================================================================== GEMM
@pjit
def _pack_x(X, Kp, out):
    M, K = X.shape
    for i in prange(M):
        for k in range(K):
            out[i, k] = np.int32(X[i, k])
        for k in range(K, Kp):
            out[i, k] = 0


@pjit
def _drive(Xp, Bp, n_steps, nt, O, C):
    M, lda = Xp.shape
    P = -(-O // NR)
    for p in prange(P):
        Ct = np.empty(MR * NR, np.int32)
        boff = p * n_steps * NR
        ncol = min(NR, O - p * NR)
        i = 0
        while i < M:
            rows = MR if i + MR <= M else 1
            if nt == 1:
                if rows == MR:
                    _BIG1(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
                else:
                    _ONE1(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
            elif nt == 2:
                if rows == MR:
                    _BIG2(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
                else:
                    _ONE2(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
            else:
                if rows == MR:
                    _BIG4(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
                else:
                    _ONE4(Xp, i * lda, lda, Bp, boff, n_steps, Ct)
            for r in range(rows):
                for jj in range(ncol):
                    C[i + r, p * NR + jj] = Ct[r * NR + jj]
            i += rows


def shift_gemm(packed: PackedShift, X: np.ndarray) -> np.ndarray:
    """Exact ``X @ W_int.T``: packed codes for W (O, K), X (M, K) int8/uint8/int16/int32 -> (M, O) int32.

    Raises ``ValueError`` when ``max|X| * 64 * n_terms * K`` could overflow int32.
    """
    fn = "shift_gemm"
    if not isinstance(packed, PackedShift):
        raise TypeError(f"{fn}: weights must be a PackedShift from pack_codes, got {type(packed).__name__}")
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{fn}: X must be a numpy array, got {type(X).__name__}")
    if X.dtype not in [np.dtype(d) for d in _INTS]:
        raise TypeError(f"{fn}: X must be int8, uint8, int16 or int32, got {X.dtype} (no silent casts)")
    if X.ndim != 2 or X.shape[1] != packed.K:
        raise ValueError(f"{fn}: X must be (M, {packed.K}), got shape {X.shape}")
    if not X.flags.c_contiguous:
        raise ValueError(f"{fn}: X must be C-contiguous (np.ascontiguousarray)")
    if not _x.cpu_has("avx2"):
        raise RuntimeError(f"{fn}: needs AVX2 (vpsllvd), which this CPU (numba target) lacks")
    M, K = X.shape
    xmax = int(np.abs(X.astype(np.int64)).max(initial=0))
    if xmax * MAX_TERM * packed.n_terms * K > INT32_MAX:
        raise ValueError(f"{fn}: max|X|={xmax} x 64 x {packed.n_terms} terms x K={K} may overflow int32")
    C = np.empty((M, packed.O), np.int32)
    if M == 0 or packed.O == 0:
        return C
    per = 8 // packed.n_terms
    Kp = _ceil(max(K, 1), per)
    Xp = np.empty((M, Kp), np.int32)
    _pack_x(X, Kp, Xp)
    _drive(Xp, packed.data, Kp // per, packed.n_terms, packed.O, C)
    return C


def shift_gemv(packed: PackedShift, x: np.ndarray) -> np.ndarray:
    """Batch-1 ``W_int @ x``: x (K,) integer -> (O,) int32 (memory-bound: 4 bits per weight term)."""
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise ValueError(f"shift_gemv: x must be a 1-d numpy array, got {getattr(x, 'shape', type(x))}")
    return shift_gemm(packed, x.reshape(1, -1))[0]


def shift_gemm_ref(codes: np.ndarray, X: np.ndarray) -> np.ndarray:
    """int64 reference: sum over terms and k of sign * (X << (m - 1)), as X @ W_int.T."""
    W_int = decode(codes).sum(axis=0)  # (O, K)
    return X.astype(np.int64) @ W_int.T  # (M, K) @ (K, O)


def shift_gemv_ref(codes: np.ndarray, x: np.ndarray) -> np.ndarray:
    return shift_gemm_ref(codes, x.reshape(1, -1))[0]
