"""Suite-wide fixtures. Nothing skips silently: missing PyTorch or missing data fail loudly."""
from __future__ import annotations

import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test on real data (still runs in CI)")


def _cost_rank(item) -> int:
    """0: marked slow; 1: a real-data method test or a paper script; 2: everything else (unit tests)."""
    if item.get_closest_marker("slow"):
        return 0
    path = str(item.path)
    return 1 if "/tests/methods/" in path or "test_paper_scripts" in path or "test_lenet5" in path else 2


def pytest_collection_modifyitems(config, items):
    """Longest jobs first: xdist hands tests to whichever of the two workers is free, in this order, so the
    minute-long real-data tests spread over both workers at the start and the many short unit tests fill the
    gaps, instead of one slow test starting last on a worker while the other idles. Whole files move together
    (a file ranks as its slowest test), so a module-scoped fixture such as a trained baseline is built once per
    worker as before; the sort is stable, so the order within a file, and each test's seeds, stay as collected."""
    rank: dict[str, int] = {}
    for item in items:
        rank[str(item.path)] = min(rank.get(str(item.path), 2), _cost_rank(item))
    items.sort(key=lambda item: rank[str(item.path)])


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
