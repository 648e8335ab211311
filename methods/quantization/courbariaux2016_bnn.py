"""Binarized Neural Networks: weights and activations constrained to +1 or -1, deployed on XNOR-popcount.

Courbariaux M., Hubara I., Soudry D., El-Yaniv R., Bengio Y. — "Binarized Neural Networks: Training Deep Neural
Networks with Weights and Activations Constrained to +1 or -1", arXiv:1602.02830, 2016 (NIPS 2016 as Hubara
et al., "Binarized Neural Networks").

**Implements**

Equation and algorithm numbers as we read arXiv v3 (not re-checked against the paper text in this session).

* Eq. (1), deterministic binarization x_b = Sign(x) = +1 if x >= 0 else -1, of the weights and of the
  activations (``common.sign``; weights by ``common.SIGN``, activations by ``common.SignActivation``).
* The straight-through estimator of Sign (Sec. 1.3, "propagating gradients through discretization"): q = Sign(r),
  g_r = g_q 1_{|r| <= 1}, the derivative of hard-tanh, which cancels the gradient when |r| > 1
  (``common.sign_ste_backward``, the backward of ``SignActivation`` and of ``SIGN``).
* Algorithm 1, training: W_b = Sign(W); s_k = a_b(k-1) W_b(k); a_k = BatchNorm(s_k); a_b(k) = Sign(a_k) for
  k < L (the last layer's BatchNorm output is kept real and goes into the loss); backward with the STE; the real
  W updated with the layer's learning-rate scale gamma_k and clipped, W <- Clip(Update(W, gamma_k eta, g_W), -1, 1)
  (``common.LatentWeights(clip=1.0)``; gamma_k = 1 by default, the Glorot factor ``common.glorot_lr_scale``
  with ``latent_weights(glorot=True)``). BatchNorm and biases stay real-valued and are updated plainly.
* Sec. 1.7 (first layer): its input stays real-valued (its weights are binary); every other layer's input is
  a +-1 vector, so its dot products are XNOR-popcounts (Sec. 2 / 3, the binary kernel).
* Deployment: layers with +-1 inputs on ``nn.binary.BinaryLinear`` / ``BinaryConv2d`` (bit-packed weights,
  XNOR-popcount on the signs of the BatchNorm outputs, no alpha or K scales: BNN has none); the first layer on
  ``common.PackedSignLinear`` / ``PackedSignConv2d`` (1 bit per weight, real input).

**Deviations**

* Fashion-MNIST and a 784-512-512-10 MLP (paper: MNIST, an MLP of 3 hidden layers of a few thousand units,
  4096 in the Theano run as we recall, hundreds of epochs); LeNet-5 in the demo (paper: a VGG-like CIFAR-10 net). A few epochs of Adam at a
  fixed rate (paper: a decaying rate); softmax cross-entropy instead of the square hinge loss; no dropout.
* Plain BatchNorm and Adam instead of shift-based BatchNorm (Algorithm 2) and shift-based AdaMax (Algorithm 3),
  the power-of-two approximations that save multiplications at training time (the paper reports no accuracy
  loss from them).
* The first layer is deployed with its signs bit-packed but a float GEMM on the decoded +-1 weights, not the
  paper's bit-plane decomposition of an 8-bit input, s = sum_n 2^(n-1) (x^n . w_b): our inputs are
  standardised floats, and ``kernels/`` has no sign-accumulate kernel for real inputs.
* gamma_k = 1 for every layer by default (as we recall the authors' MNIST code does; their BinaryConnect code
  used the Glorot factors): with the Glorot factors the test's MLP reached 81.55% instead of 83.28%, and the demo's
  LeNet-5, which starts from small trained weights, 76.89% instead of 82.71% (one seeded run each).
* Deterministic binarization only (the paper's stochastic activations, Eq. (2), are for training only and the
  authors use deterministic ones in most experiments).
* Where the network pools, the order is Conv -> MaxPool -> BatchNorm -> Sign (the authors' CIFAR code); a binary
  convolution with zero padding is refused, because the kernel pads the signs with +1 where the float
  simulation pads with 0.

Reproduce: ``python -m scripts.quantization.courbariaux2016_bnn --seed 0``
(see papers/quantization/courbariaux2016_bnn.md).
"""
from __future__ import annotations

import itertools

import numpy as np

from methods.quantization.common import (
    SIGN,
    LatentWeights,
    PackedSignConv2d,
    PackedSignLinear,
    SignActivation,
    glorot_lr_scale,
    sign_ste_backward,
    train_latent,
)
from nn.activations import ReLU
from nn.basic import Flatten
from nn.binary import BinaryConv2d, BinaryLinear
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d
from nn.optim import Adam
from nn.pooling import MaxPool2d


class HardTanh(Module):
    """y = clip(x, -1, 1), the real-valued twin of ``common.SignActivation`` with its backward, g * 1_{|x| <= 1}
    (hard-tanh's derivative is the STE). Any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self._save(x=x)
        return np.clip(x, -1, 1)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return sign_ste_backward(grad_output, self._take()["x"])


def mlp(sizes=(784, 512, 512, 10), rng: np.random.Generator | None = None, dtype=np.float32) -> Sequential:
    """A plain float MLP for ``binarized``: Flatten, Linear (no bias: BatchNorm follows), ReLU, ..., Linear."""
    layers: list[Module] = [Flatten()]  # (N, C, H, W) -> (N, C*H*W)
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(Linear(a, b, bias=False, rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers).to(dtype)


def binarized(model: Sequential, binary: bool = True) -> Sequential:
    """BNN's layer order from a float Sequential (an ``mlp`` or ``nn.models.lenet5``, trained or fresh):

    every Linear / Conv2d (and the MaxPool2d right after it) is followed by BatchNorm and then Sign, except the
    last one, which is followed by BatchNorm only (its output is real and goes into the loss); ReLUs are
    dropped. ``binary=False`` puts ``HardTanh`` where Sign would be: the real-valued network trained the same
    way (same layers, same STE window). The layer objects are reused; weights are binarized by ``latent_weights``.
    """
    layers = list(model)
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (Linear, Conv2d))]
    if not weighted:
        raise ValueError("binarized: the model has no Linear or Conv2d layer")
    out: list[Module] = []
    i = 0
    while i < len(layers):
        k, m = i, layers[i]
        i += 1
        if isinstance(m, ReLU):
            continue
        out.append(m)
        if not isinstance(m, (Linear, Conv2d)):
            continue
        if i < len(layers) and isinstance(layers[i], MaxPool2d):
            out.append(layers[i])
            i += 1
        out.append(BatchNorm2d(m.out_channels, dtype=m.weight.dtype) if isinstance(m, Conv2d)
                   else BatchNorm1d(m.out_features, dtype=m.weight.dtype))
        if k < weighted[-1]:  # a_b(k) = Sign(BatchNorm(s_k)) for k < L
            out.append(SignActivation() if binary else HardTanh())
    return Sequential(*out).to(model.dtype)


def latent_weights(model: Sequential, glorot: bool = False) -> LatentWeights:
    """Every weight binarized by Sign with the STE, latent W clipped to [-1, 1]; the learning-rate scale gamma_k
    is 1, or the Glorot factor with ``glorot`` (measured worse here, see the note)."""
    return LatentWeights(model, SIGN, clip=1.0, lr_scale=glorot_lr_scale(model) if glorot else None)


def train(model: Sequential, latent: LatentWeights | None, x: np.ndarray, y: np.ndarray, epochs: int,
          rng: np.random.Generator, lr: float = 1e-3, batch_size: int = 64) -> list[float]:
    """Algorithm 1 with Adam (the real-valued twin trained plainly, same optimizer, when ``latent`` is None)."""
    opt = Adam(model, lr=lr)
    if latent is None:
        from methods.pruning.common import train_epochs
        return train_epochs(model, opt, x, y, epochs, batch_size, rng)
    return train_latent(model, latent, opt, x, y, epochs, batch_size, rng)


def deploy(model: Sequential, latent: LatentWeights) -> Sequential:
    """The deployed twin of a trained ``binarized`` model (BatchNorm, pooling and Flatten shared, in eval mode).

    A Linear / Conv2d right after a ``SignActivation`` (a Flatten between them commutes with Sign) becomes ``BinaryLinear`` / ``BinaryConv2d`` without scales
    (the Sign layer is dropped: the binary layer packs the signs of its input itself, with sign(0) = +1 as
    ``common.sign``); a Linear / Conv2d with a real input (the first layer) becomes ``PackedSignLinear`` /
    ``PackedSignConv2d``. The signs are those of the latent weights.
    """
    params = dict(model.named_parameters())
    W = {id(params[n]): latent.latent[n] for n in latent.names}
    layers = list(model)

    def feeds_weighted(i: int) -> bool:  # layer i's output reaches a Linear / Conv2d through Flattens only
        j = i + 1
        while j < len(layers) and isinstance(layers[j], Flatten):
            j += 1
        return j < len(layers) and isinstance(layers[j], (Linear, Conv2d))

    def after_sign(i: int) -> bool:  # layer i's input is a SignActivation's output (through Flattens only)
        j = i - 1
        while j >= 0 and isinstance(layers[j], Flatten):
            j -= 1
        return j >= 0 and isinstance(layers[j], SignActivation)

    out: list[Module] = []
    for i, m in enumerate(layers):
        if isinstance(m, SignActivation) and feeds_weighted(i):
            continue
        if not isinstance(m, (Linear, Conv2d)) or id(m.weight) not in W:
            out.append(m)
            continue
        Wl = W[id(m.weight)]
        binary_input = after_sign(i)
        if isinstance(m, Linear):
            out.append(BinaryLinear(Wl, m.bias, scale=False) if binary_input else PackedSignLinear(Wl, m.bias))
        elif binary_input:
            if m.groups != 1 or any(p for pad in m._pads for p in pad):
                raise ValueError(f"layer {i}: a grouped binary convolution, or one with zero padding (the XNOR "
                                 "kernel pads the signs with +1, the float simulation with 0)")
            out.append(BinaryConv2d(Wl, m.bias, m.stride, 0, m.dilation, scale=False))
        else:
            out.append(PackedSignConv2d(Wl, m.bias, m.stride, m._pads, m.dilation, m.groups))
    return Sequential(*out).eval()
