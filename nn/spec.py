"""A model's structure as JSON, and the model rebuilt from it: the checkpoint recipe of models assembled by hand.

``describe(model)`` walks the module tree and records, for every module, its class (an import path under
``nn.`` or ``methods.``), its settings, the names of its parameters and buffers, and its children::

    {"class": "nn.conv.Conv2d", "attrs": {"in_channels": 3, "stride": {"tuple": [1, 1]}, ...},
     "parameters": ["weight", "bias"], "buffers": [...], "children": {"0": {...}, ...}}   # empty ones left out

The settings are the module's instance attributes as they are *now* (the mechanism pickle uses, restricted to
plain values), so no layer has to list its constructor arguments and a layer shrunk by surgery or swapped for a
deployed one is described as it is. ``rebuild(spec, layout)`` creates each module without calling
``__init__`` (``cls.__new__`` + ``Module.__init__``), restores the settings, registers its parameters and
buffers zero-filled, of the shapes and dtypes the checkpoint layout gives them, and attaches the children;
``load_state_dict`` then fills in the values.

Settings are JSON values, with tags for what JSON lacks: ``{"tuple": [...]}``, ``{"dict": {...}}``,
``{"dtype": "float32"}``, ``{"scalar": "float32", "value": 0.5}`` (numpy scalars keep their type, which
NumPy 2 promotion depends on) and ``{"rng": <bit_generator.state>}`` (Dropout's Generator). An ndarray
attribute that is not a registered parameter or buffer is a cache the layer recomputes (packed weight panels,
the last ``h_n``): a checkpoint never held it, and it is restored as ``None``. Anything else (a function, an
object, a class outside ``nn.``/``methods.``) makes ``describe`` raise ``SpecError`` naming the module and
attribute; ``rebuild`` raises ``SpecError`` for a class outside ``nn.``/``methods.``, an unknown class or
tag, or a malformed node.
"""
from __future__ import annotations

import importlib

import numpy as np

from nn.module import Module

PACKAGES = ("nn.", "methods.")
_NOT_SETTINGS = ("_parameters", "_grads", "_buffers", "_masks", "_modules", "_cache", "arch")


class SpecError(ValueError):
    """A model cannot be described, or a spec cannot be rebuilt; the message names the module and the problem."""


# ---------------------------------------------------------------------------------------------------- describe
def describe(model: Module, where: str = "") -> dict:
    """The JSON spec of ``model``'s module tree (see the module docstring)."""
    cls = type(model)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if not cls.__module__.startswith(PACKAGES) or "<" in cls.__qualname__:
        raise SpecError(f"{where or '<model>'}: class {path} is not a top-level class of an nn. or methods. module")
    node = {"class": path,
            "attrs": {k: _encode(v, f"{where or '<model>'}.{k}") for k, v in model.__dict__.items()
                      if k not in _NOT_SETTINGS}}
    children = {name: describe(child, f"{where}.{name}" if where else name)
                for name, child in model.named_children()}
    for key, value in (("parameters", list(model._parameters)), ("buffers", list(model._buffers)),
                       ("children", children)):
        if value:
            node[key] = value
    return node


def _encode(v, where: str):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.ndarray):
        return None  # an unregistered array is a cache (see the module docstring)
    if isinstance(v, np.generic):
        return {"scalar": str(v.dtype), "value": v.item()}
    if isinstance(v, np.dtype):
        return {"dtype": str(v)}
    if isinstance(v, np.random.Generator):
        return {"rng": v.bit_generator.state}
    if isinstance(v, (list, tuple)):
        items = [_encode(e, f"{where}[{i}]") for i, e in enumerate(v)]
        return items if isinstance(v, list) else {"tuple": items}
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"dict": {k: _encode(e, f"{where}[{k!r}]") for k, e in v.items()}}
    raise SpecError(f"{where}: a {type(v).__name__} cannot be described (settings must be numbers, strings, "
                    "tuples, lists, str-keyed dicts, numpy dtypes/scalars or a Generator)")


def _decode(v, where: str):
    if isinstance(v, list):
        return [_decode(e, where) for e in v]
    if not isinstance(v, dict):
        return v
    try:
        if "tuple" in v:
            return tuple(_decode(e, where) for e in v["tuple"])
        if "dict" in v:
            return {k: _decode(e, where) for k, e in v["dict"].items()}
        if "dtype" in v:
            return np.dtype(v["dtype"])
        if "scalar" in v:
            return np.dtype(v["scalar"]).type(v["value"])
        if "rng" in v:
            bit_generator = getattr(np.random, v["rng"]["bit_generator"])
            if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
                raise ValueError(f"{bit_generator!r} is not a numpy BitGenerator")
            gen = np.random.Generator(bit_generator())
            gen.bit_generator.state = v["rng"]
            return gen
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"{where}: malformed setting {v!r} ({type(e).__name__}: {e})") from e
    raise SpecError(f"{where}: unknown setting tag {sorted(v)} (expected tuple, dict, dtype, scalar or rng)")


# ---------------------------------------------------------------------------------------------------- rebuild
def rebuild(spec: dict, layout: list) -> Module:
    """The model ``spec`` describes, with zero-filled parameters and buffers as ``layout`` (``[name, kind, shape,
    dtype]`` rows of ``nn.checkpoint.model_layout``) lists them; load the values with ``load_state_dict``."""
    arrays = {name: (kind, tuple(shape), np.dtype(dtype)) for name, kind, shape, dtype in layout}
    return _rebuild(spec, "", arrays)


def _rebuild(node, where: str, arrays: dict) -> Module:
    at = where or "<model>"
    if not (isinstance(node, dict) and isinstance(node.get("class"), str)
            and all(isinstance(node.get(k, {}), dict) for k in ("attrs", "children"))
            and all(isinstance(node.get(k, []), list) for k in ("parameters", "buffers"))):
        raise SpecError(f"{at}: malformed spec node (want a dict with a 'class' string, 'attrs' and 'children' "
                        f"dicts, 'parameters' and 'buffers' lists), got {str(node)[:200]}")
    cls = _class(node["class"], at)
    m = cls.__new__(cls)
    Module.__init__(m)
    m.__dict__.update({k: _decode(v, f"{at}.{k}") for k, v in node.get("attrs", {}).items()})
    for kind in ("parameter", "buffer"):
        for attr in node.get(kind + "s", []):
            name = f"{where}.{attr}" if where else str(attr)
            if arrays.get(name, (None,))[0] != kind:
                raise SpecError(f"{at}: {kind} {attr!r} is not a {kind} of the checkpoint layout")
            _, shape, dtype = arrays[name]
            register = m.register_parameter if kind == "parameter" else m.register_buffer
            register(attr, np.zeros(shape, dtype))
    for name, child in node.get("children", {}).items():
        m.__dict__.pop(name, None)
        m._modules[name] = _rebuild(child, f"{where}.{name}" if where else name, arrays)
    return m


def _class(path: str, where: str) -> type:
    """The Module subclass at ``path`` = "<module under nn. or methods.>.<class qualname>"."""
    if not path.startswith(PACKAGES):
        raise SpecError(f"{where}: class {path!r} is outside nn. and methods.; only those are rebuilt")
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            break
        if isinstance(obj, type) and issubclass(obj, Module):
            return obj
        raise SpecError(f"{where}: {path!r} is not an lwnn Module class")
    raise SpecError(f"{where}: unknown class {path!r}")
