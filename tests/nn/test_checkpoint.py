"""HDF5 checkpoints: exact round trips of every dtype, atomic writes, and a precise error for each bad file."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from nn.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, restore_rng, save_checkpoint
from nn.containers import Sequential
from nn.linear import Linear
from nn.module import Module


class Packed(Module):
    """A layer holding the kinds of arrays compressed layers store: packed bits, int8 codes, CSR indices."""

    def __init__(self, rng, n=5):
        super().__init__()
        self.register_parameter("weight", rng.standard_normal((n, 3)))
        self.register_buffer("bits", rng.integers(0, 2**64 - 1, size=(n, 2), dtype=np.uint64, endpoint=True))
        self.register_buffer("codes", rng.integers(-128, 127, size=(n, 3), dtype=np.int8, endpoint=True))
        self.register_buffer("indptr", np.arange(n + 1, dtype=np.int32))
        self.register_buffer("count", np.array(7, dtype=np.int64))


def make_model(rng, hidden=4):
    m = Sequential(Linear(3, hidden, rng=rng, dtype=np.float64), Linear(hidden, 2, rng=rng, dtype=np.float64),
                   Packed(rng))
    m.arch = {"name": "toy", "kwargs": {"hidden": hidden}}
    return m


class FakeOptimizer:
    """State shaped like an optimizer's: nested dicts keyed by int, arrays, scalars, None, lists."""

    def __init__(self, rng=None):
        self.state = {} if rng is None else {
            "lr": 0.01, "momentum": 0.9, "nesterov": False, "step": 3, "name": "sgd", "extra": None,
            "betas": [0.9, 0.999],
            "buffers": {0: rng.standard_normal((4, 3)), 1: rng.standard_normal(4).astype(np.float32)},
            "per_param": [rng.standard_normal(2), np.float64(2.5)],
        }

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        if "lr" not in state:
            raise KeyError("lr")
        self.state = state


def assert_state_equal(a, b):
    assert type(a) is type(b) or (isinstance(a, float) and isinstance(b, float)), (type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_state_equal(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_state_equal(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    else:
        assert a == b


def test_round_trip_exact(tmp_path, rng):
    model = make_model(rng)
    model[0].set_mask("weight", rng.random((4, 3)) > 0.5)
    opt = FakeOptimizer(rng)
    sched = FakeOptimizer()
    sched.state = {"lr": 0.1, "last_epoch": 4}
    gen = np.random.default_rng(99)
    gen.random(3)
    path = save_checkpoint(tmp_path / "c.h5", model, opt, sched, epoch=4, rng=gen, metadata={"note": "x"})

    other = make_model(np.random.default_rng(1))
    opt2, sched2 = FakeOptimizer(), FakeOptimizer()
    ck = load_checkpoint(path, other, opt2, sched2)
    want = model.state_dict()
    got = other.state_dict()
    assert want.keys() == got.keys() and "0.weight_mask" in got
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    assert other[2].bits.dtype == np.uint64 and other[2].codes.dtype == np.int8 and other[2].count.shape == ()
    opt_state = dict(opt.state, per_param=[opt.state["per_param"][0], 2.5])  # numpy scalars come back as floats
    assert_state_equal(opt2.state, opt_state)
    assert sched2.state == {"lr": 0.1, "last_epoch": 4}
    assert ck.epoch == 4 and ck.arch == {"name": "toy", "kwargs": {"hidden": 4}}
    assert ck.metadata["note"] == "x" and "lwnn_version" in ck.metadata and "time" in ck.metadata
    assert ck.metadata["command"]
    assert ck.rng().random() == gen.random()
    assert restore_rng(ck.rng_state, np.random.default_rng(5)).bit_generator.state == ck.rng_state
    assert [p for p in os.listdir(tmp_path)] == ["c.h5"]  # no temporary file left behind


def test_atomic_write_keeps_old_file(tmp_path, rng):
    model = make_model(rng)
    path = save_checkpoint(tmp_path / "c.h5", model, epoch=1)
    before = path.read_bytes()

    class Broken(FakeOptimizer):
        def state_dict(self):
            return {"fn": object()}  # not storable: the save fails half-way

    with pytest.raises(TypeError, match="cannot store a object"):
        save_checkpoint(path, model, Broken(), epoch=2)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.h5"]
    assert read_checkpoint(path).epoch == 1


def test_missing_and_corrupt_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="checkpoint .*nothing.h5 does not exist"):
        load_checkpoint(tmp_path / "nothing.h5", make_model(rng))
    (tmp_path / "random.h5").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="random.h5 is not an HDF5 file"):
        load_checkpoint(tmp_path / "random.h5", make_model(rng))
    path = save_checkpoint(tmp_path / "good.h5", make_model(rng), FakeOptimizer(rng), epoch=1)
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 100, 600):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.h5: corrupt or truncated checkpoint"):
            load_checkpoint(bad, make_model(rng))


def test_not_a_checkpoint_and_missing_parts(tmp_path, rng):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="plain.h5 is an HDF5 file but not an lwnn checkpoint"):
        read_checkpoint(tmp_path / "plain.h5")
    path = save_checkpoint(tmp_path / "c.h5", make_model(rng), epoch=1)
    with h5py.File(path, "a") as f:
        del f["model/1.bias"]
    with pytest.raises(CheckpointError, match=r"c.h5: 'model' group does not match its layout: missing \['1.bias'\]"):
        read_checkpoint(path)
    with h5py.File(path, "a") as f:
        del f["model"]
    with pytest.raises(CheckpointError, match="c.h5: checkpoint lacks the 'model' group"):
        read_checkpoint(path)
    path = save_checkpoint(tmp_path / "d.h5", make_model(rng), epoch=1)
    with h5py.File(path, "a") as f:
        del f.attrs["layout"]
    with pytest.raises(CheckpointError, match="d.h5: checkpoint lacks the 'layout' attribute"):
        read_checkpoint(path)
    path = save_checkpoint(tmp_path / "e.h5", make_model(rng), epoch=1)
    with pytest.raises(CheckpointError, match="e.h5: checkpoint holds no optimizer state, but a optimizer was given"):
        load_checkpoint(path, make_model(rng), FakeOptimizer())
    path = save_checkpoint(tmp_path / "f.h5", make_model(rng), FakeOptimizer(), epoch=1)
    with pytest.raises(CheckpointError, match="f.h5: optimizer state does not fit FakeOptimizer"):
        load_checkpoint(path, make_model(rng), FakeOptimizer())


def test_architecture_mismatch(tmp_path, rng):
    path = save_checkpoint(tmp_path / "wide.h5", make_model(rng, hidden=6))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, make_model(rng, hidden=4))
    msg = str(e.value)
    assert "wide.h5: architecture mismatch" in msg and "toy {'hidden': 6}" in msg and "toy {'hidden': 4}" in msg
    assert "0.weight checkpoint (6, 3) vs model (4, 3)" in msg and "1.weight checkpoint (2, 6) vs model (2, 4)" in msg
    deeper = Sequential(Linear(3, 4, rng=rng, dtype=np.float64), Linear(4, 2, rng=rng, dtype=np.float64),
                        Packed(rng), Linear(2, 2, rng=rng, dtype=np.float64))
    path = save_checkpoint(tmp_path / "deep.h5", deeper)
    with pytest.raises(CheckpointError, match=r"not in model: 3.weight \(2, 2\), 3.bias \(2,\)"):
        load_checkpoint(path, make_model(rng))
    with pytest.raises(CheckpointError, match=r"missing from checkpoint: 3.weight \(2, 2\), 3.bias \(2,\)"):
        load_checkpoint(tmp_path / "wide.h5", Sequential(*[deeper[i] for i in range(4)]))
    # A buffer of the wrong shape is caught by the module's own check and still names the file.
    m = make_model(rng)
    m[2].register_buffer("indptr", np.arange(3, dtype=np.int32))
    path = save_checkpoint(tmp_path / "buf.h5", m)
    with pytest.raises(CheckpointError, match=r"buf.h5: .*2.indptr: checkpoint has shape \(3,\), model expects \(6,\)"):
        load_checkpoint(path, make_model(rng))


def test_rebuild_needs_arch(tmp_path, rng):
    m = make_model(rng)
    del m.arch
    path = save_checkpoint(tmp_path / "noarch.h5", m)
    with pytest.raises(CheckpointError, match="noarch.h5: no architecture recorded"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_real_optimizer_round_trip_continues_identically(tmp_path, rng, kind):
    from nn.losses import CrossEntropyLoss
    from nn.optim import SGD, Adam, AdamW, CosineAnnealingLR

    def setup(seed):
        m = Sequential(Linear(3, 4, rng=np.random.default_rng(seed), dtype=np.float64),
                       Linear(4, 2, rng=np.random.default_rng(seed + 1), dtype=np.float64))
        o = {"sgd": lambda: SGD(m, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
             "adam": lambda: Adam(m, lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3),
             "adamw": lambda: AdamW(m, lr=0.01, weight_decay=1e-2)}[kind]()
        return m, o, CosineAnnealingLR(o, T_max=5)

    x, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    ce = CrossEntropyLoss()

    def step(m, o, s):
        o.zero_grad()
        ce.forward(m(x), y)
        m.backward(ce.backward())
        o.step()
        s.step()

    a = setup(0)
    for _ in range(3):
        step(*a)
    save_checkpoint(tmp_path / "o.h5", a[0], a[1], a[2], epoch=3)
    b = setup(10)
    load_checkpoint(tmp_path / "o.h5", b[0], b[1], b[2])
    assert b[1].lr == a[1].lr and b[2].last_epoch == 3
    for _ in range(2):
        step(*a)
        step(*b)
    for (name, p), (_, q) in zip(a[0].named_parameters(), b[0].named_parameters()):
        assert np.array_equal(p, q), name
