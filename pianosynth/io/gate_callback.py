"""The output stream's C callback: zeros for armed silent blocks, else the Python callback.

Compiled by numba (``cfunc``, cached) and handed to PortAudio as the stream callback by
:class:`pianosynth.io.audio_out.AudioOutput`; see "Silence in C" in that module. Imported
lazily (numba and llvmlite load here), only by :func:`pianosynth.io.audio_out.gate_cfunc`.

State words (int64, :data:`~pianosynth.io.audio_out.G_LEN` of them, ``userData``):
``WAKE`` (an event came), ``HOLD`` (Python must see every block), ``FRAME`` (first frame
of the next block), ``LIMIT`` (zeros may be written up to this frame), ``BLOCKS`` (blocks
written here since the last Python call), ``PYFN`` (address of the Python callback, a CFFI
``PaStreamCallback``), ``CHANNELS``.
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, types
from numba.extending import intrinsic

from .audio_out import (G_BLOCKS, G_CHANNELS, G_FRAME, G_HOLD, G_LEN, G_LIMIT, G_PYFN,
                        G_WAKE, PA_CONTINUE, PA_OUTPUT_UNDERFLOW)

#: C ``unsigned long`` (PortAudio's frame count and status flags)
_ULONG_BITS = 8 * ctypes.sizeof(ctypes.c_ulong)
_ULONG = types.uint64 if _ULONG_BITS == 64 else types.uint32


@intrinsic
def _call_stream_callback(typingctx, addr, inp, outp, frames, tinfo, flags, user):
    """Call the ``PaStreamCallback`` at address ``addr`` with the other arguments."""
    sig = types.int32(addr, inp, outp, frames, tinfo, flags, user)

    def codegen(context, builder, signature, args):
        vp = ir.IntType(8).as_pointer()
        ul = ir.IntType(_ULONG_BITS)
        fnty = ir.FunctionType(ir.IntType(32), [vp, vp, ul, vp, ul, vp])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, list(args[1:]))
    return sig, codegen


@cfunc(types.int32(types.voidptr, types.voidptr, _ULONG, types.voidptr, _ULONG, types.voidptr),
       nopython=True, cache=True)
def pa_gate_callback(inp, outp, frames, tinfo, flags, user):
    """PortAudio stream callback (``PaStreamCallback``), float32 interleaved output.

    Writes zeros and returns ``paContinue`` iff ``WAKE == 0``, ``HOLD == 0``, no output
    underflow is flagged and ``FRAME + frames <= LIMIT`` (then ``FRAME += frames``,
    ``BLOCKS += 1``), or when there is no Python callback (``PYFN == 0``: a baseline that
    only writes zeros); else returns what the callback at ``PYFN`` returns for the same
    arguments. No allocation, no lock, no Python.
    """
    st = carray(user, (G_LEN,), np.int64)
    n = np.int64(frames)
    if st[G_PYFN] == 0 or (st[G_WAKE] == 0 and st[G_HOLD] == 0
                           and (flags & PA_OUTPUT_UNDERFLOW) == 0
                           and st[G_FRAME] + n <= st[G_LIMIT]):
        o = carray(outp, (n * st[G_CHANNELS],), np.float32)
        for i in range(o.shape[0]):
            o[i] = 0.0
        st[G_FRAME] += n
        st[G_BLOCKS] += 1
        return PA_CONTINUE
    return _call_stream_callback(st[G_PYFN], inp, outp, frames, tinfo, flags, user)
