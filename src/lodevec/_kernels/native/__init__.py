"""Kernels compiled for the ``native``  ISA level (see setup.py). Import via lodevec.kernels."""
