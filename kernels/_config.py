"""Numba flags live here and nowhere else (STYLE.md 8).

``njit`` is the serial inner-kernel decorator and ``pjit`` the parallel driver decorator; both cache compiled
code on disk so a second process does not recompile. fastmath stays off: kernels must match their references
to float tolerance and integer/bit kernels bit-for-bit, and reassociation would break the float checks'
reproducibility between 1 and N threads.

Threads: lwnn's parallelism is numba's (``set_num_threads``). BLAS calls made inside lwnn (NumPy matmul in
Linear, least squares in the methods) run on **one** BLAS thread: OpenBLAS's idle workers spin for a long
while after every call and take the cores numba's parallel kernels are about to use. Measured on 2 cores: a
LeNet-5 training step 2-3x slower and batch-64 inference 1.8x slower with BLAS at its default 2 threads.
The limit is set once, when this module is imported; ``LWNN_BLAS_THREADS=n`` chooses another count and
``LWNN_BLAS_THREADS=default`` leaves BLAS alone.
"""
from __future__ import annotations

import os

import numba

NUMBA_FLAGS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


def njit(*args, **kwargs):
    """Serial kernel: ``@njit`` or ``@njit(inline="always")``."""
    opts = {**NUMBA_FLAGS, **kwargs}
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


def pjit(*args, **kwargs):
    """Parallel driver: loops written as ``numba.prange`` over disjoint outputs."""
    opts = {**NUMBA_FLAGS, "parallel": True, **kwargs}
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


def set_num_threads(n: int) -> None:
    numba.set_num_threads(n)


def get_num_threads() -> int:
    return numba.get_num_threads()


def limit_blas_threads(n: int | None = None):
    """Set every loaded BLAS library to ``n`` threads (default: ``LWNN_BLAS_THREADS`` or 1); returns the
    threadpoolctl limiter (``.restore_original_limits()`` undoes it), or None when left alone."""
    import scipy.linalg  # noqa: F401 - SciPy ships its own OpenBLAS; load it so the limit covers it too
    from threadpoolctl import threadpool_limits

    env = os.environ.get("LWNN_BLAS_THREADS", "1")
    if n is None:
        if env.strip().lower() == "default":
            return None
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"LWNN_BLAS_THREADS must be a positive integer or 'default', not {env!r}") from None
    if n < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    return threadpool_limits(limits=n, user_api="blas")


_BLAS_LIMIT = limit_blas_threads()
