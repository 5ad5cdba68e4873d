"""The AMX kernel (``amx`` ISA level, see setup.py); its other kernels are the avx512 ones."""
