"""methods/quantization/common.py: quantizer golden values worked by hand, the surrogate gradients against their
closed forms at 0, inside and at the clip edges, the latent-weight step, and the packed-sign deployed layers."""
from __future__ import annotations

import numpy as np
import pytest

from methods.quantization import common as q
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.linear import Linear
from nn.optim import SGD
from tests.helpers import assert_close, finite_difference_check


def test_sign_golden_and_zero_is_plus_one():
    x = np.array([-2.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0], np.float32)
    assert q.sign(x).tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert q.sign(x).dtype == np.float32
    assert q.sign(np.array([-0.0]))[0] == 1.0  # -0.0 >= 0: +1 like the packing convention


def test_sign_ste_backward_closed_form_at_zero_inside_edges_and_outside():
    # d hardtanh / dx = 1 on [-1, 1] (edges included), 0 outside
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001], np.float64)
    g = np.array([7.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    assert q.sign_ste_backward(g, x).tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]
    assert q.sign_ste_backward(g, x, clip=0.5).tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 0.0, 0.0]
    layer = q.SignActivation()
    assert layer(x).tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert layer.backward(g).tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]
    with pytest.raises(RuntimeError, match="fresh forward"):
        layer.backward(g)


def test_hard_sigmoid_and_stochastic_binarization():
    # Eq. (3): sigma(x) = clip((x + 1) / 2, 0, 1)
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    assert q.hard_sigmoid(x).tolist() == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    rng = np.random.default_rng(0)
    w = np.repeat(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]), 20000).reshape(5, 20000)
    wb = q.stochastic_binarize(w, rng)
    assert set(np.unique(wb)) <= {-1.0, 1.0}
    p_plus = (wb == 1).mean(axis=1)
    assert p_plus[0] == 0.0 and p_plus[-1] == 1.0  # p = 0 and p = 1 are exact
    np.testing.assert_allclose(p_plus[1:4], [0.25, 0.5, 0.75], atol=0.015)  # 20k draws: sd 0.0035
    # E[w_b] = 2p - 1 = w on [-1, 1]
    np.testing.assert_allclose(wb.mean(axis=1), [-1.0, -0.5, 0.0, 0.5, 1.0], atol=0.03)


def test_scaled_sign_golden_per_output_channel():
    W = np.array([[0.5, -1.5, 1.0, 0.0], [-0.2, -0.2, 0.2, 0.2]])  # (O=2, I=4)
    Wb, alpha = q.scaled_sign(W)
    # alpha = ||W||_1 / n: (0.5 + 1.5 + 1 + 0) / 4 = 0.75 and 0.8 / 4 = 0.2
    assert_close("alpha", alpha, np.array([0.75, 0.2]))
    assert_close("W_b", Wb, np.array([[0.75, -0.75, 0.75, 0.75], [-0.2, -0.2, 0.2, 0.2]]))
    # a conv filter (Co=1, Ci=2, 1, 2): alpha over Ci x kH x kW
    Wc = np.array([[[[1.0, -3.0]], [[2.0, -2.0]]]])
    Wcb, ac = q.scaled_sign(Wc)
    assert ac.tolist() == [2.0] and Wcb.ravel().tolist() == [2.0, -2.0, 2.0, -2.0]


def test_scaled_sign_backward_closed_form_and_finite_differences_of_alpha_path():
    W = np.array([[0.5, -1.5, 1.0, 0.0]])
    g = np.array([[1.0, 2.0, 3.0, 4.0]])
    _, alpha = q.scaled_sign(W)  # 0.75
    # through sign: g * alpha * 1_{|W| <= 1} = [0.75, 0, 2.25, 3.0]
    # through alpha: sign(W_j) / n * sum_i g_i sign(W_i) = sign(W_j) * (1 - 2 + 3 + 4) / 4 = sign(W_j) * 1.5
    want = np.array([[0.75 + 1.5, 0.0 - 1.5, 2.25 + 1.5, 3.0 + 1.5]])
    assert_close("dW", q.scaled_sign_backward(g, W, alpha), want)
    # the alpha path is exact calculus: with sign held fixed (no W near 0), <g, alpha(W) sign(W)> by differences
    rng = np.random.default_rng(1)
    W2 = rng.uniform(0.2, 0.9, (3, 5)) * rng.choice([-1.0, 1.0], (3, 5))
    g2 = rng.standard_normal((3, 5))
    a2 = q.scaled_sign(W2)[1]
    finite_difference_check(lambda w: float(np.sum(g2 * q.scaled_sign(w)[0])), W2.copy(),
                            q.scaled_sign_backward(g2, W2, a2) - g2 * a2[:, None])  # minus the STE part


def test_latent_weights_step_maps_gradient_updates_latent_clips_and_requantizes():
    model = Sequential(Linear(3, 2, rng=0, dtype=np.float64))
    p = model[0].weight
    p[...] = [[0.5, -0.9, 1.4], [-0.1, 0.0, 2.0]]
    lw = q.LatentWeights(model, q.SIGN, clip=1.0)
    assert lw.names == ["0.weight"]
    assert_close("clipped at start", lw.latent["0.weight"], np.array([[0.5, -0.9, 1.0], [-0.1, 0.0, 1.0]]))
    assert p.tolist() == [[1, -1, 1], [-1, 1, 1]]  # the parameter holds W_b = sign(W)
    model.zero_grad()
    model[0]._grads["weight"][...] = [[1.0, -1.0, 1.0], [2.0, 2.0, -4.0]]
    opt = SGD(model, lr=0.5)
    lw.step(opt.step)
    # W <- clip(W - 0.5 g): [[0.0, -0.4, 0.5], [-1.1 -> -1, -1.0, 1.0 + 2 -> 1]]
    assert_close("latent", lw.latent["0.weight"], np.array([[0.0, -0.4, 0.5], [-1.0, -1.0, 1.0]]))
    assert p.tolist() == [[1, -1, 1], [-1, -1, 1]]
    lw.use_latent()
    assert_close("use_latent", p, lw.latent["0.weight"])
    with pytest.raises(KeyError, match="0.weight"):
        q.LatentWeights(model, {"nope.weight": q.SIGN})


def test_latent_lr_scale_scales_the_update():
    model = Sequential(Linear(2, 1, rng=0, dtype=np.float64))
    model[0].weight[...] = [[0.1, -0.1]]
    lw = q.LatentWeights(model, q.SIGN, clip=None, lr_scale={"0.weight": 3.0})
    model.zero_grad()
    model[0]._grads["weight"][...] = [[0.1, 0.1]]
    lw.step(SGD(model, lr=0.1).step)
    assert_close("W", lw.latent["0.weight"], np.array([[0.1 - 0.03, -0.1 - 0.03]]))
    # Glorot factor 1 / sqrt(1.5 / (fan_in + fan_out)) = 1 / sqrt(1.5 / 3)
    assert q.glorot_lr_scale(model)["0.weight"] == pytest.approx(np.sqrt(2.0))


@pytest.mark.parametrize("scale", [False, True])
def test_packed_sign_layers_equal_the_float_layers_with_quantized_weights(scale):
    rng = np.random.default_rng(0)
    lin = Linear(70, 5, rng=rng, dtype=np.float64)  # 70 inputs: two words, padding bits in the second
    conv = Conv2d(3, 4, 3, padding=1, rng=rng, dtype=np.float64)
    for layer, x in ((lin, rng.standard_normal((6, 70))), (conv, rng.standard_normal((2, 3, 5, 5)))):
        Wq = q.scaled_sign(layer.weight)[0] if scale else q.sign(layer.weight)
        deployed = (q.PackedSignLinear.from_float(layer, scale) if layer is lin
                    else q.PackedSignConv2d.from_float(layer, scale))
        layer.weight[...] = Wq
        assert_close(type(deployed).__name__, deployed(x), layer(x))
        n_bits = 64 * deployed.weight_bits.size
        assert n_bits < layer.weight.size + 64 * layer.weight.shape[0]  # 1 bit per weight + row padding
        with pytest.raises(RuntimeError, match="inference-only"):
            deployed.backward(x)
