"""lwnn as a package: the wheel builds, installs into a fresh venv and its `lwnn` command works from outside the
checkout (issue 16, "Package").

The fresh venv gets only the wheel (``pip install --no-deps``); its dependencies come from the test
interpreter's site-packages through a ``.pth`` file, so the test needs no network and no second download of
numba and torch, while the code that runs is the installed copy (the checkout is not on ``sys.path``: the
commands run in a temporary folder with ``PYTHONPATH`` unset, and the test checks where ``nn`` came from).
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_pyproject_declares_the_runtime_dependencies_and_the_command():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "lwnn" and meta["scripts"] == {"lwnn": "scripts.lwnn:cli"}
    assert meta["dependencies"] == _requirements()  # one list, written twice: keep them equal
    extras = meta["optional-dependencies"]
    assert {"test", "ray", "onnx"} <= set(extras)
    test_reqs = [ln.strip() for ln in (ROOT / "requirements-test.txt").read_text().splitlines()
                 if ln.strip() and not ln.startswith(("#", "-r"))]
    assert extras["test"] == test_reqs


def _run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_wheel_installs_and_lwnn_runs_outside_the_checkout(tmp_path):
    # Build from a copy of the tracked sources, so the checkout gets no build/ or egg-info folder.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("nn", "kernels", "methods", "scripts"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(src)], tmp_path, env)
    (wheel,) = wheels.glob("lwnn-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    vpy = venv / "bin" / "python"
    purelib = _run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                   env).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_test_deps.pth").write_text("\n".join(deps) + "\n")  # numpy, numba... of this interpreter
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "-q", str(wheel)], tmp_path,
         env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(vpy), "-c", "import nn, scripts.lwnn; print(nn.__file__)"], work, env).stdout.strip()
    assert where.startswith(purelib), f"nn imported from {where}, not from the installed wheel"
    lwnn = str(venv / "bin" / "lwnn")
    assert "papers" in _run([lwnn, "--help"], work, env).stdout
    listing = _run([lwnn, "papers", "--family", "pruning"], work, env).stdout
    assert "han2015_prune" in listing
    _run([lwnn, "run", "lecun1989_obd", "--smoke", "--run-dir", str(work / "obd")], work, env)
    assert (work / "obd" / "results.json").is_file()
