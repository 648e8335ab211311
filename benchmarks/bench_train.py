"""LeNet-5 training on Fashion-MNIST: lwnn against the same model in PyTorch, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.bench_train [--batches 300]

Both run SGD (momentum 0.9, weight decay 5e-4, lr 0.01), batch 64, float32, 2 threads, on the same batches
from the same initial weights (``nn.interop.to_torch``). We time ``--batches`` training steps of each after a
warm-up of 20 steps and scale to a full epoch (938 batches); the ratio is the number to read. Target (issue 2):
lwnn at most 2x PyTorch's epoch time.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import environment, table, torch_threads

EPOCH_BATCHES = 938  # ceil(60000 / 64)


def _lwnn_steps(model, xs, ys):
    from nn.losses import CrossEntropyLoss
    from nn.optim import SGD
    loss, opt = CrossEntropyLoss(), SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)

    def run(lo, hi):
        for i in range(lo, hi):
            opt.zero_grad()
            loss.forward(model(xs[i]), ys[i])
            model.backward(loss.backward())
            opt.step()
    return run


def _torch_steps(tmodel, xs, ys):
    torch = torch_threads(2)
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    lossf = torch.nn.CrossEntropyLoss()
    txs = [torch.from_numpy(x) for x in xs]
    tys = [torch.from_numpy(y) for y in ys]

    def run(lo, hi):
        for i in range(lo, hi):
            opt.zero_grad()
            lossf(tmodel(txs[i]), tys[i]).backward()
            opt.step()
    return run


def main(n_batches: int = 300) -> str:
    from nn.data import batches, channel_stats, load_dataset, normalize
    from nn.interop import to_torch
    from nn.models import build

    x, y = load_dataset("fashion-mnist", split="train")
    mean, std = channel_stats(x)
    x = normalize(x, mean, std)
    warm = 20
    it = batches(x, y, 64, np.random.default_rng(0))
    xs, ys = zip(*[next(it) for _ in range(n_batches + warm)])
    xs = [np.ascontiguousarray(b) for b in xs]
    model = build("lenet5")
    tmodel = to_torch(model)
    rows = []
    times = {}
    for name, run in (("lwnn", _lwnn_steps(model, xs, ys)), ("torch", _torch_steps(tmodel, xs, ys))):
        run(0, warm)
        t = time.perf_counter()
        run(warm, warm + n_batches)
        times[name] = (time.perf_counter() - t) / n_batches * EPOCH_BATCHES
    rows.append({"model": "LeNet-5 (Caffe)", "batch": 64, "lwnn s/epoch": times["lwnn"],
                 "torch s/epoch": times["torch"], "lwnn / torch": times["lwnn"] / times["torch"],
                 "target": "<= 2x"})
    text = environment() + "\n\n" + table(rows, list(rows[0]))
    print(text)
    return text


if __name__ == "__main__":
    import sys
    main(int(sys.argv[sys.argv.index("--batches") + 1]) if "--batches" in sys.argv else 300)
