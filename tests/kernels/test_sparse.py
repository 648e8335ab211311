"""kernels.sparse: spmm / csr_from_dense / sparse_conv2d against their NumPy twins, threads, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels._config import get_num_threads, set_num_threads
from kernels.conv import conv2d_ref
from kernels.sparse import (
    SERIAL_WORK,
    csr_from_dense,
    csr_from_dense_ref,
    sparse_conv2d,
    sparse_conv2d_ref,
    spmm,
    spmm_ref,
)
from tests.helpers import assert_close

DTYPES = [np.float64, np.float32]


def _sparse(rng, shape, sparsity, dtype):
    W = rng.standard_normal(shape).astype(dtype)
    W[rng.random(shape) < sparsity] = 0
    return W


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(M=st.integers(0, 40), K=st.integers(0, 70), N=st.integers(0, 150),
       sparsity=st.sampled_from([0.0, 0.5, 0.9, 1.0]), seed=st.integers(0, 2**31))
def test_spmm_matches_ref_and_dense(dtype, M, K, N, sparsity, seed):
    rng = np.random.default_rng(seed)
    W = _sparse(rng, (M, K), sparsity, dtype)
    X = rng.standard_normal((K, N)).astype(dtype)
    csr = csr_from_dense(W)
    got = spmm(csr, X)
    assert got.dtype == dtype and got.shape == (M, N)
    assert_close("spmm vs ref", got, spmm_ref(csr, X), dtype, scale=max(K, 1))
    assert_close("spmm vs dense", got, (W.astype(np.float64) @ X).astype(dtype), dtype, scale=max(K, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_spmm_every_chunk_width_and_tail(dtype, rng):
    """Widths around every compiled chunk (CH, CH/2, CH/4, CH/8 and the per-column tail) of both ISAs' tiles,
    serially and in parallel, trusted or checked: same product as the reference."""
    W = _sparse(rng, (37, 53), 0.8, dtype)
    csr = csr_from_dense(W)
    for N in (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 191, 255, 256, 257, 300):
        X = rng.standard_normal((53, N)).astype(dtype)
        want = spmm_ref(csr, X)
        assert_close(f"spmm N={N}", spmm(csr, X), want, dtype, scale=53)
        np.testing.assert_array_equal(spmm(csr, X, trusted=True), spmm(csr, X))
    big = _sparse(rng, (300, 400), 0.5, dtype)  # nnz * N above SERIAL_WORK: the parallel driver
    X = rng.standard_normal((400, 4 * SERIAL_WORK // (300 * 400) + 1)).astype(dtype)
    assert_close("spmm parallel", spmm(csr_from_dense(big), X), spmm_ref(csr_from_dense(big), X), dtype, scale=400)


@pytest.mark.parametrize("dtype", DTYPES)
def test_spmm_scipy_input_unsorted_duplicates_empty_rows(dtype, rng):
    # row 0 empty, row 1 unsorted with a duplicate column, row 2 full; int64 indices accepted as they are
    data = np.array([1.5, -2.0, 0.25, 3.0, 1.0, 2.0, 3.0], dtype)
    indices = np.array([3, 0, 3, 1, 0, 1, 2, 3][:7], np.int64)
    indptr = np.array([0, 0, 4, 7], np.int64)
    W = (data, indices, indptr, (3, 4))
    X = rng.standard_normal((4, 67)).astype(dtype)
    dense = np.zeros((3, 4))
    np.add.at(dense, (np.repeat(np.arange(3), np.diff(indptr)), indices), data)
    assert_close("unsorted/duplicates", spmm(W, X), (dense @ X).astype(dtype), dtype, scale=4)
    assert np.all(spmm(W, X)[0] == 0)
    A = sp.csr_matrix(_sparse(rng, (20, 30), 0.8, dtype))
    X = rng.standard_normal((30, 5)).astype(dtype)
    assert_close("scipy input", spmm(A, X), (A @ X).astype(dtype), dtype, scale=30)


def test_csr_from_dense_and_mask(rng):
    W = _sparse(rng, (9, 13), 0.5, np.float32)
    mask = rng.random(W.shape) < 0.5
    for m in (None, mask):
        data, indices, indptr, shape = csr_from_dense(W, m)
        assert indices.dtype == np.int32 and indptr.dtype == np.int32 and data.dtype == np.float32
        ref = sp.csr_matrix(W if m is None else W * m)
        np.testing.assert_array_equal(indptr, ref.indptr)
        np.testing.assert_array_equal(indices, ref.indices)
        np.testing.assert_array_equal(data, ref.data)
        assert shape == W.shape
        for a, b in zip(csr_from_dense_ref(W, m), (data, indices, indptr, shape)):
            np.testing.assert_array_equal(a, b)


def test_one_thread_equals_all_threads(rng):
    W = _sparse(rng, (257, 300), 0.9, np.float32)
    X = rng.standard_normal((300, 200)).astype(np.float32)
    csr = csr_from_dense(W)
    assert csr[0].size * 200 >= SERIAL_WORK  # the parallel driver; the hypothesis cases run serially
    n = get_num_threads()
    try:
        many = spmm(csr, X)
        set_num_threads(1)
        one = spmm(csr, X)
    finally:
        set_num_threads(n)
    np.testing.assert_array_equal(one, many)
    assert_close("parallel spmm vs ref", many, spmm_ref(csr, X), np.float32, scale=300)


def test_spmm_bad_input(rng):
    W = csr_from_dense(_sparse(rng, (4, 5), 0.5, np.float32))
    X = rng.standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="X is float64"):
        spmm(W, X.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        spmm(W, np.asfortranarray(rng.standard_normal((5, 3)).astype(np.float32)))
    with pytest.raises(ValueError, match=r"\(K=5, N\)"):
        spmm(W, X[:4])
    with pytest.raises(TypeError, match="indices must have dtype"):
        spmm((W[0], W[1].astype(np.float32), W[2], W[3]), X)
    with pytest.raises(ValueError, match="indices must lie"):
        spmm((W[0], W[1] + 5, W[2], W[3]), X)
    with pytest.raises(ValueError, match="indptr"):
        spmm((W[0], W[1], W[2][::-1].copy(), W[3]), X)
    with pytest.raises(TypeError, match="must be CSR"):
        spmm(sp.csc_matrix(np.eye(5, dtype=np.float32)), X)
    with pytest.raises(TypeError, match="float32/float64"):
        csr_from_dense(np.ones((2, 2), np.int64))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 2), Ci=st.integers(1, 4), Co=st.integers(1, 5), H=st.integers(3, 8), W=st.integers(3, 8),
       k=st.sampled_from([(1, 1), (3, 3), (2, 3)]), s=st.integers(1, 2), p=st.integers(0, 2), d=st.integers(1, 2),
       sparsity=st.sampled_from([0.0, 0.7, 1.0]), seed=st.integers(0, 2**31))
def test_sparse_conv2d_matches_refs(dtype, N, Ci, Co, H, W, k, s, p, d, sparsity, seed):
    rng = np.random.default_rng(seed)
    if H + 2 * p < d * (k[0] - 1) + 1 or W + 2 * p < d * (k[1] - 1) + 1:
        return
    x = rng.standard_normal((N, Ci, H, W)).astype(dtype)
    w = _sparse(rng, (Co, Ci, *k), sparsity, dtype)
    csr = csr_from_dense(w.reshape(Co, -1))
    got = sparse_conv2d(x, csr, k, s, p, d)
    assert got.dtype == dtype
    K = Ci * k[0] * k[1]
    assert_close("sparse conv vs ref", got, sparse_conv2d_ref(x, csr, k, s, p, d), dtype, scale=K)
    assert_close("sparse conv vs dense conv", got, conv2d_ref(x, w, None, s, p, d), dtype, scale=K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_conv2d_layer_sizes_and_threads(dtype, rng):
    """LeNet-sized layers (Ho*Wo of 576, 100 and 64 columns: every chunk path; 50 output channels: two row
    blocks), batches of 1 and 5: the reference's result, and the same bits on 1 thread as on all."""
    for N, Ci, Co, H, k, s, p in ((5, 1, 20, 28, 5, 1, 0), (1, 20, 50, 12, 5, 1, 0), (5, 6, 16, 14, 3, 1, 1),
                                  (3, 4, 40, 11, 3, 2, 2)):
        x = rng.standard_normal((N, Ci, H, H)).astype(dtype)
        w = _sparse(rng, (Co, Ci, k, k), 0.8, dtype)
        csr = csr_from_dense(w.reshape(Co, -1))
        got = sparse_conv2d(x, csr, k, s, p)
        assert_close(f"sparse conv {N, Ci, Co, H, k}", got, conv2d_ref(x, w, None, s, p), dtype, scale=Ci * k * k)
        before = get_num_threads()
        try:
            set_num_threads(1)
            np.testing.assert_array_equal(sparse_conv2d(x, csr, k, s, p), got)
        finally:
            set_num_threads(before)


def test_sparse_conv2d_bad_input(rng):
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    csr = csr_from_dense(_sparse(rng, (2, 27), 0.5, np.float32))
    with pytest.raises(ValueError, match="groups=1"):
        sparse_conv2d(x, csr, 2)
    with pytest.raises(TypeError, match="x is float64"):
        sparse_conv2d(x.astype(np.float64), csr, 3)
    with pytest.raises(ValueError, match="4-d"):
        sparse_conv2d(x[0], csr, 3)
