"""HDF5 checkpoints: model, optimizer, scheduler, epoch, random state and metadata in one file.

Layout of a checkpoint (format ``lwnn-checkpoint`` version 1)::

    /                 attrs: format, format_version, epoch, arch (JSON or ""), layout (JSON), rng_state (JSON or ""),
                             metadata (JSON: lwnn version, time, command, plus the caller's entries)
    /model/<name>     every entry of ``model.state_dict()``: parameters, buffers and masks (``<param>_mask``),
                      each stored with its own dtype and shape, bit for bit (uint64 packed bits, int8, CSR int32...)
    /optimizer/...    ``optimizer.state_dict()`` as a tree (absent if no optimizer was given)
    /scheduler/...    ``scheduler.state_dict()`` as a tree (absent if no scheduler was given)

``arch`` is the model's recipe (``recipe(model)``), in one of two forms:

* a zoo build, ``model.arch``: ``{"name", "kwargs"}`` for ``nn.models.build``, plus ``"edits"`` when the zoo
  model was shrunk by surgery or deployed on sparse layers (``methods.pruning.surgery.record_edit``);
  ``load_checkpoint`` without a model builds it and replays the edits;
* any other model (``model.arch`` unset: BatchNorms inserted into a chain, a new head, a hand-made
  ``Sequential``): ``{"spec": <module tree>}``, every module's class (under ``nn.`` or ``methods.`` only), its
  current settings, the names of its parameters and buffers and its children, written by ``nn.spec.describe``
  and rebuilt by ``nn.spec.rebuild`` with the shapes and dtypes of ``layout``. A model holding something a spec cannot describe (a class of another
  package, a function attribute) gets ``arch`` "" and loads only into a model the caller passes.

``layout`` lists ``[name, kind, shape, dtype]`` for every model entry, so an architecture mismatch is reported
by name before any array is touched; a rebuilt model is checked against it like a given one.
A state tree (optimizer/scheduler) maps dicts to groups, arrays to datasets and every other leaf (numbers,
strings, None, lists of numbers) to a JSON attribute; lists that hold arrays become groups flagged ``__list__``.
Writes go to a temporary file in the same folder and are moved into place with ``os.replace``, so an
interrupted save never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nn import spec
from nn.module import Module

FORMAT = "lwnn-checkpoint"
FORMAT_VERSION = 1
_LIST_FLAG = "__list__"
_INT_KEYS = "__int_keys__"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit; the message names the file and what is wrong."""


def lwnn_version() -> str:
    nn_pkg = importlib.import_module("nn")
    return str(getattr(nn_pkg, "__version__", "0.0.0+dev"))


# ---------------------------------------------------------------------------------------------------- trees
def jsonable(v):
    """Dicts, lists/tuples, dataclasses, numpy scalars and arrays as plain JSON-able Python values."""
    if isinstance(v, dict):
        return {str(k): jsonable(e) for k, e in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(e) for e in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return jsonable(dataclasses.asdict(v))
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _has_array(v) -> bool:
    if isinstance(v, np.ndarray):
        return True
    if isinstance(v, dict):
        return any(_has_array(e) for e in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_array(e) for e in v)
    return False


def write_tree(group: h5py.Group, tree: dict) -> None:
    """Store a nested dict of arrays and JSON-able leaves under ``group`` (arrays keep their exact dtype)."""
    int_keys = [k for k in tree if isinstance(k, (int, np.integer))]
    if int_keys:
        group.attrs[_INT_KEYS] = json.dumps([int(k) for k in int_keys])
    for key, value in tree.items():
        name = str(key)
        if "/" in name:
            raise ValueError(f"checkpoint key {name!r} contains '/', which HDF5 reserves for paths")
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"checkpoint entry {group.name}/{name}: object arrays cannot be stored")
            group.create_dataset(name, data=value)
        elif isinstance(value, dict):
            write_tree(group.create_group(name), value)
        elif isinstance(value, (list, tuple)) and _has_array(value):
            sub = group.create_group(name)
            sub.attrs[_LIST_FLAG] = len(value)
            write_tree(sub, {str(i): v for i, v in enumerate(value)})
        else:
            try:
                group.attrs[name] = json.dumps(jsonable(value))
            except TypeError as e:
                raise TypeError(f"checkpoint entry {group.name}/{name}: cannot store a "
                                f"{type(value).__name__} ({e})") from e


def read_tree(group: h5py.Group) -> dict | list:
    """Inverse of ``write_tree``."""
    out: dict = {}
    for name, item in group.items():
        out[name] = read_tree(item) if isinstance(item, h5py.Group) else _read_array(item)
    for name, value in group.attrs.items():
        if name not in (_LIST_FLAG, _INT_KEYS):
            out[name] = json.loads(value)
    if _LIST_FLAG in group.attrs:
        return [out[str(i)] for i in range(int(group.attrs[_LIST_FLAG]))]
    if _INT_KEYS in group.attrs:
        for k in json.loads(group.attrs[_INT_KEYS]):
            out[k] = out.pop(str(k))
    return out


def _read_array(ds: h5py.Dataset) -> np.ndarray:
    """A dataset as an ndarray of its stored dtype (0-d datasets too, which h5py returns as scalars)."""
    return np.array(ds[()], dtype=ds.dtype) if ds.shape == () else ds[()]


# ---------------------------------------------------------------------------------------------------- model layout
def model_layout(model: Module) -> list[list]:
    """``[name, kind, shape, dtype]`` for every state_dict entry (kind: parameter, buffer or mask)."""
    rows = []
    for name, p in model.named_parameters():
        rows.append([name, "parameter", list(p.shape), str(p.dtype)])
    for name, b in model.named_buffers():
        b = np.asarray(b)
        rows.append([name, "buffer", list(b.shape), str(b.dtype)])
    for name, m in model.named_masks():
        rows.append([name + "_mask", "mask", list(m.shape), str(m.dtype)])
    return rows


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def restore_rng(state: dict, rng: np.random.Generator | None = None) -> np.random.Generator:
    """Set ``rng`` (or a new Generator of the stored bit generator type) to a saved ``bit_generator.state``."""
    if rng is None:
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return rng


# ---------------------------------------------------------------------------------------------------- save
def _zoo_fits(model: Module, arch: dict) -> bool:
    """Does the plain zoo build of ``arch`` (no edits) have ``model``'s parameters and buffers (names, kinds,
    shapes)? False for a zoo model whose layers were swapped without recording an edit (e.g. for deployed
    fixed-point or binary layers), whose ``arch`` a copy still carries. A recipe the zoo cannot build is kept
    as it was given (loading then reports it)."""
    from nn import models  # imported here: models import the layers, checkpoints need none of them
    try:
        built = models.build(arch["name"], **dict(arch.get("kwargs", {})))
    except (KeyError, TypeError, ValueError):
        return True
    def rows(m):
        return [r[:3] for r in model_layout(m) if r[1] != "mask"]
    return rows(built) == rows(model)


def recipe(model: Module) -> dict | None:
    """What rebuilds ``model``: its zoo recipe ``model.arch`` if set (and, without recorded edits, if the zoo
    build still has the model's layout), else ``{"spec": nn.spec.describe(model)}``, or None if the model holds
    something a spec cannot describe (then load it by passing the model)."""
    arch = getattr(model, "arch", None)
    if arch is not None and (arch.get("edits") or _zoo_fits(model, arch)):
        return arch
    try:
        return {"spec": spec.describe(model)}
    except spec.SpecError:
        return None


def save_checkpoint(path: str | Path, model: Module, optimizer=None, scheduler=None, epoch: int = 0,
                    rng: np.random.Generator | None = None, metadata: dict | None = None) -> Path:
    """Write ``model`` (and optimizer/scheduler/rng state) to ``path`` atomically; returns the path.

    ``metadata`` is merged over the defaults ``{"lwnn_version", "time", "command"}``; it must be JSON-able.
    The recipe stored as ``arch`` is ``recipe(model)``.
    """
    return write_checkpoint(path, model_state=model.state_dict(), layout=model_layout(model), arch=recipe(model),
                            optimizer_state=None if optimizer is None else optimizer.state_dict(),
                            scheduler_state=None if scheduler is None else scheduler.state_dict(),
                            epoch=epoch, rng_state=None if rng is None else rng_state(rng), metadata=metadata)


def write_checkpoint(path: str | Path, model_state: dict, layout: list, arch: dict | None = None,
                     optimizer_state: dict | None = None, scheduler_state: dict | None = None, epoch: int = 0,
                     rng_state: dict | None = None, metadata: dict | None = None) -> Path:
    """The writer behind ``save_checkpoint``, taking states already captured (e.g. a snapshot)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"lwnn_version": lwnn_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)}
    meta.update(metadata or {})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["epoch"] = int(epoch)
            f.attrs["arch"] = json.dumps(jsonable(arch)) if arch is not None else ""
            f.attrs["layout"] = json.dumps(layout)
            f.attrs["rng_state"] = json.dumps(jsonable(rng_state)) if rng_state is not None else ""
            f.attrs["metadata"] = json.dumps(jsonable(meta))
            g = f.create_group("model")
            for name, arr in model_state.items():
                g.create_dataset(name, data=np.asarray(arr))
            if optimizer_state is not None:
                write_tree(f.create_group("optimizer"), optimizer_state)
            if scheduler_state is not None:
                write_tree(f.create_group("scheduler"), scheduler_state)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ---------------------------------------------------------------------------------------------------- load
@dataclass
class Checkpoint:
    """What ``load_checkpoint`` read. ``model`` is the loaded (or rebuilt) model."""

    path: Path
    model: Module | None
    epoch: int
    arch: dict | None
    layout: list
    state: dict[str, np.ndarray]
    optimizer_state: dict | None
    scheduler_state: dict | None
    rng_state: dict | None
    metadata: dict = field(default_factory=dict)

    def rng(self) -> np.random.Generator | None:
        """A Generator restored to the saved state (None if none was saved)."""
        return None if self.rng_state is None else restore_rng(self.rng_state)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read every part of a checkpoint without a model; raises with the file name on any problem."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path} is not an HDF5 file (wrong signature: corrupt, truncated or another format)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not an lwnn checkpoint "
                                      f"(format attribute {f.attrs.get('format')!r})")
            for attr in ("epoch", "arch", "layout", "rng_state", "metadata"):
                if attr not in f.attrs:
                    raise CheckpointError(f"{path}: checkpoint lacks the {attr!r} attribute")
            if "model" not in f:
                raise CheckpointError(f"{path}: checkpoint lacks the 'model' group")
            layout = json.loads(f.attrs["layout"])
            state = {name: _read_array(ds) for name, ds in f["model"].items()}
            names = {row[0] for row in layout}
            if set(state) != names:
                raise CheckpointError(f"{path}: 'model' group does not match its layout: missing "
                                      f"{sorted(names - set(state))}, extra {sorted(set(state) - names)}")
            arch = json.loads(f.attrs["arch"]) if f.attrs["arch"] else None
            rng = json.loads(f.attrs["rng_state"]) if f.attrs["rng_state"] else None
            return Checkpoint(path=path, model=None, epoch=int(f.attrs["epoch"]), arch=arch, layout=layout,
                              state=state,
                              optimizer_state=read_tree(f["optimizer"]) if "optimizer" in f else None,
                              scheduler_state=read_tree(f["scheduler"]) if "scheduler" in f else None,
                              rng_state=rng, metadata=json.loads(f.attrs["metadata"]))
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:  # h5py reports damaged files as any of these
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from e


def _describe(arch: dict | None) -> str:
    if not arch:
        return "no recorded architecture"
    if "spec" in arch:
        top = arch["spec"].get("class", "?") if isinstance(arch["spec"], dict) else "?"
        return f"module tree spec of {top}"
    return f"{arch.get('name')} {arch.get('kwargs', {})}"


def check_layout(ckpt: Checkpoint, model: Module) -> None:
    """Raise CheckpointError listing every name and shape on which ``model`` and the checkpoint differ."""
    have = {row[0]: row for row in model_layout(model)}
    stored = {row[0]: row for row in ckpt.layout}
    problems = []
    missing = [n for n in have if n not in stored and have[n][1] != "mask"]
    extra = [n for n in stored if n not in have and stored[n][1] != "mask"]
    if missing:
        problems.append("missing from checkpoint: " + ", ".join(f"{n} {tuple(have[n][2])}" for n in missing))
    if extra:
        problems.append("not in model: " + ", ".join(f"{n} {tuple(stored[n][2])}" for n in extra))
    shapes = [n for n in have if n in stored and have[n][2] != stored[n][2] and have[n][1] == "parameter"]
    if shapes:
        problems.append("shape mismatch: " + ", ".join(
            f"{n} checkpoint {tuple(stored[n][2])} vs model {tuple(have[n][2])}" for n in shapes))
    if problems:
        model_arch = getattr(model, "arch", None)
        raise CheckpointError(
            f"{ckpt.path}: architecture mismatch (checkpoint: {_describe(ckpt.arch)}; model: "
            f"{type(model).__name__}, {_describe(model_arch)}): " + "; ".join(problems))


def _replay_edit(model: Module, edit: dict, path: Path) -> Module:
    """Re-apply an architecture edit recorded at save time (structural pruning: ``arch["edits"]``, written by
    ``methods.pruning.surgery``) to the freshly built zoo model. Only functions under ``methods.`` are replayed;
    the import is dynamic so that nn/ keeps no dependency on methods/."""
    fn_path = str(edit.get("fn", ""))
    mod_name, _, fn_name = fn_path.rpartition(".")
    if not mod_name.startswith("methods.") or "plan" not in edit or "input_shape" not in edit:
        raise CheckpointError(f"{path}: unknown architecture edit {fn_path or edit!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
        plan = {name: np.asarray(keep, dtype=np.int64) for name, keep in edit["plan"].items()}
        return fn(model, plan, tuple(edit["input_shape"]))
    except (ImportError, AttributeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot replay architecture edit {fn_path}: {e}") from e


def rebuild(ckpt: Checkpoint) -> Module:
    """The model of ``ckpt`` with placeholder weights, from its recipe: a module tree spec (``nn.spec.rebuild``),
    or a zoo build (``nn.models.build``) with its recorded edits replayed and the layout's dtype."""
    if not ckpt.arch:
        raise CheckpointError(f"{ckpt.path}: no architecture recorded (model.arch was unset at save and the model "
                              "was not made only of nn./methods. modules with plain settings); pass the model to "
                              "load_checkpoint")
    if "spec" in ckpt.arch:
        try:
            return spec.rebuild(ckpt.arch["spec"], ckpt.layout)
        except (spec.SpecError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot rebuild the model from its spec: {e}") from e
    from nn import models  # imported here: models import the layers, checkpoints need none of them

    try:
        model = models.build(ckpt.arch["name"], **dict(ckpt.arch.get("kwargs", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: cannot rebuild architecture {_describe(ckpt.arch)}: {e}") from e
    for edit in ckpt.arch.get("edits", []):
        model = _replay_edit(model, edit, ckpt.path)
    dtypes = {row[3] for row in ckpt.layout if row[1] == "parameter"}
    if len(dtypes) == 1:
        model.to(np.dtype(dtypes.pop()))
    return model


def load_checkpoint(path: str | Path, model: Module | None = None, optimizer=None, scheduler=None) -> Checkpoint:
    """Load a checkpoint into ``model`` (rebuilt from the stored architecture when None) and the optimizer.

    Every parameter and buffer name and every parameter shape is checked first; a mismatch raises
    ``CheckpointError`` listing the names and shapes that differ. Stored masks are re-attached. If the
    optimizer or scheduler is given but the checkpoint holds no state for it, that is an error too.
    """
    ckpt = read_checkpoint(path)
    if model is None:
        model = rebuild(ckpt)
    check_layout(ckpt, model)
    try:
        model.load_state_dict(ckpt.state)
    except ValueError as e:
        raise CheckpointError(f"{ckpt.path}: {e}") from e
    for what, obj, st in (("optimizer", optimizer, ckpt.optimizer_state),
                          ("scheduler", scheduler, ckpt.scheduler_state)):
        if obj is None:
            continue
        if st is None:
            raise CheckpointError(f"{ckpt.path}: checkpoint holds no {what} state, but a {what} was given")
        try:
            obj.load_state_dict(st)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{ckpt.path}: {what} state does not fit {type(obj).__name__}: {e}") from e
    ckpt.model = model
    return ckpt
