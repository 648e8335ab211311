"""Quantizers with their surrogate gradients, latent weights, and packed-sign deployed layers.

Shared by the quantization family (BinaryConnect, XNOR-Net/BWN, BNN, ...). Three pieces:

* **Quantizers as pure functions**, each with the backward its paper trains with: ``sign`` with the hard-tanh
  straight-through estimator (``sign_ste_backward``), BinaryConnect's stochastic binarization
  (``hard_sigmoid``, ``stochastic_binarize``), and XNOR-Net/BWN's per-output-channel scaled sign
  (``scaled_sign``, ``scaled_sign_backward``). A ``Quantizer`` bundles one forward with its backward, so a new
  scheme (ternary, k-bit, powers of two) is one more pair and one more ``Quantizer``.
* **Latent weights** (``LatentWeights``), usable by every layer because it works on a model's named
  parameters, like ``methods.pruning.common.RevivableMask``: the parameters hold the quantized values for
  forward and backward; ``step`` turns the gradient (computed with the quantized weights) into the gradient of
  the float latent weights by the quantizer's surrogate, lets the optimizer update the latent weights, clips them
  to [-clip, clip] where the paper clips, and quantizes again.
* **Quantized activations are layers**: ``SignActivation`` (sign forward, hard-tanh STE backward).
* **Fixed point** <IL, FL> (Gupta et al. 2015): ``FixedPoint``, ``round_nearest`` (Eq. (1)), ``round_stochastic``
  (Eq. (2)), ``fixed_point`` (Eq. (3), saturating), int16 codes, and ``FixedPointActivation`` (layer outputs and
  back-propagated errors in fixed point).

Deployed layers for binary *weights* with real activations (BinaryConnect, BWN): ``PackedSignLinear`` and
``PackedSignConv2d`` store the signs bit-packed (``kernels.binary`` bit order, 1 bit per weight), an optional
per-output-channel alpha and the bias; they decode the +-alpha weights once and run the float GEMM/convolution.
The storage is the papers' 32x; the arithmetic is *not* multiply-free (``kernels/`` has no sign-accumulate
kernel for real activations). Binary weights *and* activations deploy on ``nn.binary.BinaryLinear`` /
``BinaryConv2d`` (XNOR-popcount).

sign(0) = +1 everywhere, as in ``kernels/README.md``'s packing convention, so a simulated layer and its
deployed twin binarize identically.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from kernels.binary import pack_signs, unpack_signs
from nn.conv import conv2d_layer_forward
from nn.linear import Linear, linear_forward
from nn.module import Module

# ----------------------------------------------------------------------------------- quantizers


def sign(x: np.ndarray) -> np.ndarray:
    """sign(x) with sign(0) = +1: (...) float -> (...) of +-1 in x.dtype (BinaryConnect Eq. (1))."""
    return np.where(x >= 0, 1, -1).astype(x.dtype)


def sign_ste_backward(g: np.ndarray, x: np.ndarray, clip: float = 1.0) -> np.ndarray:
    """Straight-through estimator of sign: the derivative of hard-tanh, dL/dx = g * 1_{|x| <= clip}.

    g, x : (...) float arrays of one shape. At |x| == clip the gradient passes (the edge is inside).
    """
    return g * (np.abs(x) <= clip).astype(g.dtype)


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    """BinaryConnect Eq. (3): sigma(x) = clip((x + 1) / 2, 0, 1), in x.dtype."""
    return np.clip((x + 1) / 2, 0, 1).astype(x.dtype, copy=False)


def stochastic_binarize(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BinaryConnect Eq. (2): w_b = +1 with probability p = sigma(w), else -1. (...) float -> (...) +-1.

    A uniform u in [0, 1) gives +1 when u < p, so p = 0 never and p = 1 always gives +1.
    """
    p = hard_sigmoid(w)
    return np.where(rng.random(w.shape) < p, 1, -1).astype(w.dtype)


def channel_axes(W: np.ndarray) -> tuple[int, ...]:
    """Axes of one output channel's filter: (1,) for a Linear (O, I), (1, 2, 3) for a Conv2d (Co, Ci, kH, kW)."""
    return tuple(range(1, W.ndim))


def scaled_sign(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XNOR-Net's binary-weight approximation W ~ alpha B, one alpha per output channel.

    W : (O, ...) float. Returns W_b = alpha * sign(W) of W's shape and alpha (O,) in W.dtype, where
    alpha = ||W||_1 / n = mean |W| over the filter (the minimiser of ||W - alpha B||^2 with B = sign(W)).
    """
    # B* = sign(W);  alpha* = W^T B* / n = ||W||_l1 / n
    alpha = np.abs(W).mean(axis=channel_axes(W)).astype(W.dtype)  # (O,)
    shape = (-1,) + (1,) * (W.ndim - 1)
    return alpha.reshape(shape) * sign(W), alpha


def scaled_sign_backward(g: np.ndarray, W: np.ndarray, alpha: np.ndarray, clip: float = 1.0) -> np.ndarray:
    """Gradient of W_b = alpha(W) sign(W) with the hard-tanh STE for sign (the chain rule through alpha too).

    dL/dW_j = g_j alpha 1_{|W_j| <= clip}  +  sign(W_j) / n * sum_i g_i sign(W_i)   (sums over one filter)

    The second term is d alpha / d W_j = sign(W_j) / n; XNOR-Net writes the gradient as
    g_j (1/n + alpha dsign/dW_j), the same two parts. g, W : (O, ...); alpha (O,).
    """
    axes = channel_axes(W)
    shape = (-1,) + (1,) * (W.ndim - 1)
    n = int(np.prod([W.shape[a] for a in axes]))
    s = sign(W)
    through_sign = sign_ste_backward(g, W, clip) * alpha.reshape(shape)
    through_alpha = s * ((g * s).sum(axis=axes, keepdims=True) / n)
    return (through_sign + through_alpha).astype(g.dtype, copy=False)


@dataclass(frozen=True)
class Quantizer:
    """One weight quantizer: ``forward(W, rng) -> (W_q, ctx)`` and its surrogate ``backward(g, W, ctx) -> dL/dW``.

    ``W`` is the float latent weight, ``g`` the gradient computed with ``W_q``, ``ctx`` what the backward needs.
    """
    name: str
    forward: Callable[[np.ndarray, np.random.Generator | None], tuple[np.ndarray, object]]
    backward: Callable[[np.ndarray, np.ndarray, object], np.ndarray]


def _sign_fwd(W, rng):
    return sign(W), None


def _stochastic_fwd(W, rng):
    if rng is None:
        raise ValueError("stochastic binarization needs an rng: LatentWeights(..., rng=np.random.default_rng(s))")
    return stochastic_binarize(W, rng), None


def _ste_bwd(g, W, ctx):
    return sign_ste_backward(g, W)


def _scaled_fwd(W, rng):
    return scaled_sign(W)


def _scaled_bwd(g, W, alpha):
    return scaled_sign_backward(g, W, alpha)


SIGN = Quantizer("sign", _sign_fwd, _ste_bwd)                      # BinaryConnect deterministic, BNN
STOCHASTIC = Quantizer("stochastic", _stochastic_fwd, _ste_bwd)    # BinaryConnect stochastic
SCALED_SIGN = Quantizer("scaled_sign", _scaled_fwd, _scaled_bwd)   # BWN / XNOR-Net weights


# ----------------------------------------------------------------------------------- latent weights


def weight_names(model: Module) -> list[str]:
    """Every Linear / Conv2d weight (a parameter called ``weight`` with >= 2 dims), in model order."""
    return [n for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "weight" and p.ndim >= 2]


def glorot_lr_scale(model: Module, names: Iterable[str] | None = None) -> dict[str, float]:
    """BinaryConnect's per-layer learning-rate factor 1 / H, H = sqrt(1.5 / (fan_in + fan_out)) the Glorot
    uniform bound (the authors' code; fan = in/out features, or channels x kH x kW for a convolution)."""
    params = dict(model.named_parameters())
    out = {}
    for n in weight_names(model) if names is None else names:
        W = params[n]
        k = int(np.prod(W.shape[2:]))  # 1 for a Linear
        out[n] = 1.0 / float(np.sqrt(1.5 / (W.shape[1] * k + W.shape[0] * k)))
    return out


class LatentWeights:
    """Float latent weights behind quantized parameters (BinaryConnect Algorithm 1; XNOR-Net Algorithm 1).

    The model's parameters named in ``quantizers`` hold W_q = Q(W) for forward and backward, where W is the
    float latent copy kept here. Train with ``train_epochs(..., step=lambda: lw.step(opt.step))``; ``step``:

    1. maps the gradient of W_q to the gradient of W with the quantizer's surrogate backward;
    2. puts W back into the parameters and runs the optimizer (weight decay and momentum act on W);
    3. scales each weight's update by ``lr_scale[name]`` (W <- W_old + s (W_new - W_old), a per-layer learning
       rate for any optimizer: BinaryConnect's Glorot scaling, ``glorot_lr_scale``);
    4. clips W to [-clip, clip] (BinaryConnect and BNN clip; ``clip=None`` does not);
    5. quantizes again (a fresh stochastic draw per minibatch).

    Parameters
    ----------
    model : the network; its other parameters (biases, BatchNorm) stay float and are trained as usual
    quantizers : parameter name -> ``Quantizer`` (or one ``Quantizer`` for every ``weight_names(model)``)
    clip : latent weights are clipped to [-clip, clip] after each step (and once at the start), or None
    rng : the generator of the stochastic quantizers
    lr_scale : parameter name -> factor on its update (default 1 for every weight)
    """

    def __init__(self, model: Module, quantizers: Quantizer | dict[str, Quantizer], clip: float | None = 1.0,
                 rng: np.random.Generator | None = None, lr_scale: dict[str, float] | None = None) -> None:
        params = dict(model.named_parameters())
        if isinstance(quantizers, Quantizer):
            quantizers = {n: quantizers for n in weight_names(model)}
        unknown = [n for n in quantizers if n not in params]
        if unknown:
            raise KeyError(f"LatentWeights: unknown parameter(s) {unknown}; this model's weights are "
                           f"{weight_names(model)}")
        if any(True for n, _ in model.named_masks() if n in quantizers):
            raise ValueError("LatentWeights: a quantized parameter carries a pruning mask; remove it first")
        self.model, self.quantizers, self.clip, self.rng = model, dict(quantizers), clip, rng
        self.lr_scale = {n: float(v) for n, v in (lr_scale or {}).items() if n in quantizers}
        self.params = {n: params[n] for n in quantizers}
        self.latent = {n: params[n].copy() for n in quantizers}
        self.ctx: dict[str, object] = {}
        self._clip()
        self.quantize()

    @property
    def names(self) -> list[str]:
        return list(self.quantizers)

    def _clip(self) -> None:
        if self.clip is not None:
            for w in self.latent.values():
                np.clip(w, -self.clip, self.clip, out=w)

    def quantize(self, quantizers: dict[str, Quantizer] | None = None) -> None:
        """Parameters <- Q(latent), with the training quantizers or (e.g. ``SIGN`` for a stochastic net) others."""
        for n, q in (quantizers or self.quantizers).items():
            w_q, self.ctx[n] = q.forward(self.latent[n], self.rng)
            self.params[n][...] = w_q

    def use_latent(self) -> None:
        """Parameters <- latent float weights (BinaryConnect's test time with real-valued weights, Sec. 2.6)."""
        for n, p in self.params.items():
            p[...] = self.latent[n]

    def step(self, optimizer_step: Callable[[], None]) -> None:
        """Surrogate gradient -> latent weights -> optimizer step -> clip -> quantize again."""
        grads = dict(self.model.named_grads())
        for n, q in self.quantizers.items():
            g = grads[n]
            g[...] = q.backward(g, self.latent[n], self.ctx[n])
            self.params[n][...] = self.latent[n]
        optimizer_step()
        for n, p in self.params.items():
            s = self.lr_scale.get(n)
            if s is not None:
                p[...] = self.latent[n] + s * (p - self.latent[n])  # W_old + s (W_new - W_old)
            self.latent[n][...] = p
        self._clip()
        self.quantize()


# ----------------------------------------------------------------------------------- activation layers


class SignActivation(Module):
    """Binary activation: y = sign(x) (sign(0) = +1); backward g * 1_{|x| <= 1} (hard-tanh STE). Any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self._save(x=x)
        return sign(x)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return sign_ste_backward(grad_output, self._take()["x"])


# ----------------------------------------------------------------------------------- deployed packed signs


class _PackedSign(Module):
    """Buffers ``weight_bits`` (uint64), ``alpha`` (Co,) or None, ``bias`` or None; the decoded +-alpha weight is
    a runtime cache, rebuilt when ``weight_bits`` is replaced."""

    KIND = "binary weights"  # the comparison's kind column: 1-bit weights, float activations

    def _set(self, bits: np.ndarray, W: np.ndarray, scale: bool, bias) -> None:
        self.register_buffer("weight_bits", bits)
        # XNOR-Net: alpha = ||W||_l1 / n per output channel (the same arithmetic as scaled_sign)
        self.register_buffer("alpha", np.abs(W).mean(axis=channel_axes(W)).astype(W.dtype) if scale else None)
        self.register_buffer("bias", None if bias is None else np.array(bias, copy=True))
        self._dtype = W.dtype
        self._decoded, self._decoded_of = None, None

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def storage_bytes(self) -> int:
        """Bytes of the arrays really stored: packed bits, alphas and bias."""
        return int(sum(np.asarray(b).nbytes for b in self._buffers.values()))

    def decoded_weight(self) -> np.ndarray:
        """The +-1 (or +-alpha) weight in PyTorch layout, decoded once per ``weight_bits`` array."""
        if self._decoded_of is not self.weight_bits:
            W = self._unpack().astype(self._dtype)
            if self.alpha is not None:
                W *= self.alpha.reshape((-1,) + (1,) * (W.ndim - 1))
            self._decoded, self._decoded_of = W, self.weight_bits
        return self._decoded

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{type(self).__name__} is a deployed inference-only layer; train with LatentWeights")


class PackedSignLinear(_PackedSign):
    """Binary-weight Linear with real activations: (..., I) float -> (..., O), y = x (alpha sign(W))^T + b."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None = None, scale: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = W.shape
        self._set(pack_signs(np.ascontiguousarray(W)), W, scale, bias)  # weight_bits (O, B)

    @classmethod
    def from_float(cls, linear: Linear, scale: bool = False) -> PackedSignLinear:
        return cls(linear.weight, linear.bias, scale)

    def _unpack(self) -> np.ndarray:
        return unpack_signs(self.weight_bits, self.in_features)  # (O, I)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"PackedSignLinear expects input (..., {self.in_features}), got shape {x.shape}")
        return linear_forward(x, self.decoded_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, scale={self.alpha is not None}, "
                f"bias={self.bias is not None}")


class PackedSignConv2d(_PackedSign):
    """Binary-weight Conv2d with real activations (zero padding as the float layer): (N, Ci, H, W) -> (N, Co, Ho, Wo)."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None = None, stride=(1, 1), pads=((0, 0), (0, 0)),
                 dilation=(1, 1), groups: int = 1, scale: bool = False) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"PackedSignConv2d supports groups=1 only, got {groups}")
        self.out_channels, self.in_channels, kH, kW = W.shape
        self.kernel_size, self.stride, self.dilation, self.groups = (kH, kW), stride, dilation, 1
        self._pads = pads
        self.padding = pads[0]
        # one packed row per output channel in OIHW order (the XNOR kernel's per-pixel words would pad a small Ci)
        self._set(pack_signs(np.ascontiguousarray(W.reshape(W.shape[0], -1))), W, scale, bias)  # (Co, B)

    @classmethod
    def from_float(cls, conv, scale: bool = False) -> PackedSignConv2d:
        return cls(conv.weight, conv.bias, conv.stride, conv._pads, conv.dilation, conv.groups, scale)

    def _unpack(self) -> np.ndarray:
        Co, (kH, kW), Ci = self.out_channels, self.kernel_size, self.in_channels
        return unpack_signs(self.weight_bits, Ci * kH * kW).reshape(Co, Ci, kH, kW)  # (Co, K) -> (Co, Ci, kH, kW)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, (3, 4), "(N, C, H, W) or (C, H, W)")
        x4 = x if x.ndim == 4 else x[None]
        y = conv2d_layer_forward(x4, self.decoded_weight(), self.bias, self.stride, self._pads[0], self._pads[1],
                                 self.dilation, 1)
        return y if x.ndim == 4 else y[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, scale={self.alpha is not None}, bias={self.bias is not None}")


def deploy_packed_signs(model: Module, names: Iterable[str] | None = None, scale: bool = False) -> Module:
    """Replace the Linear / Conv2d layers owning ``names`` (default every weight) by their packed-sign twins,
    in place; the layers' current weights give the signs (and alphas with ``scale``). Returns ``model``."""
    from nn.conv import Conv2d
    names = weight_names(model) if names is None else list(names)
    mods = dict(model.named_modules())
    for n in names:
        parent, _, child = n.rpartition(".")[0].rpartition(".")
        layer = mods[n.rpartition(".")[0]]
        if isinstance(layer, Linear):
            new = PackedSignLinear.from_float(layer, scale)
        elif isinstance(layer, Conv2d):
            new = PackedSignConv2d.from_float(layer, scale)
        else:
            raise TypeError(f"{n}: {type(layer).__name__} has no packed-sign twin (Linear, Conv2d only)")
        setattr(mods[parent], child, new)
    return model


# ----------------------------------------------------------------------------------- training


def train_latent(model: Module, latent: LatentWeights, optimizer, x: np.ndarray, y: np.ndarray, epochs: int,
                 batch_size: int, rng: np.random.Generator) -> list[float]:
    """Mini-batch cross-entropy training through ``latent.step`` (``methods.pruning.common.train_epochs``'s
    loop). Returns the mean training loss of each epoch; the model is left in eval mode with W_q loaded."""
    from methods.pruning.common import train_epochs
    return train_epochs(model, optimizer, x, y, epochs, batch_size, rng, step=lambda: latent.step(optimizer.step))


# ----------------------------------------------------------------------------------- fixed point <IL, FL>
# Gupta et al. 2015, Sec. 3: a WL = IL + FL bit two's-complement number, IL integer bits (sign included) and FL
# fractional bits; its step is eps = 2^-FL and its range [-2^(IL-1), 2^(IL-1) - 2^-FL]. Its integer code is
# x / eps (an int16 for WL <= 16).


@dataclass(frozen=True)
class FixedPoint:
    """The format <IL, FL> of Gupta et al. Sec. 3 (word length WL = IL + FL)."""
    IL: int
    FL: int

    @property
    def WL(self) -> int:
        return self.IL + self.FL

    @property
    def eps(self) -> float:
        return 2.0 ** -self.FL

    @property
    def lo(self) -> float:
        return -(2.0 ** (self.IL - 1))

    @property
    def hi(self) -> float:
        return 2.0 ** (self.IL - 1) - self.eps

    def __str__(self) -> str:
        return f"<{self.IL}, {self.FL}>"


def round_nearest(x: np.ndarray, FL: int) -> np.ndarray:
    """Gupta et al. Eq. (1): floor(x) if floor(x) <= x <= floor(x) + eps/2, else floor(x) + eps, where floor(x) is
    the largest multiple of eps = 2^-FL not above x (so a tie x = floor(x) + eps/2 goes down). (...) float -> x.dtype."""
    eps = 2.0 ** -FL
    return (np.ceil(np.asarray(x, np.float64) / eps - 0.5) * eps).astype(x.dtype)


def round_stochastic(x: np.ndarray, FL: int, rng: np.random.Generator) -> np.ndarray:
    """Gupta et al. Eq. (2): floor(x) + eps with probability (x - floor(x)) / eps, else floor(x) (eps = 2^-FL), so
    E[round(x)] = x. One uniform u in [0, 1) per entry: floor(x / eps + u) is up exactly when u >= 1 - frac."""
    eps = 2.0 ** -FL
    return (np.floor(np.asarray(x, np.float64) / eps + rng.random(np.shape(x))) * eps).astype(x.dtype)


def fixed_point(x: np.ndarray, fmt: FixedPoint, rounding: str = "nearest",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Gupta et al. Eq. (3), Convert(x, <IL, FL>): -2^(IL-1) at or below the range, 2^(IL-1) - 2^-FL at or above it,
    Round(x, <IL, FL>) (``rounding`` "nearest", Eq. (1), or "stochastic", Eq. (2)) inside. (...) float -> x.dtype.

    Rounding first and saturating after is the same map: the range ends are multiples of eps."""
    if rounding == "nearest":
        r = round_nearest(x, fmt.FL)
    elif rounding == "stochastic":
        if rng is None:
            raise ValueError("stochastic rounding needs an rng")
        r = round_stochastic(x, fmt.FL, rng)
    else:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return np.clip(r, fmt.lo, fmt.hi).astype(x.dtype, copy=False)


def fixed_point_ste_backward(g: np.ndarray, x: np.ndarray, fmt: FixedPoint) -> np.ndarray:
    """Surrogate gradient of Convert: the rounding passes straight through, saturation stops it:
    dL/dx = g * 1_{lo <= x <= hi} (the range ends inside). g, x : (...) float of one shape."""
    return g * ((x >= fmt.lo) & (x <= fmt.hi)).astype(g.dtype)


def fixed_point_codes(x: np.ndarray, fmt: FixedPoint, rounding: str = "nearest",
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """The int16 codes Convert(x) / eps of a format with WL <= 16: (...) float -> (...) int16."""
    if fmt.WL > 16:
        raise ValueError(f"int16 codes need WL <= 16, got {fmt} (WL {fmt.WL})")
    return np.rint(fixed_point(np.asarray(x, np.float64), fmt, rounding, rng) / fmt.eps).astype(np.int16)


def from_fixed_point_codes(codes: np.ndarray, FL: int, dtype=np.float32) -> np.ndarray:
    """codes * 2^-FL in ``dtype`` (exact for float32 when WL <= 16): (...) int -> (...) float."""
    return (codes.astype(np.float64) * 2.0 ** -FL).astype(dtype)


class FixedPointActivation(Module):
    """Gupta et al.'s layer outputs and back-propagated errors in fixed point, any shape:
    forward y = Convert(x, fmt); backward dL/dx = Convert(g * 1_{lo <= x <= hi}, grad_fmt) (``grad_fmt`` None: the
    error stays float). ``rounding`` applies to both; ``rng`` draws the stochastic roundings."""

    def __init__(self, fmt: FixedPoint, grad_fmt: FixedPoint | None = None, rounding: str = "nearest",
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.fmt, self.grad_fmt, self.rounding, self.rng = fmt, grad_fmt, rounding, rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self._save(x=x)
        return fixed_point(x, self.fmt, self.rounding, self.rng)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        g = fixed_point_ste_backward(grad_output, self._take()["x"], self.fmt)
        return g if self.grad_fmt is None else fixed_point(g, self.grad_fmt, self.rounding, self.rng)

    def extra_repr(self) -> str:
        return f"fmt={self.fmt}, grad_fmt={self.grad_fmt}, rounding={self.rounding!r}"
