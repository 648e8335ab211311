"""BNN on real Fashion-MNIST, in one seeded run (same initialisation, same data order): the 784-512-512-10 MLP with
+-1 weights and +-1 hidden activations within 3 points of its real-valued twin (hard-tanh where BNN has Sign,
trained the same way; measured: 0.45 point below at this budget), the parameters exactly +-1 during training and
the latent weights in [-1, 1], and the deployed model (first layer ``PackedSignLinear``, then XNOR-popcount
``BinaryLinear``) giving the predictions of its float +-1 simulation on >= 99.9% of the 10k test images (the
simulation sums +-1 products in float32, exactly, as integers below 2^24; only the bias/BatchNorm arithmetic
order may differ). The batch-64 speed-up over the float twin is measured and printed, not asserted: at ~1.5x
(the first layer stays a float GEMM) it is not a margin that machine load cannot cross."""
from __future__ import annotations

import numpy as np
import pytest

from methods.quantization import common as q
from methods.quantization import courbariaux2016_bnn as bn
from nn.binary import BinaryConv2d, BinaryLinear
from nn.containers import Sequential
from nn.conv import Conv2d
from nn.models import build
from nn.train import evaluate

N_TRAIN, EPOCHS = 10000, 3


def test_hard_tanh_golden_forward_and_backward():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, 1.5])
    m = bn.HardTanh()
    assert m(x).tolist() == [-1.0, -1.0, -0.5, 0.0, 1.0, 1.0]
    # the hard-tanh derivative, 1 on [-1, 1] (edges included), is the STE of SignActivation too
    assert m.backward(np.full(6, 2.0)).tolist() == [0.0, 2.0, 2.0, 2.0, 2.0, 0.0]
    s = q.SignActivation()
    assert s(x).tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    assert s.backward(np.full(6, 2.0)).tolist() == [0.0, 2.0, 2.0, 2.0, 2.0, 0.0]


def test_binarized_lenet5_order_and_deployment_equal_simulation():
    m = bn.binarized(build("lenet5", rng=np.random.default_rng(0)))
    assert [type(c).__name__ for c in m] == [
        "Conv2d", "MaxPool2d", "BatchNorm2d", "SignActivation", "Conv2d", "MaxPool2d", "BatchNorm2d",
        "SignActivation", "Flatten", "Linear", "BatchNorm1d", "SignActivation", "Linear", "BatchNorm1d"]
    latent = bn.latent_weights(m)
    assert len(latent.names) == 4
    rng = np.random.default_rng(1)
    for bnorm in (m[2], m[6], m[10], m[13]):  # non-trivial statistics so that the signs are mixed
        bnorm.running_mean[...] = rng.standard_normal(bnorm.running_mean.shape)
    m.eval()
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    d = bn.deploy(m, latent)
    assert [type(c).__name__ for c in d] == [
        "PackedSignConv2d", "MaxPool2d", "BatchNorm2d", "BinaryConv2d", "MaxPool2d", "BatchNorm2d", "Flatten",
        "BinaryLinear", "BatchNorm1d", "BinaryLinear", "BatchNorm1d"]
    assert d[3].alpha is None and not d[3].act_scale and d[7].alpha is None  # BNN has no XNOR-Net scales
    np.testing.assert_allclose(d(x), m(x), rtol=1e-5, atol=1e-4)


def test_deploy_refuses_a_padded_binary_convolution():
    m = bn.binarized(Sequential(Conv2d(1, 4, 3, rng=0), Conv2d(4, 4, 3, padding=1, rng=0)))
    with pytest.raises(ValueError, match="zero padding"):
        bn.deploy(m, bn.latent_weights(m))


@pytest.mark.slow
def test_bnn_close_to_its_float_twin_and_deployed_xnor_gives_the_simulations_predictions(fmnist):
    from nn.profile import paired_latency
    x, y = fmnist.x_train[:N_TRAIN], fmnist.y_train[:N_TRAIN]
    xt, yt = fmnist.x_test, fmnist.y_test

    twin = bn.binarized(bn.mlp(rng=np.random.default_rng(0)), binary=False)
    bn.train(twin, None, x, y, EPOCHS, np.random.default_rng(1))
    float_acc = evaluate(twin, xt, yt)[1]

    model = bn.binarized(bn.mlp(rng=np.random.default_rng(0)))
    latent = bn.latent_weights(model)
    bn.train(model, latent, x, y, EPOCHS, np.random.default_rng(1))
    bnn_acc = evaluate(model, xt, yt)[1]
    params = dict(model.named_parameters())
    assert latent.clip == 1.0
    for n in latent.names:  # computed with W_b in {-1, +1}; the latent W in [-1, 1]
        assert set(np.unique(params[n])) <= {-1.0, 1.0}, n
        assert np.abs(latent.latent[n]).max() <= 1.0, n

    d = bn.deploy(model, latent)
    assert isinstance(d[1], q.PackedSignLinear) and isinstance(d[3], BinaryLinear) and isinstance(d[5], BinaryLinear)
    assert not any(isinstance(c, (q.SignActivation, BinaryConv2d)) for c in d)
    sim, dep = model(xt), d(xt)
    agree = float((sim.argmax(1) == dep.argmax(1)).mean())
    t = paired_latency(d, twin, 64, tuple(x.shape[1:]))
    print(f"float twin {float_acc:.4f}, BNN {bnn_acc:.4f}, deployed agrees on {agree:.2%} (max |diff| "
          f"{np.abs(sim - dep).max():.1e}); batch 64 {t['ms']:.2f} ms vs {t['reference_ms']:.2f} ms "
          f"(speed-up {t['speedup']}, spread {t['spread']:.0%})")
    assert agree >= 0.999, agree
    assert bnn_acc > float_acc - 0.03
