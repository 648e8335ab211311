"""Suite-wide fixtures. Nothing skips silently: missing PyTorch or missing data fail loudly."""
from __future__ import annotations

import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test on real data (still runs in CI)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def torch():
    try:
        import torch as _torch
    except ImportError as e:  # a cross-check that cannot run is a failure, not a skip
        raise RuntimeError("PyTorch is required for the cross-checks: pip install -r requirements-test.txt") from e
    _torch.set_num_threads(2)
    return _torch
