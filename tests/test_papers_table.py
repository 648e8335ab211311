"""papers/README.md is generated from the notes; every pruning paper of issue 4 has its four files."""
from __future__ import annotations

import pathlib

from scripts.papers_table import render, rows

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRUNING = ["lecun1989_obd", "hassibi1993_obs", "han2015_prune", "guo2016_dns", "wen2016_ssl", "li2017_l1filter",
           "luo2017_thinet", "he2017_channelprune", "liu2017_slimming", "hu2016_apoz", "he2018_sfp",
           "zhuang2018_dcp", "he2018_amc", "frankle2019_lottery", "setiono1997_nnfs", "srinivas2017_gates",
           "anwar2017_structprune", "lin2019_ssr", "jia2018_droppruning", "tian2017_ldaprune", "hu2019_mlcp"]


def test_papers_readme_is_up_to_date():
    assert (ROOT / "papers" / "README.md").read_text() == render(), "run: python -m scripts.papers_table"


def test_every_pruning_paper_has_method_script_note_test_and_a_reproduction_row():
    listed = "\n".join(rows())
    for pid in PRUNING:
        for path in (f"methods/pruning/{pid}.py", f"scripts/{pid}.py", f"papers/{pid}.md",
                     f"tests/methods/test_{pid}.py"):
            assert (ROOT / path).is_file(), f"{pid}: missing {path}"
        head = (ROOT / f"methods/pruning/{pid}.py").read_text()[:6000]
        assert "Implements" in head and "Deviations" in head, f"{pid}: the module header needs Implements/Deviations"
        assert f"[{pid}]" in listed, f"{pid}: papers/{pid}.md has no '| reproduction |' row"
