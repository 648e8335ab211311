"""LLVM intrinsics that numba does not emit by itself (PERFORMANCE.md pitfalls 4 and 5).

* ``shl32`` / ``ashr32`` / ``lshr32``: scalar int32 shifts computed in 32-bit registers (numba promotes
  ``int32 >> int32`` to 64-bit lanes, halving SIMD width).
* Register-tiled micro-kernels written directly in LLVM IR, one per instruction family:

  - ``vnni_tile(MR, NV)``: u8 x s8 dot products with ``llvm.x86.avx512.vpdpbusd.512`` (AVX512_VNNI),
  - ``i16_tile(MR, NV)``: int8 weights sign-extended to int16 pairs, ``llvm.x86.avx2.pmadd.wd``
    (``vpmaddwd``, AVX2; exact, the portable int8 path),
  - ``shift_tile(MR, NV, NT)``: power-of-two weights as 4-bit codes, ``llvm.x86.avx2.psllv.d.256`` (per-lane
    variable left shift) and ``llvm.x86.avx2.psign.d`` (sign), AVX2.

  Every tile kernel computes an ``MR x (lanes*NV)`` int32 block over the whole reduction axis, keeps the
  accumulators in registers (allocas that LLVM promotes) and stores the block to a small row-major int32
  buffer ``Ct`` of shape ``(MR, lanes*NV)``. Operands are addressed as ``array, element offset, stride``;
  the caller guarantees bounds (the wrappers in ``kernels.int8`` / ``kernels.shift`` check shapes).

Caching caveat: numba's on-disk cache (``cache=True``) is keyed on the *calling* file, so after editing this
file touch ``kernels/int8.py`` and ``kernels/shift.py`` (or clear their ``__pycache__``) to recompile them.

``cpu_has(feature)`` says whether the numba target can run a family (LLVM host features, or
``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` when set).
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


# ---------------------------------------------------------------------------------------------- CPU features
@functools.cache
def _target_features() -> frozenset[str]:
    """Features numba compiles for: the host's, unless NUMBA_CPU_NAME/NUMBA_CPU_FEATURES override them."""
    if numba.config.CPU_FEATURES:
        feats = numba.config.CPU_FEATURES.split(",")
        return frozenset(f[1:] for f in feats if f.startswith("+"))
    if numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
        return frozenset()  # a named generic target: assume nothing beyond the baseline
    return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)


def cpu_has(family: str) -> bool:
    """``family`` in {'avx512_vnni', 'avx2'}: can numba-compiled code use that instruction family here?"""
    need = {"avx512_vnni": ("avx512f", "avx512bw", "avx512vnni"), "avx2": ("avx2",)}[family]
    feats = _target_features()
    return all(f in feats for f in need)


def cpu_model() -> str:
    """The host CPU as /proc/cpuinfo names it, with family and model (the model name alone is often just the
    vendor on a VM), e.g. 'AMD EPYC (family 25, model 17), 2 logical CPUs'."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    import os
    import platform
    name = info.get("model name") or platform.processor() or platform.machine()
    fam = f" (family {info['cpu family']}, model {info['model']})" if "cpu family" in info else ""
    return f"{name}{fam}, {os.cpu_count()} logical CPUs"


def isa_summary() -> str:
    """The instruction sets the numba kernels were compiled for here (which tiles and paths run), and the
    target: e.g. 'AVX-512 (F BW VL VNNI VPOPCNTDQ) + AVX2 + FMA, numba target host'."""
    feats = _target_features()
    if "avx512f" in feats:
        ext = [e for e, f in (("F", "avx512f"), ("BW", "avx512bw"), ("VL", "avx512vl"), ("VNNI", "avx512vnni"),
                              ("VPOPCNTDQ", "avx512vpopcntdq"), ("BITALG", "avx512bitalg")) if f in feats]
        isa = f"AVX-512 ({' '.join(ext)}) + AVX2"
    elif "avx2" in feats:
        isa = "AVX2 (no AVX-512)"
    else:
        isa = "no AVX2"
    isa += " + FMA" if "fma" in feats else ""
    target = numba.config.CPU_NAME or "host"
    return f"{isa}, numba target {target}"


# ---------------------------------------------------------------------------------------------- scalar shifts
def _scalar_shift(op: str):
    @intrinsic
    def shift(typingctx, x, s):
        sig = types.int32(types.int32, types.int32)

        def codegen(context, builder, signature, args):
            a = context.cast(builder, args[0], signature.args[0], types.int32)
            b = context.cast(builder, args[1], signature.args[1], types.int32)
            return getattr(builder, op)(a, b)
        return sig, codegen
    return shift


shl32 = _scalar_shift("shl")     # x << s in i32 (s in [0, 31])
ashr32 = _scalar_shift("ashr")   # x >> s, arithmetic, in i32
lshr32 = _scalar_shift("lshr")   # x >>> s, logical, in i32


# ---------------------------------------------------------------------------------------------- IR helpers
def _ptr(context, builder, arrty, arr):
    return cgutils.create_struct_proxy(arrty)(context, builder, value=arr).data


def _load(builder, base, offset, ty):
    """Unaligned load of ``ty`` at element ``offset`` of the typed pointer ``base``."""
    p = builder.gep(base, [offset])
    return builder.load(builder.bitcast(p, ty.as_pointer()), align=1)


def _splat(builder, scalar, n):
    v = builder.insert_element(ir.Constant(ir.VectorType(scalar.type, n), None), scalar, ir.Constant(I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, n), [0] * n))


def _fn(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _tile(MR: int, NV: int, lanes: int, step):
    """Build an intrinsic ``tile(A, a_off, lda, Bp, b_off, n_steps, Ct)``.

    ``step(builder, A_ptr, a_row_offsets, Bp_ptr, b_step_offset, k, accs)`` emits one reduction step
    and returns the new accumulators (list of MR lists of NV vectors).
    """
    vty = ir.VectorType(I32, lanes)

    @intrinsic
    def tile(typingctx, A, a_off, lda, Bp, b_off, n_steps, Ct):
        sig = types.void(A, types.intp, types.intp, Bp, types.intp, types.intp, Ct)

        def codegen(context, builder, signature, args):
            tA, _, _, tB, _, _, tC = signature.args
            a_ptr = _ptr(context, builder, tA, args[0])
            b_ptr = _ptr(context, builder, tB, args[3])
            c_ptr = _ptr(context, builder, tC, args[6])
            a_off, lda, b_off, n = args[1], args[2], args[4], args[5]
            rows = [builder.add(a_off, builder.mul(lda, ir.Constant(I64, r))) for r in range(MR)]
            slots = [[cgutils.alloca_once_value(builder, ir.Constant(vty, None)) for _ in range(NV)]
                     for _ in range(MR)]
            with cgutils.for_range(builder, n) as loop:
                accs = [[builder.load(s) for s in row] for row in slots]
                accs = step(builder, a_ptr, rows, b_ptr, b_off, loop.index, accs)
                for r in range(MR):
                    for v in range(NV):
                        builder.store(accs[r][v], slots[r][v])
            for r in range(MR):
                for v in range(NV):
                    p = builder.gep(c_ptr, [ir.Constant(I64, (r * NV + v) * lanes)])
                    builder.store(builder.load(slots[r][v]), builder.bitcast(p, vty.as_pointer()), align=1)
            return context.get_dummy_value()
        return sig, codegen
    return tile


# ---------------------------------------------------------------------------------------------- int8 GEMM
@functools.cache
def vnni_tile(MR: int, NV: int):
    """u8 x s8 tile. A: uint8 rows (element offsets, K padded to 4); Bp: int8 panel laid out
    ``[k4][NV*16 columns][4]``, ``b_off`` its first element; ``n_steps`` = K/4."""
    v16, b64 = ir.VectorType(I32, 16), ir.VectorType(I8, 64)

    def step(builder, a_ptr, rows, b_ptr, b_off, k, accs):
        dp = _fn(builder, "llvm.x86.avx512.vpdpbusd.512", v16, [v16, b64, b64])
        bk = builder.add(b_off, builder.mul(k, ir.Constant(I64, 64 * NV)))
        bv = [_load(builder, b_ptr, builder.add(bk, ir.Constant(I64, 64 * v)), b64) for v in range(NV)]
        k4 = builder.mul(k, ir.Constant(I64, 4))
        out = []
        for r in range(MR):
            a = _splat(builder, _load(builder, a_ptr, builder.add(rows[r], k4), I32), 16)
            a = builder.bitcast(a, b64)
            out.append([builder.call(dp, [accs[r][v], a, bv[v]]) for v in range(NV)])
        return out
    return _tile(MR, NV, 16, step)


@functools.cache
def i16_tile(MR: int, NV: int):
    """int16 tile. A: int16 rows (K padded to 2); Bp: int8 panel ``[k2][NV*8 columns][2]``, sign-extended
    to int16 in registers (``vpmovsxbw``: 1 byte per weight in memory); ``n_steps`` = K/2. ``vpmaddwd`` forms
    a0*b0 + a1*b1 in int32, exact for |a| <= 255, |b| <= 128."""
    v8, w16, b16 = ir.VectorType(I32, 8), ir.VectorType(I16, 16), ir.VectorType(I8, 16)

    def step(builder, a_ptr, rows, b_ptr, b_off, k, accs):
        md = _fn(builder, "llvm.x86.avx2.pmadd.wd", v8, [w16, w16])
        bk = builder.add(b_off, builder.mul(k, ir.Constant(I64, 16 * NV)))
        bv = [builder.sext(_load(builder, b_ptr, builder.add(bk, ir.Constant(I64, 16 * v)), b16), w16)
              for v in range(NV)]
        k2 = builder.mul(k, ir.Constant(I64, 2))
        out = []
        for r in range(MR):
            a = builder.bitcast(_splat(builder, _load(builder, a_ptr, builder.add(rows[r], k2), I32), 8), w16)
            out.append([builder.add(accs[r][v], builder.call(md, [a, bv[v]])) for v in range(NV)])
        return out
    return _tile(MR, NV, 8, step)


# ---------------------------------------------------------------------------------------------- shift GEMM
@functools.cache
def shift_tile(MR: int, NV: int, NT: int):
    """Shift tile, AVX2. A: int32 activation rows (K padded to 8/NT); Bp: int32 words laid out
    ``[k8][NV*8 output lanes]``, each word holding 8 nibbles for 8/NT consecutive k and NT terms
    (nibble ``j`` = bits 4j..4j+3 is term ``j % NT`` of input ``k8*(8/NT) + j // NT``).

    Nibble = ``sign << 3 | m``: m = 0 is zero, else the term is ``(-1)**sign * (x << (m - 1))``.
    ``vpsllvd`` shifts each lane by its own count ``m - 1``; for m = 0 the count is -1, i.e. >= 32, and the
    instruction returns 0. ``vpsignd`` negates where its operand is negative: the word shifted left so that
    nibble ``j`` occupies bits 28..31 puts the nibble's sign bit in bit 31 (lower nibbles only matter when
    that operand would be 0, which needs m = 0 and then the shifted value is already 0)."""
    v8 = ir.VectorType(I32, 8)
    seven, one = ir.Constant(v8, [7] * 8), ir.Constant(v8, [1] * 8)

    def step(builder, a_ptr, rows, b_ptr, b_off, k, accs):
        sllv = _fn(builder, "llvm.x86.avx2.psllv.d.256", v8, [v8, v8])
        psign = _fn(builder, "llvm.x86.avx2.psign.d", v8, [v8, v8])
        bk = builder.add(b_off, builder.mul(k, ir.Constant(I64, 8 * NV)))
        words = [_load(builder, b_ptr, builder.add(bk, ir.Constant(I64, 8 * v)), v8) for v in range(NV)]
        kk = builder.mul(k, ir.Constant(I64, 8 // NT))
        for j in range(8):
            cnts = [builder.sub(builder.and_(builder.lshr(w, ir.Constant(v8, [4 * j] * 8)), seven), one)
                    for w in words]
            sgns = [builder.shl(w, ir.Constant(v8, [28 - 4 * j] * 8)) for w in words]
            for r in range(MR):
                off = builder.add(rows[r], builder.add(kk, ir.Constant(I64, j // NT)))
                x = _splat(builder, _load(builder, a_ptr, off, I32), 8)
                for v in range(NV):
                    t = builder.call(psign, [builder.call(sllv, [x, cnts[v]]), sgns[v]])
                    accs[r][v] = builder.add(accs[r][v], t)
        return accs
    return _tile(MR, NV, 8, step)


@functools.cache
def mul_tile(MR: int, NV: int):
    """int32 multiply-add tile with the shift tile's shape (the D1 comparator): A int32 rows, Bp int32
    ``[k][NV*8]`` decoded weights, ``acc += a * b`` (``vpmulld``); ``n_steps`` = K."""
    v8 = ir.VectorType(I32, 8)

    def step(builder, a_ptr, rows, b_ptr, b_off, k, accs):
        bk = builder.add(b_off, builder.mul(k, ir.Constant(I64, 8 * NV)))
        bv = [_load(builder, b_ptr, builder.add(bk, ir.Constant(I64, 8 * v)), v8) for v in range(NV)]
        out = []
        for r in range(MR):
            a = _splat(builder, _load(builder, a_ptr, builder.add(rows[r], k), I32), 8)
            out.append([builder.add(accs[r][v], builder.mul(a, bv[v])) for v in range(NV)])
        return out
    return _tile(MR, NV, 8, step)
