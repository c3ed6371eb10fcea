"""Private numba kernels on plain numpy arrays.

Kernels here never import xarray; public operators in ``florin`` wrap them.
"""
