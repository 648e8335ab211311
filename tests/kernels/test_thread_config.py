"""lwnn runs BLAS on one thread (numba owns the parallelism; see kernels/_config.py); LWNN_BLAS_THREADS overrides."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import kernels._config, threadpoolctl; "
         "print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")


def _blas_threads(env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LWNN_BLAS_THREADS"}
    if env_value is not None:
        env["LWNN_BLAS_THREADS"] = env_value
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-c", PROBE], check=False, env=env, cwd=root, capture_output=True,
                          text=True)


def test_blas_single_threaded_by_default_numpy_and_scipy():
    out = _blas_threads(None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]", out.stdout  # NumPy's and SciPy's OpenBLAS both limited


def test_blas_threads_override_and_bad_value():
    out = _blas_threads("2")
    assert out.returncode == 0 and out.stdout.strip() == "[2]", out.stdout + out.stderr
    out = _blas_threads("many")
    assert out.returncode != 0 and "LWNN_BLAS_THREADS must be a positive integer or 'default'" in out.stderr


def test_limit_blas_threads_rejects_zero():
    from kernels._config import limit_blas_threads
    with pytest.raises(ValueError, match="BLAS threads must be >= 1"):
        limit_blas_threads(0)


def test_cpu_model_and_isa_summary_name_the_machine():
    """What `make bench` and the comparison print beside every figure: the CPU and the ISA the kernels use."""
    from kernels._intrinsics import _target_features, cpu_model, isa_summary
    assert "logical CPUs" in cpu_model()
    isa = isa_summary()
    assert ("AVX-512" in isa) == ("avx512f" in _target_features()) and "numba target" in isa
