"""Binary (XNOR-popcount) kernels: sign bit packing, XNOR GEMM and a binary convolution.

Public, each with a plain NumPy twin ``<name>_ref``:

* ``pack_signs(A)``: A (M, K) float -> (M, B) uint64, B = ceil(K/64); bit k%64 of word k//64 is 1 where
  A[:, k] >= 0 (sign(0) = +1; NaN packs as -1), padding bits 0. ``unpack_signs`` inverts it to +-1 floats.
* ``xnor_gemm(A_bits, B_bits, K)``: int32 (M, N) = sign(A) @ sign(B).T exactly, computed as
  K - 2 * popcount(a xor b) summed over words (padding bits are 0 in both operands, so their xor is 0).
* ``pack_conv_weight(w)`` and ``binary_conv2d(x, w_bits, ...)``: x (N, Ci, H, W) float is binarized and packed
  along channels, spatial padding is +1 (the sign of a zero-padded input; kernels/README.md), the packed
  windows are gathered (im2col on words, 64x smaller than float im2col) and multiplied by ``xnor_gemm``'s
  kernel; XNOR-Net's scales are applied after the popcount: alpha[co] (mean |W| per output channel) and
  optionally the activation scale K[n, ho, wo] (mean over channels of |x|, box-filtered over the window).

Kernel levels: ``_tile`` (serial) keeps an MR x NR block of popcount sums in registers (constant trip
counts) over the whole reduction; ``_xnor_parallel`` runs the tiles (disjoint output blocks, integer sums,
so any thread count gives identical results; ``_xnor_serial`` runs the same tiles for small products); the
public wrappers check their input and never cast.
Popcount is LLVM ``ctpop`` on a vector of words (``_xnor_tile``): one ``vpopcntq`` per 8 words with AVX512_VPOPCNTDQ, a pshufb
nibble lookup on AVX2-only CPUs.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels._config import njit, pjit
from kernels._intrinsics import _target_features
from kernels.conv import _pair, conv2d, conv2d_ref  # _pair: the int-or-pair argument check of the float conv

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
WORD = 64
# Register tile: AVX-512 holds 4 rows x 32 columns of int64 sums in 16 zmm (PERFORMANCE.md 3.4); AVX2 has
# 16 ymm registers in all, so 4 x 8 sums (8 ymm) leave room for the pshufb popcount temporaries.
MR = 4
V = 8 if "avx512vpopcntdq" in _target_features() else 4  # uint64 lanes per vector
NR = 4 * V if V == 8 else 2 * V
NV = NR // V
TILE = MR * NR
SERIAL_WORK = 1 << 18  # word operations (M * N * words) below which a parallel dispatch costs more than it saves


def n_words(K: int) -> int:
    """64-bit words holding K bits."""
    return (int(K) + WORD - 1) // WORD


# ---------------------------------------------------------------------------------------------- intrinsics
@intrinsic
def _stack_buffer(typingctx, size, dtype):
    """Pointer to ``size`` (a literal) elements on the stack, which LLVM promotes to registers."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    n = size.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=ir.Constant(ir.IntType(64), n))
    return types.CPointer(dtype.dtype)(size, dtype), codegen


# ---------------------------------------------------------------------------------------------- packing
def _check_float2d(A, who: str) -> None:
    if not isinstance(A, np.ndarray):
        raise TypeError(f"{who}: expected a numpy array, got {type(A).__name__}")
    if A.dtype not in _FLOATS:
        raise TypeError(f"{who}: expected float32 or float64, got {A.dtype}")
    if A.ndim != 2:
        raise ValueError(f"{who}: expected a 2-d array (M, K), got shape {A.shape}")
    if not A.flags.c_contiguous:
        raise ValueError(f"{who}: the array must be C-contiguous (use np.ascontiguousarray)")


@intrinsic
def _sign_word(typingctx, A, off):
    """Bit b = (A.flat[off + b] >= 0) for b < 64, as one <64 x float> compare that LLVM lowers to vcmpps +
    vmovmskps (ordered compare: NaN gives 0, -0.0 gives 1, like numpy's ``A >= 0``)."""
    if not (isinstance(A, types.Array) and A.layout == "C" and A.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        ptr = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0]).data
        vty = ir.VectorType(context.get_value_type(signature.args[0].dtype), WORD)
        v = builder.load(builder.bitcast(builder.gep(ptr, [args[1]]), vty.as_pointer()), align=4)
        mask = builder.fcmp_ordered(">=", v, ir.Constant(vty, None))
        return builder.bitcast(mask, ir.IntType(WORD))
    return types.uint64(A, types.intp), codegen


@njit(inline="always")
def _pack_row(A, out, i):
    K = A.shape[1]
    full = K // WORD
    for w in range(full):
        out[i, w] = _sign_word(A, i * K + w * WORD)
    if full < out.shape[1]:
        word = np.uint64(0)
        for b in range(K - full * WORD):
            if A[i, full * WORD + b] >= 0:
                word |= np.uint64(1) << np.uint64(b)
        out[i, full] = word


@pjit
def _pack_parallel(A, out):
    for i in prange(A.shape[0]):
        _pack_row(A, out, i)


@njit
def _pack_serial(A, out):
    for i in range(A.shape[0]):
        _pack_row(A, out, i)


def pack_signs_ref(A: np.ndarray) -> np.ndarray:
    """Plain twin of ``pack_signs``: bit b of word w is (A[:, 64 w + b] >= 0), added up as powers of two."""
    M, K = A.shape
    bits = np.zeros((M, n_words(K) * WORD), np.uint64)
    bits[:, :K] = A >= 0
    weights = np.uint64(1) << np.arange(WORD, dtype=np.uint64)
    return (bits.reshape(M, n_words(K), WORD) * weights).sum(axis=2, dtype=np.uint64)  # (M, B)


def pack_signs(A: np.ndarray) -> np.ndarray:
    """A (M, K) float32/float64, C-contiguous -> sign bits (M, ceil(K/64)) uint64 (see the module doc)."""
    _check_float2d(A, "pack_signs")
    out = np.empty((A.shape[0], n_words(A.shape[1])), np.uint64)
    if out.size:
        (_pack_serial if A.size < SERIAL_WORK else _pack_parallel)(A, out)
    return out


def unpack_signs(bits: np.ndarray, K: int, dtype=np.float64) -> np.ndarray:
    """Inverse of ``pack_signs``: (M, B) uint64 -> (M, K) array of +1/-1 in ``dtype``."""
    as_bytes = np.ascontiguousarray(bits).astype("<u8").view(np.uint8)  # little-endian: byte 0 = bits 0..7
    b = np.unpackbits(as_bytes.reshape(bits.shape[0], 8 * bits.shape[1]), axis=1, bitorder="little")[:, :K]
    return np.where(b == 1, 1, -1).astype(dtype)


# ---------------------------------------------------------------------------------------------- XNOR GEMM
def _tile_ir_codegen(context, builder, signature, args):
    """LLVM IR of ``_xnor_tile``: MR x (NV vectors of V uint64 lanes) popcount sums kept in registers."""
    tA, _, _, tB, _, _, _, tC = signature.args
    a_ptr, b_ptr, c_ptr = (cgutils.create_struct_proxy(t)(context, builder, value=v).data
                           for t, v in ((tA, args[0]), (tB, args[3]), (tC, args[7])))
    a_off, lda, b_off, nw, nrows = args[1], args[2], args[4], args[5], args[6]
    i64 = ir.IntType(64)
    vty = ir.VectorType(i64, V)
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty]), f"llvm.ctpop.v{V}i64")
    last = builder.sub(nrows, ir.Constant(i64, 1))
    rows = []
    for r in range(MR):  # rows past nrows re-read the last valid row; the caller does not store them
        rr = builder.select(builder.icmp_signed("<", ir.Constant(i64, r), nrows), ir.Constant(i64, r), last)
        rows.append(builder.add(a_off, builder.mul(lda, rr)))
    slots = [[cgutils.alloca_once_value(builder, ir.Constant(vty, None)) for _ in range(NV)] for _ in range(MR)]
    zero_idx = ir.Constant(ir.IntType(32), 0)
    with cgutils.for_range(builder, nw) as loop:
        bw = builder.add(b_off, builder.mul(loop.index, ir.Constant(i64, NR)))
        bv = [builder.load(builder.bitcast(builder.gep(b_ptr, [builder.add(bw, ir.Constant(i64, v * V))]),
                                           vty.as_pointer()), align=8) for v in range(NV)]
        for r in range(MR):
            a = builder.load(builder.gep(a_ptr, [builder.add(rows[r], loop.index)]))
            a = builder.insert_element(ir.Constant(vty, None), a, zero_idx)
            a = builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V))
            for v in range(NV):
                pop = builder.call(ctpop, [builder.xor(a, bv[v])])
                builder.store(builder.add(builder.load(slots[r][v]), pop), slots[r][v])
    for r in range(MR):
        for v in range(NV):
            dst = builder.bitcast(builder.gep(c_ptr, [ir.Constant(i64, r * NR + v * V)]), vty.as_pointer())
            builder.store(builder.load(slots[r][v]), dst, align=8)
    return context.get_dummy_value()


@intrinsic
def _xnor_tile(typingctx, A, a_off, lda, Bp, b_off, nw, nrows, Ct):
    """Ct[r*NR + c] = sum_{w < nw} popcount(A.flat[a_off + lda*r + w] ^ Bp.flat[b_off + NR*w + c])."""
    if not all(isinstance(t, types.Array) and t.layout == "C" and t.dtype == types.uint64 for t in (A, Bp, Ct)):
        return None  # flat offsets need C-contiguous uint64 arrays
    sig = types.void(A, types.intp, types.intp, Bp, types.intp, types.intp, types.intp, Ct)
    return sig, _tile_ir_codegen


@njit
def _tile(A, Bp, out, i0, rows, jt, cols, K):
    """out[i0:i0+rows, jt*NR:jt*NR+cols] = K - 2 * sum_w popcount(A[i, w] ^ B[j, w]); rows <= MR, cols <= NR.
    ``Bp`` holds B in panels (N/NR, B, NR), zero past N."""
    Ct = numba.carray(_stack_buffer(TILE, np.uint64), TILE)
    nw = A.shape[1]
    _xnor_tile(A, i0 * nw, nw, Bp, jt * nw * NR, nw, rows, Ct)
    j0 = jt * NR
    for r in range(rows):
        for c in range(cols):
            out[i0 + r, j0 + c] = K - 2 * np.int64(Ct[r * NR + c])


@njit(inline="always")
def _xnor_task(A, Bp, N, K, out, t):
    n_jt = Bp.shape[0]
    it = t // n_jt
    jt = t - it * n_jt
    i0 = it * MR
    _tile(A, Bp, out, i0, min(MR, A.shape[0] - i0), jt, min(NR, N - jt * NR), K)


@pjit
def _xnor_parallel(A, Bp, N, K, out):
    for t in prange((A.shape[0] + MR - 1) // MR * Bp.shape[0]):
        _xnor_task(A, Bp, N, K, out, t)


@njit
def _xnor_serial(A, Bp, N, K, out):
    """Small products (batch-1 layers): the same tiles on the calling thread, no parallel dispatch."""
    for t in range((A.shape[0] + MR - 1) // MR * Bp.shape[0]):
        _xnor_task(A, Bp, N, K, out, t)


def _xnor_driver(A, Bp, N, K, out) -> None:
    driver = _xnor_serial if A.shape[0] * N * A.shape[1] < SERIAL_WORK else _xnor_parallel
    driver(A, Bp, N, K, out)


def _panels(B_bits: np.ndarray) -> np.ndarray:
    """(N, B) words -> (ceil(N/NR), B, NR) panels, zero columns past N."""
    N, nb = B_bits.shape
    n_jt = (N + NR - 1) // NR
    Bp = np.zeros((n_jt * NR, nb), np.uint64)
    Bp[:N] = B_bits
    return np.ascontiguousarray(Bp.reshape(n_jt, NR, nb).transpose(0, 2, 1))  # (N/NR, B, NR)


def _xnor(A_bits: np.ndarray, B_bits: np.ndarray, K: int) -> np.ndarray:
    out = np.empty((A_bits.shape[0], B_bits.shape[0]), np.int32)
    if out.size:
        _xnor_driver(A_bits, _panels(B_bits), B_bits.shape[0], K, out)
    return out


def pack_weight_panels(B_bits: np.ndarray, K: int) -> np.ndarray:
    """The right operand of ``xnor_gemm`` re-arranged once into the kernel's column panels: packed signs
    (N, B) uint64 -> (ceil(N/NR), B, NR) uint64, zero columns past N. A deployed layer keeps this array so
    that each call packs only its activations (``xnor_gemm_panels``)."""
    _check_bits(B_bits, "B_bits", K)
    return _panels(B_bits)


def xnor_gemm_panels(A_bits: np.ndarray, B_panels: np.ndarray, N: int, K: int) -> np.ndarray:
    """``xnor_gemm(A_bits, B_bits, K)`` with ``B_panels = pack_weight_panels(B_bits, K)`` and N = rows of B."""
    _check_bits(A_bits, "A_bits", K)
    nb = n_words(K)
    if (not isinstance(B_panels, np.ndarray) or B_panels.dtype != np.uint64 or not B_panels.flags.c_contiguous
            or B_panels.shape != ((N + NR - 1) // NR, nb, NR)):
        raise ValueError(f"xnor_gemm_panels: B_panels must be C-contiguous uint64 of shape "
                         f"(ceil(N/{NR}), {nb}, {NR}) for N={N}, K={K} (pack_weight_panels), got "
                         f"{getattr(B_panels, 'dtype', type(B_panels).__name__)} {getattr(B_panels, 'shape', '')}")
    out = np.empty((A_bits.shape[0], int(N)), np.int32)
    if out.size:
        _xnor_driver(A_bits, B_panels, int(N), int(K), out)
    return out


def _check_bits(a, name: str, K: int) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"xnor_gemm: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.uint64:
        raise TypeError(f"xnor_gemm: {name} must be uint64 packed signs (pack_signs), got {a.dtype}")
    if a.ndim != 2 or a.shape[1] != n_words(K):
        raise ValueError(f"xnor_gemm: {name} must have shape (rows, ceil(K/64) = {n_words(K)}) for K={K}, "
                         f"got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"xnor_gemm: {name} must be C-contiguous")
    if K % WORD and a.shape[0] and np.any(a[:, -1] >> np.uint64(K % WORD)):
        raise ValueError(f"xnor_gemm: {name} has nonzero padding bits past K={K} (pack with pack_signs)")


def xnor_gemm(A_bits: np.ndarray, B_bits: np.ndarray, K: int) -> np.ndarray:
    """sign(A) @ sign(B).T as int32 (M, N) from packed signs A_bits (M, B) and B_bits (N, B), B = ceil(K/64).

    Exact for any K: result = K - 2 * popcount(a xor b) summed over words; padding bits must be 0."""
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 0:
        raise ValueError(f"xnor_gemm: K must be a non-negative int, got {K!r}")
    _check_bits(A_bits, "A_bits", K)
    _check_bits(B_bits, "B_bits", K)
    return _xnor(A_bits, B_bits, int(K))


def xnor_gemm_ref(A_bits: np.ndarray, B_bits: np.ndarray, K: int) -> np.ndarray:
    """Plain twin of ``xnor_gemm``: broadcast xor and numpy's popcount."""
    pop = np.bitwise_count(A_bits[:, None, :] ^ B_bits[None, :, :]).sum(axis=2, dtype=np.int64)  # (M, N)
    return (K - 2 * pop).astype(np.int32)


# ---------------------------------------------------------------------------------------------- convolution
def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """OIHW weight (Co, Ci, kH, kW) float -> sign bits (Co, kH*kW*Bc) uint64, Bc = ceil(Ci/64): one group of
    Bc words per tap (i, j), channels along the bits, in the order ``binary_conv2d`` gathers windows."""
    if not isinstance(w, np.ndarray) or w.dtype not in _FLOATS or w.ndim != 4:
        raise TypeError(f"pack_conv_weight: w must be a 4-d float32/float64 array (Co, Ci, kH, kW), "
                        f"got {getattr(w, 'dtype', type(w).__name__)} {getattr(w, 'shape', '')}")
    Co, Ci, kH, kW = w.shape
    taps = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(Co * kH * kW, Ci)  # (Co*kH*kW, Ci)
    return pack_signs(taps).reshape(Co, kH * kW * n_words(Ci))  # (Co, kH*kW*Bc)


@pjit
def _pack_nhwc(x, ph, pw, out):
    """x (N, C, H, W) -> out (N, H+2ph, W+2pw, Bc) sign words; border words are +1 on every valid channel.

    Each (n, h) row builds its words in a (W,) buffer, one channel at a time: a branch-free, contiguous
    compare-shift-or over w that vectorizes (a branch per element mispredicts half the time)."""
    N, C, H, W = x.shape
    Hp, Wp, Bc = out.shape[1], out.shape[2], out.shape[3]
    for t in prange(N * Hp):
        n = t // Hp
        hp = t - n * Hp
        h = hp - ph
        acc = np.empty(W, np.uint64)
        for b in range(Bc):
            nc = min(WORD, C - b * WORD)
            ones = (np.uint64(1) << np.uint64(nc)) - np.uint64(1) if nc < WORD else ~np.uint64(0)
            if h < 0 or h >= H:
                for wp in range(Wp):
                    out[n, hp, wp, b] = ones
                continue
            acc[:] = 0
            for c in range(nc):
                shift = np.uint64(c)
                for w in range(W):
                    acc[w] |= np.uint64(x[n, b * WORD + c, h, w] >= 0) << shift
            for wp in range(pw):
                out[n, hp, wp, b] = ones
                out[n, hp, Wp - 1 - wp, b] = ones
            for w in range(W):
                out[n, hp, pw + w, b] = acc[w]


@pjit
def _im2col_panels(xp, kH, kW, sh, sw, dh, dw, Ho, Wo, Bp):
    """Windows of the packed input xp (N, Hp, Wp, Bc) straight into GEMM panels Bp (ceil(N*L/NR), kH*kW*Bc, NR):
    column j = n*L + ho*Wo + wo, reduction word (i*kW + j')*Bc + b; columns past N*L are zero."""
    N, Bc = xp.shape[0], xp.shape[3]
    L = Ho * Wo
    for jt in prange(Bp.shape[0]):
        for c in range(NR):
            col = jt * NR + c
            if col >= N * L:
                for kk in range(Bp.shape[1]):
                    Bp[jt, kk, c] = 0
                continue
            n = col // L
            ho = (col - n * L) // Wo
            wo = col - n * L - ho * Wo
            for i in range(kH):
                for j in range(kW):
                    base = (i * kW + j) * Bc
                    for b in range(Bc):
                        Bp[jt, base + b, c] = xp[n, ho * sh + i * dh, wo * sw + j * dw, b]


@intrinsic
def _as_type_of(typingctx, value, like):
    """``value`` converted to the scalar type of ``like`` (an int32 popcount sum to the output's float type)."""
    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], signature.args[1])
    return like(value, like), codegen


@pjit
def _epilogue(dotT, alpha, beta, use_beta, out):
    """out[n, co, l] = dotT[co, n*L + l] * alpha[co] (* beta[n, l]) in out.dtype; out (N, Co, L)."""
    N, Co, L = out.shape
    for t in prange(N * Co):
        n = t // Co
        co = t - n * Co
        a = alpha[co]
        # exact conversion (|dot| <= K < 2**24), then products in out.dtype: the reference's roundings
        if use_beta:
            for l in range(L):
                out[n, co, l] = _as_type_of(dotT[co, n * L + l], a) * a * beta[n, l]
        else:
            for l in range(L):
                out[n, co, l] = _as_type_of(dotT[co, n * L + l], a) * a


def _conv_check(x, w_bits, kernel_size, stride, padding, dilation, alpha):
    if not isinstance(x, np.ndarray) or x.dtype not in _FLOATS or x.ndim != 4:
        raise TypeError(f"binary_conv2d: x must be a 4-d float32/float64 array (N, Ci, H, W), "
                        f"got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if not x.flags.c_contiguous:
        raise ValueError("binary_conv2d: x must be C-contiguous")
    ks = _pair(kernel_size, "kernel_size", 1)
    args = ks, _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    Ci = x.shape[1]
    if not isinstance(w_bits, np.ndarray) or w_bits.dtype != np.uint64 or w_bits.ndim != 2:
        raise TypeError("binary_conv2d: w_bits must be a 2-d uint64 array from pack_conv_weight")
    if w_bits.shape[1] != ks[0] * ks[1] * n_words(Ci):
        raise ValueError(f"binary_conv2d: w_bits has {w_bits.shape[1]} words per output channel, expected "
                         f"kH*kW*ceil(Ci/64) = {ks[0] * ks[1] * n_words(Ci)} for Ci={Ci}, kernel {ks}")
    if alpha is not None and (not isinstance(alpha, np.ndarray) or alpha.dtype != x.dtype
                              or alpha.shape != (w_bits.shape[0],)):
        raise TypeError(f"binary_conv2d: alpha must be a ({w_bits.shape[0]},) {x.dtype} array, got "
                        f"{getattr(alpha, 'dtype', type(alpha).__name__)} {getattr(alpha, 'shape', '')}")
    (kH, kW), (sh, sw), (ph, pw), (dh, dw) = args
    Ho = (x.shape[2] + 2 * ph - dh * (kH - 1) - 1) // sh + 1
    Wo = (x.shape[3] + 2 * pw - dw * (kW - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"binary_conv2d: dilated kernel larger than the padded input {x.shape[2:]} + 2*{(ph, pw)}")
    return args, (Ho, Wo)


def activation_scale(x: np.ndarray, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """XNOR-Net's K = A * k: A = mean_c |x| (N, 1, H, W), k = a kH x kW box of 1/(kH kW), zero padding
    -> (N, Ho*Wo) in x.dtype."""
    ks = _pair(kernel_size, "kernel_size", 1)
    A = np.abs(x).mean(axis=1, keepdims=True)  # (N, 1, H, W)
    box = np.full((1, 1, *ks), 1.0 / (ks[0] * ks[1]), x.dtype)
    K = conv2d(A, box, None, stride, padding, dilation)  # (N, 1, Ho, Wo)
    return np.ascontiguousarray(K.reshape(x.shape[0], -1))


def binary_conv2d(x: np.ndarray, w_bits: np.ndarray, kernel_size, stride=1, padding=0, dilation=1,
                  alpha: np.ndarray | None = None, act_scale: bool = False) -> np.ndarray:
    """Binary convolution -> (N, Co, Ho, Wo) in x.dtype: conv(sign(x) padded with +1, sign(W)) * alpha[co]
    (* K[n, ho, wo] if ``act_scale``). x (N, Ci, H, W) float; w_bits from ``pack_conv_weight``; groups=1."""
    ((kH, kW), (sh, sw), (ph, pw), (dh, dw)), (Ho, Wo) = _conv_check(
        x, w_bits, kernel_size, stride, padding, dilation, alpha)
    N, Ci, H, W = x.shape
    Co, Bc = w_bits.shape[0], n_words(Ci)
    xp = np.empty((N, H + 2 * ph, W + 2 * pw, Bc), np.uint64)
    _pack_nhwc(x, ph, pw, xp)
    Bp = np.empty(((N * Ho * Wo + NR - 1) // NR, kH * kW * Bc, NR), np.uint64)
    _im2col_panels(xp, kH, kW, sh, sw, dh, dw, Ho, Wo, Bp)
    dotT = np.empty((Co, N * Ho * Wo), np.int32)
    # the weights are the GEMM's rows, so each output channel's map comes out contiguous: (Co, KW) x (N*L, KW)
    _xnor_driver(np.ascontiguousarray(w_bits), Bp, N * Ho * Wo, Ci * kH * kW, dotT)  # (Co, N*L)
    beta = (activation_scale(x, (kH, kW), (sh, sw), (ph, pw), (dh, dw)) if act_scale
            else np.ones((1, 1), x.dtype))
    out = np.empty((N, Co, Ho * Wo), x.dtype)
    _epilogue(dotT, np.ones(Co, x.dtype) if alpha is None else alpha, beta, act_scale, out)
    return out.reshape(N, Co, Ho, Wo)


def binary_conv2d_ref(x: np.ndarray, w_bits: np.ndarray, kernel_size, stride=1, padding=0, dilation=1,
                      alpha: np.ndarray | None = None, act_scale: bool = False) -> np.ndarray:
    """Plain twin: unpack the weight to +-1 (OIHW), sign(x) padded with +1, float reference convolution."""
    ((kH, kW), st, (ph, pw), dl), _ = _conv_check(x, w_bits, kernel_size, stride, padding, dilation, alpha)
    N, Ci = x.shape[:2]
    Co = w_bits.shape[0]
    w = unpack_signs(w_bits.reshape(Co * kH * kW, -1), Ci).reshape(Co, kH, kW, Ci).transpose(0, 3, 1, 2)
    xs = np.pad(np.where(x >= 0, 1.0, -1.0), ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=1.0)
    dot = conv2d_ref(xs, w, None, st, 0, dl)  # (N, Co, Ho, Wo), exact small integers in float64
    y = dot.astype(x.dtype) * (np.ones(Co, x.dtype) if alpha is None else alpha)[None, :, None, None]
    if act_scale:
        y = y * activation_scale(x, (kH, kW), st, (ph, pw), dl).reshape(N, 1, *dot.shape[2:])
    return y
