"""Shift (power-of-two weight) GEMM/GEMV benchmark (PERFORMANCE.md 5(d)).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_shift``

Honest expectations: a CPU shifts no faster than it multiplies. Each shift term costs a variable shift, a
sign and an add (plus nibble decoding) where fp32 does one FMA, so the shift GEMM is compared with BLAS
only to show the gap (target >= 0.5x) and with an int32 multiply-add kernel of the *same* register tiling
(target >= 1x). Shifts win where the weight bytes dominate: the batch-1 GEMV reads 4 bits per weight term
instead of 32, so it is compared with sgemv on weights that do not fit in cache (fp32 >= 64 MiB).
Ops = 2 M N K (one multiply-add = 2 ops, as for flops); every implementation runs in this process.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from benchmarks.common import environment, prefer_workqueue, table, timeit_stats, torch_threads
from kernels import _intrinsics
from kernels._config import pjit
from kernels.shift import MR, NR, NV, decode, encode, pack_codes, shift_gemm, shift_gemv

_MUL_BIG, _MUL_ONE = _intrinsics.mul_tile(MR, NV), _intrinsics.mul_tile(1, NV)


@pjit
def _mul_gemm(Xp, Bp, K, O, C):
    """Same panels and tiles as kernels.shift._drive, with decoded int32 weights and vpmulld."""
    M = Xp.shape[0]
    for p in prange(-(-O // NR)):
        Ct = np.empty(MR * NR, np.int32)
        i = 0
        while i < M:
            rows = MR if i + MR <= M else 1
            if rows == MR:
                _MUL_BIG(Xp, i * K, K, Bp, p * K * NR, K, Ct)
            else:
                _MUL_ONE(Xp, i * K, K, Bp, p * K * NR, K, Ct)
            for r in range(rows):
                for jj in range(min(NR, O - p * NR)):
                    C[i + r, p * NR + jj] = Ct[r * NR + jj]
            i += rows


def _pack_mul(W_int: np.ndarray) -> np.ndarray:
    O, K = W_int.shape
    Op = -(-O // NR) * NR
    Wp = np.zeros((Op, K), np.int32)
    Wp[:O] = W_int
    return np.ascontiguousarray(Wp.reshape(Op // NR, NR, K).transpose(0, 2, 1)).reshape(-1)  # (P, K, NR)


def run_gemm(M: int, K: int, O: int, rng: np.random.Generator) -> list[dict]:
    torch = torch_threads(2)
    W = rng.standard_normal((O, K))
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    Xf, Wf = X.astype(np.float32), W.astype(np.float32)
    WfT = np.ascontiguousarray(Wf.T)
    ops = 2.0 * M * O * K
    rows = []

    def add(name, fn, *args):
        t = timeit_stats(fn, *args)
        rows.append({"impl": name, "ms": t["median"] * 1e3, "min ms": t["min"] * 1e3, "GOP/s": ops / t["median"] / 1e9})

    add("numpy sgemm (fp32)", np.matmul, Xf, WfT)
    add("torch.matmul (fp32)", torch.matmul, torch.from_numpy(Xf), torch.from_numpy(WfT))
    codes1, _ = encode(W, 1)
    Xp, Wp = X.astype(np.int32), _pack_mul(decode(codes1[0]).astype(np.int32))
    C = np.empty((M, O), np.int32)
    _mul_gemm(Xp, Wp, K, O, C)
    assert np.array_equal(C, shift_gemm(pack_codes(codes1), X)), "comparator kernel disagrees with shift_gemm"
    add("numba int32 multiply-add, same 4x16 tiling (vpmulld)", _mul_gemm, Xp, Wp, K, O, C)
    for nt in (1, 2):
        codes, _ = encode(W, nt)
        add(f"lwnn shift_gemm, {nt} term(s) ({4 * nt} bits/weight)", shift_gemm, pack_codes(codes), X)
    for r in rows:
        r["x numpy sgemm"] = rows[0]["ms"] / r["ms"]
        r["x numpy sgemm (min)"] = rows[0]["min ms"] / r["min ms"]
        r["x int32-mul kernel"] = rows[2]["ms"] / r["ms"]
        r["x int32-mul (min)"] = rows[2]["min ms"] / r["min ms"]
    return rows


def run_gemv(K: int, O: int, rng: np.random.Generator) -> list[dict]:
    torch = torch_threads(2)
    W = rng.standard_normal((O, K)).astype(np.float32)
    x = rng.integers(-128, 128, K).astype(np.int8)
    xf = x.astype(np.float32)
    rows = []

    def add(name, mib, fn, *args):
        t = timeit_stats(fn, *args)
        rows.append({"impl": name, "weights MiB": mib, "ms": t["median"] * 1e3, "min ms": t["min"] * 1e3,
                     "weight GB/s": mib * 2 ** 20 / t["median"] / 1e9})

    add("numpy sgemv (fp32)", W.nbytes / 2 ** 20, np.dot, W, xf)
    add("torch.mv (fp32)", W.nbytes / 2 ** 20, torch.mv, torch.from_numpy(W), torch.from_numpy(xf))
    for nt in (1, 2):
        p = pack_codes(encode(W, nt)[0])
        add(f"lwnn shift_gemv, {nt} term(s): {4 * nt} bits/weight", p.nbytes / 2 ** 20, shift_gemv, p, x)
    for r in rows:
        r["x numpy sgemv"] = rows[0]["ms"] / r["ms"]
        r["x numpy sgemv (min)"] = rows[0]["min ms"] / r["min ms"]
    return rows


def main() -> str:
    layer = prefer_workqueue()
    rng = np.random.default_rng(0)
    out = ["# Shift (power-of-two, ShiftCNN) GEMM and GEMV\n", environment() + f", numba threading layer: {layer}",
           ("A CPU shifts no faster than it multiplies: no GEMM speed-up over FMA BLAS is expected; the GEMV wins "
           "by reading fewer weight bytes. ms = median of 7 samples, min ms = fastest sample (shared machine).\n"),
           "## GEMM M x K x O = 1024 x 1024 x 1024\n",
           table(run_gemm(1024, 1024, 1024, rng), ["impl", "ms", "min ms", "GOP/s", "x numpy sgemm",
                                                   "x numpy sgemm (min)", "x int32-mul kernel", "x int32-mul (min)"])]
    for K, O in ((4096, 4096), (4096, 8192)):
        out += [f"\n## GEMV batch 1, weights {O} x {K} (fp32 {O * K * 4 >> 20} MiB)\n",
                table(run_gemv(K, O, rng), ["impl", "weights MiB", "ms", "min ms", "weight GB/s", "x numpy sgemv",
                                            "x numpy sgemv (min)"])]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
