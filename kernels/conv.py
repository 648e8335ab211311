"""2-D convolution (torch.nn.functional.conv2d semantics): forward and backward, NCHW / OIHW.

Public: ``conv2d``, ``conv2d_backward`` (fast) and their plain NumPy twins ``conv2d_ref``,
``conv2d_backward_ref``. Zero padding; ``stride``, ``padding``, ``dilation`` are ints or (h, w) pairs.

Fast path, per group g (K = Ci/G*kH*kW reduction, L = Ho*Wo, M = Co/G):

* forward  Y[n, g] (M, L)  = W_g (M, K) @ col(x[n, g]) (K, L)
* grad x   col(dx[n, g])   = W_g^T (K, M) @ dY[n, g] (M, L), scattered back (col2im)
* grad W   dW_g (M, K)     = sum_n dY[n, g] (M, L) @ col(x[n, g])^T (L, K)

The forward product runs on "wide" output positions: the input is zero padded and split into its
stride phases once per call (``_phase_split``; stride 1 without padding uses x itself), so that kernel tap k
reads one contiguous span per block of output positions and the im2col matrix is never packed (implicit
im2col, ``_micro_rows``, B row k read in place at its offset); each output row keeps Wq >= Wo positions
and the extra ones are dropped. grad W uses the same input layout (``_micro_gw``: taps read in place
against grad_output transposed to rows of output channels per wide position, zero at the dropped ones).
grad x of a stride-1 layer is the wide forward of grad_output with the flipped, transposed weight; strided
layers pack panels per task for ``_micro`` and scatter them back (col2im). Every micro-kernel keeps an
MR x nr block of accumulators in vector registers, with the tile taken from the compile target (AVX-512:
8 x 3 zmm, AVX2: 3 x 4 ymm). Layers with one input channel per group and equal
strides (depthwise) use direct loops on zero-padded planes instead. Every output element is computed by one
task in a fixed order, so results do not depend on the number of threads.
"""
from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from kernels._config import get_num_threads, njit, pjit
from kernels._intrinsics import _target_features

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _pair(v, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif (isinstance(v, (tuple, list)) and len(v) == 2
          and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"conv2d: {name} must be >= {minimum}, got {v}")
    return v


def _check(x, weight, bias, stride, padding, dilation, groups, grad_output=None):
    """Validate arguments; return (stride, padding, dilation, groups, (Ho, Wo))."""
    arrays = {"x": x, "weight": weight}
    if bias is not None:
        arrays["bias"] = bias
    if grad_output is not None:
        arrays["grad_output"] = grad_output
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"conv2d: {name} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in _FLOATS:
            raise TypeError(f"conv2d: {name} must be float32 or float64, got {a.dtype}")
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) != 1:
        raise TypeError(f"conv2d: mixed dtypes {dtypes}; convert all arrays to one float dtype")
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, Ci, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (Co, Ci/G, kH, kW), got shape {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"conv2d: groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"conv2d: groups must be >= 1, got {groups}")
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    N, Ci, H, W = x.shape
    Co, Cig, kH, kW = weight.shape
    if Ci % groups:
        raise ValueError(f"conv2d: input channels {Ci} not divisible by groups={groups}")
    if Co % groups:
        raise ValueError(f"conv2d: output channels {Co} not divisible by groups={groups}")
    if Cig * groups != Ci:
        raise ValueError(f"conv2d: weight {weight.shape} expects {Cig * groups} input channels "
                         f"(Ci/G={Cig}, groups={groups}), but x has {Ci}")
    if bias is not None and bias.shape != (Co,):
        raise ValueError(f"conv2d: bias must have shape ({Co},), got {bias.shape}")
    ekH, ekW = dilation[0] * (kH - 1) + 1, dilation[1] * (kW - 1) + 1
    Hp, Wp = H + 2 * padding[0], W + 2 * padding[1]
    if kH < 1 or kW < 1 or ekH > Hp or ekW > Wp:
        raise ValueError(f"conv2d: dilated kernel ({ekH}, {ekW}) larger than padded input ({Hp}, {Wp})")
    out_hw = ((Hp - ekH) // stride[0] + 1, (Wp - ekW) // stride[1] + 1)
    if grad_output is not None and grad_output.shape != (N, Co) + out_hw:
        raise ValueError(f"conv2d_backward: grad_output must have shape {(N, Co) + out_hw}, "
                         f"got {grad_output.shape}")
    return stride, padding, dilation, groups, out_hw


def _windows(xp, i, j, stride, dilation, out_hw):
    """View of padded input xp (N, C, Hp, Wp) seen by kernel tap (i, j): (N, C, Ho, Wo)."""
    (sh, sw), (dh, dw), (Ho, Wo) = stride, dilation, out_hw
    return xp[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]


def conv2d_ref(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Plain NumPy conv2d: one einsum per kernel tap and group over the zero-padded input.

    x (N, Ci, H, W), weight (Co, Ci/G, kH, kW), bias (Co,) or None -> (N, Co, Ho, Wo), dtype of x.
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, bias, stride, padding, dilation, groups)
    N = x.shape[0]
    Co, Cig, kH, kW = weight.shape
    Cog = Co // G
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))  # (N, Ci, Hp, Wp)
    y = np.zeros((N, Co) + out_hw, x.dtype)
    for g in range(G):
        ci, co = slice(g * Cig, (g + 1) * Cig), slice(g * Cog, (g + 1) * Cog)
        for i in range(kH):
            for j in range(kW):
                patch = _windows(xp[:, ci], i, j, stride, dilation, out_hw)  # (N, Ci/G, Ho, Wo)
                # y[n, o, h, w] += sum_c W[o, c, i, j] x_pad[n, c, h*sh + i*dh, w*sw + j*dw]
                y[:, co] += np.einsum("nchw,oc->nohw", patch, weight[co, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_backward_ref(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """Plain NumPy conv2d backward: the transpose of each tap's einsum in ``conv2d_ref``.

    grad_output (N, Co, Ho, Wo) -> (grad_x (N, Ci, H, W), grad_weight (Co, Ci/G, kH, kW), grad_bias (Co,)).
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, None, stride, padding, dilation, groups,
                                                  grad_output)
    H, W = x.shape[2:]
    Co, Cig, kH, kW = weight.shape
    Cog = Co // G
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, Ci, Hp, Wp)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(weight)
    for g in range(G):
        ci, co = slice(g * Cig, (g + 1) * Cig), slice(g * Cog, (g + 1) * Cog)
        go = grad_output[:, co]  # (N, Co/G, Ho, Wo)
        for i in range(kH):
            for j in range(kW):
                patch = _windows(xp[:, ci], i, j, stride, dilation, out_hw)  # (N, Ci/G, Ho, Wo)
                gw[co, :, i, j] = np.einsum("nohw,nchw->oc", go, patch)
                _windows(gxp[:, ci], i, j, stride, dilation, out_hw)[...] += np.einsum(
                    "nohw,oc->nchw", go, weight[co, :, i, j])
    gx = gxp[:, :, ph: ph + H, pw: pw + W]
    gb = grad_output.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(gx), gw, gb

# ---------------------------------------------------------------------------------------------- fast path
# Register tile: _MR rows x _NV vectors of accumulators, from the compile target (kernels._intrinsics):
# AVX-512 (32 zmm): 8 x 3 = 24 accumulators + 3 loads of B + 1 broadcast (broadcasts fold into the FMA);
# AVX2 (16 ymm): 3 x 4 = 12 accumulators + 3 broadcasts + 1 load. float64 tiles hold half as many columns.
_AVX512 = "avx512f" in _target_features()
_VEC_BYTES = 64 if _AVX512 else 32
_MR, _NV = (8, 3) if _AVX512 else (3, 4)
_NR32 = _NV * _VEC_BYTES // 4
_NR64 = _NV * _VEC_BYTES // 8
# FMA contraction only (no reassociation): each product-sum keeps its order, so results stay reproducible
# and independent of the thread count; without it LLVM emits separate multiply and add.
_FMA = {"contract"}
_PANEL_BYTES = 256 * 1024
_KC = 128  # reduction rows per micro-kernel call: a (_KC, nr) block of B (16 KiB) stays in L1
# Depthwise forward: 2*nr positions stay in registers while all taps pass (AVX-512). On AVX2 LLVM does not
# vectorise that block (64 scalar FMAs), so there each tap is one vectorised axpy over the plane.
_DW_BLOCKS = _AVX512
_MIN_TASKS = 8  # split channel / column blocks until a layer has this many tasks (a function of shape only)

# Every size the kernels need, passed to numba as one named tuple (x: N Ci H W, weight: Co Cig kH kW, stride,
# padding, dilation as (h, w), output Ho Wo, groups G).
_Geo = namedtuple("_Geo", "N Ci H W Co Cig kH kW sh sw ph pw dh dw Ho Wo G")


@intrinsic
def _stack_rows(typingctx, a, rows):
    """Pointer to rows x nr elements of a's dtype on the stack (rows a literal, nr = ``_tile_cols(a)``); LLVM
    promotes it to registers. The size must match the rows used exactly: a larger alloca stays in memory
    (float64 tiles) or is not vectorised (AVX2)."""
    if not isinstance(rows, types.IntegerLiteral):
        return None
    n = rows.literal_value * (_NR32 if a.dtype == types.float32 else _NR64)

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_data_type(a.dtype), size=n)
    return types.CPointer(a.dtype)(a, rows), codegen


@intrinsic
def _tile_cols(typingctx, a):
    """Micro-tile width for a's dtype as an IR constant (``a.itemsize`` is a runtime field in numba, and a
    runtime trip count stops LLVM from keeping the tile in registers)."""
    nr = _NR32 if a.dtype == types.float32 else _NR64

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, nr)
    return types.intp(a), codegen


@njit(inline="always")
def _zero_tile(B):
    """(MR, nr) accumulator tile of B's dtype on the stack, zeroed."""
    nr = _tile_cols(B)
    acc = numba.carray(_stack_rows(B, _MR), (_MR, nr))
    for r in range(_MR):
        for j in range(nr):
            acc[r, j] = 0.0
    return acc


@njit(inline="always", fastmath=_FMA)
def _rank1(acc, A, p, B, q):
    """acc[r, j] += A[p + r] * B[q + j] for r < MR, j < nr. Zero-based views: their constant indices need no
    negative-index code, so the loads vectorise (B[q + j] with a runtime q compiled to scalar selects); j outer,
    r inner, or LLVM vectorises float64 over r (8 rows = one zmm) with gathers and scatters of acc."""
    nr = _tile_cols(B)
    arow = A[p:p + _MR]
    brow = B[q:q + nr]
    for j in range(nr):
        b = brow[j]
        for r in range(_MR):
            acc[r, j] += arow[r] * b


@njit(fastmath=_FMA)
def _micro(kc, A, a0, B, b0, ldb, out):
    """out[r, j] = sum_{k < kc} A[a0 + k*MR + r] * B[b0 + k*ldb + j] for r < MR, j < nr (packed flat panels)."""
    nr = _tile_cols(B)
    acc = _zero_tile(B)
    for k in range(kc):
        _rank1(acc, A, a0 + k * _MR, B, b0 + k * ldb)
    for r in range(_MR):
        for j in range(nr):
            out[r, j] = acc[r, j]


@njit(fastmath=_FMA)
def _micro_rows(K, A, a0, X, offs, x0, Yw, m0, c0):
    """Yw[m0 + r, c0 + j] = sum_{k < K} A[a0 + k*MR + r] * X[x0 + offs[k] + j] for r < MR, j < nr: B row k is
    read in place at its own offset (implicit im2col over a padded, phase-split input)."""
    nr = _tile_cols(X)
    acc = _zero_tile(X)
    for k in range(K):
        _rank1(acc, A, a0 + k * _MR, X, x0 + offs[k])
    for r in range(_MR):
        orow = Yw[m0 + r, c0:c0 + nr]
        for j in range(nr):
            orow[j] = acc[r, j]


@njit(fastmath=_FMA)
def _micro_gw(N, span, xq, img, x0, offs, k0, B, bimg, b0, out):
    """out[r, j] = sum_n sum_{p < span} xq[x0 + n*img + offs[k0 + r] + p] * B[b0 + n*bimg + p*nr + j], r < MR,
    j < nr: a block of grad W^T (taps x output channels) reduced over wide positions, the taps read in place
    (broadcasts) and B = grad_output transposed to (position, channel) rows."""
    nr = _tile_cols(B)
    acc = _zero_tile(B)
    arow = numba.carray(_stack_rows(B, 1), (nr,))  # the MR tap values of one position (nr >= MR)
    for n in range(N):
        xb = x0 + n * img
        bb = b0 + n * bimg
        for p in range(span):
            for r in range(_MR):
                arow[r] = xq[xb + offs[k0 + r] + p]
            q = bb + p * nr
            brow = B[q:q + nr]
            for j in range(nr):  # j outer, r inner, as in _rank1
                b = brow[j]
                for r in range(_MR):
                    acc[r, j] += arow[r] * b
    for r in range(_MR):
        for j in range(nr):
            out[r, j] = acc[r, j]


@njit(fastmath=_FMA)
def _micro_gw1(N, span, xq, img, x0, offs, k0, B, bimg, b0, out):
    """``_micro_gw`` for few output channels: out[r, j] for r < MR*NV taps, j < V (one vector of channels),
    B rows of V channels; the same accumulator count with no columns wasted when M <= V."""
    V = _tile_cols(B) // _NV
    acc = numba.carray(_stack_rows(B, _MR), (_MR * _NV, V))
    for r in range(_MR * _NV):
        for j in range(V):
            acc[r, j] = 0.0
    arow = numba.carray(_stack_rows(B, 1), (_MR * _NV,))  # nr >= MR*NV for both tiles and dtypes
    for n in range(N):
        xb = x0 + n * img
        bb = b0 + n * bimg
        for p in range(span):
            for r in range(_MR * _NV):
                arow[r] = xq[xb + offs[k0 + r] + p]
            q = bb + p * V
            brow = B[q:q + V]
            for j in range(V):
                b = brow[j]
                for r in range(_MR * _NV):
                    acc[r, j] += arow[r] * b
    for r in range(_MR * _NV):
        for j in range(V):
            out[r, j] = acc[r, j]


@njit
def _add_tile(C, m0, out, first):
    """C[m0:m0+MR] = out (first reduction chunk) or += out (the next ones, in order)."""
    for r in range(_MR):
        crow, orow = C[m0 + r], out[r]
        for j in range(out.shape[1]):
            crow[j] = orow[j] if first else crow[j] + orow[j]


@njit
def _tap(k, geo):
    """Kernel row k of a group -> (channel offset c, input row offset of output row 0 for that tap (i*dh - ph),
    column offset (j*dw - pw), first and one-past-last output column whose input column is inside x)."""
    W, kH, kW, sw, ph, pw, dh, dw, Wo = geo.W, geo.kH, geo.kW, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw, geo.Wo
    c = k // (kH * kW)
    r = k - c * kH * kW
    i = r // kW
    j = r - i * kW
    off_w = j * dw - pw
    ow_lo = 0 if off_w >= 0 else (-off_w + sw - 1) // sw
    ow_hi = min(Wo, (W - 1 - off_w) // sw + 1) if W - 1 - off_w >= 0 else 0
    return c, i * dh - ph, off_w, ow_lo, max(ow_lo, ow_hi)


@njit
def _taps(K, geo):
    """(K, 5) table of ``_tap`` for every kernel row of a group, computed once per call."""
    t = np.empty((K, 5), np.int64)
    for k in range(K):
        t[k, 0], t[k, 1], t[k, 2], t[k, 3], t[k, 4] = _tap(k, geo)
    return t


@njit
def _segments(l0, nl, wsub, ssub, sl, segs, geo):
    """Split output columns l0 .. l0+nl into runs within one output row and one sub-panel of wsub columns.

    segs[s] = (oh*sh, ow0, ow1, base): the run covers ow0 <= ow < ow1 of row oh, and its packed position for
    column ow is base + ow*sl (plus the row offset of the kernel row). Returns the number of runs."""
    sh, Wo = geo.sh, geo.Wo
    nseg, ll = 0, 0
    while ll < nl:
        oh = (l0 + ll) // Wo
        ow0 = l0 + ll - oh * Wo
        q = ll % wsub
        ow1 = min(Wo, ow0 + nl - ll, ow0 + wsub - q)
        segs[nseg, 0], segs[nseg, 1], segs[nseg, 2] = oh * sh, ow0, ow1
        segs[nseg, 3] = (ll // wsub) * ssub + (q - ow0) * sl
        nseg += 1
        ll += ow1 - ow0
    return nseg


@njit
def _scatter_col(tile, nk, taps, k0, l0, nl, dx, n, cbase, segs, geo):
    """col2im: dx[n, cbase + c, ih, iw] += tile[kk, ll] for the in-bounds taps of rows k0 + kk, columns l0 + ll."""
    H, sw = geo.H, geo.sw
    nseg = _segments(l0, nl, nl, 0, 1, segs, geo)
    for kk in range(nk):
        tap = taps[k0 + kk]
        c, off_h, off_w, ow_lo, ow_hi = tap[0], tap[1], tap[2], tap[3], tap[4]
        for s in range(nseg):
            seg = segs[s]
            ih, base = seg[0] + off_h, seg[3]  # tile column of ow is base + ow
            lo, hi = max(seg[1], ow_lo), min(seg[2], ow_hi)
            if 0 <= ih < H and hi > lo:
                drow = dx[n, cbase + c, ih]  # (W,)
                v = tile[kk, base + lo:base + hi]
                if sw == 1:
                    d = drow[lo + off_w:hi + off_w]
                    for t in range(hi - lo):
                        d[t] += v[t]
                else:
                    for t in range(hi - lo):
                        drow[(lo + t) * sw + off_w] += v[t]


@njit
def _phase_plane(xf, xq, geo, Hq, Wq, pst, nst, t):
    """Plane t = n*Ci + c of ``_phase_split``."""
    Ci, H, W, sh, sw, ph, pw = geo.Ci, geo.H, geo.W, geo.sh, geo.sw, geo.ph, geo.pw
    n, c = divmod(t, Ci)
    if True:
        for a in range(sh):
            for b in range(sw):
                q0 = n * nst + ((c * sh + a) * sw + b) * pst
                v_lo = min(Wq, max(0, (pw - b + sw - 1) // sw))  # first v with v*sw + b - pw >= 0
                v_hi = max(v_lo, min(Wq, (W - 1 + pw - b) // sw + 1))  # one past the last inside x
                for u in range(Hq):
                    q = np.uint64(q0 + u * Wq)
                    ih = u * sh + a - ph
                    if ih < 0 or ih >= H:
                        for v in range(np.uint64(Wq)):
                            xq[q + v] = 0.0
                        continue
                    s0 = np.uint64((t * H + ih) * W + b - pw + v_lo * sw)  # x column of v_lo
                    for v in range(np.uint64(v_lo)):
                        xq[q + v] = 0.0
                    d = q + np.uint64(v_lo)
                    if sw == 1:
                        for v in range(np.uint64(v_hi - v_lo)):
                            xq[d + v] = xf[s0 + v]
                    else:
                        usw = np.uint64(sw)
                        for v in range(np.uint64(v_hi - v_lo)):
                            xq[d + v] = xf[s0 + v * usw]
                    for v in range(np.uint64(v_hi), np.uint64(Wq)):
                        xq[q + v] = 0.0


# The parallel drivers below are thin prange loops over serial @njit bodies: numba's on-disk cache reloads the
# body of a parallel loop as slower code than it compiled (measured 2.4x for the phase split, 1.2x for the
# forward GEMM, numba 0.68), while serial functions reload unchanged.
@pjit
def _phase_split(xf, xq, geo, Hq, Wq, pst, nst):
    """xq[n*nst + ((c*sh + a)*sw + b)*pst + u*Wq + v] = x[n, c, u*sh + a - ph, v*sw + b - pw], zero outside x:
    the zero-padded input split into sh*sw stride phases of (Hq, Wq), so that every kernel tap reads one
    contiguous span per output position range (``_wide_input``; per image nst = Ci*sh*sw*Hq*Wq, pst = Hq*Wq,
    or batched nst = Hq*Wq, pst = N*Hq*Wq). xf is x flattened; unsigned flat indices keep numba's
    negative-index code out of the copy loops."""
    for t in numba.prange(geo.N * geo.Ci):
        _phase_plane(xf, xq, geo, Hq, Wq, pst, nst, np.int64(t))


@njit
def _tile_start(ti, nr, span):
    """First wide position of tile ti: the last tile is moved back to end at span (it recomputes a few
    columns of the one before), so that no tile reads past the input when span >= nr."""
    return min(ti * nr, span - nr) if span >= nr else ti * nr


@njit
def _wide_task(xq, img, gsz, Wp, offs, bias, yf, geo, Hq, Wq, span, tb, task, Yw):
    """Task (n, g, block lb of tb tiles) of ``_wide_forward``, into the scratch buffer Yw (nmb*MR, tb*nr)."""
    Co, Cig, kH, kW, Ho, Wo, G = geo.Co, geo.Cig, geo.kH, geo.kW, geo.Ho, geo.Wo, geo.G
    M, K = Co // G, Cig * kH * kW
    nr = _tile_cols(xq)
    nmb = (M + _MR - 1) // _MR
    ntiles = (span + nr - 1) // nr
    nlb = (ntiles + tb - 1) // tb
    ldw = tb * nr
    Yf = Yw.reshape(-1)
    n, rest = divmod(task, G * nlb)
    g, lb = divmod(rest, nlb)
    x0 = n * img + g * gsz
    t0 = lb * tb
    t1 = min(ntiles, t0 + tb)
    w0 = _tile_start(t0, nr, span)  # wide position of Yw column 0
    for ti in range(t0, t1):
        p0 = _tile_start(ti, nr, span)
        for mb in range(nmb):
            _micro_rows(K, Wp, (g * nmb + mb) * K * _MR, xq, offs, x0 + p0, Yw, mb * _MR, p0 - w0)
    p_lo, p_hi = t0 * nr, min(span, t1 * nr)  # this task's positions (disjoint between tasks)
    for u in range(p_lo // Wq, (p_hi - 1) // Wq + 1):  # phase rows; Hq of them per image
        nn, oh = n + u // Hq, u % Hq
        if oh >= Ho:
            continue
        ow_lo, ow_hi = max(0, p_lo - u * Wq), min(Wo, p_hi - u * Wq)
        c = u * Wq + ow_lo - w0
        for m in range(M):
            b = bias[g * M + m]
            yq = np.uint64(((nn * Co + g * M + m) * Ho + oh) * Wo + ow_lo)
            wq = np.uint64(m * ldw + c)
            for j in range(np.uint64(max(0, ow_hi - ow_lo))):
                yf[yq + j] = Yf[wq + j] + b


@pjit
def _wide_forward(xq, nimg, img, gsz, Wp, offs, bias, yf, geo, Hq, Wq, span, tb, nchunks):
    """y[n, g] = W_g @ col(x[n, g]) + bias over "wide" output positions p = oh*Wq + ow, p < span (the columns
    ow >= Wo are computed and dropped): column p of tap k is xq[n*img + g*gsz + offs[k] + p]. yf is y flat.

    Tasks (n, g, block of tb micro-tile widths of p); each writes its block into a (M, tb*nr) buffer, then
    the valid columns into y. Every output sums its K products in one fixed order. Batched (nimg = 1): the
    positions run over all images, Hq phase rows per image."""
    nr = _tile_cols(xq)
    M = geo.Co // geo.G
    nlb = ((span + nr - 1) // nr + tb - 1) // tb
    ntask = nimg * geo.G * nlb
    for t in numba.prange(nchunks):
        Yw = np.empty(((M + _MR - 1) // _MR * _MR, tb * nr), xq.dtype)
        for task in range(t * ntask // nchunks, (t + 1) * ntask // nchunks):
            _wide_task(xq, img, gsz, Wp, offs, bias, yf, geo, Hq, Wq, span, tb, task, Yw)


@njit
def _wide_dyt_plane(go, B, geo, Wq, span, nr, t):
    """Plane t = n*Co + co of ``_wide_dyt``."""
    Co, Ho, Wo, G = geo.Co, geo.Ho, geo.Wo, geo.G
    M = Co // G
    nmb = (M + nr - 1) // nr
    n, co = divmod(t, Co)
    g, m = divmod(co, M)
    mb, j = divmod(m, nr)
    base = ((n * G + g) * nmb + mb) * span * nr + j
    for oh in range(Ho):
        e = go[n, co, oh]
        for ow in range(Wo):
            B[base + (oh * Wq + ow) * nr] = e[ow]


@pjit
def _wide_dyt(go, B, geo, Wq, span, nr):
    """B[n, g, m // nr, oh*Wq + ow, m % nr] = go[n, g*M + m, oh, ow] into zeros (B flat): grad_output as rows of
    nr output channels per wide position, zero at the dropped positions and past M."""
    for t in numba.prange(geo.N * geo.Co):
        _wide_dyt_plane(go, B, geo, Wq, span, nr, np.int64(t))


@njit
def _wide_grad_w_task(xq, img, gsz, offs, B, dw, geo, span, narrow, task, out):
    """Task (g, block kb of mr taps, block mb of nr output channels) of ``_wide_grad_w``; out is scratch."""
    N, Co, Cig, kH, kW, G = geo.N, geo.Co, geo.Cig, geo.kH, geo.kW, geo.G
    M, K = Co // G, Cig * kH * kW
    nr, mr = (_tile_cols(B) // _NV, _MR * _NV) if narrow else (_tile_cols(B), _MR)
    nmb, nkb = (M + nr - 1) // nr, (K + mr - 1) // mr
    g, rest = divmod(task, nkb * nmb)
    kb, mb = divmod(rest, nmb)
    k0 = kb * mr
    if narrow:
        out = out.reshape((mr, nr))
        _micro_gw1(N, span, xq, img, g * gsz, offs, k0, B, G * nmb * span * nr, (g * nmb + mb) * span * nr, out)
    else:
        _micro_gw(N, span, xq, img, g * gsz, offs, k0, B, G * nmb * span * nr, (g * nmb + mb) * span * nr, out)
    for r in range(min(mr, K - k0)):
        for j in range(min(nr, M - mb * nr)):
            dw[g * M + mb * nr + j, k0 + r] = out[r, j]


@pjit
def _wide_grad_w(xq, img, gsz, offs, B, dw, geo, span, narrow, nchunks):
    """dW[g*M + m, k] = sum_n sum_{p < span} xq[n*img + g*gsz + offs[k] + p] * B[n, g, m // nr, p, m % nr] over
    wide positions (B zero where p is not an output): no im2col panel, the taps are read in place. Tasks
    (g, block of MR taps, block of nr channels), or narrow (few channels: MR*NV taps, one vector of channels);
    each output sums over (n, p) in one fixed order."""
    M, K = geo.Co // geo.G, geo.Cig * geo.kH * geo.kW
    nr, mr = (_tile_cols(B) // _NV, _MR * _NV) if narrow else (_tile_cols(B), _MR)
    ntask = geo.G * ((K + mr - 1) // mr) * ((M + nr - 1) // nr)
    for t in numba.prange(nchunks):
        out = np.empty((_MR, _tile_cols(B)), B.dtype)
        for task in range(t * ntask // nchunks, (t + 1) * ntask // nchunks):
            _wide_grad_w_task(xq, img, gsz, offs, B, dw, geo, span, narrow, task, out)


@njit
def _grad_x_task(go, weight, dx, geo, ncb, taps, task, segs, A, panel, Ct, out):
    """Task (n, g, block cb of channels) of ``_gemm_grad_x``; segs, A, panel, Ct, out are scratch."""
    Co, Cig, kH, kW, Ho, Wo, G = geo.Co, geo.Cig, geo.kH, geo.kW, geo.Ho, geo.Wo, geo.G
    M, L, khw = Co // G, Ho * Wo, kH * kW
    nr = _tile_cols(go)
    n, rest = divmod(task, G * ncb)
    g, cb = divmod(rest, ncb)
    c0, c1 = cb * Cig // ncb, (cb + 1) * Cig // ncb
    k0, nk = c0 * khw, (c1 - c0) * khw
    nkb = (nk + _MR - 1) // _MR
    for kb in range(nkb):
        for m in range(M):
            for r in range(_MR):
                kk = kb * _MR + r
                A[(kb * M + m) * _MR + r] = weight[g * M + m, k0 + kk] if kk < nk else 0.0
    for lb in range((L + nr - 1) // nr):
        l0 = lb * nr
        nl = min(nr, L - l0)
        for m in range(M):
            prow, grow = panel[m * nr:m * nr + nl], go[n, g * M + m, l0:l0 + nl]
            for jj in range(nl):
                prow[jj] = grow[jj]
        for m0 in range(0, M, _KC):  # reduction chunks: a (_KC, nr) block of the panel stays in L1
            for kb in range(nkb):
                _micro(min(_KC, M - m0), A, (kb * M + m0) * _MR, panel, m0 * nr, nr, out)
                _add_tile(Ct, kb * _MR, out, m0 == 0)
        _scatter_col(Ct, nk, taps, k0, l0, nl, dx, n, g * Cig, segs, geo)


@pjit
def _gemm_grad_x(go, weight, dx, geo, ncb, nchunks):
    """col(dx[n, g]) = W_g^T (K, M) @ go[n, g] (M, L), scattered; tasks (n, g, block of channels)."""
    N, Co, Cig, kH, kW, G = geo.N, geo.Co, geo.Cig, geo.kH, geo.kW, geo.G
    M, khw = Co // G, kH * kW
    nr = _tile_cols(go)
    ntask = N * G * ncb
    taps = _taps(Cig * khw, geo)
    for t in numba.prange(nchunks):
        segs = np.empty((nr + 1, 4), np.int64)
        cmax = (Cig + ncb - 1) // ncb
        kbmax = (cmax * khw + _MR - 1) // _MR
        A = np.zeros(kbmax * M * _MR, go.dtype)  # (kb, M, MR): W_g^T rows k0.., zero padded
        panel = np.zeros(M * nr, go.dtype)  # (M, nr)
        Ct = np.empty((kbmax * _MR, nr), go.dtype)  # col(dx) rows k0.., columns l0..
        out = np.empty((_MR, nr), go.dtype)
        for task in range(t * ntask // nchunks, (t + 1) * ntask // nchunks):
            _grad_x_task(go, weight, dx, geo, ncb, taps, task, segs, A, panel, Ct, out)


@njit
def _ordered_sum(v):
    """Sum of v in float64 in a fixed order that vectorises: 16 strided lane sums, then the lanes, then the tail."""
    lanes = np.zeros(16)
    nb = v.size // 16
    for b in range(nb):
        blk = v[b * 16:(b + 1) * 16]
        for q in range(16):
            lanes[q] += blk[q]
    acc = 0.0
    for q in range(16):
        acc += lanes[q]
    for t in range(nb * 16, v.size):
        acc += v[t]
    return acc


@njit
def _to_wide(src, top, left, pitch, dst):
    """dst = zeros, then src (h, w) written at row top, column left of a row-major plane with row pitch.
    Unsigned flat indices (no negative-index code) and only the margins zeroed: this copy costs as much as
    the depthwise taps."""
    h, w = src.shape
    sf = src.reshape(-1)
    up, uw = np.uint64(pitch), np.uint64(w)
    n = np.uint64(dst.size)
    first = np.uint64(top * pitch + left)
    for t in range(first):
        dst[t] = 0.0
    for i in range(np.uint64(h)):
        d0, s0 = first + i * up, i * uw
        for t in range(uw):
            dst[d0 + t] = sf[s0 + t]
        for t in range(d0 + uw, min(n, d0 + up)):  # right margin of this row, left margin of the next
            dst[t] = 0.0
    for t in range(min(n, first + np.uint64(h) * up), n):
        dst[t] = 0.0


@njit(inline="always", fastmath=_FMA)
def _dw_block(xp, q, s, w, acc):
    """acc[r, j] += w * xp[q + s*(r*nr + j)]: one tap over one register block of 2*nr wide positions."""
    nr = _tile_cols(xp)
    if s == 1:
        xs = xp[q:q + 2 * nr]
        for r in range(2):
            for j in range(nr):
                acc[r, j] += w * xs[r * nr + j]
    else:
        for r in range(2):
            for j in range(nr):
                acc[r, j] += w * xp[q + s * (r * nr + j)]


@njit(fastmath=_FMA)
def _dw_forward_plane(x, weight, bias, y, geo, task, xp, yw):
    """Plane task = n*Co + co of ``_depthwise_forward_wide``; xp (Hp*Wp,) and yw (span,) are scratch."""
    Co, kH, kW, ph, pw, dh, dw, Ho, Wo, G = (geo.Co, geo.kH, geo.kW, geo.ph, geo.pw, geo.dh, geo.dw, geo.Ho,
                                             geo.Wo, geo.G)
    M, Wp, s = Co // G, geo.W + 2 * pw, geo.sh
    span = (Ho - 1) * Wp + Wo
    nr = _tile_cols(x)
    n, co = divmod(task, Co)
    _to_wide(x[n, co // M], ph, pw, Wp, xp)
    acc = numba.carray(_stack_rows(x, 2), (2, nr))  # 2*nr positions in registers while all taps pass
    bc = bias[co]
    if not _DW_BLOCKS or span < 2 * nr:  # one tap at a time over the whole span
        yw[:] = bc
        for k in range(kH * kW):
            w = weight[co, k]
            xs = xp[(k // kW) * dh * Wp + (k % kW) * dw:]
            if s == 1:
                for t in range(span):
                    yw[t] += w * xs[t]
            else:
                for t in range(span):
                    yw[t] += w * xs[s * t]
    for blk in range((span + 2 * nr - 1) // (2 * nr) if _DW_BLOCKS and span >= 2 * nr else 0):
        p0 = min(blk * 2 * nr, span - 2 * nr)  # the last block moved back to end at span
        for r in range(2):
            for j in range(nr):
                acc[r, j] = bc
        for i in range(kH):  # nested tap loops: a division by the runtime kW per tap cost more than the FMAs
            for j in range(kW):
                _dw_block(xp, i * dh * Wp + j * dw + s * p0, s, weight[co, i * kW + j], acc)
        out = yw[p0:p0 + 2 * nr]
        for r in range(2):
            for j in range(nr):
                out[r * nr + j] = acc[r, j]
    for oh in range(Ho):
        yrow, src = y[n, co, oh], yw[oh * Wp:oh * Wp + Wo]
        for t in range(Wo):
            yrow[t] = src[t]


# Depthwise (one input channel per group, sh = sw = s) on "wide" planes: with the input zero padded to (Hp, Wp)
# and the output kept at row pitch Wp, output position p = oh*Wp + ow reads input s*p + i*dh*Wp + j*dw for tap
# (i, j), so each tap is one axpy over span = (Ho-1)*Wp + Wo positions (contiguous when s = 1; the columns
# Wo.. Wp of the wide output are scratch). Each output sums the taps in (i, j) order, starting from the bias.
# The forward keeps blocks of 2*nr positions in registers while all taps pass over them.
@pjit
def _depthwise_forward_wide(x, weight, bias, y, geo, nchunks):
    Hp, Wp = geo.H + 2 * geo.ph, geo.W + 2 * geo.pw
    span = (geo.Ho - 1) * Wp + geo.Wo
    ntask = geo.N * geo.Co
    for t in numba.prange(nchunks):
        xp = np.empty(Hp * Wp, x.dtype)
        yw = np.empty(span, x.dtype)
        for task in range(t * ntask // nchunks, (t + 1) * ntask // nchunks):
            _dw_forward_plane(x, weight, bias, y, geo, task, xp, yw)


@njit(fastmath=_FMA)
def _dw_grad_x_plane(go, weight, dx, geo, task, dxp, gw):
    """Plane task = n*Ci + c of ``_depthwise_grad_x_wide``; dxp (Hp*Wp,) and gw (Ho*Wp,) are scratch."""
    Ci, Co, kH, kW, ph, pw, dh, dw, Ho, Wo, G = (geo.Ci, geo.Co, geo.kH, geo.kW, geo.ph, geo.pw, geo.dh, geo.dw,
                                                 geo.Ho, geo.Wo, geo.G)
    M, H, W, Wp, s = Co // G, geo.H, geo.W, geo.W + 2 * pw, geo.sh
    span = (Ho - 1) * Wp + Wo
    n, c = divmod(task, Ci)
    dxp[:] = 0.0
    for co in range(c * M, (c + 1) * M):
        _to_wide(go[n, co], 0, 0, Wp, gw)  # columns Wo.. stay zero
        for k in range(kH * kW):
            w = weight[co, k]
            d = dxp[(k // kW) * dh * Wp + (k % kW) * dw:]
            if s == 1:
                for t in range(span):
                    d[t] += w * gw[t]
            else:
                for t in range(span):
                    d[s * t] += w * gw[t]
    for ih in range(H):
        drow, src = dx[n, c, ih], dxp[(ih + ph) * Wp + pw:(ih + ph) * Wp + pw + W]
        for t in range(W):
            drow[t] = src[t]


@pjit
def _depthwise_grad_x_wide(go, weight, dx, geo, nchunks):
    Hp, Wp = geo.H + 2 * geo.ph, geo.W + 2 * geo.pw
    ntask = geo.N * geo.Ci
    for t in numba.prange(nchunks):
        dxp = np.empty(Hp * Wp, go.dtype)
        gw = np.empty(geo.Ho * Wp, go.dtype)
        for task in range(t * ntask // nchunks, (t + 1) * ntask // nchunks):
            _dw_grad_x_plane(go, weight, dx, geo, task, dxp, gw)


@njit(fastmath=_FMA)
def _dw_grad_w_channel(go, x, dwt, geo, co, xp, gw, part):
    """Output channel co of ``_depthwise_grad_w_wide``; xp, gw and part (kH*kW, span) are scratch."""
    N, Co, kH, kW, ph, pw, dh, dw, Ho, Wo, G = (geo.N, geo.Co, geo.kH, geo.kW, geo.ph, geo.pw, geo.dh, geo.dw,
                                                geo.Ho, geo.Wo, geo.G)
    M, Wp, s = Co // G, geo.W + 2 * pw, geo.sh
    span = (Ho - 1) * Wp + Wo
    part[:] = 0.0  # per tap, one partial sum per wide output position
    for n in range(N):
        _to_wide(x[n, co // M], ph, pw, Wp, xp)
        _to_wide(go[n, co], 0, 0, Wp, gw)  # columns Wo.. stay zero
        for k in range(kH * kW):
            xs, pk = xp[(k // kW) * dh * Wp + (k % kW) * dw:], part[k]
            if s == 1:
                for t in range(span):
                    pk[t] += gw[t] * xs[t]
            else:
                for t in range(span):
                    pk[t] += gw[t] * xs[s * t]
    for k in range(kH * kW):
        dwt[co, k] = _ordered_sum(part[k])


@pjit
def _depthwise_grad_w_wide(go, x, dwt, geo):
    Hp, Wp = geo.H + 2 * geo.ph, geo.W + 2 * geo.pw
    span = (geo.Ho - 1) * Wp + geo.Wo
    for co in numba.prange(geo.Co):
        xp = np.empty(Hp * Wp, x.dtype)
        gw = np.empty(geo.Ho * Wp, x.dtype)
        part = np.empty((geo.kH * geo.kW, span), x.dtype)
        _dw_grad_w_channel(go, x, dwt, geo, np.int64(co), xp, gw, part)


def _geometry(x, weight, stride, padding, dilation, groups, out_hw) -> _Geo:
    return _Geo(*x.shape, *weight.shape, *stride, *padding, *dilation, *out_hw, groups)


def _chunks(ntask: int) -> int:
    """Contiguous task chunks for prange (a few per thread for balance; never affects the result)."""
    return max(1, min(ntask, 4 * get_num_threads()))


def _nr(dtype) -> int:
    return _NR32 if np.dtype(dtype) == np.float32 else _NR64


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d as torch.nn.functional.conv2d (zero padding), numba fast path.

    Parameters
    ----------
    x : (N, Ci, H, W) float32 or float64
    weight : (Co, Ci/G, kH, kW), same dtype
    bias : (Co,) same dtype, or None
    stride, padding, dilation : int or (h, w) pair; groups : int

    Returns
    -------
    (N, Co, Ho, Wo) array of x's dtype, Ho = (H + 2 ph - dh (kH - 1) - 1) // sh + 1 (likewise Wo).
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, bias, stride, padding, dilation, groups)
    geo = _geometry(x, weight, stride, padding, dilation, G, out_hw)
    N, Co, (Ho, Wo) = x.shape[0], weight.shape[0], out_hw
    Cig, kH, kW = weight.shape[1:]
    K = Cig * kH * kW
    x = np.ascontiguousarray(x)
    b = np.zeros(Co, x.dtype) if bias is None else np.ascontiguousarray(bias)
    y = np.empty((N, Co, Ho, Wo), x.dtype)
    if y.size == 0:
        return y
    if Cig == 1 and stride[0] == stride[1]:
        w2 = np.ascontiguousarray(weight.reshape(Co, K))  # (Co, kH*kW)
        _depthwise_forward_wide(x, w2, b, y, geo, _chunks(N * Co))
        return y
    return _conv_wide(x, weight, b, geo, y)


def _conv_wide(x, weight, b, geo, y):
    """y (N, Co, Ho, Wo) = conv2d of contiguous x by weight plus b on the wide path (``_wide_forward``)."""
    N, G = geo.N, geo.G
    Co, Cig, kH, kW = weight.shape
    M, K = Co // G, Cig * kH * kW
    nmb = -(-M // _MR)
    Wp = np.zeros((G, nmb * _MR, K), x.dtype)
    Wp[:, :M] = weight.reshape(G, M, K)  # (G, M, K), rows zero padded to a multiple of MR
    Wp = np.ascontiguousarray(Wp.reshape(G, nmb, _MR, K).transpose(0, 1, 3, 2))  # (G, nmb, K, MR)
    nr = _nr(x.dtype)
    Hq, Wq = -(-(geo.H + 2 * geo.ph) // geo.sh), -(-(geo.W + 2 * geo.pw) // geo.sw)
    span = (geo.Ho - 1) * Wq + geo.Wo
    # batched positions (all images in one run of positions) when per-image tile rounding wastes more
    batched = N > 1 and -(-((N - 1) * Hq * Wq + span) // nr) < 0.9 * N * -(-span // nr)
    xq, img, gsz, offs, Wq, span = _wide_input(x, weight, geo, batched=batched)
    nimg = 1 if batched else N
    ntiles = -(-span // nr)
    # blocks of tiles per task: enough tasks for the threads, and the task's (M, tb*nr) buffer within ~L2/2
    nlb = min(ntiles, -(-_MIN_TASKS // (nimg * G)))
    tb = min(-(-ntiles // nlb), max(1, _PANEL_BYTES * 2 // (nmb * _MR * nr * x.itemsize)))
    ntask = nimg * G * -(-ntiles // tb)
    _wide_forward(xq, nimg, img, gsz, Wp.reshape(-1), offs, b, y.reshape(-1), geo, Hq, Wq, span, tb,
                  _chunks(ntask))
    return y


def _wide_input(x, weight, geo, batched=False):
    """Input of the wide path: (xq flat, elements per image, per group, tap offsets (K,) int64, phase row
    pitch Wq, wide span). Per image the span is (Ho-1)*Wq + Wo; batched, the images follow each other
    (Hq*Wq positions apart) in one span, and "per image" is the whole batch. xq is x itself for stride 1 and
    no padding (per image), else the padded, phase-split copy (``_phase_split``), with a zeroed tail when a
    single tile is wider than the span."""
    N, Ci, Cig, kH, kW = geo.N, geo.Ci, geo.Cig, geo.kH, geo.kW
    sh, sw, dh, dw = geo.sh, geo.sw, geo.dh, geo.dw
    Hq, Wq = -(-(geo.H + 2 * geo.ph) // sh), -(-(geo.W + 2 * geo.pw) // sw)
    pst = Hq * Wq * (N if batched else 1)  # between the (channel, phase) planes
    c, i, j = (a.reshape(-1) for a in np.indices((Cig, kH, kW)))  # tap k = (c, i, j), weight's order
    offs = (((c * sh + i * dh % sh) * sw + j * dw % sw) * pst + i * dh // sh * Wq + j * dw // sw).astype(np.int64)
    span = (geo.Ho - 1) * Wq + geo.Wo + ((N - 1) * Hq * Wq if batched else 0)
    nr = _nr(x.dtype)
    img, gsz = Ci * sh * sw * pst, Cig * sh * sw * pst
    nimg = 1 if batched else N
    if span >= nr and sh == sw == 1 and geo.ph == geo.pw == 0 and not batched:
        return x.reshape(-1), img, gsz, offs, Wq, span
    tail = 0 if span >= nr else max(0, (geo.G - 1) * gsz + int(offs.max()) + nr - img)
    xq = np.empty(nimg * img + tail, x.dtype)
    xq[nimg * img:] = 0.0
    _phase_split(x.reshape(-1), xq, geo, Hq, Wq, pst, Hq * Wq if batched else img)
    return xq, img, gsz, offs, Wq, span


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of ``conv2d`` with respect to x, weight and bias.

    grad_output (N, Co, Ho, Wo), x (N, Ci, H, W), weight (Co, Ci/G, kH, kW), one float dtype ->
    (grad_x (N, Ci, H, W), grad_weight (Co, Ci/G, kH, kW), grad_bias (Co,) = sum of grad_output over N, Ho, Wo).
    """
    stride, padding, dilation, G, out_hw = _check(x, weight, None, stride, padding, dilation, groups,
                                                  grad_output)
    geo = _geometry(x, weight, stride, padding, dilation, G, out_hw)
    N = x.shape[0]
    Co, Cig, kH, kW = weight.shape
    K, L = Cig * kH * kW, out_hw[0] * out_hw[1]
    x, go = np.ascontiguousarray(x), np.ascontiguousarray(grad_output)
    w2 = np.ascontiguousarray(weight.reshape(Co, K))  # (Co, K)
    gx = np.zeros(x.shape, x.dtype)  # stays zero where no output reads x (and for an empty batch)
    gw = np.zeros((Co, K), x.dtype)
    gb = go.sum(axis=(0, 2, 3))  # (Co,)
    if N * L == 0:
        return gx, gw.reshape(weight.shape), gb
    if Cig == 1 and stride[0] == stride[1]:
        _depthwise_grad_x_wide(go, w2, gx, geo, _chunks(N * x.shape[1]))
        _depthwise_grad_w_wide(go, x, gw, geo)
        return gx, gw.reshape(weight.shape), gb
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    qh, qw = dh * (kH - 1) - ph, dw * (kW - 1) - pw
    if sh == sw == 1 and qh >= 0 and qw >= 0:
        # stride 1: dx is the convolution of grad_output, padded by d*(k-1) - p, with the flipped, transposed
        # weight, dx[n, c, ih, iw] = sum_{m,i,j} W[m, c, kH-1-i, kW-1-j] go_pad[n, m, ih + i*dh, iw + j*dw]
        M = Co // G
        wt = weight.reshape(G, M, Cig, kH, kW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)  # (G, Cig, M, kH, kW)
        wt = np.ascontiguousarray(wt.reshape(G * Cig, M, kH, kW))
        geo_t = _Geo(N, Co, *out_hw, G * Cig, M, kH, kW, 1, 1, qh, qw, dh, dw, *x.shape[2:], G)
        gx = _conv_wide(go, wt, np.zeros(G * Cig, x.dtype), geo_t, np.empty(x.shape, x.dtype))
    else:
        ncb = min(Cig, -(-_MIN_TASKS // (N * G)))
        _gemm_grad_x(go.reshape(N, Co, L), w2, gx, geo, ncb, _chunks(N * G * ncb))
    # grad W on wide positions against the forward's input layout, taps read in place
    xq, img, gsz, offs, Wq, span = _wide_input(x, weight, geo)
    offs = np.concatenate([offs, np.zeros(-K % (_MR * _NV), np.int64)])  # taps padded to a multiple of MR*NV
    M, nr, V = Co // G, _nr(x.dtype), _nr(x.dtype) // _NV
    # few channels on AVX-512: tiles one vector wide (AVX2 has no broadcast folded into the FMA, and there the
    # narrow tile was slower: 12 broadcasts per 12 FMAs)
    narrow = _AVX512 and -(-M // V) * V <= 0.75 * -(-M // nr) * nr
    nw, mr = (V, _MR * _NV) if narrow else (nr, _MR)
    nmb = -(-M // nw)
    B = np.zeros(N * G * nmb * span * nw, x.dtype)  # (N, G, nmb, span, nw)
    _wide_dyt(go, B, geo, Wq, span, nw)
    _wide_grad_w(xq, img, gsz, offs, B, gw, geo, span, narrow, _chunks(G * -(-K // mr) * nmb))
    return gx, gw.reshape(weight.shape), gb
