"""End to end: compressed models against the same dense float model in lwnn, next to PyTorch's float latency.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_models

* LeNet-300-100 with 95% of every layer's weights pruned (magnitude), deployed on ``SparseLinear`` (CSR kernel).
* LeNet-5 (Caffe variant) binarized as XNOR-Net does: the first conv (1 input channel) and the last
  classifier layer stay float, conv2 and fc1 (99% of the MACs) run on ``BinaryConv2d``/``BinaryLinear``.
Latency: the compressed and the dense lwnn model are timed by ``nn.profile.paired_latency`` (interleaved short
samples, each model's median and the median per-pair speed-up with its spread, so load drift cancels); torch's
float model is the median of warmed-up repeats. Eval mode, batch 1 and 64, float32, 2 threads. Accuracy is not
measured here (random weights have the same cost); the pruning and binarization papers' tests measure it.
Goal (issue 8): the 95%-sparse LeNet-300-100 faster than dense at batch 1 and at batch 64 on every ISA.
"""
from __future__ import annotations

import copy

import numpy as np

from benchmarks.common import environment, table, timeit, torch_threads


def _sparse_lenet300(model, sparsity: float):
    from nn.linear import Linear
    from nn.sparse import SparseLinear
    out = copy.deepcopy(model)
    for _, parent in list(out.named_modules()):
        for name, child in list(parent._modules.items()):
            if type(child) is Linear:
                w = child.weight
                thr = np.quantile(np.abs(w), sparsity)
                setattr(parent, name, SparseLinear.from_dense(child, mask=np.abs(w) > thr))
    return out


def _binary_lenet5(model):
    from nn.binary import BinaryConv2d, BinaryLinear
    out = copy.deepcopy(model)
    # XNOR-Net keeps the first and the last layer in float (Sec. 4 of the paper); LeNet-5's are "0" and "7".
    out._modules["2"] = BinaryConv2d.from_float(out._modules["2"])
    out._modules["5"] = BinaryLinear.from_float(out._modules["5"])
    return out


def _torch_lat(tmodel, x) -> float:
    torch = torch_threads(2)
    tmodel.eval()
    tx = torch.from_numpy(x)
    with torch.no_grad():
        return 1e3 * timeit(tmodel, tx, repeat=5)


def main() -> str:
    from nn.interop import to_torch
    from nn.models import build
    from nn.profile import paired_latency

    rng = np.random.default_rng(0)
    rows = []
    cases = [("LeNet-300-100", build("lenet_300_100"), "sparse 95% (SparseLinear)",
              lambda m: _sparse_lenet300(m, 0.95)),
             ("LeNet-5", build("lenet5"), "binary conv2+fc1 (XNOR)", _binary_lenet5)]
    for name, dense, what, convert in cases:
        compressed = convert(dense)
        tmodel = to_torch(dense)
        for batch in (1, 64):
            x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
            pair = paired_latency(compressed, dense, x, pairs=31)
            t_dense, t_comp, t_torch = pair["reference_ms"], pair["ms"], _torch_lat(tmodel, x)
            speedup = "unstable" if pair["speedup"] is None else pair["speedup"]
            rows.append({"model": name, "compressed form": what, "batch": batch, "lwnn dense ms": t_dense,
                         "lwnn compressed ms": t_comp, "speed-up vs lwnn dense": speedup,
                         "spread": pair["spread"], "torch float ms": t_torch, "compressed / torch": t_comp / t_torch})
    text = environment() + "\n\n" + table(rows, list(rows[0]))
    print(text)
    return text


if __name__ == "__main__":
    main()
