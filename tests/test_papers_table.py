"""The catalogue: papers/README.md is generated from it, every implemented paper has its four files in its family
folder, `lwnn papers` and `lwnn run` find papers by id, and an unknown id names the nearest known ones."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from scripts import catalogue
from scripts.catalogue import FAMILIES, PAPERS, ROOT
from scripts.lwnn import cli
from scripts.papers_table import render

# What the family issues ask for: 94 papers in seven family folders.
COUNTS = {"pruning": 21, "quantization": 15, "sharing": 10, "lowrank": 8, "distillation": 19, "architectures": 14,
          "nas": 7}


def test_catalogue_has_the_94_papers_in_their_families():
    assert {f: len(catalogue.family(f)) for f in FAMILIES} == COUNTS
    assert all(p.tier in (1, 2, 3) and 1960 < p.year < 2030 and p.title for p in PAPERS)


def test_papers_readme_is_up_to_date():
    assert (ROOT / "papers" / "README.md").read_text() == render(), "run: python -m scripts.papers_table"


def test_readme_has_one_row_per_paper_grouped_by_family():
    text = render()
    for f in FAMILIES:
        assert f"\n## {f} (" in text
    for p in PAPERS:
        assert text.count(f"| {p.id} |") + text.count(f"| [{p.id}]({p.family}/{p.id}.md) |") == 1, p.id


@pytest.mark.parametrize("paper", catalogue.implemented(), ids=lambda p: p.id)
def test_implemented_paper_has_script_note_test_header_and_rows(paper):
    s = catalogue.status(paper)
    assert all(s.values()), f"{paper.id}: missing {[k for k, v in s.items() if not v]}"
    head = paper.path("method").read_text()[:6000]
    assert "Implements" in head and "Deviations" in head, f"{paper.id}: the module header needs Implements/Deviations"


def test_no_paper_file_outside_its_family_folder():
    for kind, pattern in (("method", "methods/*.py"), ("script", "scripts/*.py"), ("note", "papers/*.md"),
                          ("test", "tests/methods/test_*.py")):
        stray = [p.name for p in ROOT.glob(pattern) if p.stem.removeprefix("test_") in catalogue.BY_ID]
        assert not stray, f"{kind} files outside a family folder: {stray}"


def test_lwnn_papers_lists_and_filters():
    out = CliRunner().invoke(cli, ["papers"])
    assert out.exit_code == 0, out.output
    assert all(p.id in out.output for p in PAPERS)
    assert f"94 papers, {len(catalogue.implemented())} implemented" in out.output
    out = CliRunner().invoke(cli, ["papers", "--family", "lowrank"])
    assert out.exit_code == 0 and "kim2016_tucker" in out.output and "han2015_prune" not in out.output
    out = CliRunner().invoke(cli, ["papers", "--family", "magic"])
    assert out.exit_code == 2


def test_lwnn_run_finds_the_script_and_passes_options():
    out = CliRunner().invoke(cli, ["run", "han2015_prune", "--help"])
    assert out.exit_code == 0 and "lwnn run han2015_prune" in out.output and "--smoke" in out.output, out.output
    out = CliRunner().invoke(cli, ["run", "han2015_prune", "--dataset", "imagenet"])
    assert out.exit_code == 2 and "Invalid value for '--dataset'" in out.output, out.output


def test_lwnn_run_unknown_id_names_the_nearest():
    out = CliRunner().invoke(cli, ["run", "han2015_prun"])
    assert out.exit_code == 1 and "unknown paper id 'han2015_prun'" in out.output and "han2015_prune" in out.output
    out = CliRunner().invoke(cli, ["run", "hinton2015_kd"])  # catalogued, not built yet
    assert out.exit_code == 1 and "has no script yet" in out.output, out.output
