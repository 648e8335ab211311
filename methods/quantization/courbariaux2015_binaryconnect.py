"""BinaryConnect: binary weights during the forward and backward propagations, float weights for the updates.

Courbariaux M., Bengio Y., David J.-P. — "BinaryConnect: Training Deep Neural Networks with binary weights
during propagations", NIPS 2015, arXiv:1511.00363.

**Implements**

* Eq. (1), deterministic binarization w_b = +1 if w >= 0 else -1 (``common.sign``, quantizer ``common.SIGN``).
* Eq. (2) and (3), stochastic binarization: w_b = +1 with probability p = sigma(w), sigma the hard sigmoid
  clip((x + 1) / 2, 0, 1) (``common.stochastic_binarize``, quantizer ``common.STOCHASTIC``), a fresh draw per
  minibatch.
* Algorithm 1: forward and backward with w_b, the gradient with respect to w_b applied to the real-valued w
  (straight through; with w kept in [-1, 1] the hard-tanh indicator is 1), then w clipped to [-1, 1]
  (``common.LatentWeights`` with ``clip=1``). Biases and BatchNorm parameters stay real-valued.
* Section 2.5/2.6 and the experiments: BatchNorm after every weighted layer, Adam; test-time inference with
  the binary weights for the deterministic variant and with the real-valued weights for the stochastic one (the
  paper's choice, Sec. 2.6); we also report the stochastic net evaluated and deployed with sign(w).

**Deviations**

* Fashion-MNIST instead of MNIST / CIFAR-10 / SVHN, a 784-256-256-10 MLP (paper: 3 x 1024 hidden units) and a
  few epochs (paper: hundreds), softmax cross-entropy instead of the paper's square hinge loss (L2-SVM output),
  no dropout, no learning-rate decay.
* Each weight's learning rate is scaled by 1 / H, H = sqrt(1.5 / (fan_in + fan_out)), as in the authors' code
  (the paper says only that the rates are scaled by the Glorot factors); the latent weights are clipped to [-1, 1]
  (the code's H = 1) and start from the layers' own (Kaiming-uniform) initialisation.
* Deployment: the signs are stored bit-packed (1 bit per weight, ``common.PackedSignLinear`` /
  ``PackedSignConv2d``) but the deployed layers decode them to +-1 and run the float GEMM: ``kernels/`` has no
  sign-accumulate (multiply-free) kernel for real-valued activations, so no speed-up is claimed.
* The demo fine-tunes the trained LeNet-5 after inserting BatchNorm after every layer (LeNet-5 has none; with
  +-1 weights and no normalisation the activations grow with the fan-in).

Reproduce: ``python -m scripts.quantization.courbariaux2015_binaryconnect --seed 0``
(see papers/quantization/courbariaux2015_binaryconnect.md).
"""
from __future__ import annotations

import itertools

import numpy as np

from methods.quantization.common import (
    SIGN,
    STOCHASTIC,
    LatentWeights,
    deploy_packed_signs,
    glorot_lr_scale,
    train_latent,
    weight_names,
)
from nn.activations import ReLU
from nn.basic import Flatten
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d
from nn.optim import Adam

MODES = {"deterministic": SIGN, "stochastic": STOCHASTIC}


def mlp(sizes=(784, 256, 256, 10), rng: np.random.Generator | None = None, dtype=np.float32) -> Sequential:
    """The permutation-invariant MLP of the paper's MNIST experiment at small width: Flatten, then
    (Linear, BatchNorm1d, ReLU) per hidden layer and (Linear, BatchNorm1d) at the output (BN on every layer)."""
    layers: list[Module] = [Flatten()]  # (N, C, H, W) -> (N, C*H*W)
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [Linear(a, b, rng=rng, dtype=dtype), BatchNorm1d(b)]
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers).to(dtype)


def with_batchnorm(model: Sequential) -> Sequential:
    """A Sequential with a BatchNorm after every Linear / Conv2d (the same layer objects, new indices)."""
    out: list[Module] = []
    for m in model:
        out.append(m)
        if isinstance(m, Conv2d):
            out.append(BatchNorm2d(m.out_channels))
        elif isinstance(m, Linear):
            out.append(BatchNorm1d(m.out_features))
    return Sequential(*out).to(model.dtype)


def train(model: Module, x: np.ndarray, y: np.ndarray, mode: str, epochs: int, rng: np.random.Generator,
          lr: float = 1e-3, batch_size: int = 64, glorot: bool = True) -> tuple[LatentWeights, list[float]]:
    """Algorithm 1 with Adam on every weight of ``model`` (``mode`` "deterministic" or "stochastic"), each
    weight's learning rate scaled by its Glorot factor (``glorot``, the authors' code).

    Returns the ``LatentWeights`` (the real-valued w, clipped to [-1, 1]) and the per-epoch training losses;
    the model's parameters hold w_b afterwards (for the stochastic mode, ``finish`` chooses the test-time form).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    latent = LatentWeights(model, MODES[mode], clip=1.0, rng=rng, lr_scale=glorot_lr_scale(model) if glorot else None)
    opt = Adam(model, lr=lr)
    losses = train_latent(model, latent, opt, x, y, epochs, batch_size, rng)
    return latent, losses


def finish(latent: LatentWeights, test_time: str) -> None:
    """Load the test-time weights (Sec. 2.6): "binary" -> sign(w), "real" -> the real-valued w."""
    if test_time == "binary":
        latent.quantize({n: SIGN for n in latent.names})
    elif test_time == "real":
        latent.use_latent()
    else:
        raise ValueError(f"test_time must be 'binary' or 'real', got {test_time!r}")


def deploy(model: Module, latent: LatentWeights) -> Module:
    """The binary-weight model as deployed: every binarized layer on ``PackedSignLinear`` / ``PackedSignConv2d``
    (the signs of the latent weights, 1 bit each, no scale). Modifies and returns ``model``."""
    finish(latent, "binary")
    return deploy_packed_signs(model, [n for n in weight_names(model) if n in latent.names], scale=False)
