"""Shared timing and environment reporting for every benchmark (read PERFORMANCE.md section 4 first).

* ``timeit`` warms a function up for at least ``warmup`` seconds, then takes the median of ``repeat`` timed
  calls; never interleave two implementations inside one timing loop.
* ``blas_info`` names the BLAS library and its kernel (threadpoolctl), which must accompany every ratio
  against numpy: OPENBLAS_CORETYPE=Haswell halves numpy's sgemm on this machine.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def timeit(fn, *args, warmup: float = 0.15, repeat: int = 7, min_time: float = 0.02,
           clock=time.perf_counter) -> float:
    """Median seconds per call of ``fn(*args)`` after a warm-up; each sample loops until ``min_time``.
    ``clock=time.process_time`` measures CPU seconds (for 1-thread runs on an oversubscribed machine)."""
    return timeit_stats(fn, *args, warmup=warmup, repeat=repeat, min_time=min_time, clock=clock)["median"]


def timeit_stats(fn, *args, warmup: float = 0.15, repeat: int = 7, min_time: float = 0.02,
                 clock=time.perf_counter) -> dict:
    """``{'median': s, 'min': s}`` per call, as ``timeit``; the min shows the kernel on a noisy shared machine."""
    t0 = time.perf_counter()
    fn(*args)
    while time.perf_counter() - t0 < warmup:
        fn(*args)
    samples = []
    for _ in range(repeat):
        n = 0
        t = clock()
        while True:
            fn(*args)
            n += 1
            el = clock() - t
            if el >= min_time:
                break
        samples.append(el / n)
    return {"median": float(np.median(samples)), "min": float(np.min(samples))}


def blas_info() -> str:
    """'openblas SkylakeX 2 threads' style description of numpy's BLAS."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            parts.append(f"{info.get('internal_api')} {info.get('architecture', '?')} "
                         f"{info.get('num_threads')} threads")
    return "; ".join(parts) or "no BLAS found"


def environment() -> str:
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "NUMBA_NUM_THREADS")}
    import numba

    from kernels._intrinsics import cpu_model, isa_summary
    return (f"CPU: {cpu_model()}; kernels compiled for {isa_summary()}\n"
            f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
            f"({numba.config.NUMBA_DEFAULT_NUM_THREADS} threads), BLAS: {blas_info()}, env {env}")


def torch_threads(n: int = 2):
    import torch
    torch.set_num_threads(n)
    return torch


def table(rows: list[dict], cols: list[str]) -> str:
    """Markdown table of ``rows`` (dicts) in column order ``cols``; floats to 3 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def prefer_workqueue() -> str:
    """Use numba's ``workqueue`` threading layer unless the user chose one or numba threads already run.

    PERFORMANCE.md pitfall 3: on this shared 2-vCPU machine the default OpenMP layer's spinning workers made a
    2 ms numba GEMV take 55 ms (and its median 72 ms); workqueue removed the stalls. Returns the layer name.
    """
    import numba
    from numba.np.ufunc import parallel

    if not parallel._is_initialized and not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = "workqueue"
    return str(numba.config.THREADING_LAYER)
