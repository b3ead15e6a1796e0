"""Compiled callbacks of the live path: the output stream's C callback (zeros for armed
silent blocks, else the Python callback) and the JACK MIDI input (:func:`jack_midi_process`,
:func:`drain_ring`; see the section at the end).

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
from numba import carray, cfunc, njit, types
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


# ------------------------------------------------------------------------- JACK MIDI input
# Our own JACK MIDI input port (``--midi-mode jack``, :class:`pianosynth.io.midi_live.
# JackMidiRing`): JACK's process thread runs :func:`jack_midi_process`, compiled here, which
# copies the cycle's events into a preallocated ring without the GIL; the audio callback
# drains the ring with :func:`drain_ring`. libjack is called through function addresses
# kept in the shared header (not ctypes globals), so both stay cacheable.
#
# Shared int64 array: header (J_* words) + message ring (J_CAP words: status | data1 << 8 |
# data2 << 16) + time ring (J_CAP words: JACK microseconds, ``jack_get_time`` clock).
# J_WRITE is written only by the JACK thread, J_READ and the drain counters only by the
# audio thread; an entry is stored before J_WRITE moves past it (x86-64 keeps stores in
# order, and the stores go through pointers the compiler cannot prove apart).
(J_WRITE, J_READ, J_CAP, J_RECEIVED, J_DROPPED, J_IGNORED, J_CALLS, J_CLIENT, J_PORT,
 J_WAKE, J_FN_BUFFER, J_FN_COUNT, J_FN_EVENT, J_FN_LAST_FRAME, J_FN_FRAMES_TO_TIME,
 J_EVENT, J_EVENT_SIZE, J_EVENT_DATA, J_EVENT_ADDR,
 J_SX_ADDR, J_SX_CAP, J_SX_WRITE, J_SX_READ, J_SX_RECEIVED, J_SX_DROPPED, J_SX_MAX,
 J_DELIVERED, J_LATE, J_STALE, J_DEFERRED, J_SAMPLE_RATE) = range(31)
J_LEN = 32


@intrinsic
def _ptr(typingctx, addr):
    """``(void*) addr``."""
    sig = types.voidptr(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
    return sig, codegen


@intrinsic
def _call_p(typingctx, fn, a):
    """``uint32 fn(void* a)``, widened to int64."""
    sig = types.int64(fn, a)

    def codegen(context, builder, signature, args):
        vp = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [vp])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        r = builder.call(f, [builder.inttoptr(args[1], vp)])
        return builder.zext(r, ir.IntType(64))
    return sig, codegen


@intrinsic
def _call_p_u32(typingctx, fn, a, b):
    """``(64-bit) fn(void* a, uint32 b)``: a pointer or ``jack_time_t``."""
    sig = types.int64(fn, a, b)

    def codegen(context, builder, signature, args):
        vp = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(64), [vp, ir.IntType(32)])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(f, [builder.inttoptr(args[1], vp),
                                builder.trunc(args[2], ir.IntType(32))])
    return sig, codegen


@intrinsic
def _call_p_p_u32(typingctx, fn, a, b, c):
    """``int fn(void* a, void* b, uint32 c)``, widened to int64."""
    sig = types.int64(fn, a, b, c)

    def codegen(context, builder, signature, args):
        vp = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [vp, vp, ir.IntType(32)])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        r = builder.call(f, [builder.inttoptr(args[1], vp), builder.inttoptr(args[2], vp),
                             builder.trunc(args[3], ir.IntType(32))])
        return builder.sext(r, ir.IntType(64))
    return sig, codegen


@cfunc(types.int32(types.uint32, types.voidptr), nopython=True, cache=True)
def jack_midi_process(nframes, arg):
    """JACK process callback (``JackProcessCallback``) of the MIDI input port.

    Channel messages (status 0x80-0xEF; data bytes masked to 7 bits, missing ones 0) go to
    the message ring with the JACK time (microseconds) of their frame; SysEx (0xF0 ...) to
    the byte ring as ``[length lo, length hi, bytes...]``; anything else (system common and
    real-time, a data byte where a status belongs, empty events) is counted in
    ``J_IGNORED``. A full ring drops the new message (``J_DROPPED`` / ``J_SX_DROPPED``).
    After anything was queued the word at address ``J_WAKE`` (the audio output's wake word)
    is set to 1. No allocation, no lock, no Python.
    """
    h = carray(arg, (J_LEN,), np.int64)
    h[J_CALLS] += 1
    buf = _call_p_u32(h[J_FN_BUFFER], h[J_PORT], np.int64(nframes))
    if buf == 0:
        return 0
    count = _call_p(h[J_FN_COUNT], buf)
    if count == 0:
        return 0
    cap = h[J_CAP]
    ring = carray(arg, (J_LEN + 2 * cap,), np.int64)
    client = h[J_CLIENT]
    frame0 = _call_p(h[J_FN_LAST_FRAME], client)
    us0 = _call_p_u32(h[J_FN_FRAMES_TO_TIME], client, frame0)
    fs = h[J_SAMPLE_RATE]
    w = h[J_WRITE]
    queued = False
    for i in range(count):
        if _call_p_p_u32(h[J_FN_EVENT], h[J_EVENT_ADDR], buf, i) != 0:
            h[J_IGNORED] += 1
            continue
        size = h[J_EVENT_SIZE]
        data = h[J_EVENT_DATA]
        if size <= 0 or data == 0:
            h[J_IGNORED] += 1
            continue
        b = carray(_ptr(data), (size,), np.uint8)
        st = np.int64(b[0])
        if 0x80 <= st < 0xF0:
            h[J_RECEIVED] += 1
            if w - h[J_READ] >= cap:
                h[J_DROPPED] += 1
                continue
            d1 = np.int64(b[1]) & 0x7F if size > 1 else 0
            d2 = np.int64(b[2]) & 0x7F if size > 2 else 0
            j = w & (cap - 1)
            ring[J_LEN + j] = st | (d1 << 8) | (d2 << 16)
            t = h[J_EVENT] & 0xFFFFFFFF                  # the event's frame in the cycle
            ring[J_LEN + cap + j] = us0 + (t * 1000000) // fs
            w += 1
            h[J_WRITE] = w
            queued = True
        elif st == 0xF0:
            h[J_SX_RECEIVED] += 1
            scap = h[J_SX_CAP]
            sw = h[J_SX_WRITE]
            if size > h[J_SX_MAX] or sw + 2 + size - h[J_SX_READ] > scap:
                h[J_SX_DROPPED] += 1
                continue
            sx = carray(_ptr(h[J_SX_ADDR]), (scap,), np.uint8)
            sx[sw & (scap - 1)] = size & 0xFF
            sx[(sw + 1) & (scap - 1)] = (size >> 8) & 0xFF
            for m in range(size):
                sx[(sw + 2 + m) & (scap - 1)] = b[m]
            h[J_SX_WRITE] = sw + 2 + size
        else:
            h[J_IGNORED] += 1
    if queued and h[J_WAKE] != 0:
        wake = carray(_ptr(h[J_WAKE]), (1,), np.int64)
        wake[0] = 1
    return 0


@njit(cache=True)
def drain_ring(h, offset, status, data1, data2, start, base_s, fs, n, budget, stale, scan):
    """Move the ring's messages due in this block into the event arrays (audio thread).

    Same rules as :meth:`pianosynth.io.midi_live.MidiEventQueue.drain_into`: due frame
    ``(t - base_s) * fs`` (``t`` the message's JACK time in s, ``base_s`` the block's
    start minus the latency on the JACK clock), ``>= n`` stays queued, ``< 0`` is late
    (offset 0); a note-on earlier than ``stale`` frames is dropped (``J_STALE``); at most
    ``budget`` note-ons (then ``J_DEFERRED``) and ``scan`` messages; offsets
    non-decreasing from ``offset[start - 1]``. Returns ``(next free row, note-ons
    used)``.
    """
    cap = h[J_CAP]
    r = h[J_READ]
    w = h[J_WRITE]
    k = start
    rows = offset.shape[0]
    last = offset[k - 1] if k > 0 else 0
    ons = 0
    while r < w and k < rows and scan > 0:
        scan -= 1
        j = r & (cap - 1)
        msg = h[J_LEN + j]
        off = np.int64((h[J_LEN + cap + j] * 1e-6 - base_s) * fs)
        if off >= n:
            break
        st = msg & 0xFF
        d2 = (msg >> 16) & 0x7F
        if (st & 0xF0) == 0x90 and d2 != 0:
            if off < stale:
                r += 1
                h[J_STALE] += 1
                continue
            if ons >= budget:
                h[J_DEFERRED] += 1
                break
            ons += 1
        r += 1
        if off < 0:
            off = 0
            h[J_LATE] += 1
        if off < last:
            off = last
        offset[k] = off
        status[k] = st
        data1[k] = (msg >> 8) & 0x7F
        data2[k] = d2
        last = off
        k += 1
    h[J_DELIVERED] += k - start
    h[J_READ] = r
    return k, ons
