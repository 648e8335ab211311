"""The command-line options every paper script shares (``python -m scripts.<paper_id>``).

    @click.command()
    @paper_options("han2015_prune")
    @click.option(...)            # the paper's own hyper-parameters
    def main(dataset, data_dir, seed, run_dir, smoke, ...): ...
"""
from __future__ import annotations

import click

DATASETS = ("fashion-mnist", "mnist", "cifar10")


def paper_options(paper_id: str, seed: int = 0):
    """``--dataset``, ``--data-dir``, ``--seed``, ``--run-dir`` and ``--smoke``, in one decorator."""
    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default="fashion-mnist", show_default=True),
        click.option("--data-dir", default=None, help="folder with the dataset files (default: the usual places)"),
        click.option("--seed", default=seed, show_default=True),
        click.option("--run-dir", default=None, help=f"output folder (default: runs/{paper_id}-<timestamp>)"),
        click.option("--smoke", is_flag=True, help="seconds-long run on a data subset"),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate
