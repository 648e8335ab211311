"""Compression methods, one module per paper (see papers/ and /work/shared/PAPERS.md)."""
