"""nn.export.to_onnx: every exported graph runs in onnxruntime (CPU EP) and agrees with lwnn's own forward.

Float graphs to the float32 tolerance of ``tests.helpers.TOL``; integer graphs within one LSB, on few
outputs (onnxruntime requantises with a float32 multiplier, rounding once half to even; lwnn with a Q31
multiplier, rounding twice half away from zero: kernels/README.md); the binary and shift graphs exactly
up to float32 summation order.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nn
from nn.export import to_onnx
from nn.models import ShortcutA
from nn.quant import QuantConv2d, QuantLinear, quantize
from tests.helpers import assert_close


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def check_float(model, x: np.ndarray, tmp_path, name: str = "m", scale: float = 1.0, batch_free=True) -> None:
    """Export at ``x.shape``, compare; then (batch axis free) run on a different batch size too."""
    model.eval()
    path = tmp_path / f"{name}.onnx"
    to_onnx(model, path, x.shape, dynamic_batch=batch_free)
    # onnx's own shape inference must agree with the output shape lwnn declares (strict: a conflict raises)
    onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    want = model(x)
    assert_close(name, run_onnx(path, x.astype(np.float32)), want, np.float32, scale)
    if batch_free and x.ndim >= 2:
        x2 = np.concatenate([x, x[::-1] * 0.5], axis=0)
        assert_close(f"{name} (batch {len(x2)})", run_onnx(path, x2.astype(np.float32)), model(x2), np.float32,
                     scale)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


LAYERS = {
    "conv": (lambda r: nn.Conv2d(3, 4, 3, rng=r), (2, 3, 9, 8)),
    "conv_stride_pad_dil": (lambda r: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), rng=r),
                            (2, 3, 9, 8)),
    "conv_same_even": (lambda r: nn.Conv2d(3, 4, 4, padding="same", rng=r), (2, 3, 7, 6)),
    "conv_groups": (lambda r: nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False, rng=r), (2, 4, 6, 6)),
    "conv_depthwise": (lambda r: nn.Conv2d(4, 4, 3, padding=1, groups=4, rng=r), (2, 4, 6, 6)),
    "conv1d": (lambda r: nn.Conv1d(3, 5, 3, stride=2, padding=1, dilation=2, rng=r), (2, 3, 11)),
    "conv1d_same": (lambda r: nn.Conv1d(3, 5, 4, padding="same", rng=r), (2, 3, 11)),
    "convT": (lambda r: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=r), (2, 3, 5, 4)),
    "convT_groups_dil": (lambda r: nn.ConvTranspose2d(4, 6, 2, stride=1, groups=2, dilation=2, rng=r), (2, 4, 5, 4)),
    "linear": (lambda r: nn.Linear(7, 5, rng=r), (3, 7)),
    "linear_nd": (lambda r: nn.Linear(7, 5, bias=False, rng=r), (3, 2, 4, 7)),
    "bn1d": (lambda r: nn.BatchNorm1d(5), (4, 5)),
    "bn1d_ncl": (lambda r: nn.BatchNorm1d(5), (4, 5, 3)),
    "bn2d": (lambda r: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    "bn2d_noaffine": (lambda r: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    "layernorm": (lambda r: nn.LayerNorm((4, 5)), (2, 3, 4, 5)),
    "layernorm_nobias": (lambda r: nn.LayerNorm(5, bias=False), (2, 3, 5)),
    "groupnorm": (lambda r: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    "groupnorm_1d": (lambda r: nn.GroupNorm(3, 6, affine=False), (2, 6, 5)),
    "maxpool": (lambda r: nn.MaxPool2d(3, 2, 1), (2, 3, 9, 8)),
    "maxpool_dil_ceil": (lambda r: nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True), (2, 3, 9, 8)),
    "maxpool_ceil_drop": (lambda r: nn.MaxPool2d(2, 2, 1, ceil_mode=True), (2, 3, 9, 7)),  # last window dropped
    "avgpool": (lambda r: nn.AvgPool2d(3, 2, 1), (2, 3, 9, 8)),
    "avgpool_ceil_drop": (lambda r: nn.AvgPool2d(3, 3, 1, ceil_mode=True), (2, 3, 8, 5)),
    "avgpool_ceil_excl": (lambda r: nn.AvgPool2d(2, 3, 1, ceil_mode=True, count_include_pad=False), (2, 3, 7, 10)),
    "avgpool_excl_pad": (lambda r: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 9, 8)),
    "avgpool_divisor": (lambda r: nn.AvgPool2d(2, divisor_override=3), (2, 3, 8, 8)),
    "adaptive_avg_1": (lambda r: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 7)),
    "adaptive_avg_2": (lambda r: nn.AdaptiveAvgPool2d((2, None)), (2, 3, 6, 5)),
    "adaptive_max_1": (lambda r: nn.AdaptiveMaxPool2d(1), (2, 3, 5, 7)),
    "adaptive_max_3": (lambda r: nn.AdaptiveMaxPool2d(3), (2, 3, 6, 9)),
    "relu": (lambda r: nn.ReLU(), (2, 3, 4)),
    "relu6": (lambda r: nn.ReLU6(), (2, 3, 4)),
    "leaky": (lambda r: nn.LeakyReLU(0.2), (2, 3, 4)),
    "tanh": (lambda r: nn.Tanh(), (2, 3, 4)),
    "sigmoid": (lambda r: nn.Sigmoid(), (2, 3, 4)),
    "hardsigmoid": (lambda r: nn.Hardsigmoid(), (2, 3, 4)),
    "hardswish": (lambda r: nn.Hardswish(), (2, 3, 4)),
    "silu": (lambda r: nn.SiLU(), (2, 3, 4)),
    "softmax": (lambda r: nn.Softmax(1), (2, 3, 4)),
    "softmax_last": (lambda r: nn.Softmax(-1), (2, 3, 4)),
    "flatten": (lambda r: nn.Flatten(), (2, 3, 4, 5)),
    "flatten_mid": (lambda r: nn.Flatten(2, 3), (2, 3, 4, 5)),
    "identity": (lambda r: nn.Identity(), (2, 3)),
    "dropout": (lambda r: nn.Dropout(0.5, rng=r), (2, 3)),
    "droppath": (lambda r: nn.DropPath(0.5, rng=r), (2, 3)),
    "shuffle": (lambda r: nn.ChannelShuffle(3), (2, 6, 2, 3)),
    "se": (lambda r: nn.SqueezeExcitation(6, 3, nn.ReLU, nn.Hardsigmoid, rng=r), (2, 6, 4, 4)),
    "shortcut_a": (lambda r: ShortcutA(3, 8, 2), (2, 3, 5, 6)),
    "up_nearest2": (lambda r: nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    "up_nearest_size": (lambda r: nn.Upsample(size=(7, 11)), (2, 3, 4, 5)),
    "up_nearest_1.5": (lambda r: nn.Upsample(scale_factor=1.5), (2, 3, 4, 6)),
    "up_bilinear": (lambda r: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    "up_bilinear_ac": (lambda r: nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True), (2, 3, 4, 5)),
    "up_nearest_0.5": (lambda r: nn.Upsample(scale_factor=0.5), (2, 3, 5, 7)),
    "up_nearest_recompute": (lambda r: nn.Upsample(scale_factor=1.7, recompute_scale_factor=True), (2, 3, 5, 7)),
    "up_bilinear_2.5": (lambda r: nn.Upsample(scale_factor=(2.5, 1.5), mode="bilinear"), (2, 3, 5, 7)),
    "up_bilinear_size1": (lambda r: nn.Upsample(size=(1, 1), mode="bilinear"), (2, 3, 5, 7)),
    "conv1d_unbatched": (lambda r: nn.Conv1d(3, 4, 3, padding=2, rng=r), (3, 9)),
    "convT_unbatched": (lambda r: nn.ConvTranspose2d(3, 2, 3, 2, rng=r), (3, 4, 4)),
    "se_unbatched": (lambda r: nn.SqueezeExcitation(4, 2, rng=r), (4, 5, 5)),
    "softmax_implicit": (lambda r: nn.Softmax(), (2, 3, 4, 2)),
    "up_bilinear_size": (lambda r: nn.Upsample(size=(6, 13), mode="bilinear", align_corners=False), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_float_layer(kind, tmp_path):
    rng = np.random.default_rng(0)
    make, shape = LAYERS[kind]
    m = make(rng)
    for name, p in m.named_parameters():  # non-trivial affine parameters and running statistics
        p[...] = rng.uniform(0.5, 1.5, p.shape) if name.endswith("weight") and "norm" in kind else p
    if kind.startswith("bn"):
        m.running_mean = rng.standard_normal(m.num_features).astype(np.float32)
        m.running_var = rng.uniform(0.5, 2.0, m.num_features).astype(np.float32)
    check_float(m, rand(rng, *shape), tmp_path, kind, batch_free="unbatched" not in kind)


def test_unbatched_and_static(tmp_path):
    rng = np.random.default_rng(1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.MaxPool2d(2), nn.ReLU())
    check_float(m, rand(rng, 3, 8, 8), tmp_path, "unbatched", batch_free=False)
    check_float(m, rand(rng, 2, 3, 8, 8), tmp_path, "static", batch_free=False)
    proto = onnx.load(str(tmp_path / "static.onnx"))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_bn_without_running_stats_uses_batch_statistics(tmp_path):
    rng = np.random.default_rng(2)
    check_float(nn.BatchNorm2d(3, track_running_stats=False), rand(rng, 4, 3, 3, 3), tmp_path, "bn_batch")


def test_containers(tmp_path):
    rng = np.random.default_rng(3)
    c = 6
    model = nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1, rng=rng),
        nn.Residual(nn.Sequential(nn.Conv2d(c, c, 3, padding=1, rng=rng), nn.BatchNorm2d(c)), None),
        nn.Residual(nn.Conv2d(c, c, 1, rng=rng), nn.Conv2d(c, c, 1, bias=False, rng=rng)),
        nn.Concat(nn.Conv2d(c, 2, 1, rng=rng), nn.Identity(), nn.MaxPool2d(3, 1, 1)),  # 2 + 6 + 6 channels
        nn.ChannelSplit([4, 10], nn.Identity(), nn.Sequential(nn.Conv2d(10, 8, 1, rng=rng), nn.ReLU())),
        nn.ChannelShuffle(2),
        nn.SqueezeExcitation(12, 4, rng=rng),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(12, 5, rng=rng), nn.Softmax(1),
    )
    check_float(model, rand(rng, 2, 3, 8, 8), tmp_path, "containers")


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent(cls, batch_first, tmp_path):
    rng = np.random.default_rng(14)
    rnn = getattr(nn, cls)(5, 4, num_layers=2, batch_first=batch_first, bidirectional=True, rng=rng)
    model = nn.Sequential(rnn, nn.LastStep(batch_first), nn.Linear(8, 3, rng=rng))
    check_float(model, rand(rng, 3, 6, 5), tmp_path, f"{cls}{batch_first}")
    single = getattr(nn, cls)(5, 4, bias=False, batch_first=batch_first, rng=rng)
    check_float(single, rand(rng, 7, 5), tmp_path, f"{cls} unbatched", batch_free=False)


def test_embedding(tmp_path):
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.Embedding(11, 4, padding_idx=0, rng=rng), nn.Flatten(), nn.Linear(12, 3, rng=rng))
    idx = rng.integers(0, 11, (5, 3)).astype(np.int64)
    to_onnx(model, tmp_path / "emb.onnx", idx.shape)
    assert_close("embedding", run_onnx(tmp_path / "emb.onnx", idx), model(idx), np.float32)


@pytest.mark.parametrize("name", ["lenet5", "lenet_300_100", "resnet20", "vgg_small"])
def test_zoo(name, tmp_path):
    rng = np.random.default_rng(5)
    model = nn.build(name, rng=0)
    for m in model.modules():  # running statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = 0.1 * rand(rng, m.num_features)
            m.running_var = rng.uniform(0.5, 2.0, m.num_features).astype(np.float32)
    shape = (2, 1, 28, 28) if name.startswith("lenet") else (2, 3, 32, 32)
    check_float(model, rand(rng, *shape), tmp_path, name, batch_free=name != "vgg_small")


def test_resnet_option_b_and_float64(tmp_path):
    rng = np.random.default_rng(6)
    model = nn.build("resnet20", shortcut="B", rng=1, dtype=np.float64)
    x = rng.standard_normal((2, 3, 16, 16))
    to_onnx(model, tmp_path / "r.onnx", x.shape)
    assert_close("resnet20 B (float64 model, float32 graph)", run_onnx(tmp_path / "r.onnx", x.astype(np.float32)),
                 model.eval()(x), np.float32)


def test_shrunk_model_exports_smaller_graph(tmp_path):
    from methods.pruning.surgery import prune_channels
    rng = np.random.default_rng(7)
    model = nn.build("lenet5", rng=0).eval()
    shape = (2, 1, 28, 28)
    big = to_onnx(model, tmp_path / "big.onnx", shape)
    small = prune_channels(model, "0", np.arange(0, 20, 2), shape[1:])  # in place; conv1: 20 -> 10 filters
    assert small[0].weight.shape[0] == 10 and small[2].weight.shape[1] == 10
    check_float(small, rand(rng, *shape), tmp_path, "shrunk")
    shrunk = onnx.load(str(tmp_path / "shrunk.onnx"))
    dims = {i.name: tuple(i.dims) for i in shrunk.graph.initializer}
    assert (10, 1, 5, 5) in dims.values() and (50, 10, 5, 5) in dims.values()
    assert sum(np.prod(i.dims) for i in shrunk.graph.initializer) < sum(np.prod(i.dims) for i in big.graph.initializer)


# ------------------------------------------------------------------------------------------ deployed layers

def test_sparse_layers(tmp_path):
    rng = np.random.default_rng(8)
    conv, lin = nn.Conv2d(3, 6, 3, padding="same", rng=rng), nn.Linear(6 * 36, 5, rng=rng)
    conv.set_mask("weight", rng.random(conv.weight.shape) > 0.7)
    lin.set_mask("weight", rng.random(lin.weight.shape) > 0.8)
    model = nn.Sequential(nn.SparseConv2d.from_dense(conv), nn.ReLU(), nn.Flatten(), nn.SparseLinear.from_dense(lin))
    check_float(model, rand(rng, 2, 3, 6, 6), tmp_path, "sparse")


@pytest.mark.parametrize("act_scale", [False, True])
def test_binary_layers(act_scale, tmp_path):
    rng = np.random.default_rng(9)
    conv = nn.Conv2d(3, 6, 4, stride=1, padding="same", rng=rng)
    conv2 = nn.Conv2d(6, 4, 3, stride=2, padding=1, dilation=1, rng=rng)
    model = nn.Sequential(nn.BinaryConv2d.from_float(conv, act_scale=act_scale), nn.BatchNorm2d(6),
                          nn.BinaryConv2d.from_float(conv2, scale=False, act_scale=act_scale), nn.Flatten(),
                          nn.BinaryLinear.from_float(nn.Linear(4 * 9, 5, rng=rng), act_scale=act_scale))
    x = rand(rng, 2, 3, 6, 6)
    x[0, :, 0, 0] = 0.0  # sign(0) = +1
    check_float(model, x, tmp_path, f"binary{act_scale}")


def test_shift_layers(tmp_path):
    rng = np.random.default_rng(10)
    model = nn.Sequential(nn.ShiftConv2d.from_float(nn.Conv2d(3, 6, 3, padding=1, rng=rng), n_terms=2), nn.ReLU(),
                          nn.Flatten(), nn.ShiftLinear.from_float(nn.Linear(6 * 25, 5, rng=rng), act_bits=6))
    check_float(model, rand(rng, 2, 3, 5, 5), tmp_path, "shift")


def _calibrated(layer, x_float, x_scale, x_zp, cls, dtype=np.uint8):
    """``cls.from_float`` with an output scale/zero point covering the float output's range."""
    y = layer(x_float)
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    qmin = 0 if dtype == np.uint8 else -128
    s = (hi - lo) / 255
    return cls.from_float(layer, x_scale, x_zp, s, int(np.clip(round(qmin - lo / s), qmin, qmin + 255)), dtype), y


def lsb_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    assert got.dtype == want.dtype and got.shape == want.shape
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    return int(d.max()), float((d > 0).mean())


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quant_layers_within_one_lsb(dtype, tmp_path):
    rng = np.random.default_rng(11)
    qmin = 0 if dtype == np.uint8 else -128
    x = rng.uniform(-1, 3, (4, 8, 12, 12)).astype(np.float32)
    x_scale, x_zp = 4 / 255, int(qmin + 64)
    conv1 = nn.Conv2d(8, 16, 3, padding=1, rng=rng)
    q1, y1 = _calibrated(conv1, x, x_scale, x_zp, QuantConv2d, dtype)
    conv2 = nn.Conv2d(16, 8, 3, stride=2, padding=1, dilation=1, rng=rng)
    q2, y2 = _calibrated(conv2, y1, q1.output_scale, q1.output_zero_point, QuantConv2d, dtype)
    lin = nn.Linear(6, 7, rng=rng)  # on the last axis of (N, C, H, W): QuantLinear on N-d input
    q3, _ = _calibrated(lin, y2, q2.output_scale, q2.output_zero_point, QuantLinear, dtype)
    model = nn.Sequential(q1, q2, q3)
    xq = quantize(x, x_scale, x_zp, dtype)
    proto = to_onnx(model, tmp_path / "q.onnx", xq.shape)
    assert [n.op_type for n in proto.graph.node].count("QLinearConv") == 3
    got, want = run_onnx(tmp_path / "q.onnx", xq), model(xq)
    worst, frac = lsb_difference(got, want)
    print(f"int8 export ({np.dtype(dtype).name}): max |onnxruntime - lwnn| = {worst} LSB on {100 * frac:.2f}% "
          f"of {want.size} outputs")
    assert worst <= 1 and frac < 0.02
    # each layer alone, on its own lwnn input (no error propagation between layers)
    for i, (q, xin) in enumerate(((q1, xq), (q2, q1(xq)), (q3, q2(q1(xq))))):
        to_onnx(q, tmp_path / f"q{i}.onnx", xin.shape)
        worst, frac = lsb_difference(run_onnx(tmp_path / f"q{i}.onnx", xin), q(xin))
        assert worst <= 1 and frac < 0.02, (i, worst, frac)


def test_quant_linear_2d(tmp_path):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((9, 40)).astype(np.float32)
    q, _ = _calibrated(nn.Linear(40, 10, rng=rng), x, 6 / 255, 128, QuantLinear)
    xq = quantize(x, 6 / 255, 128)
    to_onnx(q, tmp_path / "ql.onnx", xq.shape)
    worst, frac = lsb_difference(run_onnx(tmp_path / "ql.onnx", xq), q(xq))
    assert worst <= 1 and frac < 0.05


# ------------------------------------------------------------------------------------------ errors

def test_unsupported_module_names_path_and_type(tmp_path):
    class Odd(nn.Module):
        def forward(self, x):
            return x
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), Odd()))
    with pytest.raises(TypeError, match=r"to_onnx: 1\.1 is a .*test_export\..*Odd, which has no ONNX export"):
        to_onnx(model, tmp_path / "x.onnx", (2, 3))

    class MyConv(nn.Conv2d):
        pass
    with pytest.raises(TypeError, match=r"<model> is a .*MyConv"):
        to_onnx(MyConv(1, 1, 1), tmp_path / "x.onnx", (1, 1, 2, 2))


def test_inexpressible_configurations(tmp_path):
    with pytest.raises(ValueError, match=r"0 \(AdaptiveAvgPool2d\) maps input size \(5, 5\) to \(2, 2\)"):
        to_onnx(nn.Sequential(nn.AdaptiveAvgPool2d(2)), tmp_path / "x.onnx", (1, 1, 5, 5))
    with pytest.raises(ValueError, match="divisor_override with ceil_mode"):
        to_onnx(nn.AvgPool2d(2, divisor_override=3, ceil_mode=True), tmp_path / "x.onnx", (1, 1, 5, 5))


def test_export_restores_training_mode(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    model.train()
    to_onnx(model, tmp_path / "x.onnx", (2, 3))
    assert all(m.training for m in model.modules())


# ------------------------------------------------------------------------------------------ command line

def test_cli_export_checkpoint(tmp_path):
    from click.testing import CliRunner

    from methods.pruning.surgery import prune_channels
    from scripts.lwnn import cli
    rng = np.random.default_rng(13)
    cases = {"lenet5": ((1, 28, 28), {}), "resnet20": ((3, 32, 32), {}),
             "lenet_300_100": ((3, 16, 16), {"in_channels": 3, "image_size": 16})}
    for name, (shape, kw) in cases.items():
        model = nn.build(name, rng=0, **kw)
        if name == "lenet5":  # a shrunk model: the checkpoint replays the surgery, the graph is the smaller one
            prune_channels(model, "2", np.arange(30), shape)
        nn.save_checkpoint(tmp_path / f"{name}.h5", model, metadata={"dataset": "cifar10"})
        out = tmp_path / f"{name}.onnx"
        res = CliRunner().invoke(cli, ["export", str(tmp_path / f"{name}.h5"), "--onnx", str(out)])
        assert res.exit_code == 0, res.output
        assert f"input (N, {', '.join(map(str, shape))}) float32" in res.output
        x = rand(rng, 2, *shape)
        assert_close(f"lwnn export {name}", run_onnx(out, x), model.eval()(x), np.float32)
    dims = [tuple(i.dims) for i in onnx.load(str(tmp_path / "lenet5.onnx")).graph.initializer]
    assert (30, 20, 5, 5) in dims
    res = CliRunner().invoke(cli, ["profile", "--checkpoint", str(tmp_path / "lenet_300_100.h5")])  # same shape rule
    assert res.exit_code == 0 and "Linear" in res.output, res.output


def test_cli_export_int8_checkpoint(tmp_path):
    """A hand-assembled deployed model (no zoo recipe: the checkpoint stores its spec); shape from --input-shape."""
    from click.testing import CliRunner

    from scripts.lwnn import cli
    rng = np.random.default_rng(15)
    x = rng.uniform(-1, 2, (3, 4, 8, 8)).astype(np.float32)
    q1, y1 = _calibrated(nn.Conv2d(4, 8, 3, padding=1, rng=rng), x, 3 / 255, 85, QuantConv2d)
    q2, _ = _calibrated(nn.Conv2d(8, 4, 3, stride=2, rng=rng), y1, q1.output_scale, q1.output_zero_point, QuantConv2d)
    model = nn.Sequential(q1, q2)
    nn.save_checkpoint(tmp_path / "q.h5", model)
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "q.h5"), "--onnx", str(tmp_path / "q.onnx"),
                                   "--input-shape", "4,8,8"])
    assert res.exit_code == 0 and "input (N, 4, 8, 8) uint8" in res.output, res.output
    xq = quantize(x, 3 / 255, 85)
    worst, frac = lsb_difference(run_onnx(tmp_path / "q.onnx", xq), model(xq))
    assert worst <= 1 and frac < 0.02


def test_cli_export_errors(tmp_path):
    from click.testing import CliRunner

    from scripts.lwnn import cli
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "missing.h5"), "--onnx", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "Error:" in res.output
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "missing.h5")])
    assert res.exit_code == 2 and "--onnx" in res.output
    nn.save_checkpoint(tmp_path / "pool.h5", nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(3)))
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "pool.h5"), "--onnx", str(tmp_path / "x.onnx"),
                                   "--input-shape", "1,9,8"])
    assert res.exit_code == 1 and "Error: to_onnx: 1 (AdaptiveAvgPool2d) maps input size (7, 6) to (3, 3)" in res.output


def test_importing_nn_does_not_import_onnx():
    import subprocess
    import sys
    code = "import sys, nn; assert nn.to_onnx is nn.export.to_onnx; assert 'onnx' not in sys.modules, 'onnx imported'"
    from pathlib import Path
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
