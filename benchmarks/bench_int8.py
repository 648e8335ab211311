"""int8 GEMM benchmark (PERFORMANCE.md 5(e)): lwnn qgemm / qgemm_requant against fp32 BLAS and torch.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_int8``
(the strong numpy baseline; the BLAS kernel in use is printed with every run).

Every implementation is timed in this process, warmed up, median of 7 (``benchmarks.common.timeit``);
weights are pre-packed (``pack_weights``) as a deployed layer holds them. Ops = 2 M N K.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import environment, prefer_workqueue, table, timeit_stats, torch_threads
from kernels import _intrinsics
from kernels.int8 import pack_weights, qgemm, qgemm_requant, quantize_multiplier

GEMM_SHAPES = [(1024, 1024, 1024), (256, 1024, 1024)]  # M, K, N
GEMV_SHAPES = [(4096, 4096)]  # K, N (weights N x K)


def _torch_qlinear(torch, x_q, W_q, s_in, za, s_w, s_out, zo):
    torch.backends.quantized.engine = "fbgemm"
    K, N = W_q.shape[1], W_q.shape[0]
    lin = torch.ao.nn.quantized.Linear(K, N)
    lin.set_weight_bias(torch._make_per_tensor_quantized_tensor(torch.from_numpy(W_q), s_w, 0), torch.zeros(N))
    lin.scale, lin.zero_point = s_out, zo
    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), s_in, za)
    return lin, xt


def run_gemm(M: int, K: int, N: int, rng: np.random.Generator) -> list[dict]:
    torch = torch_threads(2)
    ops = 2.0 * M * N * K
    A = rng.integers(0, 128, (M, K)).astype(np.uint8)  # 7-bit: fbgemm's reduce_range regime (README)
    W = rng.integers(-127, 128, (N, K)).astype(np.int8)
    B = np.ascontiguousarray(W.T)  # (K, N)
    Af, Bf = A.astype(np.float32), B.astype(np.float32)
    s_in, za, s_w = 0.02, 64, 0.004
    s_out = s_in * s_w * np.sqrt(K) * 40
    m0, shift = quantize_multiplier(s_in * s_w / s_out)
    packed = pack_weights(B, 0)
    lin, xt = _torch_qlinear(torch, A, W, s_in, za, s_w, s_out, 128)
    At, Bt = torch.from_numpy(Af), torch.from_numpy(Bf)
    rows = []

    def add(name, fn, *args):
        t = timeit_stats(fn, *args)
        rows.append({"impl": name, "ms": t["median"] * 1e3, "min ms": t["min"] * 1e3, "GOP/s": ops / t["median"] / 1e9})

    add("numpy sgemm (fp32)", np.matmul, Af, Bf)
    add("torch.matmul (fp32)", torch.matmul, At, Bt)
    add("torch quantized Linear (fbgemm, u8 x s8, requant)", lin, xt)
    if M > 16:
        A8t, B8t = torch.from_numpy(A.view(np.int8)), torch.from_numpy(B)
        add("torch._int_mm (s8 x s8 -> s32)", torch._int_mm, A8t, B8t)
    add(f"lwnn qgemm int32 out ({packed.path})", qgemm, A, packed, za, 0)
    add(f"lwnn qgemm_requant u8 out ({packed.path})", qgemm_requant, A, packed, za, 0, None, m0, shift, 128)
    for r in rows:
        r["x numpy sgemm"] = rows[0]["ms"] / r["ms"]
        r["x numpy sgemm (min)"] = rows[0]["min ms"] / r["min ms"]
        r["x fbgemm"] = rows[2]["ms"] / r["ms"]
    return rows


def run_gemv(K: int, N: int, rng: np.random.Generator) -> list[dict]:
    torch = torch_threads(2)
    x = rng.integers(0, 128, (1, K)).astype(np.uint8)
    W = rng.integers(-127, 128, (N, K)).astype(np.int8)
    Wf, xf = W.astype(np.float32), x[0].astype(np.float32)
    packed = pack_weights(np.ascontiguousarray(W.T), 0)
    m0, shift = quantize_multiplier(1e-3)
    lin, xt = _torch_qlinear(torch, x, W, 0.02, 64, 0.004, 0.02 * 0.004 / 1e-3, 128)
    rows = []

    def add(name, mib, fn, *args):
        t = timeit_stats(fn, *args)
        rows.append({"impl": name, "weights MiB": mib, "ms": t["median"] * 1e3, "min ms": t["min"] * 1e3,
                     "weight GB/s": mib * 2 ** 20 / t["median"] / 1e9})

    add("numpy sgemv (fp32)", Wf.nbytes / 2 ** 20, np.dot, Wf, xf)
    add("torch.mv (fp32)", Wf.nbytes / 2 ** 20, torch.mv, torch.from_numpy(Wf), torch.from_numpy(xf))
    add("torch quantized Linear (fbgemm), batch 1", W.nbytes / 2 ** 20, lin, xt)
    add(f"lwnn qgemm_requant, batch 1 ({packed.path}, int8 packed: 1 B/weight)", packed.nbytes / 2 ** 20,
        qgemm_requant, x, packed, 64, 0, None, m0, shift, 128)
    for r in rows:
        r["x numpy sgemv"] = rows[0]["ms"] / r["ms"]
        r["x numpy sgemv (min)"] = rows[0]["min ms"] / r["min ms"]
    return rows


def main() -> str:
    layer = prefer_workqueue()
    rng = np.random.default_rng(0)
    vnni = _intrinsics.cpu_has("avx512_vnni")
    out = ["# int8 GEMM (Jacob 2018 integer-only, gemmlowp requantisation)\n",
           environment() + f", numba threading layer: {layer}",
           (f"lwnn int8 path: {'vnni (vpdpbusd)' if vnni else 'int16 (vpmaddwd, AVX2)'}; AVX512_VNNI: {vnni}. "
           "ms = median of 7 samples, min ms = fastest sample (shared machine: read both).\n")]
    cols = ["impl", "ms", "min ms", "GOP/s", "x numpy sgemm", "x numpy sgemm (min)", "x fbgemm"]
    for M, K, N in GEMM_SHAPES:
        out += [f"## GEMM M x K x N = {M} x {K} x {N}\n", table(run_gemm(M, K, N, rng), cols) + "\n"]
    for K, N in GEMV_SHAPES:
        out += [f"## GEMV batch 1, weights {N} x {K}\n",
                table(run_gemv(K, N, rng), ["impl", "weights MiB", "ms", "min ms", "weight GB/s", "x numpy sgemv",
                                            "x numpy sgemv (min)"]) + "\n"]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
