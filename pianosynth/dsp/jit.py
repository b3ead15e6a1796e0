"""The one place that sets numba options (STUMPY style), and keeps the on-disk cache honest.

numba's ``cache=True`` checks only the source file of the cached function itself: a kernel
that calls a kernel from another file keeps the old callee after that file changes. At
import we hash every file that holds kernels and, when the hash changed since the cache was
written, delete the package's cached machine code so it is rebuilt (a few seconds, once).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numba

#: options for every kernel: cached on disk, releases the GIL, no Python objects.
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: options for per-sample helpers composed inside kernels.
JIT_INLINE = dict(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")

njit = numba.njit

_PKG = Path(__file__).resolve().parents[1]
_KERNEL_FILES = sorted(list((_PKG / "dsp").glob("*.py")) + [_PKG / "engine" / "blockloop.py"])


def _sources_hash() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for f in _KERNEL_FILES:
        try:
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def _refresh_cache() -> None:
    stamp = _PKG / "dsp" / "__pycache__" / "kernels.sha256"
    want = _sources_hash()
    try:
        if stamp.read_text() == want:
            return
    except OSError:
        pass
    try:
        for d in _PKG.rglob("__pycache__"):
            for f in list(d.glob("*.nbi")) + list(d.glob("*.nbc")):
                f.unlink(missing_ok=True)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(want)
    except OSError:
        pass  # read-only install: numba falls back to its own cache directory


_refresh_cache()
