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


# ---------------------------------------------------------------------------------------------------- module tree specs
def _layer_cases():
    """(module, forward inputs or None) for the exported classes that a generic constructor call cannot make."""
    import nn
    r = np.random.default_rng(3)
    lin, conv = nn.Linear(6, 4, rng=r), nn.Conv2d(3, 4, 3, padding=1, rng=r)
    lin.weight[np.abs(lin.weight) < 0.2] = 0
    img, vec = r.standard_normal((2, 3, 5, 5)).astype(np.float32), r.standard_normal((2, 6)).astype(np.float32)
    q = r.integers(0, 256, size=(2, 6), dtype=np.uint8)
    qimg = r.integers(0, 256, size=(2, 3, 5, 5), dtype=np.uint8)
    seq = r.standard_normal((5, 2, 3)).astype(np.float32)
    bn1, bn2 = nn.BatchNorm1d(6), nn.BatchNorm2d(3)
    bn1.running_mean[...], bn2.running_var[...] = r.standard_normal(6), r.random(3) + 0.5
    return {
        "Module": (nn.Module(), None),
        "Sequential": (nn.Sequential(nn.Linear(6, 4, rng=r), nn.ReLU()), (vec,)),
        "Residual": (nn.Residual(nn.Sequential(nn.Linear(6, 6, rng=r), nn.ReLU()), nn.Linear(6, 6, rng=r)), (vec,)),
        "Concat": (nn.Concat(nn.Conv2d(3, 2, 1, rng=r), nn.Identity()), (img,)),
        "ChannelSplit": (nn.ChannelSplit([1, 2], nn.Identity(), nn.Conv2d(2, 2, 1, rng=r)), (img,)),
        "ChannelShuffle": (nn.ChannelShuffle(3), (np.repeat(img, 2, axis=1),)),
        "SqueezeExcitation": (nn.SqueezeExcitation(3, 2, scale_activation=nn.Hardsigmoid, rng=r), (img,)),
        "BinaryLinear": (nn.BinaryLinear.from_float(lin, act_scale=True), (vec,)),
        "BinaryConv2d": (nn.BinaryConv2d.from_float(conv), (img,)),
        "SparseLinear": (nn.SparseLinear.from_dense(lin), (vec,)),
        "SparseConv2d": (nn.SparseConv2d.from_dense(conv, r.random(conv.weight.shape) > 0.5), (img,)),
        "ShiftLinear": (nn.ShiftLinear.from_float(lin, n_terms=2), (vec,)),
        "ShiftConv2d": (nn.ShiftConv2d.from_float(conv), (img,)),
        "QuantLinear": (nn.QuantLinear.from_float(lin, 0.02, 128, 0.05, 120), (q,)),
        "QuantConv2d": (nn.QuantConv2d.from_float(conv, 0.02, 128, 0.05, 120), (qimg,)),
        "Embedding": (nn.Embedding(5, 3, padding_idx=0, rng=r), (r.integers(0, 5, size=(2, 4)),)),
        "LSTM": (nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=r), (seq,)),
        "GRU": (nn.GRU(3, 4, batch_first=True, rng=r), (seq,)),
        "LastStep": (nn.LastStep(batch_first=True), (seq,)),
        "LayerNorm": (nn.LayerNorm(6, eps=1e-3), (vec,)),
        "GroupNorm": (nn.GroupNorm(1, 3), (img,)),
        "BatchNorm1d": (bn1, (vec,)),
        "BatchNorm2d": (bn2, (img,)),
        "Dropout": (nn.Dropout(0.3, rng=1), (vec,)),  # training mode: the restored Generator draws the same mask
        "DropPath": (nn.DropPath(0.4, rng=2), (img,)),
        "Softmax": (nn.Softmax(dim=1), (img,)),
        "LeakyReLU": (nn.LeakyReLU(0.2), (vec,)),
        "CrossEntropyLoss": (nn.CrossEntropyLoss(label_smoothing=0.1), (vec, np.array([1, 5]))),
        "MSELoss": (nn.MSELoss(), (vec, vec[::-1].copy())),
        "KDLoss": (nn.KDLoss(T=2.0), (vec, vec[::-1].copy())),
    }


# Constructor arguments by name for exported classes without a case above (new layers are picked up this way).
_GENERIC_ARGS = {"in_channels": 3, "out_channels": 4, "kernel_size": 2, "in_features": 3, "out_features": 4,
                 "num_features": 3, "output_size": 2, "scale_factor": 2, "p": 0.5, "rng": 0}
_GENERIC_INPUTS = [(2, 3, 6, 6), (2, 3, 6), (2, 3)]


def _generic_case(cls):
    """An instance from ``_GENERIC_ARGS`` (required arguments first, then every known one) and the first of
    ``_GENERIC_INPUTS`` that its forward accepts."""
    import inspect
    sig = inspect.signature(cls.__init__).parameters
    required = {n for n, p in sig.items() if n != "self" and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    m = None
    for names in (required, set(sig) & set(_GENERIC_ARGS)):
        if names - set(_GENERIC_ARGS):
            continue
        try:
            m = cls(**{n: _GENERIC_ARGS[n] for n in names})
            break
        except (TypeError, ValueError):
            continue
    assert m is not None, f"{cls.__name__}: add a case to _layer_cases (cannot construct it generically)"
    for shape in _GENERIC_INPUTS:
        x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
        try:
            m(x)
        except (TypeError, ValueError):
            continue
        return m, (x,)
    raise AssertionError(f"{cls.__name__}: add a case to _layer_cases (no generic input fits its forward)")


def _exported_modules():
    import inspect

    import nn
    return sorted({getattr(nn, n) for n in nn.__all__ if inspect.isclass(getattr(nn, n))
                   and issubclass(getattr(nn, n), Module)}, key=lambda c: c.__name__)


def _same(a, b, where):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif a is None:
        assert b is None, where
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True), where


@pytest.mark.parametrize("cls", _exported_modules(), ids=lambda c: c.__name__)
def test_every_layer_round_trips_through_a_spec(tmp_path, cls):
    """Each Module class nn exports, saved without ``arch``, is rebuilt by load_checkpoint alone: same class,
    same spec, the same arrays bit for bit, and the same outputs (in the saved training mode, then in eval)."""
    from nn.spec import describe
    cases = _layer_cases()
    m, inputs = cases[cls.__name__] if cls.__name__ in cases else _generic_case(cls)
    assert type(m) is cls
    path = save_checkpoint(tmp_path / "m.h5", m)
    assert "spec" in read_checkpoint(path).arch
    got = load_checkpoint(path).model
    assert type(got) is cls and describe(got) == describe(m)
    want_state, got_state = m.state_dict(), got.state_dict()
    assert want_state.keys() == got_state.keys()
    for k in want_state:
        _same(want_state[k], got_state[k], k)
    if inputs is not None:
        for mode in ("saved", "eval"):
            if mode == "eval":
                m.eval(), got.eval()
            _same(m(*[a.copy() for a in inputs]), got(*[a.copy() for a in inputs]), f"{cls.__name__} {mode}")


def test_model_assembled_outside_the_zoo_round_trips(tmp_path, rng):
    """Network slimming's inserted BatchNorms into a zoo LeNet-5, then surgery (no zoo recipe, so the shrunk
    layers are described as they are now), and a custom head class from methods/ on a float64 net."""
    from methods.pruning.surgery import prune_plan
    from methods.pruning.zhuang2018_dcp import AuxHead
    from nn.models import build
    from nn.norm import BatchNorm1d, BatchNorm2d
    from nn.spec import describe
    zoo = build("lenet5", rng=rng)
    m = list(zoo)  # conv1, pool, conv2, pool, flatten, fc1, relu, fc2
    slim = Sequential(m[0], BatchNorm2d(20), *m[1:3], BatchNorm2d(50), *m[3:6], BatchNorm1d(500), *m[6:])
    for layer in slim:
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            layer.weight[...] = rng.random(layer.weight.shape) + 0.5
            layer.running_var[...] = rng.random(layer.weight.shape) + 0.5
    prune_plan(slim, {"0": np.arange(0, 20, 2), "3": np.arange(30), "7": np.arange(100)}, (1, 28, 28))
    assert not hasattr(slim, "arch") and slim[0].out_channels == 10 and slim[7].out_features == 100
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    path = save_checkpoint(tmp_path / "slim.h5", slim, epoch=2)
    ck = load_checkpoint(path)
    assert ck.arch["spec"]["class"] == "nn.containers.Sequential" and describe(ck.model) == describe(slim)
    assert ck.model[0].out_channels == 10 and ck.model[4].num_features == 30 and ck.model[8].num_features == 100
    assert np.array_equal(ck.model.eval()(x), slim.eval()(x))

    head = Sequential(Linear(6, 5, rng=rng, dtype=np.float64), AuxHead(5, 3, rng, dtype=np.float64))
    head[0].set_mask("weight", rng.random((5, 6)) > 0.3)
    path = save_checkpoint(tmp_path / "head.h5", head)
    got = load_checkpoint(path).model
    assert type(got[1]) is AuxHead and got[1].fc.weight.dtype == np.float64
    assert np.array_equal(got.state_dict()["0.weight_mask"], head.state_dict()["0.weight_mask"])
    v = rng.standard_normal((4, 6))
    assert np.array_equal(got(v), head(v))


def _set_arch(path, arch):
    import json
    with h5py.File(path, "a") as f:
        f.attrs["arch"] = json.dumps(arch)


def test_corrupt_and_unknown_specs(tmp_path, rng):
    from nn.activations import ReLU
    m = Sequential(Linear(3, 4, rng=rng), ReLU(), Linear(4, 2, rng=rng))
    path = save_checkpoint(tmp_path / "s.h5", m)
    spec = read_checkpoint(path).arch["spec"]

    def edited(where, **change):
        s = {**spec, "children": {k: dict(v) for k, v in spec["children"].items()}}
        (s["children"][where] if where else s).update(change)
        return {"spec": s}

    bad = [
        (edited("1", **{"class": "builtins.dict"}), r"1: class 'builtins.dict' is outside nn. and methods."),
        (edited("1", **{"class": "os.system"}), r"1: class 'os.system' is outside nn. and methods."),
        (edited("1", **{"class": "nn.activations.ReLU9"}), r"1: unknown class 'nn.activations.ReLU9'"),
        (edited("1", **{"class": "nn.nowhere.ReLU"}), r"1: unknown class 'nn.nowhere.ReLU'"),
        (edited("1", **{"class": "nn.checkpoint.Checkpoint"}), r"1: 'nn.checkpoint.Checkpoint' is not an lwnn Module"),
        (edited("", children=[1, 2]), r"<model>: malformed spec node"),
        (edited("2", attrs={"in_features": {"complex": [1, 2]}}), r"2.in_features: unknown setting tag \['complex'\]"),
        (edited("2", attrs={"x": {"scalar": "float99", "value": 1}}), r"2.x: malformed setting"),
        ({"spec": "Sequential"}, r"<model>: malformed spec node"),
        (edited("2", parameters=["weight", "gamma"]), r"2: parameter 'gamma' is not a parameter of the checkpoint"),
        (edited("2", attrs={"rng": {"rng": {"bit_generator": "seed"}}}), r"2.rng: malformed setting .*not a numpy Bit"),
    ]
    for arch, match in bad:
        _set_arch(path, arch)
        with pytest.raises(CheckpointError, match=r"s.h5: cannot rebuild the model from its spec: " + match):
            load_checkpoint(path)
    # A spec that drops a layer the arrays still hold is caught by the layout check, by name and shape.
    s = edited("")["spec"]
    del s["children"]["2"]
    _set_arch(path, {"spec": s})
    with pytest.raises(CheckpointError, match=r"s.h5: architecture mismatch \(checkpoint: module tree spec of "
                                              r"nn.containers.Sequential.*not in model: 2.weight \(2, 4\)"):
        load_checkpoint(path)


def test_spec_only_without_a_zoo_recipe(tmp_path, rng):
    """A zoo model keeps its name/kwargs/edits recipe (backward compatible); a model with something a spec cannot
    describe (a class defined outside nn./methods.) saves no recipe and says so on load."""
    from nn.checkpoint import recipe
    from nn.models import build
    zoo = build("lenet_300_100", rng=rng)
    assert recipe(zoo) == {"name": "lenet_300_100", "kwargs": {}}
    path = save_checkpoint(tmp_path / "zoo.h5", zoo)
    assert read_checkpoint(path).arch == zoo.arch and load_checkpoint(path).model.arch == zoo.arch
    m = Sequential(Linear(3, 2, rng=rng), Packed(rng))
    assert recipe(m) is None
    m = Sequential(Linear(3, 2, rng=rng))
    m[0].hook = print  # a function attribute cannot be described
    assert recipe(m) is None


def test_zoo_model_with_swapped_layers_saves_a_spec_not_its_stale_recipe(tmp_path):
    """A copy of a zoo model keeps ``arch``; once a layer is swapped without a recorded edit (a deployed layer),
    the zoo recipe no longer fits, so the checkpoint holds the module-tree spec and rebuilds the swapped model."""
    from nn.binary import BinaryLinear
    from nn.models import build
    model = build("lenet_300_100", rng=np.random.default_rng(0))
    model._modules["1"] = BinaryLinear.from_float(model._modules["1"])
    ck = load_checkpoint(save_checkpoint(tmp_path / "swapped.h5", model))
    assert "spec" in ck.arch and isinstance(ck.model._modules["1"], BinaryLinear)
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(ck.model.eval()(x), model.eval()(x))
