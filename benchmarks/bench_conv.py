"""Conv2d forward and backward against torch (NCHW and channels_last) and numpy im2col+BLAS, PERFORMANCE.md 3.2.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_conv`` (the unset env
gives numpy its strong SkylakeX/AVX-512 sgemm where the CPU has it; the printed BLAS line says which kernel ran).
float32, 2 threads everywhere, median of warmed-up repeats. Ratios are time / torch-best, where torch-best is
the faster of NCHW and channels_last (for backward: dx + dW through autograd, also the faster layout).

On an oversubscribed machine wall-clock medians of 2-thread runs mostly measure the scheduler; then also run
``python -m benchmarks.bench_conv --threads 1 --cpu-time`` (1 thread for numba, torch and BLAS; CPU seconds of the
process via time.process_time, so time spent descheduled does not count).
"""
from __future__ import annotations

import argparse
import functools
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits

from benchmarks.common import environment, table, torch_threads
from benchmarks.common import timeit as _timeit
from kernels._config import get_num_threads, set_num_threads
from kernels.conv import conv2d, conv2d_backward

# name: (N, C, H, W, K, k, s, p, d, g), as in PERFORMANCE.md 3.2
LAYERS = {
    "L1": (32, 64, 32, 32, 64, 3, 1, 1, 1, 1),
    "L2": (1, 256, 14, 14, 256, 3, 1, 1, 1, 1),
    "L3 dw": (1, 128, 56, 56, 128, 3, 1, 1, 1, 128),
    "L3b dw": (16, 128, 56, 56, 128, 3, 1, 1, 1, 128),
    "L4": (8, 128, 28, 28, 256, 3, 2, 1, 1, 1),
    "L5": (8, 256, 28, 28, 512, 1, 1, 0, 1, 1),
    "L6": (8, 64, 56, 56, 64, 3, 1, 2, 2, 1),
    "L7": (8, 128, 28, 28, 128, 3, 1, 1, 1, 4),
    # The five small layers of issue 8 (LeNet / CIFAR sizes): goal median <= 1.5x torch-best, none > 2x,
    # backward <= 2x torch's, on every ISA.
    "S1 3x3": (16, 32, 32, 32, 32, 3, 1, 1, 1, 1),
    "S2 3x3 s2": (16, 64, 16, 16, 128, 3, 2, 1, 1, 1),
    "S3 1x1": (16, 128, 14, 14, 128, 1, 1, 0, 1, 1),
    "S4 dw": (16, 96, 28, 28, 96, 3, 1, 1, 1, 96),
    "S5 LeNet conv2": (32, 6, 14, 14, 16, 5, 1, 0, 1, 1),
}
DENSE = ("L1", "L2", "L4", "L5", "L6", "L7")
SMALL = ("S1 3x3", "S2 3x3 s2", "S3 1x1", "S4 dw", "S5 LeNet conv2")


def im2col_conv(x, w, b, s, p, d, g):
    """numpy baseline: materialised im2col per group, one BLAS matmul each. x (N, C, H, W) -> (N, K, Ho, Wo)."""
    N = x.shape[0]
    Co, Cig, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ek = d * (k - 1) + 1
    win = sliding_window_view(xp, (ek, ek), axis=(2, 3))[:, :, ::s, ::s, ::d, ::d]  # (N, C, Ho, Wo, k, k)
    Ho, Wo = win.shape[2:4]
    M = Co // g
    y = np.empty((N, Co, Ho * Wo), x.dtype)
    for gi in range(g):
        col = win[:, gi * Cig:(gi + 1) * Cig].transpose(0, 2, 3, 1, 4, 5).reshape(N, Ho * Wo, Cig * k * k)  # (N, L, K)
        y[:, gi * M:(gi + 1) * M] = (col @ w[gi * M:(gi + 1) * M].reshape(M, -1).T).transpose(0, 2, 1)  # (N, M, L)
    y += b[None, :, None]
    return y.reshape(N, Co, Ho, Wo)


def bench_layer(name, spec, torch, rng, timeit=_timeit):
    N, C, H, W, K, k, s, p, d, g = spec
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C // g, k, k)) / np.sqrt(C // g * k * k)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    y = conv2d(x, w, b, s, p, d, g)
    go = rng.standard_normal(y.shape).astype(np.float32)
    flop = 2.0 * y.size * (C // g) * k * k
    row = {"layer": name, "shape N,C,H,W,K,k,s,p,d,g": ",".join(map(str, spec)), "GFLOP": flop / 1e9}

    ours = timeit(conv2d, x, w, b, s, p, d, g)
    xt, wt, bt = (torch.tensor(a) for a in (x, w, b))
    F = torch.nn.functional
    with torch.no_grad():
        t_nchw = timeit(lambda: F.conv2d(xt, wt, bt, s, p, d, g))
        xc, wc = xt.to(memory_format=torch.channels_last), wt.to(memory_format=torch.channels_last)
        t_nhwc = timeit(lambda: F.conv2d(xc, wc, bt, s, p, d, g))
    t_np = timeit(im2col_conv, x, w, b, s, p, d, g)
    best = min(t_nchw, t_nhwc)
    row.update({"ours fwd ms": ours * 1e3, "torch NCHW ms": t_nchw * 1e3, "torch NHWC ms": t_nhwc * 1e3,
                "numpy im2col ms": t_np * 1e3, "ours GF/s": flop / ours / 1e9, "fwd / torch-best": ours / best,
                "fwd / numpy": ours / t_np})

    ours_b = timeit(conv2d_backward, go, x, w, s, p, d, g)
    gt = torch.tensor(go)
    t_bwd = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xr = xt.to(memory_format=fmt).requires_grad_(True)
        wr = wt.to(memory_format=fmt).requires_grad_(True)
        yt = F.conv2d(xr, wr, bt, s, p, d, g)
        t_bwd.append(timeit(torch.autograd.grad, yt, (xr, wr), gt.to(memory_format=fmt), True))  # retain_graph
    row.update({"ours bwd ms": ours_b * 1e3, "torch bwd ms": min(t_bwd) * 1e3, "bwd / torch": ours_b / min(t_bwd)})
    return row


def main(layers=None, threads: int = 2, cpu_time: bool = False) -> list[dict]:
    """Print and return the table; ``threads`` for numba, torch and BLAS; ``cpu_time`` times CPU seconds."""
    torch = torch_threads(threads)
    set_num_threads(threads)
    rng = np.random.default_rng(0)
    timeit = functools.partial(_timeit, clock=time.process_time) if cpu_time else _timeit
    print(environment(), f"| threads: numba {get_num_threads()}, torch {torch.get_num_threads()}, BLAS {threads}"
          f" | clock: {'process CPU time' if cpu_time else 'wall'}")
    with threadpool_limits(threads):
        rows = [bench_layer(name, LAYERS[name], torch, rng, timeit) for name in (layers or LAYERS)]
    dense = [r["fwd / torch-best"] for r in rows if r["layer"] in DENSE]
    if dense:
        print(f"forward geomean / torch-best over dense layers: {np.exp(np.mean(np.log(dense))):.2f}x")
    small = [r for r in rows if r["layer"] in SMALL]
    if small:
        f = [r["fwd / torch-best"] for r in small]
        b = [r["bwd / torch"] for r in small]
        print(f"small layers (issue 8 goal: median <= 1.5x, none > 2x, backward <= 2x): forward median "
              f"{np.median(f):.2f}x, worst {max(f):.2f}x ({small[int(np.argmax(f))]['layer']}); backward median "
              f"{np.median(b):.2f}x, worst {max(b):.2f}x")
    cols = ["layer", "shape N,C,H,W,K,k,s,p,d,g", "GFLOP", "ours fwd ms", "ours GF/s", "torch NCHW ms",
            "torch NHWC ms", "numpy im2col ms", "fwd / torch-best", "fwd / numpy", "ours bwd ms", "torch bwd ms",
            "bwd / torch"]
    print(table(rows, cols))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds (use with --threads 1)")
    ap.add_argument("--layers", nargs="*", choices=list(LAYERS), help="default: all")
    a = ap.parse_args()
    main(a.layers, a.threads, a.cpu_time)
