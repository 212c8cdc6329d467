"""numba kernels: plain functions over arrays; no classes, no protos."""
