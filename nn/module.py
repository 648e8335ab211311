"""The module contract every lwnn layer, container and model follows.

A module holds three kinds of named arrays and its children:

* parameters (``_parameters``), each with a gradient array of the same shape and dtype (``_grads``);
* buffers (``_buffers``): state that is saved but not trained (BatchNorm running statistics);
* masks (``_masks``): optional 0/1 arrays of a parameter's shape that pruning attaches; an optimizer
  step zeroes the masked gradients before the update and the masked weights after it, so pruned weights
  stay exactly zero (see ``nn.optim``).

``forward(x)`` computes the output and keeps in ``self._cache`` what ``backward`` needs; ``backward(g)``
consumes that cache, *adds* (``+=``) into the parameter gradients and returns the gradient for the input.
A backward without a fresh forward raises. Names follow torch's dotted convention (``features.0.weight``),
and ``named_parameters`` / ``named_grads`` yield the live arrays, so ``p -= lr * g`` updates the model.

Shape letters used in comments throughout lwnn are listed in ``nn/README.md``.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Module:
    """Base class: parameter/buffer/mask/child bookkeeping, train/eval, state dicts."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_grads", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_masks", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    # ------------------------------------------------------------------ registration
    def register_parameter(self, name: str, value: np.ndarray | None) -> None:
        """Register ``value`` as a trainable parameter (``None`` registers nothing, like torch's bias=None)."""
        if value is None:
            self._parameters.pop(name, None)
            self._grads.pop(name, None)
            object.__setattr__(self, name, None)
            return
        value = _check_float_array(value, f"{type(self).__name__}.{name}")
        self.__dict__.pop(name, None)
        self._parameters[name] = value
        self._grads[name] = np.zeros_like(value)
        mask = self._masks.get(name)
        if mask is not None and mask.shape != value.shape:
            del self._masks[name]

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        self.__dict__.pop(name, None)
        if value is None:
            self._buffers.pop(name, None)
            object.__setattr__(self, name, None)
            return
        self._buffers[name] = np.asarray(value)

    def set_mask(self, name: str, mask: np.ndarray | None) -> None:
        """Attach a 0/1 mask to parameter ``name`` (``None`` removes it) and apply it to the weights now."""
        if name not in self._parameters:
            raise KeyError(f"{type(self).__name__} has no parameter {name!r}; it has {sorted(self._parameters)}")
        if mask is None:
            self._masks.pop(name, None)
            return
        p = self._parameters[name]
        mask = np.asarray(mask)
        if mask.shape != p.shape:
            raise ValueError(f"mask for {type(self).__name__}.{name} has shape {mask.shape}, parameter has {p.shape}")
        mask = (mask != 0).astype(p.dtype)
        self._masks[name] = mask
        p *= mask

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Module):
            for d in (self._parameters, self._buffers):
                d.pop(name, None)
            self.__dict__.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters:
            self.register_parameter(name, value)
        elif name in self._buffers:
            self.register_buffer(name, value)
        elif name in self._modules and value is None:
            del self._modules[name]
            object.__setattr__(self, name, None)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ calling
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _save(self, **cache) -> None:
        """Keep what backward needs; backward takes it with ``_take()`` exactly once."""
        object.__setattr__(self, "_cache", cache)

    def _take(self) -> dict:
        cache = self._cache
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a fresh forward (each forward allows one backward)")
        object.__setattr__(self, "_cache", None)
        return cache

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _named(self, store: str, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, arr in getattr(mod, store).items():
                yield (f"{mod_name}.{name}" if mod_name else name), arr

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, live_array)`` for every parameter, in registration order (torch's order)."""
        yield from self._named("_parameters", prefix)

    def parameters(self) -> Iterator[np.ndarray]:
        for _, p in self.named_parameters():
            yield p

    def named_grads(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, live_gradient_array)``, same names and order as ``named_parameters``."""
        yield from self._named("_grads", prefix)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        yield from self._named("_buffers", prefix)

    def named_masks(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_parameter_name, mask)`` for every masked parameter."""
        yield from self._named("_masks", prefix)

    def apply_masks(self) -> None:
        """Zero every masked weight (after an update) — what keeps pruned weights at exactly zero."""
        for mod in self.modules():
            for name, mask in mod._masks.items():
                mod._parameters[name] *= mask

    # ------------------------------------------------------------------ state
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for _, g in self.named_grads():
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers under torch's names (masks are saved as ``<param>_mask``)."""
        out = {}
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                out[pre + name] = p.copy()
            for name, b in mod._buffers.items():
                out[pre + name] = np.array(b, copy=True)
            for name, m in mod._masks.items():
                out[pre + name + "_mask"] = m.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy ``state`` into this module in place; every mismatch is reported by name and shape."""
        problems = []
        seen = set()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for store in ("_parameters", "_buffers"):
                for name, arr in getattr(mod, store).items():
                    key = pre + name
                    if key not in state:
                        problems.append(f"missing {key} (expected shape {tuple(np.shape(arr))})")
                        continue
                    seen.add(key)
                    val = np.asarray(state[key])
                    if val.shape != np.shape(arr):
                        problems.append(f"{key}: checkpoint has shape {val.shape}, model expects {np.shape(arr)}")
                        continue
                    if store == "_parameters":
                        arr[...] = val
                    else:
                        mod._buffers[name] = val.astype(np.asarray(arr).dtype, copy=True)
            for key in [k for k in state if k.startswith(pre) and k.endswith("_mask")]:
                pname = key[len(pre):-len("_mask")]
                if "." not in pname and pname in mod._parameters:
                    seen.add(key)
                    mod.set_mask(pname, state[key])
        unexpected = sorted(set(state) - seen)
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))

    def to(self, dtype) -> Module:
        """Cast every parameter, gradient and float buffer to ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"lwnn modules compute in float32 or float64, not {dtype}")
        for m in self.modules():
            for name in list(m._parameters):
                m.register_parameter(name, m._parameters[name].astype(dtype))
            for name, b in list(m._buffers.items()):
                b = np.asarray(b)
                if b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dtype)
            for name, mask in list(m._masks.items()):
                m._masks[name] = mask.astype(dtype)
        return self

    @property
    def dtype(self) -> np.dtype | None:
        for p in self.parameters():
            return p.dtype
        return None

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # ------------------------------------------------------------------ description
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: np.ndarray, ndim: tuple[int, ...] | None = None, what: str = "") -> np.ndarray:
        """Refuse non-arrays, non-float dtypes, a dtype that differs from the parameters, and a wrong rank."""
        name = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} expects a numpy.ndarray, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} expects float32 or float64 input, got {x.dtype}")
        pd = self.dtype
        if pd is not None and x.dtype != pd:
            raise TypeError(
                f"{name} got {x.dtype} input but its parameters are {pd}; convert one of them "
                f"(model.to(np.{x.dtype.name}) or x.astype(np.{pd.name}))")
        if ndim is not None and x.ndim not in ndim:
            raise ValueError(f"{name} expects a {' or '.join(map(str, ndim))}-d input {what}, got shape {x.shape}")
        return x


def _check_float_array(value, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where} must be a numpy.ndarray, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} must be float32 or float64, got {value.dtype}")
    return value
