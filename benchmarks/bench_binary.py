"""XNOR-popcount GEMM and binary conv against float BLAS / torch (PERFORMANCE.md targets C1-C4).

Run (the float baseline at its best, see PERFORMANCE.md 4.1):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_binary

GEMM: ``xnor_gemm(pack_signs(A), W_bits, K)`` -- the activations' binarize+pack is included, the weights are
packed once -- against numpy sgemm and torch.matmul of the same (M, K) x (K, N) float32 shape. Conv: the whole
``binary_conv2d`` (binarize, pack, word im2col, XNOR GEMM, alpha scaling) against torch-best float conv
(min of NCHW and channels_last). Ratios are baseline time / our time, measured in this process.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.common import environment, table, timeit, torch_threads
from kernels._config import get_num_threads, set_num_threads
from kernels._intrinsics import _target_features
from kernels.binary import binary_conv2d, pack_conv_weight, pack_signs, xnor_gemm

GEMM_SHAPES = ((1024, 1024, 1024), (4096, 1024, 1024), (1024, 1024, 4096))  # (M, N, K)
CONV_LAYERS = {"L1": (32, 64, 32, 64, 3, 1, 1), "L2": (1, 256, 14, 256, 3, 1, 1),
               "L4": (8, 128, 28, 256, 3, 2, 1)}  # N, Ci, H(=W), Co, k, stride, padding


def _xnor_with_pack(A, w_bits, K):
    return xnor_gemm(pack_signs(A), w_bits, K)


def gemm_rows(shapes=GEMM_SHAPES, rng=None) -> list[dict]:
    torch = torch_threads(2)
    rng = rng or np.random.default_rng(0)
    rows = []
    for M, N, K in shapes:
        A = rng.standard_normal((M, K)).astype(np.float32)
        W = rng.standard_normal((N, K)).astype(np.float32)
        WT = np.ascontiguousarray(W.T)
        w_bits = pack_signs(W)
        At, WTt = torch.from_numpy(A), torch.from_numpy(WT)
        t_blas = timeit(np.matmul, A, WT)
        t_torch = timeit(torch.matmul, At, WTt)
        t_pack = timeit(pack_signs, A)
        t_ours = timeit(_xnor_with_pack, A, w_bits, K)
        threads = get_num_threads()
        set_num_threads(1)
        t_ours1 = timeit(_xnor_with_pack, A, w_bits, K)
        set_num_threads(threads)
        with threadpool_limits(1):
            t_blas1 = timeit(np.matmul, A, WT)
        rows.append({"M x N x K": f"{M}x{N}x{K}", "xnor+pack ms": 1e3 * t_ours, "pack A ms": 1e3 * t_pack,
                     "sgemm BLAS ms": 1e3 * t_blas, "torch.matmul ms": 1e3 * t_torch,
                     "xnor+pack 1T ms": 1e3 * t_ours1, "sgemm 1T ms": 1e3 * t_blas1, "x BLAS 1T/1T": t_blas1 / t_ours1,
                     "x BLAS": t_blas / t_ours, "x torch": t_torch / t_ours,
                     "T binary-op/s": 2 * M * N * K / t_ours / 1e12})
    return rows


def conv_rows(layers=CONV_LAYERS, rng=None) -> list[dict]:
    torch = torch_threads(2)
    rng = rng or np.random.default_rng(1)
    rows = []
    for name, (N, C, H, Co, k, s, p) in layers.items():
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = rng.standard_normal((Co, C, k, k)).astype(np.float32)
        w_bits, alpha = pack_conv_weight(w), np.abs(w).mean(axis=(1, 2, 3)).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        xcl = xt.contiguous(memory_format=torch.channels_last)
        wcl = wt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            t_nchw = timeit(torch.nn.functional.conv2d, xt, wt, None, s, p)
            t_nhwc = timeit(torch.nn.functional.conv2d, xcl, wcl, None, s, p)
        t_ours = timeit(binary_conv2d, x, w_bits, k, s, p, 1, alpha)
        best = min(t_nchw, t_nhwc)
        threads = get_num_threads()
        set_num_threads(1)
        torch.set_num_threads(1)
        t_ours1 = timeit(binary_conv2d, x, w_bits, k, s, p, 1, alpha)
        with torch.no_grad():
            best1 = min(timeit(torch.nn.functional.conv2d, xt, wt, None, s, p),
                        timeit(torch.nn.functional.conv2d, xcl, wcl, None, s, p))
        set_num_threads(threads)
        torch.set_num_threads(2)
        rows.append({"layer": name, "shape N,C,H,Co,k,s,p": f"{N},{C},{H},{Co},{k},{s},{p}",
                     "binary conv ms": 1e3 * t_ours, "torch NCHW ms": 1e3 * t_nchw,
                     "torch NHWC ms": 1e3 * t_nhwc, "x torch-best": best / t_ours,
                     "binary 1T ms": 1e3 * t_ours1, "torch-best 1T ms": 1e3 * best1, "x torch-best 1T/1T": best1 / t_ours1})
    return rows


def main() -> None:
    feats = _target_features()
    popcnt = "AVX512_VPOPCNTDQ (vpopcntq)" if "avx512vpopcntdq" in feats else \
        "no AVX512_VPOPCNTDQ: LLVM's AVX2 pshufb popcount (PERFORMANCE.md C4 fallback)"
    print("## XNOR-popcount GEMM (activation binarize+pack included), 2 threads\n")
    print(environment())
    print(f"popcount path: {popcnt}\n")
    print(table(gemm_rows(), ["M x N x K", "xnor+pack ms", "pack A ms", "sgemm BLAS ms", "torch.matmul ms",
                              "x BLAS", "x torch", "T binary-op/s", "xnor+pack 1T ms", "sgemm 1T ms",
                              "x BLAS 1T/1T"]))
    print("\n## Binary conv (binarize, pack, im2col on words, XNOR GEMM, alpha) vs torch float conv\n")
    print(table(conv_rows(), ["layer", "shape N,C,H,Co,k,s,p", "binary conv ms", "torch NCHW ms", "torch NHWC ms",
                              "x torch-best", "binary 1T ms", "torch-best 1T ms", "x torch-best 1T/1T"]))


if __name__ == "__main__":
    main()
