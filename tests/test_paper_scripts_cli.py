"""Every paper script shares its run options (scripts/_cli.py) and refuses a dataset it does not know."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from scripts import catalogue


@pytest.mark.parametrize("paper_id", [p.id for p in catalogue.implemented()])
def test_shared_options_and_bad_dataset(paper_id):
    main = catalogue.script_main(paper_id)
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0, out.output
    for opt in ("--dataset", "--data-dir", "--seed", "--run-dir", "--smoke", f"runs/{paper_id}-<timestamp>"):
        assert opt in out.output, (paper_id, opt)
    out = CliRunner().invoke(main, ["--dataset", "imagenet", "--smoke"])
    assert out.exit_code == 2 and "Invalid value for '--dataset'" in out.output, out.output
