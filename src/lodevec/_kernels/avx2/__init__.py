"""Kernels compiled for the ``avx2``  ISA level (see setup.py). Import via lodevec.kernels."""
