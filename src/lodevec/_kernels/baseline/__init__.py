"""Kernels compiled for the ``baseline``  ISA level (see setup.py). Import via lodevec.kernels."""
