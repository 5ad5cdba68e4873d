"""Kernels compiled for the ``avx512``  ISA level (see setup.py). Import via lodevec.kernels."""
