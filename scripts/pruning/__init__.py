"""Scripts of the pruning family: one per paper, run as ``python -m scripts.pruning.<id>``."""
