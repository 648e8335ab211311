"""Run every benchmark in one process and write the tables to a file.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.run [--only conv,sparse] [--out FILE]

(`make bench` does exactly this.) Each ``benchmarks/bench_<name>.py`` has a ``main()`` that prints its table
and returns it as a string.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import pathlib
import sys
import time

import click

from benchmarks.common import environment

SUITES = ["conv", "train", "sparse", "binary", "int8", "shift", "models"]


class _Tee:
    """Print a suite's output and keep a copy for the markdown file."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


@click.command()
@click.option("--only", default="", help="comma-separated subset of: " + ", ".join(SUITES))
@click.option("--out", default="runs/bench.md", type=click.Path(dir_okay=False), help="markdown file for the tables")
def main(only: str, out: str) -> None:
    chosen = [s.strip() for s in only.split(",") if s.strip()] or SUITES
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        raise click.BadParameter(f"unknown suite(s) {unknown}; choose from {SUITES}", param_hint="--only")
    parts = [f"# lwnn benchmarks, {time.strftime('%Y-%m-%d %H:%M')}\n", environment(), ""]
    click.echo(environment())
    for name in chosen:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        click.echo(f"\n## {name}")
        buf = io.StringIO()
        with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
            mod.main()
        parts += [f"## {name}", buf.getvalue(), ""]
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    click.echo(f"\ntables written to {path}")


if __name__ == "__main__":
    main()
