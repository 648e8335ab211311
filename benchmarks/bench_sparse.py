"""CSR SpMM and sparse conv against dense BLAS, scipy.sparse and torch (PERFORMANCE.md targets B1-B3).

Run (the dense baseline at its best, see PERFORMANCE.md 4.1):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_sparse

W (1024x1024, unstructured random mask, fp32) @ X (1024x256); every ratio is baseline time / our time,
measured in this process, each implementation warmed up and timed on its own (never interleaved).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from benchmarks.common import environment, table, timeit, torch_threads
from kernels._config import get_num_threads, set_num_threads
from kernels.sparse import csr_from_dense, sparse_conv2d, spmm

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def _random_sparse(rng, shape, sparsity, dtype=np.float32):
    W = rng.standard_normal(shape).astype(dtype)
    W[rng.random(shape) < sparsity] = 0
    return W


def spmm_rows(M=1024, K=1024, N=256, sparsities=SPARSITIES, rng=None) -> list[dict]:
    torch = torch_threads(2)
    from threadpoolctl import threadpool_limits
    rng = rng or np.random.default_rng(0)
    X = rng.standard_normal((K, N)).astype(np.float32)
    Xt = torch.from_numpy(X)
    rows = []
    threads = get_num_threads()
    for s in sparsities:
        W = _random_sparse(rng, (M, K), s)
        csr = csr_from_dense(W)
        A = sp.csr_matrix(W)
        Wt = torch.from_numpy(W).to_sparse_csr()
        nnz = csr[0].size
        t_dense = timeit(np.matmul, W, X)
        t_ours = timeit(spmm, csr, X)
        set_num_threads(1)
        t_ours1 = timeit(spmm, csr, X)
        set_num_threads(threads)
        with threadpool_limits(1):
            t_scipy1 = timeit(A.dot, X)  # scipy's CSR x dense is single-threaded anyway
            t_dense1 = timeit(np.matmul, W, X)
        t_torch = timeit(torch.sparse.mm, Wt, Xt)
        rows.append({"sparsity": s, "nnz": nnz, "ours ms": 1e3 * t_ours, "ours 1T ms": 1e3 * t_ours1,
                     "dense BLAS ms": 1e3 * t_dense, "BLAS 1T ms": 1e3 * t_dense1, "scipy 1T ms": 1e3 * t_scipy1, "torch CSR ms": 1e3 * t_torch,
                     "x BLAS": t_dense / t_ours, "x BLAS 1T/1T": t_dense1 / t_ours1, "x scipy": t_scipy1 / t_ours, "x scipy 1T/1T": t_scipy1 / t_ours1,
                     "x torch": t_torch / t_ours, "useful GF/s": 2 * nnz * N / t_ours / 1e9})
    return rows


def conv_rows(rng=None) -> list[dict]:
    """Sparse conv (im2col + spmm) vs torch-best float conv at the L2 / L4 shapes of PERFORMANCE.md 3.2."""
    torch = torch_threads(2)
    rng = rng or np.random.default_rng(1)
    rows = []
    for name, (N, C, H, Co, k, s, p) in {"L2": (1, 256, 14, 256, 3, 1, 1), "L4": (8, 128, 28, 256, 3, 2, 1)}.items():
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        xt = torch.from_numpy(x)
        xcl = xt.contiguous(memory_format=torch.channels_last)
        for sparsity in (0.9, 0.95):
            w = _random_sparse(rng, (Co, C, k, k), sparsity)
            csr = csr_from_dense(w.reshape(Co, -1))
            wt = torch.from_numpy(w)
            with torch.no_grad():
                t_nchw = timeit(torch.nn.functional.conv2d, xt, wt, None, s, p)
                wcl = wt.contiguous(memory_format=torch.channels_last)
                t_nhwc = timeit(torch.nn.functional.conv2d, xcl, wcl, None, s, p)
            t_ours = timeit(sparse_conv2d, x, csr, k, s, p)
            best = min(t_nchw, t_nhwc)
            rows.append({"layer": name, "sparsity": sparsity, "ours ms": 1e3 * t_ours,
                         "torch NCHW ms": 1e3 * t_nchw, "torch NHWC ms": 1e3 * t_nhwc,
                         "x torch-best": best / t_ours})
    return rows


def main() -> None:
    print("## CSR SpMM: W (1024x1024, fp32) @ X (1024x256), 2 threads unless marked 1T\n")
    print(environment(), "\n")
    print(table(spmm_rows(), ["sparsity", "nnz", "ours ms", "ours 1T ms", "dense BLAS ms", "BLAS 1T ms",
                              "scipy 1T ms", "torch CSR ms", "x BLAS", "x BLAS 1T/1T", "x scipy", "x scipy 1T/1T",
                              "x torch", "useful GF/s"]))
    print("\n## Sparse conv (im2col + spmm) vs torch float conv\n")
    print(table(conv_rows(), ["layer", "sparsity", "ours ms", "torch NCHW ms", "torch NHWC ms", "x torch-best"]))


if __name__ == "__main__":
    main()
