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
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

#: options for every kernel: cached on disk, releases the GIL, no Python objects.
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: options for the per-sample kernels that take many arrays and run once per voice and
#: segment (render_voice, render_symp_voice, the soundboard): no reference counting (NRT).
#: numba otherwise increments and decrements every array argument's count on entry and exit,
#: atomically (~7 % of a render); these kernels never allocate, and their callers hold
#: the arrays for the whole call.
JIT_NO_RC = dict(JIT, _nrt=False)
#: options for per-sample helpers composed inside kernels.
JIT_INLINE = dict(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")

#: options for long fixed filters (FIR dot products, parallel sections): the sums may be
#: reassociated and multiply-adds fused, so the compiler can run them in SIMD lanes instead of
#: one dependent add after another (results differ from the written order by rounding only;
#: NaN/inf semantics are kept: no "nnan"/"ninf").
JIT_SUMS = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")

#: options for the offline block loop that runs two halves of the work at once
#: (``prange``): numba's parallel mode. Its regions run on numba's threading layer; only
#: the OpenMP layer starts one cheaply enough (~2 us, see ``Engine.pipelined_available``).
JIT_PIPELINE = dict(cache=True, nogil=True, parallel=True, fastmath=False,
                    error_model="numpy")

njit = numba.njit


@intrinsic
def cycle_counter(typingctx):
    """The CPU's cycle counter inside a kernel (``llvm.readcyclecounter``: rdtsc on x86; 0
    where the target has none), int64. Only for scheduling decisions that never change
    results (the two-thread offline loop balances its threads with it)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen

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


def kernels_cached(pipelined: bool = False) -> bool:
    """True when the block loop's machine code is in the on-disk cache (a start takes ~1 s);
    False right after an install or a kernel change (the first render compiles, ~1 min).
    ``pipelined``: the two-thread offline loop's too."""
    d = _PKG / "engine" / "__pycache__"
    names = ["render_block"] + (["render_block_pipelined"] if pipelined else [])
    return all(any(d.glob(f"blockloop.{name}-*.nbi")) for name in names)


def compile_with_progress(work, say=None, every_s: float = 5.0):
    """Run ``work()`` (which compiles the kernels) while a thread reports progress.

    Parameters
    ----------
    work : callable
        Compiles (e.g. renders a few frames on a small engine); its result is returned.
    say : callable(str), optional
        Where progress lines go (default: stderr). One line at the start, one every
        ``every_s`` seconds with the time so far, one at the end.
    """
    import sys
    import threading
    import time

    if say is None:
        def say(text):
            print(text, file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    done = threading.Event()
    say("pianosynth: compiling the DSP kernels (first run after an install or update; "
        "about a minute, cached for later runs)")

    def tick():
        while not done.wait(every_s):
            say(f"pianosynth: compiling ... {time.perf_counter() - t0:.0f} s")
    th = threading.Thread(target=tick, name="compile-progress", daemon=True)
    th.start()
    try:
        return work()
    finally:
        done.set()
        th.join()
        say(f"pianosynth: kernels compiled in {time.perf_counter() - t0:.0f} s")
