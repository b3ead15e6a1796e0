"""Numba kernels (numpy + numba only). Every kernel is jitted with :data:`JIT`."""
