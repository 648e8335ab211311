"""Numba kernels as pure functions over arrays. Nothing here imports nn/ or methods/.

Each public kernel has a plain NumPy ``<name>_ref`` twin written to be obviously right.
"""
from kernels.conv import conv2d, conv2d_backward, conv2d_ref, conv2d_backward_ref  # noqa: F401
