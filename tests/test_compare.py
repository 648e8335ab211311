"""The comparison (scripts/compare.py) without LeNet-5: a tiny MLP, fake paper scripts, the real measurement.

Fake scripts stand in for papers of other families (``compare._module`` is monkeypatched), so the rows of a
family that has no implemented paper yet are exercised: a masked (CSR) model, a binary one, a distillation
paper with its own baseline and a demo that fails. bits_per_weight is checked against sums worked by hand.
"""
from __future__ import annotations

import csv
import itertools
import json
import re
import types

import numpy as np
import pytest
from click.testing import CliRunner

from nn.activations import ReLU
from nn.basic import Flatten
from nn.binary import BinaryLinear
from nn.containers import Sequential
from nn.linear import Linear
from nn.norm import BatchNorm1d
from nn.quant import QuantLinear
from nn.shift import ShiftLinear
from nn.sparse import SparseLinear
from scripts import catalogue
from scripts import compare as C
from scripts.lwnn import cli


def mlp(rng, hidden=32, dtype=np.float32):
    return Sequential(Flatten(), Linear(64, hidden, rng=rng, dtype=dtype), ReLU(), Linear(hidden, 10, rng=rng,
                                                                                          dtype=dtype))


def tiny_data() -> C.DemoData:
    g = np.random.default_rng(0)
    x = g.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = g.integers(0, 10, 96)
    return C.DemoData(x[:64], y[:64], x[64:], y[64:], input_shape=(1, 8, 8), quick=True)


def keep_largest(W: np.ndarray, k: int) -> np.ndarray:
    """0/1 mask of the k largest |W| (no ties with random weights)."""
    mask = np.zeros(W.size)
    mask[np.argsort(-np.abs(W).ravel())[:k]] = 1
    return mask.reshape(W.shape)


# ----------------------------------------------------------------------------------------------- bits per weight
def test_weight_storage_by_hand(rng):
    dense = mlp(rng)
    params = 64 * 32 + 32 + 32 * 10 + 10
    assert C.weight_storage(dense) == {"params": params, "nonzeros": params, "weight_bytes": 4 * params,
                                       "bits_per_weight": 32.0}
    assert C.weight_storage(mlp(rng, dtype=np.float64))["bits_per_weight"] == 64.0
    # BatchNorm's running statistics are buffers, not weights: a dense float32 model stays at 32 bits.
    bn = Sequential(Linear(8, 4, rng=rng), BatchNorm1d(4))
    assert C.weight_storage(bn)["params"] == 8 * 4 + 4 + 4 + 4 and C.weight_storage(bn)["bits_per_weight"] == 32.0

    lin = Linear(64, 10, rng=rng)
    lin.set_mask("weight", keep_largest(lin.weight, 64))  # 90% zeros
    csr = SparseLinear.from_dense(lin)
    # CSR: 64 values (4 B) + 64 int32 columns + 11 int32 row pointers + 10 float32 biases
    nbytes = 64 * 4 + 64 * 4 + 11 * 4 + 10 * 4
    assert C.weight_storage(csr) == {"params": 650, "nonzeros": 64 + 10, "weight_bytes": nbytes,
                                     "bits_per_weight": 8 * nbytes / 650}
    # Binary: one uint64 word of sign bits per output row (64 inputs), a float32 alpha and bias per row.
    b = C.weight_storage(BinaryLinear.from_float(Linear(64, 10, rng=rng)))
    assert b == {"params": 650, "nonzeros": 650, "weight_bytes": 10 * 8 + 10 * 4 + 10 * 4,
                 "bits_per_weight": 8 * 160 / 650}
    # int8: one byte per weight, an int32 bias per row, and the layer's requantisation scalars.
    q = QuantLinear.from_float(Linear(64, 10, rng=rng), 0.1, 128, 0.1, 128)
    scalars = q.storage_bytes() - 640 - 40
    assert 0 < scalars <= 64
    w = C.weight_storage(q)
    assert w["params"] == 650 and w["weight_bytes"] == q.storage_bytes() and 8 < w["bits_per_weight"] < 9.5
    # Shift codes: the nonzeros are those of the decoded weight.
    s = ShiftLinear.from_float(Linear(64, 10, rng=rng))
    w = C.weight_storage(s)
    assert w["params"] == 650 and w["nonzeros"] == np.count_nonzero(s.decoded_weight()) + 10
    assert w["bits_per_weight"] == 8 * s.storage_bytes() / 650


def test_kind(rng):
    lin = Linear(64, 10, rng=rng)
    assert C.kind(mlp(rng)) == "dense"
    assert C.kind(Sequential(SparseLinear.from_dense(lin), ReLU(), BinaryLinear.from_float(Linear(10, 10, rng=rng)),
                             SparseLinear.from_dense(Linear(10, 10, rng=rng)))) == "sparse (CSR) + binary"


# ----------------------------------------------------------------------------------------------- selecting rows
def test_select():
    pruning = C.demo_methods("pruning")
    assert C.METHODS == C.demo_methods() and len(pruning) == 21 and set(pruning) <= set(C.METHODS)
    order = [catalogue.FAMILIES.index(catalogue.BY_ID[m].family) for m in C.METHODS]
    assert order == sorted(order)  # grouped by family, catalogue order
    assert C.select() == (C.METHODS, [])
    quantization = C.demo_methods("quantization")
    ids, messages = C.select(["pruning,quantization", "pruning"], ["han2015_prune", "hinton2015_kd"])
    assert ids == (*pruning, *quantization, "hinton2015_kd") and messages == []
    assert {"courbariaux2015_binaryconnect", "rastegari2016_xnor"} <= set(quantization)
    ids, messages = C.select(["nas"])
    assert ids == () and messages == [("nas: no paper of this family has a demo() yet (0 of 7 implemented); "
                                       "no rows from it")]
    with pytest.raises(ValueError, match="unknown family 'prunning'; families: pruning, quantization, sharing"):
        C.select(["prunning"])


def test_demo_methods_from_the_catalogue(tmp_path, monkeypatch):
    papers = (catalogue.Paper("fake2020_a", "quantization", 1, 2020, "A", "v"),
              catalogue.Paper("fake2020_b", "quantization", 1, 2020, "B", "v"),  # script without demo()
              catalogue.Paper("fake2020_c", "sharing", 1, 2020, "C", "v"))       # no method module
    monkeypatch.setattr(catalogue, "ROOT", tmp_path)
    monkeypatch.setattr(catalogue, "PAPERS", papers)
    for p, text in zip(papers, ("def main():\n    pass\n\n\ndef demo(model, data, rng):\n    return model\n",
                                "def main():\n    pass\n", "\ndef demo(model, data, rng):\n    return model\n")):
        p.path("script").parent.mkdir(parents=True, exist_ok=True)
        p.path("script").write_text(text)
        if p.id != "fake2020_c":
            p.path("method").parent.mkdir(parents=True, exist_ok=True)
            p.path("method").write_text("")
    assert C.demo_methods() == ("fake2020_a",) and C.demo_methods("sharing") == ()


def test_own_baseline_declared_without_function(monkeypatch):
    monkeypatch.setattr(C, "_module", lambda name: types.SimpleNamespace(demo=None, DEMO_BASELINE="x"))
    with pytest.raises(ValueError, match="DEMO_BASELINE is set but there is no demo_baseline"):
        C.own_baseline("hinton2015_kd")


# ----------------------------------------------------------------------------------------------- the whole run
def fake_scripts(draws: dict) -> dict:
    """Stand-ins for four papers' scripts: pruning (masked), quantization (binary), distillation (own
    baseline), and one whose demo fails. Each records its first random draw."""
    def prune(model, data, rng):
        draws["han2015_prune"] = rng.integers(1 << 30)
        for layer in (model._modules["1"], model._modules["3"]):
            layer.set_mask("weight", keep_largest(layer.weight, layer.weight.size // 10))
        return model

    def binarize(model, data, rng):
        draws["rastegari2016_xnor"] = rng.integers(1 << 30)
        return Sequential(Flatten(), BinaryLinear.from_float(model._modules["1"]), ReLU(),
                          BinaryLinear.from_float(model._modules["3"]))

    def student(model, data, rng):
        draws["hinton2015_kd"] = rng.integers(1 << 30)
        return mlp(rng, hidden=8)

    def fail(model, data, rng):
        raise RuntimeError("no budget")

    return {"han2015_prune": types.SimpleNamespace(demo=prune),
            "rastegari2016_xnor": types.SimpleNamespace(demo=binarize),
            "hinton2015_kd": types.SimpleNamespace(demo=student, DEMO_BASELINE="the student trained alone",
                                                   demo_baseline=lambda data, rng: mlp(rng, hidden=16)),
            "courbariaux2015_binaryconnect": types.SimpleNamespace(demo=fail)}


def table_cells(text: str) -> list[list[str]]:
    """The terminal table cut at the columns of its dashed rule: the cells of every line, stripped."""
    lines = text.splitlines()
    rule = next(i for i, s in enumerate(lines) if s.startswith("---"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    body = [lines[rule - 1]] + [s for s in lines[rule + 1:] if not re.match(r"^[\w.]+: ", s)]
    out = []
    for s in body:
        assert len(s) <= spans[-1][1]
        for (_, b), (c, _) in itertools.pairwise(spans):
            assert s[b:c].strip() == "", (s, b, c)  # nothing spills into the gaps: the columns are aligned
        out.append([s[a:b].strip() for a, b in spans])
    return out


def test_compare_every_family(tmp_path, monkeypatch, rng):
    draws = {}
    scripts = fake_scripts(draws)
    monkeypatch.setattr(C, "_module", lambda name: scripts[name])
    data, base = tiny_data(), mlp(rng)
    printed = []
    rows = C.compare(base, data, tmp_path / "cmp", seed=3, methods=list(scripts), echo=printed.append)
    by = {r["method"]: r for r in rows}
    assert [r["method"] for r in rows] == ["baseline", "han2015_prune", "rastegari2016_xnor",
                                           "hinton2015_kd.baseline", "hinton2015_kd",
                                           "courbariaux2015_binaryconnect"]
    assert [r["family"] for r in rows] == ["-", "pruning", "quantization", "distillation", "distillation",
                                           "quantization"]
    assert [r["kind"] for r in rows] == ["dense", "sparse (CSR)", "binary", "own baseline", "dense", "-"]
    assert by["courbariaux2015_binaryconnect"]["note"] == "FAILED: RuntimeError: no budget"
    b, p, x = by["baseline"], by["han2015_prune"], by["rastegari2016_xnor"]
    assert b["bits_per_weight"] == 32.0 and b["params"] == 2410 and b["compression"] == 1.0
    # CSR layers: 204 + 32 nonzeros, values and int32 columns, 33 + 11 row pointers, float32 biases
    csr_bytes = (204 + 32) * 8 + (33 + 11) * 4 + (32 + 10) * 4
    assert p["params"] == 2410 and p["bits_per_weight"] == 8 * csr_bytes / 2410
    assert p["nonzeros"] == 204 + 32 + np.count_nonzero(base._modules["1"].bias) + 10
    assert p["compression"] == b["nonzeros"] / p["nonzeros"] and p["MACs"] == 204 + 32
    assert x["bits_per_weight"] == 8 * (32 * 8 + 10 * 8 + (32 + 10) * 8) / 2410  # sign words, alpha, bias
    assert x["disk_ratio"] == b["bytes_on_disk"] / x["bytes_on_disk"] > 1
    # The distillation row is measured against its own baseline, which is measured against LeNet-5's.
    ref, kd = by["hinton2015_kd.baseline"], by["hinton2015_kd"]
    assert ref["note"].startswith("own baseline of hinton2015_kd: the student trained alone")
    assert ref["params"] == 64 * 16 + 16 + 16 * 10 + 10 and ref["delta_acc"] == ref["test_acc"] - b["test_acc"]
    assert kd["params"] == 64 * 8 + 8 + 8 * 10 + 10 and kd["delta_acc"] == kd["test_acc"] - ref["test_acc"]
    assert kd["compression"] == ref["nonzeros"] / kd["nonzeros"]
    assert kd["disk_ratio"] == ref["bytes_on_disk"] / kd["bytes_on_disk"]
    assert kd["note"].startswith("change, compression, disk ratio, speed-ups against hinton2015_kd.baseline")

    out = tmp_path / "cmp"
    names = {q.name for q in out.iterdir()}
    assert {"comparison.md", "comparison.csv", "comparison.json", "comparison.png", "comparison_pruning.png",
            "comparison_quantization.png", "comparison_distillation.png"} <= names
    assert not any(n.startswith("comparison_-") for n in names)
    assert {q.stem for q in (out / "models").iterdir()} == {r["method"] for r in rows if "test_acc" in r}
    with open(out / "comparison.csv") as f:
        assert next(csv.reader(f)) == C.COLUMNS
    assert [r["method"] for r in json.loads((out / "comparison.json").read_text())] == [r["method"] for r in rows]
    head = [c.strip() for c in (out / "comparison.md").read_text().splitlines()[0].strip("|").split("|")]
    assert len(head) == len(set(head)) == len(C.COLUMNS) and "bits/w" in head

    # The terminal table: aligned, every row once, thousands separators, a family column, no spreads.
    cells = table_cells(printed[-1])
    assert cells[0] == [C.HEADINGS[c] for c in C.TERMINAL] and len(set(cells[0])) == len(cells[0])
    assert "family" in cells[0] and not any("spread" in h for h in cells[0])
    col = {h: i for i, h in enumerate(cells[0])}
    assert [r[col["method"]] for r in cells[1:]] == [r["method"] for r in rows]
    assert cells[1][col["params"]] == "2,410" and cells[1][col["bits/w"]] == "32"
    assert printed[-1].splitlines()[-1] == "courbariaux2015_binaryconnect: FAILED: RuntimeError: no budget"

    # A row's random stream depends on the seed and its id only, not on which other rows run.
    first = dict(draws)
    C.compare(base, data, tmp_path / "again", seed=3, methods=["hinton2015_kd"], echo=lambda s: None)
    assert draws["hinton2015_kd"] == first["hinton2015_kd"]


# ----------------------------------------------------------------------------------------------- the CLI
def test_cli_family_and_method(tmp_path, monkeypatch):
    from scripts import lwnn
    calls = []
    monkeypatch.setattr(lwnn, "run_training", lambda *a, **k: calls.append("train"))
    monkeypatch.setattr(lwnn, "run_comparison", lambda *a, methods=None, **k: calls.append(methods))
    monkeypatch.setattr(lwnn, "load_checkpoint", lambda path: types.SimpleNamespace(metadata={"config": {}}))
    run = CliRunner()

    out = run.invoke(cli, ["demo", "--family", "prunning", "--run-dir", str(tmp_path / "d")])
    assert out.exit_code == 1 and "unknown family 'prunning'; families: pruning, quantization" in out.output
    out = run.invoke(cli, ["demo", "--method", "nonexistent2099", "--run-dir", str(tmp_path / "d")])
    assert out.exit_code == 1 and "unknown paper id 'nonexistent2099'" in out.output
    out = run.invoke(cli, ["demo", "--method", "hinton2015_kd", "--run-dir", str(tmp_path / "d")])
    assert out.exit_code == 1 and "hinton2015_kd (distillation) has no script yet" in out.output
    assert calls == []  # every error came before the baseline's training

    out = run.invoke(cli, ["demo", "--family", "pruning,quantization,sharing", "--method", "han2015_prune",
                           "--run-dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output + repr(out.exception)
    assert "sharing: no paper of this family has a demo() yet" in out.output
    assert calls == ["train", C.demo_methods("pruning") + C.demo_methods("quantization")]
    calls.clear()
    out = run.invoke(cli, ["compare", str(tmp_path / "d"), "--family", "sharing", "--family", "nas"])
    assert out.exit_code == 0, out.output + repr(out.exception)
    assert "sharing: no paper" in out.output and "nas: no paper" in out.output
    assert "the comparison has the baseline row only" in out.output and calls == [()]
    calls.clear()
    out = run.invoke(cli, ["compare", str(tmp_path / "d"), "--method", "li2017_l1filter,han2015_prune"])
    assert out.exit_code == 0 and calls == [("li2017_l1filter", "han2015_prune")], out.output
    calls.clear()
    out = run.invoke(cli, ["compare", str(tmp_path / "d")])
    assert out.exit_code == 0 and calls == [None], out.output  # None: every demo method
