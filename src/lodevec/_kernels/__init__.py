"""Compiled Cython kernels (built from ../../cython_kernels). Import via lodevec.kernels."""
