"""Training trajectory: LeNet-5 in lwnn and its PyTorch twin, trained step by step on the same real batches.

Both start from the same weights (``nn.interop.to_torch`` copies them), run in float64 on the same standardised
Fashion-MNIST mini-batches with SGD (lr 0.01, momentum 0.9, weight decay 5e-4), and must agree on the loss at
every step and on every weight at the end. This checks forward, backward, loss and optimizer together, over a
trajectory long enough for momentum to matter.
"""
from __future__ import annotations

import numpy as np

from nn.data import batches, channel_stats, load_dataset, normalize
from nn.interop import to_torch
from nn.losses import CrossEntropyLoss
from nn.models import build
from nn.optim import SGD
from tests.helpers import assert_close

STEPS = 60
BATCH = 32


def test_lenet5_sgd_trajectory_matches_torch(torch):
    x, y = load_dataset("fashion-mnist", split="train")
    mean, std = channel_stats(x)
    x = normalize(x[:STEPS * BATCH], mean, std).astype(np.float64)
    y = y[:STEPS * BATCH]

    model = build("lenet5", rng=np.random.default_rng(0), dtype=np.float64)
    twin = to_torch(model)
    assert next(twin.parameters()).dtype == torch.float64
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ce, tce = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    losses = []
    for step, (xb, yb) in enumerate(batches(x, y, BATCH, np.random.default_rng(1))):
        opt.zero_grad()
        loss = ce.forward(model(xb), yb)
        model.backward(ce.backward())
        opt.step()

        topt.zero_grad()
        tloss = tce(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
        tloss.backward()
        topt.step()

        rel = abs(loss - tloss.item()) / abs(tloss.item())
        assert rel < 1e-6, f"step {step}: loss {loss!r} vs torch {tloss.item()!r} (rel {rel:.2e})"
        losses.append(loss)
    assert step + 1 == STEPS
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), "the trajectory should actually learn"
    theirs = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert_close(f"final {name}", p, theirs[name].detach().numpy(), np.float64)
