"""Dynamic network surgery: Eq. (2) golden values, splicing, and compression within accuracy on Fashion-MNIST."""
from __future__ import annotations

import numpy as np
import pytest

from methods.pruning import common
from methods.pruning import guo2016_dns as dns

DNS_C = {"1.weight": 1.6, "3.weight": 1.2, "5.weight": 0.6}


def test_eq2_mask_rule_golden():
    w = np.array([0.05, 0.1, 0.15, 0.2, 0.3, -0.05, -0.3])
    t_old = np.array([1, 1, 0, 1, 0, 0, 0], float)
    # a = 0.1, b = 0.25: below a -> 0, from b up -> 1, in between -> unchanged
    np.testing.assert_array_equal(dns.dns_mask(w, t_old, 0.1, 0.25), [0, 1, 0, 1, 1, 0, 1])
    a, b = dns.dns_thresholds(np.array([1.0, -1.0, 3.0, -3.0]), 0.5)  # mean|w| 2, std|w| 1 -> t = 2.5
    assert (a, b) == (pytest.approx(2.25), pytest.approx(2.75))
    assert dns.update_probability(0, 1e-4, 1) == 1.0
    assert dns.update_probability(10000, 1e-4, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="a <= b"):
        dns.dns_mask(w, t_old, 0.3, 0.1)


@pytest.mark.slow
def test_dns_splices_and_compresses_within_accuracy(lenet300_baseline, fmnist):
    from nn.train import evaluate
    model = lenet300_baseline.build()
    stats = dns.surgery(model, fmnist.x_train, fmnist.y_train, dns.DNSCfg(c=DNS_C, epochs=1),
                        np.random.default_rng(0))
    acc = evaluate(model, fmnist.x_test, fmnist.y_test)[1]
    comp = common.compression_ratio(model)
    print(f"DNS: {comp:.2f}x, acc {acc:.4f} vs dense {lenet300_baseline.test_acc:.4f}; {stats}")
    params = dict(model.named_parameters())
    for n, m in model.named_masks():
        assert np.all(params[n][m == 0] == 0)
    assert sum(stats["spliced"].values()) > 0  # connections pruned earlier came back
    assert comp >= 10.0
    assert acc >= lenet300_baseline.test_acc - 0.010


def test_script_smoke(tmp_path):
    import json

    from click.testing import CliRunner

    from scripts.pruning.guo2016_dns import main
    res = CliRunner().invoke(main, ["--smoke", "--run-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ("config.json", "results.json", "layers.csv"):
        assert (tmp_path / f).is_file(), f
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["compression"] > 1 and set(r["stats"]["spliced"]) == {"1.weight", "3.weight", "5.weight"}
