"""The one place that sets numba options (STUMPY style)."""
import numba

#: options for every kernel: cached on disk, releases the GIL, no Python objects.
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: options for per-sample helpers composed inside kernels.
JIT_INLINE = dict(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")

njit = numba.njit
