"""Optimizers and learning-rate schedules, update for update the same as torch.optim (single-tensor path).

An optimizer holds the model, not a list of arrays: every ``step()`` walks ``model.named_parameters()`` and
``model.named_grads()`` (live arrays, updated in place), so parameters that were replaced (``model.to``, a
layer swapped for a factorised one) are picked up, and per-parameter state is keyed by the dotted name.

Masks (pruning). Before the update every masked gradient is multiplied by its mask (in place); after the
update ``model.apply_masks()`` zeroes the masked weights again, so pruned weights stay exactly 0 whatever
momentum or weight decay would do. Optimizer state (momentum, Adam moments) is left as it is: a weight
revived by removing its mask resumes with its old state.

``lr`` is a plain attribute (schedules set it). ``state_dict()`` / ``load_state_dict()`` carry the
hyper-parameters, ``lr`` and the per-parameter state (step counts and buffers), for checkpoints.
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    """Common walk over (name, parameter, gradient) with masking, and the state dict."""

    hyper: tuple[str, ...] = ()

    def __init__(self, model, lr: float) -> None:
        if not hasattr(model, "named_parameters") or not hasattr(model, "named_grads"):
            raise TypeError(f"{type(self).__name__} expects an lwnn Module, got {type(model).__name__}")
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.model = model
        self.lr = float(lr)
        self.state: dict[str, dict] = {}

    def _items(self):
        grads = dict(self.model.named_grads())
        for name, p in self.model.named_parameters():
            yield name, p, grads[name]

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def step(self) -> None:
        masks = dict(self.model.named_masks())
        for name, p, g in self._items():
            mask = masks.get(name)
            if mask is not None:
                g *= mask
            self._update(name, p, g, self.state.setdefault(name, {}))
        self.model.apply_masks()

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """``{"type", "lr", <hyper-parameters>, "state": {param_name: {key: array or int}}}``, all copies."""
        out = {"type": type(self).__name__, "lr": self.lr}
        out.update({h: getattr(self, h) for h in self.hyper})
        out["state"] = {name: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
                        for name, st in self.state.items()}
        return out

    def load_state_dict(self, sd: dict) -> None:
        """Restore ``lr``, hyper-parameters and state; names and shapes must match the model's parameters."""
        kind = type(self).__name__
        if sd.get("type") != kind:
            raise ValueError(f"{kind}.load_state_dict got the state of a {sd.get('type')!r} optimizer")
        params = dict(self.model.named_parameters())
        problems = []
        for name, st in sd["state"].items():
            if name not in params:
                problems.append(f"state for {name!r}, which the model does not have")
                continue
            for k, v in st.items():
                if isinstance(v, np.ndarray) and v.shape != params[name].shape:
                    problems.append(f"{name}.{k}: shape {v.shape}, parameter has {params[name].shape}")
        if problems:
            raise ValueError(f"{kind}.load_state_dict: " + "; ".join(problems))
        self.lr = float(sd["lr"])
        for h in self.hyper:  # a checkpoint may hand tuples back as lists
            setattr(self, h, tuple(sd[h]) if isinstance(sd[h], list) else sd[h])
        self.state = {name: {k: (v.astype(params[name].dtype, copy=True) if isinstance(v, np.ndarray) else v)
                             for k, v in st.items()} for name, st in sd["state"].items()}

    def __repr__(self) -> str:
        hp = ", ".join(f"{h}={getattr(self, h)}" for h in ("lr",) + self.hyper)
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """torch.optim.SGD: optional L2 weight decay, (dampened) momentum, Nesterov.

    g <- g + wd * p;  b <- g (first step) else mu * b + (1 - dampening) * g;
    d <- g + mu * b (Nesterov) else b;  p <- p - lr * d.
    """

    hyper = ("momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, model, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(model, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def _update(self, name, p, g, state):
        d_p = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d_p.copy()
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * d_p
            d_p = d_p + self.momentum * buf if self.nesterov else buf
        p -= self.lr * d_p


class Adam(Optimizer):
    """torch.optim.Adam (Kingma & Ba 2015) with torch's bias correction; AdamW is the decoupled variant.

    Per step t: m <- lerp(m, g, 1 - beta1);  v <- beta2 * v + (1 - beta2) * g * g;
    p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), with v replaced by its running
    maximum when ``amsgrad``. L2 weight decay adds wd * p to g; decoupled decay (AdamW) first scales
    p by (1 - lr * wd).
    """

    hyper = ("betas", "eps", "weight_decay", "amsgrad")
    decoupled = False

    def __init__(self, model, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(model, lr)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay, self.amsgrad = float(eps), float(weight_decay), bool(amsgrad)

    def _update(self, name, p, g, state):
        beta1, beta2 = self.betas
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        if self.weight_decay:
            if self.decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # m.lerp_(g, w) as torch computes it on either side of w = 0.5
        w = 1.0 - beta1
        if w < 0.5:
            m += w * (g - m)
        else:
            m[...] = g - (g - m) * (1.0 - w)
        v *= beta2
        v += (1.0 - beta2) * g * g
        bias_correction1 = 1.0 - beta1 ** t
        bias_correction2_sqrt = (1.0 - beta2 ** t) ** 0.5
        step_size = self.lr / bias_correction1
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v) / bias_correction2_sqrt
        denom += self.eps
        p += -step_size * m / denom


class AdamW(Adam):
    """torch.optim.AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, default 1e-2."""

    decoupled = True

    def __init__(self, model, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(model, lr, betas, eps, weight_decay, amsgrad)


# ---------------------------------------------------------------------------------------------- schedules
class LRSchedule:
    """Sets ``optimizer.lr`` from a closed form of the epoch count; ``step()`` once per epoch, as in torch.

    Construction sets epoch 0 (the optimizer's lr becomes the schedule's value at 0, i.e. ``base_lr``).
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, sd: dict) -> None:
        for k, v in sd.items():
            setattr(self, k, v)
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(LRSchedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR step_size must be a positive integer, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRSchedule):
    """SGDR without restarts (Loshchilov & Hutter 2017), torch's closed form:

    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2  (periodic beyond T_max, as torch).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if not T_max > 0:
            raise ValueError(f"CosineAnnealingLR T_max must be positive, got {T_max}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
