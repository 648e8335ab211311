"""nn.sparse: SparseLinear / SparseConv2d against the dense masked layers; buffers, checkpoints, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.conv import conv2d_ref
from nn.checkpoint import read_checkpoint, save_checkpoint
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear, linear_forward
from nn.sparse import SparseConv2d, SparseLinear
from tests.helpers import assert_close

DTYPES = [np.float64, np.float32]


def _mask(rng, shape, sparsity):
    return (rng.random(shape) >= sparsity).astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10, deadline=None)
@given(I=st.integers(1, 80), O=st.integers(1, 20), lead=st.sampled_from([(1,), (5,), (2, 3)]),
       sparsity=st.sampled_from([0.0, 0.8, 1.0]), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_sparse_linear_equals_masked_dense(dtype, I, O, lead, sparsity, bias, seed):
    rng = np.random.default_rng(seed)
    lin = Linear(I, O, bias=bias, rng=rng, dtype=dtype)
    mask = _mask(rng, (O, I), sparsity)
    x = rng.standard_normal((*lead, I)).astype(dtype)
    sp = SparseLinear.from_dense(lin, mask)
    y = sp(x)
    assert y.dtype == dtype and y.shape == (*lead, O)
    assert_close("SparseLinear", y, linear_forward(x, lin.weight * mask.astype(dtype), lin.bias), dtype, scale=I)
    assert sp.nnz() == int(np.count_nonzero(lin.weight * mask))


def test_sparse_linear_uses_layer_mask_and_buffers(rng, tmp_path):
    lin = Linear(30, 7, rng=rng, dtype=np.float32)
    lin.set_mask("weight", _mask(rng, (7, 30), 0.7))
    sp = SparseLinear.from_dense(lin)
    names = [n for n, _ in sp.named_buffers()]
    assert names == ["weight_data", "weight_indices", "weight_indptr", "bias"]
    assert sp.weight_indices.dtype == np.int32 and sp.weight_indptr.dtype == np.int32
    assert sp.weight_data.dtype == np.float32 and sp.nnz() == int(np.count_nonzero(lin.weight))
    assert sp.storage_bytes() == sum(b.nbytes for _, b in sp.named_buffers()) == sp.nnz() * 8 + 8 * 4 + 7 * 4
    assert list(sp.named_parameters()) == []
    model = Sequential(sp)
    path = save_checkpoint(tmp_path / "sparse.h5", model)
    state = read_checkpoint(path).state
    assert sorted(state) == sorted(model.state_dict())
    for name, arr in model.state_dict().items():
        assert state[name].dtype == arr.dtype
        np.testing.assert_array_equal(state[name], arr)
    x = rng.standard_normal((4, 30)).astype(np.float32)
    other = Sequential(SparseLinear.from_dense(lin))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(x), model(x))
    np.testing.assert_array_equal(sp.to(np.float64)(x.astype(np.float64)), sp(x.astype(np.float64)))
    # The CSR structure is checked once per set of buffers: replaced buffers that do not fit are refused.
    bad = dict(state)
    bad["0.weight_indices"] = state["0.weight_indices"].copy()
    bad["0.weight_indices"][0] = 30
    other.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"SparseLinear weight.indices must lie in \[0, 30\)"):
        other(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), ((2, 3), 2, (0, 1), (1, 2)), (2, 1, "same", 1), (1, 1, 0, 1)])
def test_sparse_conv2d_equals_masked_dense(dtype, k, s, p, d, rng):
    conv = Conv2d(5, 6, k, s, p, d, rng=rng, dtype=dtype)
    mask = _mask(rng, conv.weight.shape, 0.7)
    conv.set_mask("weight", mask)
    sp = SparseConv2d.from_dense(conv)
    x = rng.standard_normal((2, 5, 7, 8)).astype(dtype)
    want = conv.eval()(x)  # the dense layer, already masked by set_mask
    assert_close("SparseConv2d", sp(x), want, dtype, scale=45)
    assert_close("SparseConv2d unbatched", sp(x[0]), want[0], dtype, scale=45)
    if p != "same":
        ref = conv2d_ref(x, conv.weight * mask.astype(dtype), conv.bias, s, p, d)
        assert_close("SparseConv2d vs conv2d_ref", sp(x), ref, dtype, scale=45)
    assert sp.storage_bytes() == sum(b.nbytes for _, b in sp.named_buffers())


def test_sparse_layers_bad_input(rng):
    sp = SparseLinear.from_dense(Linear(4, 3, rng=rng, dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        sp(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        sp(np.ones((2, 5), np.float32))
    with pytest.raises(RuntimeError, match="inference-only"):
        sp.backward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="groups=1"):
        SparseConv2d.from_dense(Conv2d(4, 4, 3, groups=2, rng=rng))
    sc = SparseConv2d.from_dense(Conv2d(4, 2, 3, rng=rng))
    with pytest.raises(ValueError, match="input channels"):
        sc(np.ones((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="4-d"):
        sc(np.ones((5, 5), np.float32))
