"""Training with 16-bit fixed point and stochastic rounding.

Gupta S., Agrawal A., Gopalakrishnan K., Narayanan P. — "Deep Learning with Limited Numerical Precision",
ICML 2015, arXiv:1502.02551.

**Implements**

* Sec. 3, the fixed-point format <IL, FL> (WL = IL + FL bits, step eps = 2^-FL), ``common.FixedPoint``.
* Eq. (1), round-to-nearest (``common.round_nearest``), and Eq. (2), stochastic rounding, up with probability
  (x - floor(x)) / eps so that E[Round(x)] = x (``common.round_stochastic``).
* Eq. (3), Convert: saturation to [-2^(IL-1), 2^(IL-1) - 2^-FL], then rounding (``common.fixed_point``).
* Sec. 3/4: every tensor of training in fixed point — weights and biases (``FixedPointWeights``: after each SGD
  step the parameters are Converted, so an update smaller than eps/2 is lost with round-to-nearest and kept in
  expectation with stochastic rounding), layer outputs and back-propagated errors (``common.FixedPointActivation``
  after the input and after every layer's multiply-accumulate), weight gradients (Converted before the update).
  The dot products accumulate in float, standing for the paper's wide accumulator, and are Converted after.

**Deviations**

* Fashion-MNIST instead of MNIST / CIFAR-10, a 784-256-256-10 ReLU MLP (paper: 2 x 1000 hidden units) for a few
  epochs; softmax cross-entropy, plain SGD with the learning rate halved after every epoch (``lr_decay``; without
  a decay the last iterate of SGD at lr 0.1 moves the test accuracy by a few points either way).
* Formats: weights, biases and their gradients <IL, FL> as given (default <8, 8>); layer outputs <6, 10> and
  back-propagated errors <2, 14> (the paper varies FL of the weights and updates with WL = 16; the other formats
  here are our choice for the ranges of these tensors). The rounding mode is the same for every tensor of a run.
* The paper's FPGA systolic-array multiplier is not reproduced; the accumulation is float32.
* Deployment: ``FixedPointLinear`` / ``FixedPointConv2d`` store the weights and biases as int16 codes with their FL
  (16 bits per weight) and decode them to float32 for the float GEMM/convolution: no integer kernel, no speed claim.

Reproduce: ``python -m scripts.quantization.gupta2015_fxp16 --seed 0`` (see papers/quantization/gupta2015_fxp16.md).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import numpy as np

from methods.quantization.common import (
    FixedPoint,
    FixedPointActivation,
    fixed_point,
    fixed_point_codes,
    from_fixed_point_codes,
)
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.conv import Conv2d, conv2d_layer_forward
from nn.linear import Linear, linear_forward
from nn.module import Module
from nn.optim import SGD

WEIGHTS = FixedPoint(8, 8)       # weights, biases, their gradients and updates (FL = 8: round-to-nearest stalls)
ACTIVATIONS = FixedPoint(6, 10)  # layer outputs (and the input)
ERRORS = FixedPoint(2, 14)       # back-propagated errors


def mlp(sizes=(784, 256, 256, 10), rounding: str | None = "stochastic", rng: np.random.Generator | None = None,
        act_fmt: FixedPoint = ACTIVATIONS, err_fmt: FixedPoint = ERRORS,
        round_rng: np.random.Generator | None = None, dtype=np.float32) -> Sequential:
    """Flatten, then (Linear, [Convert], ReLU) per hidden layer and (Linear, [Convert]) at the output, with a
    Convert of the input first. ``rounding`` None: the float network (no Convert layers, same initialisation)."""
    def q() -> list[Module]:
        return [] if rounding is None else [FixedPointActivation(act_fmt, err_fmt, rounding, round_rng)]
    layers: list[Module] = [Flatten(), *q()]  # (N, C, H, W) -> (N, C*H*W)
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [Linear(a, b, rng=rng, dtype=dtype), *q()]
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers).to(dtype)


def set_rounding(model: Module, rounding: str) -> None:
    """Set the rounding of every ``FixedPointActivation`` (``"nearest"`` for a deterministic test-time forward)."""
    for m in model.modules():
        if isinstance(m, FixedPointActivation):
            m.rounding = rounding


def parameter_names(model: Module) -> list[str]:
    """Every Linear / Conv2d weight and bias (the tensors Gupta et al. keep in fixed point)."""
    return [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in ("weight", "bias")]


class FixedPointWeights:
    """Parameters kept in fixed point through training (no float copy): ``step`` Converts each gradient to
    ``fmt``, runs the optimizer, and Converts the updated parameter back, W <- Convert(W - lr Convert(dW)).

    With round-to-nearest an update below eps/2 rounds back to W (the stall); with stochastic rounding it moves
    W by eps with probability |update| / eps, so its expectation is the update.
    """

    def __init__(self, model: Module, fmt: FixedPoint = WEIGHTS, rounding: str = "stochastic",
                 rng: np.random.Generator | None = None, names: Iterable[str] | None = None) -> None:
        self.model, self.fmt, self.rounding, self.rng = model, fmt, rounding, rng
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in (parameter_names(model) if names is None else names)}
        self.lost = 0  # updates that rounded away (the new value equals the old one although the update was not 0)
        self.nonzero = 0
        for p in self.params.values():  # the initial weights in fixed point
            p[...] = fixed_point(p, fmt, rounding, rng)

    def step(self, optimizer_step: Callable[[], None]) -> None:
        grads = dict(self.model.named_grads())
        old = {}
        for n, p in self.params.items():
            grads[n][...] = fixed_point(grads[n], self.fmt, self.rounding, self.rng)
            old[n] = p.copy()
        optimizer_step()
        for n, p in self.params.items():
            moved = p != old[n]
            p[...] = fixed_point(p, self.fmt, self.rounding, self.rng)
            self.nonzero += int(moved.sum())
            self.lost += int((moved & (p == old[n])).sum())


def train(model: Module, x: np.ndarray, y: np.ndarray, epochs: int, rng: np.random.Generator,
          rounding: str | None = "stochastic", fmt: FixedPoint = WEIGHTS, lr: float = 0.1, batch_size: int = 64,
          lr_decay: float = 1.0) -> tuple[FixedPointWeights | None, list[float]]:
    """SGD with every weight and bias in ``fmt`` (``rounding`` None: float training of the same model), the
    learning rate multiplied by ``lr_decay`` after each epoch. Returns the ``FixedPointWeights`` (or None) and the
    per-epoch training losses; the model is left in eval mode."""
    from methods.pruning.common import train_epochs
    opt = SGD(model, lr=lr)
    fw = None if rounding is None else FixedPointWeights(model, fmt, rounding, rng)
    step = opt.step if fw is None else (lambda: fw.step(opt.step))
    losses = []
    for e in range(int(epochs)):
        opt.lr = lr * lr_decay ** e
        losses += train_epochs(model, opt, x, y, 1, batch_size, rng, step=step)
    return fw, losses


# ----------------------------------------------------------------------------------- deployed int16 layers


class _FixedPoint16(Module):
    """Buffers ``weight_codes`` and ``bias_codes`` (int16, value = code * 2^-FL); the float weight is a runtime
    cache decoded once per ``weight_codes`` array."""

    KIND = "fixed point 16"  # the comparison's kind column

    def _set(self, W: np.ndarray, bias, fmt: FixedPoint) -> None:
        self.FL, self._dtype = fmt.FL, W.dtype
        self.register_buffer("weight_codes", fixed_point_codes(W, fmt))
        self.register_buffer("bias_codes", None if bias is None else fixed_point_codes(bias, fmt))
        self._decoded, self._decoded_of = None, None

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def bias(self) -> np.ndarray | None:
        return None if self.bias_codes is None else from_fixed_point_codes(self.bias_codes, self.FL, self._dtype)

    def storage_bytes(self) -> int:
        """Bytes of the arrays really stored: the int16 weight and bias codes."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values() if b is not None))

    def decoded_weight(self) -> np.ndarray:
        if self._decoded_of is not self.weight_codes:
            self._decoded = from_fixed_point_codes(self.weight_codes, self.FL, self._dtype)
            self._decoded_of = self.weight_codes
        return self._decoded

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is a deployed inference-only layer")


class FixedPointLinear(_FixedPoint16):
    """Linear with int16 fixed-point weights and bias: (..., I) float -> (..., O), y = x W^T + b, W = codes 2^-FL."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None = None, fmt: FixedPoint = WEIGHTS) -> None:
        super().__init__()
        self.out_features, self.in_features = W.shape
        self._set(W, bias, fmt)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"FixedPointLinear expects input (..., {self.in_features}), got shape {x.shape}")
        return linear_forward(x, self.decoded_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, FL={self.FL}"


class FixedPointConv2d(_FixedPoint16):
    """Conv2d with int16 fixed-point weights and bias (zero padding as the float layer): (N, Ci, H, W) -> (N, Co, Ho, Wo)."""

    def __init__(self, conv: Conv2d, fmt: FixedPoint = WEIGHTS) -> None:
        super().__init__()
        self.out_channels, self.in_channels = conv.out_channels, conv.in_channels
        self.kernel_size, self.stride, self.dilation, self.groups = conv.kernel_size, conv.stride, conv.dilation, conv.groups
        self._pads, self.padding = conv._pads, conv._pads[0]
        self._set(conv.weight, conv.bias, fmt)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        y = conv2d_layer_forward(x4, self.decoded_weight(), self.bias, self.stride, self._pads[0], self._pads[1],
                                 self.dilation, self.groups)
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, FL={self.FL}")


def deploy(model: Module, fmt: FixedPoint = WEIGHTS) -> Module:
    """Replace every Linear / Conv2d by its int16 fixed-point twin (weights and bias Converted to ``fmt`` with
    round-to-nearest: already on the grid after fixed-point training), in place. Returns ``model``."""
    def swap(m: Module) -> None:
        for name, c in list(m.named_children()):
            if isinstance(c, Linear):
                setattr(m, name, FixedPointLinear(c.weight, c.bias, fmt))
            elif isinstance(c, Conv2d):
                setattr(m, name, FixedPointConv2d(c, fmt))
            else:
                swap(c)
    swap(model)
    return model
