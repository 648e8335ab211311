"""Binary-Weight-Networks and XNOR-Networks: scaled binary weights, and binary inputs with scales too.

Rastegari M., Ordonez V., Redmon J., Farhadi A. — "XNOR-Net: ImageNet Classification Using Binary
Convolutional Neural Networks", ECCV 2016, arXiv:1603.05279.

**Implements**

Equation numbers are those of the ECCV version as we read it (not re-checked against the paper text here).

* Sec. 3.1, Binary-Weight-Networks: W ~ alpha B with B = sign(W) and alpha = ||W||_l1 / n per output channel,
  the minimiser of J(B, alpha) = ||W - alpha B||^2 (Eq. (2)), derived through Eq. (3)-(7) to
  B* = sign(W) and alpha* = W^T sign(W) / n = ||W||_l1 / n (``common.scaled_sign``).
* Algorithm 1, training: forward and backward with W~ = alpha B, the gradient (straight through sign,
  d sign / dW = 1_{|W| <= 1}, plus the 1/n term through alpha; ``common.scaled_sign_backward``) applied to the
  real-valued weights, which the optimizer (Adam) updates (``common.LatentWeights``, no clipping).
* Sec. 3.2, XNOR-Networks: the input is binarized too, I ~ beta sign(I); for all windows of a convolution at once
  K = A * k, A = mean over channels of |I| and k a kH x kW box of 1 / (kH kW), so that
  I * W ~ (sign(I) (*) sign(W)) (.) K alpha (the section's final approximation; ``XNORInput``; for a Linear
  layer K is the mean |I| of each row). The gradient through sign(I) is the hard-tanh STE.
* Sec. 3.2, the block order BN -> BinActiv -> BinConv -> Pool (``xnor_lenet5`` inserts the BatchNorm), and
  Sec. 4: the first and the last layer stay real-valued.
* Deployment: the XNOR layers on ``nn.binary.BinaryConv2d`` / ``BinaryLinear`` (bit-packed XNOR-popcount with the
  alpha and K scales); BWN on ``common.PackedSignConv2d`` / ``PackedSignLinear`` (1 bit per weight + alpha).

**Deviations**

* Fashion-MNIST and LeNet-5 (conv 20@5x5, conv 50@5x5, fc 500, fc 10) instead of AlexNet / ResNet-18 on
  ImageNet; a few epochs of Adam at a fixed rate (paper: a decaying rate over many epochs).
* BWN binarizes the same two layers as XNOR-Net (conv2 and fc1; conv1 and fc2 float), so that float, BWN,
  XNOR-Net and plain sign differ only in the scales and the binary inputs.
* The weight gradient is the chain rule through W~ = alpha(W) sign(W) with the STE for sign: the alpha term is
  sign(W_j) / n * sum_i g_i sign(W_i); the paper writes dC/dW = dC/dW~ (1/n + alpha dsign/dW), whose 1/n term
  read literally (g_j / n) is not the derivative of alpha.
* K is treated as a constant in the backward pass (no gradient flows through the activation scale); the
  paper does not say how it differentiates K.
* LeNet-5's ReLU between fc1 and fc2 is kept (after the binary fc1, before the float classifier).
* BWN's deployed layers decode the packed signs and run the float GEMM: storage is 1 bit per weight, the
  arithmetic is not multiply-free (``kernels/`` has no sign-accumulate kernel for real inputs).

Reproduce: ``python -m scripts.quantization.rastegari2016_xnor --seed 0``
(see papers/quantization/rastegari2016_xnor.md).
"""
from __future__ import annotations

import numpy as np

from kernels.binary import activation_scale
from methods.quantization.common import (
    SCALED_SIGN,
    SIGN,
    LatentWeights,
    PackedSignConv2d,
    PackedSignLinear,
    Quantizer,
    sign,
    sign_ste_backward,
    train_latent,
)
from nn.binary import BinaryConv2d, BinaryLinear
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d
from nn.optim import Adam

VARIANTS = ("float", "bwn", "xnor", "sign")  # sign: BNN-style binary weights and inputs without the scales


class XNORInput(Module):
    """Binary input for a Linear / Conv2d: y = layer(sign(x)) [* K(x)] + b (XNOR-Net Eq. (11) with the weight
    scale alpha inside ``layer``'s quantized weight). ``layer`` is used without its bias, which moves here, so
    that K scales the dot product only, as on the deployed ``nn.binary`` layers.

    x : (N, Ci, H, W) for a Conv2d, (N, I) for a Linear; output the layer's.
    """

    def __init__(self, layer: Module, act_scale: bool = True) -> None:
        super().__init__()
        if not isinstance(layer, (Linear, Conv2d)) or getattr(layer, "groups", 1) != 1:
            raise TypeError(f"XNORInput wraps a Linear or a groups=1 Conv2d, got {layer!r}")
        bias = layer.bias
        layer.register_parameter("bias", None)
        self.layer = layer
        self.register_parameter("bias", None if bias is None else bias.copy())
        self.act_scale = bool(act_scale)

    def _K(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.layer, Linear):
            return np.abs(x).mean(axis=-1, keepdims=True)  # K: mean |x| per row, (N, 1)
        lay = self.layer
        # K = A * k: A = mean_c |I|, k = box of 1 / (kH kW); (N, Ho*Wo) -> (N, 1, Ho, Wo)
        K = activation_scale(x, lay.kernel_size, lay.stride, lay._pads[0], lay.dilation)
        return K.reshape(x.shape[0], 1, *self._out_hw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        y = self.layer(sign(x))
        if isinstance(self.layer, Conv2d):
            self._out_hw = y.shape[2:]
        K = self._K(x) if self.act_scale else None
        if K is not None:
            y = y * K
        if self.bias is not None:
            y = y + (self.bias if y.ndim == 2 else self.bias[:, None, None])
        self._save(x=x, K=K)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        c = self._take()
        if self.bias is not None:
            self._grads["bias"] += grad_output.sum(axis=0) if grad_output.ndim == 2 else grad_output.sum(axis=(0, 2, 3))
        g = grad_output if c["K"] is None else grad_output * c["K"]  # K held constant
        return sign_ste_backward(self.layer.backward(g), c["x"])

    def extra_repr(self) -> str:
        return f"act_scale={self.act_scale}, bias={self.bias is not None}"


BINARIZED = (2, 5)  # LeNet-5's conv2 and fc1; conv1 (0) and fc2 (7) stay float (Sec. 4)


def xnor_lenet5(model: Sequential, variant: str) -> Sequential:
    """LeNet-5 (``nn.models.lenet5``, trained or fresh) in XNOR-Net's block order, as the variant wants:

    conv1, pool, BN2d, [XNORInput](conv2), pool, flatten, BN1d, [XNORInput](fc1), ReLU, fc2

    "float" and "bwn" keep conv2 / fc1 as plain layers (real inputs), "xnor" wraps them with the K scale and
    "sign" without it. The same layer objects are reused. Weights are binarized by ``latent_weights``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    layers = list(model)
    if len(layers) != 8 or not isinstance(layers[2], Conv2d) or not isinstance(layers[5], Linear):
        raise ValueError("xnor_lenet5 expects nn.models.lenet5's 8 layers (conv, pool, conv, pool, flatten, fc, "
                         "relu, fc)")
    conv2, fc1 = layers[2], layers[5]
    if variant in ("xnor", "sign"):
        conv2, fc1 = XNORInput(conv2, variant == "xnor"), XNORInput(fc1, variant == "xnor")
    dt = model.dtype
    return Sequential(layers[0], layers[1], BatchNorm2d(layers[2].in_channels, dtype=dt), conv2, layers[3], layers[4],
                      BatchNorm1d(layers[5].in_features, dtype=dt), fc1, layers[6], layers[7])


def binarized_names(model: Sequential) -> list[str]:
    """The weights ``xnor_lenet5`` binarizes: conv2's and fc1's (inside an ``XNORInput`` or not)."""
    return [n for n, _ in model.named_parameters() if n.endswith("weight") and n.split(".")[0] in ("3", "7")]


def latent_weights(model: Sequential, variant: str) -> LatentWeights | None:
    """BWN / XNOR: alpha sign(W) (``SCALED_SIGN``); "sign": sign(W) with the hard-tanh STE; "float": None."""
    if variant == "float":
        return None
    q: Quantizer = SIGN if variant == "sign" else SCALED_SIGN
    return LatentWeights(model, {n: q for n in binarized_names(model)}, clip=None)


def train(model: Sequential, latent: LatentWeights | None, x: np.ndarray, y: np.ndarray, epochs: int,
          rng: np.random.Generator, lr: float = 1e-3, batch_size: int = 64) -> list[float]:
    """Algorithm 1 with Adam (float parameters trained plainly when ``latent`` is None)."""
    opt = Adam(model, lr=lr)
    if latent is None:
        from methods.pruning.common import train_epochs
        return train_epochs(model, opt, x, y, epochs, batch_size, rng)
    return train_latent(model, latent, opt, x, y, epochs, batch_size, rng)


def deploy(model: Sequential, latent: LatentWeights | None, variant: str) -> Sequential:
    """The deployed twin of a trained ``xnor_lenet5`` model (BatchNorm and the float layers shared, in eval):

    xnor -> ``BinaryConv2d`` / ``BinaryLinear`` with alpha and K; sign -> the same without scales; bwn ->
    ``PackedSignConv2d`` / ``PackedSignLinear`` with alpha; float -> the model itself. The binary layers take the
    latent weights, so alpha = mean |W| is computed exactly as in training.
    """
    if variant == "float":
        return model
    W = latent.latent
    layers = list(model)
    for i in (3, 7):
        m = layers[i]
        inner = m.layer if isinstance(m, XNORInput) else m
        Wl = W[binarized_names(model)[0 if i == 3 else 1]]
        if variant == "bwn":
            layers[i] = (PackedSignConv2d(Wl, inner.bias, inner.stride, inner._pads, inner.dilation, 1, scale=True)
                         if i == 3 else PackedSignLinear(Wl, inner.bias, scale=True))
        else:
            scaled = variant == "xnor"
            layers[i] = (BinaryConv2d(Wl, m.bias, inner.stride, inner.padding, inner.dilation, scale=scaled,
                                      act_scale=scaled, pads=inner._pads)
                         if i == 3 else BinaryLinear(Wl, m.bias, scale=scaled, act_scale=scaled))
    return Sequential(*layers).eval()
