"""Scripts of the quantization family: one per paper, run as ``python -m scripts.quantization.<id>``."""
