"""Numba flags live here and nowhere else (STYLE.md 8).

``njit`` is the serial inner-kernel decorator and ``pjit`` the parallel driver decorator; both cache compiled
code on disk so a second process does not recompile. fastmath stays off: kernels must match their references
to float tolerance and integer/bit kernels bit-for-bit, and reassociation would break the float checks'
reproducibility between 1 and N threads.
"""
from __future__ import annotations

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
