"""Live MIDI input: JACK or python-rtmidi ports -> timestamped messages -> sample offsets
in a block.

Threads and hand-over
---------------------
- On JACK (``--midi-mode jack``, the default there) our own JACK client ``pianosynth`` has
  the input port ``midi_in``; its process callback is compiled
  (:func:`pianosynth.io.gate_callback.jack_midi_process`, numba ``cfunc``): in JACK's
  thread, without the GIL, it stamps each message with the JACK time of its frame and
  appends it to a preallocated ring (:class:`JackMidiRing`), then sets the audio output's
  wake word. No Python runs for MIDI until the audio callback drains the ring at the top of
  its block (compiled too, :func:`~pianosynth.io.gate_callback.drain_ring`). Measured with
  ``tests/test_live_flood.py`` (12 000 messages/s for 10 s): underflows at the level of an
  empty callback under the same flood, where rtmidi's callback (next item) had 2-5 times
  more: JACK's graph waited for the GIL at every message.
- Otherwise (ALSA; ``--midi-mode callback`` or ``poll``) rtmidi calls the callback made by
  ``MidiInputs._make_callback`` from its own thread (ALSA: rtmidi's reader thread; JACK: the
  process thread of rtmidi's JACK client). It stamps the message with
  :func:`time.perf_counter` (on JACK minus the time since the JACK cycle that delivered it
  began, see :meth:`JackPorts.cycle_age`) and appends ``(t, status, data1, data2)`` to a
  :class:`collections.deque`, whose ``append``/``popleft`` are atomic in CPython: no lock.
- The audio callback calls :meth:`MidiEventQueue.drain_into` once per block: messages whose
  due time (arrival + constant latency) falls inside the block become events at their sample
  offset, later ones stay queued for the next block.
- A watcher thread (never the audio thread) polls the port list every ``poll_s``: a port
  that disappears is reported once and re-opened when it returns; new hardware ports are
  opened as they appear.
- System Exclusive messages go to a second, small deque (:attr:`MidiEventQueue.sysex`) that a
  worker thread of the player reads (MIDI Tuning Standard retuning, see
  :mod:`pianosynth.io.live`); they never reach the audio thread. In "jack" mode they wait
  in the ring's byte ring until that worker takes them (:meth:`MidiEventQueue.pump_sysex`).

Floods
------
Nothing a sender does can make the queue or the audio thread's work grow without bound
(``tests/test_live_flood.py`` sends > 10 000 messages/s for 10 s):

- the deque holds at most ``maxlen`` messages: beyond that the oldest are dropped and
  counted (:attr:`MidiEventQueue.dropped`); the JACK ring holds :data:`RING_CAPACITY` and
  drops (and counts) the newest;
- a block starts at most :func:`note_on_budget` note-ons (measured: each costs the engine
  about 37 us at 48 kHz on the test machine, and 80 random note-ons per 256-frame block
  took 54 % of the block's time, 160 took 116 %). Further ones wait for the next block, so
  a 128-note cluster is spread over a few blocks (21 ms at 256 frames) instead of being
  rendered in one late block;
- a note-on that waited more than :data:`STALE_NOTE_ON_S` past its due time is dropped and
  counted (:attr:`MidiEventQueue.stale`): in a flood, a note-on that old is noise, and
  playing it would only keep the backlog growing. Note-offs and controllers are never
  dropped this way (a lost note-off leaves a note hanging);
- one block looks at no more than :data:`MAX_SCAN_PER_BLOCK` queued messages.

APIs
----
JACK when a JACK server runs, else the ALSA sequencer (:func:`choose_api`). With neither,
``play`` still starts and keeps looking for one.
"""
from __future__ import annotations

import collections
import contextlib
import os
import re
import sys
import threading
import time

import numpy as np

from ..engine.events import EVENT_DTYPE
from .priority import AUDIO_RT_PRIORITY, realtime_wanted, touch_pages

try:
    from ..errors import PianosynthError
except ImportError:  # pragma: no cover
    class PianosynthError(Exception):
        """Bad input or environment, explained in one line."""

#: added to one block of latency so that a message stamped just before a callback, but
#: appended after it drained the queue, is still on time.
LATENCY_MARGIN_S = 0.001
#: most events one block carries; more wait for the next block.
MAX_EVENTS_PER_BLOCK = 1024
#: sustained rate of note-ons the audio thread accepts, per second of audio (a glissando is
#: ~200/s, ten fingers and a pedal never reach 1000/s); the per-block budget follows from it
MAX_NOTE_ONS_PER_S = 2000.0
#: ... but a block always accepts this many (a chord)
MIN_NOTE_ONS_PER_BLOCK = 16
#: a note-on this much past its due time (waiting behind a flood) is dropped, s
STALE_NOTE_ON_S = 0.1
#: most queued messages one block looks at (the callback's work stays bounded)
MAX_SCAN_PER_BLOCK = 2048
#: messages the queue holds before it drops the oldest
QUEUE_MAXLEN = 4096
#: System Exclusive messages waiting for the worker, and the longest one accepted (bytes)
SYSEX_QUEUE_MAXLEN = 256
MAX_SYSEX_BYTES = 4096
#: period of the "poll" MIDI mode's reader thread, s (one batch of messages per period)
POLL_S = 0.001
#: "jack" MIDI mode: messages and SysEx bytes the rings hold (powers of two)
RING_CAPACITY = 4096
SYSEX_RING_BYTES = 1 << 16
#: "jack" MIDI mode: how often the tuning thread looks for SysEx in the ring, s
SYSEX_POLL_S = 0.05
#: MIDI modes: "jack" (our own JACK port, compiled process callback, the default on JACK),
#: "callback" (rtmidi's callback; the default on ALSA), "poll" (a thread drains rtmidi)
MIDI_MODES = ("auto", "jack", "callback", "poll", "drain")
#: "drain" MIDI mode: most messages the audio callback takes from rtmidi per block (the
#: rest wait in rtmidi's queue for the next block; 12 000/s is 64 per 256-frame block)
DRAIN_PER_BLOCK = 128
#: JACK client / ALSA client name; the virtual port is ``pianosynth:midi_in``.
CLIENT_NAME = "pianosynth"
VIRTUAL_PORT = "midi_in"

API_NAMES = {"jack": "JACK", "alsa": "ALSA sequencer"}


def _rtmidi():
    try:
        import rtmidi
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise PianosynthError(f"python-rtmidi is not installed ({exc}): "
                              "`pip install python-rtmidi`") from None
    return rtmidi


def _api_const(api: str) -> int:
    rtmidi = _rtmidi()
    return {"jack": rtmidi.API_UNIX_JACK, "alsa": rtmidi.API_LINUX_ALSA}[api]


@contextlib.contextmanager
def _quiet_stderr():
    """libjack prints "Cannot connect to server socket" when no server runs: hide it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe_api(api: str) -> str | None:
    """``None`` if MIDI API ``api`` ("jack" or "alsa") works here, else why not."""
    rtmidi = _rtmidi()
    if _api_const(api) not in rtmidi.get_compiled_api():
        return f"python-rtmidi was built without {API_NAMES[api]} support"
    try:
        with _quiet_stderr():
            m = rtmidi.MidiIn(_api_const(api), name=f"{CLIENT_NAME}-probe")
            m.get_port_count()
            m.delete()
    except Exception as exc:  # noqa: BLE001 - rtmidi raises SystemError/RtMidiError
        if api == "jack":
            return "no JACK server running"
        return f"no ALSA sequencer ({str(exc).strip() or type(exc).__name__})"
    return None


def choose_api(prefer: str | None = None) -> tuple[str | None, dict[str, str]]:
    """The MIDI API to use: JACK if a server runs, else ALSA.

    Returns
    -------
    (api or None, {api: reason it is unavailable})
    """
    order = [prefer] if prefer else ["jack", "alsa"]
    why = {}
    for api in order:
        reason = probe_api(api)
        if reason is None:
            return api, why
        why[api] = reason
    return None, why


def no_midi_text(why: dict[str, str]) -> str:
    return ("no MIDI system: " + "; ".join(f"{API_NAMES[a]}: {r}" for a, r in why.items())
            + " (start a JACK server, or load the ALSA sequencer: `modprobe snd-seq`)")


def list_input_ports(api: str) -> list[str]:
    """Names of the MIDI sources (ports one can receive from) on ``api``."""
    rtmidi = _rtmidi()
    with _quiet_stderr():
        m = rtmidi.MidiIn(_api_const(api), name=f"{CLIENT_NAME}-list")
    try:
        return list(m.get_ports())
    finally:
        m.delete()


_ALSA_ADDR = re.compile(r"\s+\d+:\d+$")


def port_key(name: str) -> str:
    """A port's name without ALSA's ``client:port`` numbers (they change on re-plugging)."""
    return _ALSA_ADDR.sub("", name)


def is_own_port(name: str) -> bool:
    return name.startswith(CLIENT_NAME) or name.startswith("RtMidi")


def is_hardware_port(name: str, api: str) -> bool:
    """Heuristic: does ``name`` belong to a MIDI device (a keyboard), not to a program?

    JACK: the ``system:`` ports of the backend and ``a2j:`` bridged ALSA devices. ALSA:
    every sequencer client except "Midi Through", our own and other RtMidi programs.
    """
    if is_own_port(name) or "midi through" in name.lower():
        return False
    if api == "jack":
        return name.startswith("system:") or name.startswith("a2j:")
    return not name.startswith("RtMidi")


class EventBlock:
    """A preallocated EVENT_DTYPE array with its field views, filled once per block."""

    def __init__(self, capacity: int = MAX_EVENTS_PER_BLOCK):
        self.capacity = int(capacity)
        self.array = np.zeros(self.capacity, EVENT_DTYPE)
        touch_pages(self.array)           # no page fault left for the audio thread
        self.offset = self.array["offset"]
        self.status = self.array["status"]
        self.data1 = self.array["data1"]
        self.data2 = self.array["data2"]


def note_on_budget(n: int, sample_rate: float) -> int:
    """Note-ons one block of ``n`` frames accepts (:data:`MAX_NOTE_ONS_PER_S`, at least
    :data:`MIN_NOTE_ONS_PER_BLOCK`): 32 at 256 frames and 48 kHz."""
    b = int(n * MAX_NOTE_ONS_PER_S / sample_rate)
    return b if b > MIN_NOTE_ONS_PER_BLOCK else MIN_NOTE_ONS_PER_BLOCK


class MidiEventQueue:
    """Timestamped raw MIDI from any thread to the audio callback, without locks.

    Parameters
    ----------
    latency_s : float
        Constant delay from arrival to sound, s (one block plus :data:`LATENCY_MARGIN_S`;
        set by the player once the block size is known).
    maxlen : int
        Messages kept at most; beyond that the oldest are dropped (and counted).

    Attributes
    ----------
    received : int
        Messages pushed.
    recent : collections.deque
        The last 256 messages pushed, ``(status, data1, data2)``, for diagnostics.
    late : int
        Messages that reached the audio thread after their due time (played at offset 0).
    dropped : int
        Messages lost because the queue was full (the oldest go).
    stale : int
        Note-ons dropped by the audio thread because they waited more than
        :data:`STALE_NOTE_ON_S` past their due time (a flood).
    deferred : int
        Times a block's note-on budget (:func:`note_on_budget`) was spent and the rest of
        the queue waited for the next block.
    sysex : collections.deque
        ``(t, bytes)`` System Exclusive messages for a worker thread (never the audio one);
        at most :data:`SYSEX_QUEUE_MAXLEN`, the oldest dropped (``sysex_dropped``).
    """

    def __init__(self, latency_s: float = 0.0, maxlen: int = QUEUE_MAXLEN):
        self._dq = collections.deque(maxlen=maxlen)
        self.maxlen = int(maxlen)
        self.latency_s = float(latency_s)
        self._received = 0
        #: the last 256 messages pushed, ``(status, data1, data2)`` (diagnostics)
        self.recent = collections.deque(maxlen=256)
        self._late = 0
        self._delivered = 0
        self._dropped = 0
        self._stale = 0
        #: note-ons later than this are dropped (inf: never; on-demand rendering)
        self.stale_s = STALE_NOTE_ON_S
        self._deferred = 0
        self.sysex = collections.deque(maxlen=SYSEX_QUEUE_MAXLEN)
        self._sysex_received = 0
        self._sysex_dropped = 0
        #: called (no arguments, from the MIDI thread) after a SysEx message was queued
        self.on_sysex = None
        self._wake = None
        #: a :class:`JackMidiRing` drained with the deque ("jack" MIDI mode), or None
        self.ring: JackMidiRing | None = None
        #: rtmidi inputs without a callback that the audio callback reads itself ("drain"
        #: MIDI mode); a tuple replaced whole by control threads, never changed in place
        self.sources: tuple = ()
        #: counts of rings detached earlier (received, delivered, late, dropped, stale,
        #: deferred, sysex received, sysex dropped)
        self._gone = [0] * 8

    # counters: the deque's plus the ring's (one writer each; read from any thread)
    def _count(self, own, attr, i):
        r = self.ring
        return own + self._gone[i] + (getattr(r, attr) if r is not None else 0)

    received = property(lambda self: self._count(self._received, "received", 0))
    delivered = property(lambda self: self._count(self._delivered, "delivered", 1))
    late = property(lambda self: self._count(self._late, "late", 2))
    dropped = property(lambda self: self._count(self._dropped, "dropped", 3))
    stale = property(lambda self: self._count(self._stale, "stale", 4))
    deferred = property(lambda self: self._count(self._deferred, "deferred", 5))
    sysex_received = property(lambda self: self._count(self._sysex_received,
                                                       "sysex_received", 6))
    sysex_dropped = property(lambda self: self._count(self._sysex_dropped,
                                                      "sysex_dropped", 7))

    @property
    def wake(self):
        """A one-element int64 array set to 1 after each message queued (the audio
        output's :attr:`~pianosynth.io.audio_out.AudioOutput.wake`: the next block goes
        through Python and drains the queue), or None. Handed on to the ring."""
        return self._wake

    @wake.setter
    def wake(self, w):
        self._wake = w
        r = self.ring
        if r is not None:
            r.set_wake(w)

    def attach_ring(self, ring: "JackMidiRing") -> None:
        """Drain ``ring`` too from now on (before the deque, in each block)."""
        ring.set_wake(self._wake)
        self.ring = ring

    def detach_ring(self) -> None:
        """Stop draining the ring (its port closed); its counts stay in the totals and
        what it still held counts as dropped."""
        r, self.ring = self.ring, None
        if r is None:
            return
        r.set_wake(None)
        self.recent.extend(r.recent())          # the diagnostics outlive the port
        for i, v in enumerate((r.received, r.delivered, r.late, r.dropped + r.queued,
                               r.stale, r.deferred, r.sysex_received, r.sysex_dropped)):
            self._gone[i] += v

    def pump_sysex(self) -> None:
        """Move the ring's SysEx into :attr:`sysex` (the tuning thread; no-op without a
        ring). Counted in the ring already."""
        r = self.ring
        if r is None:
            return
        for data in r.pop_sysex():
            if len(self.sysex) >= SYSEX_QUEUE_MAXLEN:
                self._sysex_dropped += 1      # deque(maxlen) drops the oldest
            self.sysex.append((time.perf_counter(), data))

    def recent_messages(self) -> list:
        """The last messages queued, ``(status, data1, data2)`` (diagnostics)."""
        r = self.ring
        return list(self.recent.copy()) + (r.recent() if r is not None else [])

    def push(self, t: float, status: int, data1: int = 0, data2: int = 0) -> None:
        """Append one message that arrived at perf_counter() time ``t`` (any thread)."""
        if len(self._dq) >= self.maxlen:
            self._dropped += 1               # deque(maxlen) drops the oldest: count it
        self._dq.append((t, status, data1, data2))
        self.recent.append((status, data1, data2))
        self._received += 1
        w = self._wake
        if w is not None:                    # after the append: the drain that clears it
            w[0] = 1                         # finds the message

    def push_sysex(self, t: float, data) -> None:
        """Queue one System Exclusive message (``F0 ... F7``) for the worker (any thread)."""
        self._sysex_received += 1
        if len(data) > MAX_SYSEX_BYTES:
            self._sysex_dropped += 1
            return
        if len(self.sysex) >= SYSEX_QUEUE_MAXLEN:
            self._sysex_dropped += 1
        self.sysex.append((t, bytes(data)))
        cb = self.on_sysex
        if cb is not None:
            cb()

    def clear(self) -> None:
        self._dq.clear()

    def __len__(self) -> int:
        r = self.ring
        return len(self._dq) + (r.queued if r is not None else 0)

    def drain_into(self, block: EventBlock, start: int, t_frame0: float,
                   sample_rate: float, n: int) -> int:
        """Move the messages due in this block into ``block`` from index ``start``.

        Parameters
        ----------
        block : EventBlock
            Destination (audio thread's preallocated array).
        start : int
            First free row of ``block``.
        t_frame0 : float
            perf_counter() time at which the block's first frame is due (BlockClock).
        sample_rate : float
            Hz.
        n : int
            Frames in the block.

        Returns
        -------
        int
            Index after the last row written. Offsets are non-decreasing.

        Notes
        -----
        Due frame of a message that arrived at ``t``: ``(t + latency - t_frame0) * fs``
        relative to the block start; ``>= n`` stays queued, ``< 0`` is late (offset 0).
        Flood guard (module docstring): at most :func:`note_on_budget` note-ons per block,
        note-ons later than :data:`STALE_NOTE_ON_S` dropped, at most
        :data:`MAX_SCAN_PER_BLOCK` messages looked at.
        """
        dq = self._dq
        k = start
        cap = block.capacity
        base = t_frame0 - self.latency_s
        ons = 0
        budget = note_on_budget(n, sample_rate)
        stale = -int(min(self.stale_s, 1e6) * sample_rate)
        scan = MAX_SCAN_PER_BLOCK
        if self.sources:
            self._take_from_sources(t_frame0)
        ring = self.ring
        if ring is not None:            # compiled; its own counters
            k, ons = ring.drain(block, k, t_frame0, self.latency_s, sample_rate, n,
                                budget, stale, scan)
            if not dq:
                return k
        last = block.offset[k - 1] if k > 0 else 0
        k_dq = k
        while dq and k < cap and scan > 0:
            scan -= 1
            t, st, d1, d2 = dq[0]
            off = int((t - base) * sample_rate)
            if off >= n:
                break
            if (st & 0xF0) == 0x90 and d2 != 0:
                if off < stale:
                    dq.popleft()
                    self._stale += 1
                    continue
                if ons >= budget:
                    self._deferred += 1
                    break
                ons += 1
            dq.popleft()
            if off < 0:
                off = 0
                self._late += 1
            if off < last:       # several producer threads: keep the block sorted
                off = last
            block.offset[k] = off
            block.status[k] = st
            block.data1[k] = d1
            block.data2[k] = d2
            last = off
            k += 1
        self._delivered += k - k_dq
        return k

    def _take_from_sources(self, t_now: float) -> None:
        """ "drain" mode (audio thread): at most :data:`DRAIN_PER_BLOCK` messages from the
        rtmidi inputs into the deque, stamped ``t_now`` (rtmidi's JACK delta times are
        quantised to the period: the block start is as good). rtmidi's own threads only
        queue, in C++, without the GIL. A SysEx message costs this thread a ``bytes`` copy
        and the tuner's wake-up (an uncontended lock)."""
        left = DRAIN_PER_BLOCK
        for m in self.sources:
            while left > 0:
                try:
                    item = m.get_message()
                except Exception:  # noqa: BLE001 - port closed under us
                    break
                if not item:
                    break
                left -= 1
                msg = item[0]
                n = len(msg)
                if n and 0x80 <= msg[0] < 0xF0:
                    self.push(t_now, msg[0], msg[1] & 0x7F if n > 1 else 0,
                              msg[2] & 0x7F if n > 2 else 0)
                elif n and msg[0] == 0xF0:
                    self.push_sysex(t_now, msg)


class JackPorts:
    """Lists and connects JACK MIDI ports through libjack with ctypes.

    ctypes releases the GIL around every foreign call. That matters: ``jack_connect`` waits
    for the server, the server waits for the graph, the graph waits for our audio callback,
    and the audio callback waits for the GIL; python-rtmidi holds the GIL while it opens or
    connects ports, which stalled the audio for up to 0.9 s per (re)connection in
    ``tests/test_live_jack.py``. So the rtmidi client is created once, before the audio
    starts, and every later connection is made here.

    The client is opened but not activated: it takes no part in the process cycle, unless
    :meth:`open_midi_input` gives it a MIDI input port read by a compiled process callback
    (``--midi-mode jack``).
    """

    IS_INPUT, IS_OUTPUT, IS_PHYSICAL = 0x1, 0x2, 0x4
    MIDI_TYPE = b"8 bit raw midi"

    def __init__(self, name: str = f"{CLIENT_NAME}-ctl"):
        import ctypes
        self._ct = ctypes
        lib = ctypes.CDLL("libjack.so.0")
        vp, cp, pp = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)
        for fn, res, args in (
                ("jack_client_open", vp, [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
                ("jack_client_close", ctypes.c_int, [vp]),
                ("jack_get_ports", pp, [vp, cp, cp, ctypes.c_ulong]),
                ("jack_port_by_name", vp, [vp, cp]),
                ("jack_port_flags", ctypes.c_int, [vp]),
                ("jack_port_get_all_connections", pp, [vp, vp]),
                ("jack_connect", ctypes.c_int, [vp, cp, cp]),
                ("jack_port_register", vp, [vp, cp, cp, ctypes.c_ulong, ctypes.c_ulong]),
                ("jack_port_name", cp, [vp]),
                ("jack_set_process_callback", ctypes.c_int, [vp, vp, vp]),
                ("jack_activate", ctypes.c_int, [vp]),
                ("jack_deactivate", ctypes.c_int, [vp]),
                ("jack_get_time", ctypes.c_uint64, []),
                ("jack_client_thread_id", ctypes.c_ulong, [vp]),
                ("jack_is_realtime", ctypes.c_int, [vp]),
                ("jack_acquire_real_time_scheduling", ctypes.c_int, [ctypes.c_ulong,
                                                                     ctypes.c_int]),
                ("jack_free", None, [vp])):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        self.lib = lib
        # libjack prints its own chatter ("MidiBufferMixdown - invalid source buffer" when a
        # connected port vanishes): route it to strlen, a C no-op that needs no GIL.
        libc = ctypes.CDLL(None)
        # every copy of libjack in the process: python-rtmidi's wheel brings its own, whose
        # clients print "Cannot read socket fd" etc. when the server goes away
        for jl in [lib] + _other_libjacks(ctypes):
            for fn in ("jack_set_error_function", "jack_set_info_function"):
                f = getattr(jl, fn, None)
                if f is not None:
                    f.restype, f.argtypes = None, [vp]
                    f(ctypes.cast(libc.strlen, vp))
        status = ctypes.c_int(0)
        with _quiet_stderr():
            self.client = lib.jack_client_open(name.encode(), 0x01, ctypes.byref(status))
        if not self.client:
            raise PianosynthError("cannot open a JACK client: no JACK server running")
        # for the MIDI callback: a PyDLL function keeps the GIL (no release/re-take for a
        # call that only reads the server's frame timer)
        fast = ctypes.PyDLL("libjack.so.0")
        self._since = fast.jack_frames_since_cycle_start
        self._since.restype, self._since.argtypes = ctypes.c_uint32, [vp]
        rate = lib.jack_get_sample_rate
        rate.restype, rate.argtypes = ctypes.c_uint32, [vp]
        self.sample_rate = int(rate(self.client))
        self.ring: JackMidiRing | None = None
        self._active = False
        #: the MIDI client's process thread got SCHED_FIFO (:meth:`open_midi_input`)
        self.thread_realtime = False

    def open_midi_input(self, port: str, ring: "JackMidiRing") -> str:
        """Register the MIDI input ``port`` and activate the client: its process callback
        (:func:`pianosynth.io.gate_callback.jack_midi_process`, no GIL) fills ``ring``.

        Returns the port's full name. Call it before the audio starts (activation waits
        for the graph).

        Raises
        ------
        PianosynthError
            JACK refuses the port or the activation.
        """
        ct = self._ct
        p = self.lib.jack_port_register(self.client, port.encode(), self.MIDI_TYPE,
                                        self.IS_INPUT, 0)
        if not p:
            raise PianosynthError(f"cannot register the JACK MIDI port {port!r}")
        ring.bind(self, p)
        self.ring = ring                          # keeps the shared memory alive
        if self.lib.jack_set_process_callback(self.client, ring.process_address,
                                              ring.shared.ctypes.data) != 0:
            raise PianosynthError("cannot set the JACK process callback")
        if self.lib.jack_activate(self.client) != 0:
            raise PianosynthError("cannot activate the JACK MIDI client")
        self._active = True
        # its process thread, like the audio thread, asks for SCHED_FIFO (a real-time
        # server gave it already; see pianosynth.io.priority): refused, it stays as it is
        if self.lib.jack_is_realtime(self.client):
            self.thread_realtime = True
        elif realtime_wanted():
            thread = self.lib.jack_client_thread_id(self.client)
            self.thread_realtime = bool(thread) and \
                self.lib.jack_acquire_real_time_scheduling(thread, AUDIO_RT_PRIORITY) == 0
        name = self.lib.jack_port_name(p)
        return name.decode(errors="replace") if name else f"{CLIENT_NAME}:{port}"

    def function_address(self, name: str) -> int:
        return int(self._ct.cast(getattr(self.lib, name), self._ct.c_void_p).value)

    def jack_time_s(self) -> float:
        """JACK's clock (``jack_get_time``, CLOCK_MONOTONIC_RAW on Linux), s."""
        return self.lib.jack_get_time() * 1e-6

    def cycle_age(self):
        """A function returning the seconds since the current JACK cycle started.

        rtmidi hands JACK MIDI over from its client's process callback, which the OS may
        start a few milliseconds into the cycle on a busy machine; ``perf_counter() -
        cycle_age()`` is the time the cycle, and with it the message, arrived.
        """
        since, client, fs = self._since, self.client, float(self.sample_rate)

        def age() -> float:
            return since(client) / fs

        return age

    def _names(self, arr) -> list[str]:
        out = []
        if arr:
            i = 0
            while arr[i] is not None:
                out.append(arr[i].decode(errors="replace"))
                i += 1
            self.lib.jack_free(self._ct.cast(arr, self._ct.c_void_p))
        return out

    def midi_ports(self, flags: int) -> list[str]:
        return self._names(self.lib.jack_get_ports(self.client, None, self.MIDI_TYPE, flags))

    def sources(self) -> dict[str, bool]:
        """MIDI output ports (what one can receive from) -> is it a physical port."""
        phys = set(self.midi_ports(self.IS_OUTPUT | self.IS_PHYSICAL))
        return {p: p in phys for p in self.midi_ports(self.IS_OUTPUT)}

    def connections(self, port_name: str) -> list[str]:
        port = self.lib.jack_port_by_name(self.client, port_name.encode())
        if not port:
            return []
        return self._names(self.lib.jack_port_get_all_connections(self.client, port))

    def connect(self, src: str, dst: str) -> bool:
        r = self.lib.jack_connect(self.client, src.encode(), dst.encode())
        return r == 0 or r == 17            # EEXIST: already connected

    def close(self) -> None:
        if self.client:
            if self._active:
                self.lib.jack_deactivate(self.client)     # the callback stops first
                self._active = False
            self.lib.jack_client_close(self.client)
            self.client = None


class JackMidiRing:
    """Raw MIDI from a compiled JACK process callback to the audio callback, without the GIL.

    The process callback of our JACK client's input port
    (:func:`pianosynth.io.gate_callback.jack_midi_process`) runs in JACK's thread as C: it
    stamps each channel message with the JACK time of its frame and appends it to a
    preallocated ring of :data:`RING_CAPACITY` messages, SysEx to a byte ring, and sets the
    audio output's wake word. The audio callback drains the ring at the top of each block
    (:func:`pianosynth.io.gate_callback.drain_ring`, compiled: a flood costs it
    microseconds) with the rules of :meth:`MidiEventQueue.drain_into`; the tuning thread
    takes the SysEx (:meth:`pop_sysex`). One writer and one reader per word: no lock.

    Why: with rtmidi's callback, JACK's thread takes the GIL for every message and the
    whole graph, our audio client included, waits behind it (``tests/test_live_flood.py``).

    Counters (read any time): ``received`` (channel messages the port saw), ``dropped``
    (ring full), ``delivered``, ``late``, ``stale``, ``deferred``, ``queued``, ``ignored``
    (system, real-time and malformed messages), ``sysex_received``, ``sysex_dropped``.
    """

    def __init__(self, capacity: int = RING_CAPACITY, sysex_bytes: int = SYSEX_RING_BYTES):
        from . import gate_callback as g     # numba: loaded only for this mode
        if capacity & (capacity - 1) or sysex_bytes & (sysex_bytes - 1):
            raise ValueError("ring sizes must be powers of two")
        self._g = g
        self.capacity = int(capacity)
        self.shared = np.zeros(g.J_LEN + 2 * self.capacity, np.int64)
        self.sysex_buf = np.zeros(int(sysex_bytes), np.uint8)
        touch_pages(self.shared)          # written first by the JACK thread: fault them here
        touch_pages(self.sysex_buf)
        h = self.shared
        h[g.J_CAP] = self.capacity
        h[g.J_SX_ADDR] = self.sysex_buf.ctypes.data
        h[g.J_SX_CAP] = self.sysex_buf.shape[0]
        h[g.J_SX_MAX] = MAX_SYSEX_BYTES
        h[g.J_EVENT_ADDR] = h.ctypes.data + 8 * g.J_EVENT
        self.process_address = g.jack_midi_process.address
        self._drain = g.drain_ring
        #: perf_counter() - JACK time, s (:meth:`calibrate`; one float, swapped whole)
        self.clock_offset = 0.0
        self._ports = None
        self._wake = None
        scratch = EventBlock(4)                  # load the drain kernel off the audio thread
        self._drain(h, scratch.offset, scratch.status, scratch.data1, scratch.data2, 0,
                    0.0, 48000.0, 256, 16, -4800, 16)

    def bind(self, ports: "JackPorts", port: int) -> None:
        """Give the callback the client, its port and libjack's functions."""
        g, h = self._g, self.shared
        h[g.J_CLIENT] = ports.client
        h[g.J_PORT] = port
        h[g.J_SAMPLE_RATE] = ports.sample_rate
        for word, fn in ((g.J_FN_BUFFER, "jack_port_get_buffer"),
                         (g.J_FN_COUNT, "jack_midi_get_event_count"),
                         (g.J_FN_EVENT, "jack_midi_event_get"),
                         (g.J_FN_LAST_FRAME, "jack_last_frame_time"),
                         (g.J_FN_FRAMES_TO_TIME, "jack_frames_to_time")):
            h[word] = ports.function_address(fn)
        self._ports = ports
        self.calibrate()

    def calibrate(self) -> None:
        """Measure perf_counter() - JACK time (the best of a few reads; any thread but the
        audio one). JACK counts CLOCK_MONOTONIC_RAW, perf_counter CLOCK_MONOTONIC: they
        drift apart by NTP's slew, so the watcher repeats this."""
        jp = self._ports
        if jp is None or not jp.client:
            return
        best, off = 1.0, self.clock_offset
        for _ in range(5):
            a = time.perf_counter()
            j = jp.jack_time_s()
            b = time.perf_counter()
            if b - a < best:
                best, off = b - a, 0.5 * (a + b) - j
        self.clock_offset = off

    def set_wake(self, wake) -> None:
        """``wake``: a one-element int64 array the callback sets to 1 after queueing, or
        None."""
        self._wake = wake                        # keeps the memory alive
        self.shared[self._g.J_WAKE] = wake.ctypes.data if wake is not None else 0

    def drain(self, block: EventBlock, start: int, t_frame0: float, latency_s: float,
              sample_rate: float, n: int, budget: int, stale: int, scan: int):
        """The due messages into ``block`` (audio thread); ``(next row, note-ons used)``."""
        return self._drain(self.shared, block.offset, block.status, block.data1,
                           block.data2, start, t_frame0 - latency_s - self.clock_offset,
                           sample_rate, n, budget, stale, scan)

    def pop_sysex(self) -> list[bytes]:
        """The SysEx messages waiting (the one reader: the tuning thread)."""
        g, h, buf = self._g, self.shared, self.sysex_buf
        cap = buf.shape[0]
        r, w = int(h[g.J_SX_READ]), int(h[g.J_SX_WRITE])
        out = []
        while r < w:
            size = int(buf[r & (cap - 1)]) | int(buf[(r + 1) & (cap - 1)]) << 8
            idx = (np.arange(r + 2, r + 2 + size) & (cap - 1))
            out.append(buf[idx].tobytes())
            r += 2 + size
        h[g.J_SX_READ] = r
        return out

    def recent(self, count: int = 256) -> list[tuple[int, int, int]]:
        """The last ``count`` channel messages queued, ``(status, data1, data2)``."""
        g, h = self._g, self.shared
        w = int(h[g.J_WRITE])
        out = []
        for i in range(max(0, w - min(count, self.capacity)), w):
            m = int(h[g.J_LEN + (i & (self.capacity - 1))])
            out.append((m & 0xFF, (m >> 8) & 0xFF, (m >> 16) & 0xFF))
        return out

    def _word(self, name):
        return int(self.shared[getattr(self._g, name)])

    received = property(lambda self: self._word("J_RECEIVED"))
    dropped = property(lambda self: self._word("J_DROPPED"))
    delivered = property(lambda self: self._word("J_DELIVERED"))
    late = property(lambda self: self._word("J_LATE"))
    stale = property(lambda self: self._word("J_STALE"))
    deferred = property(lambda self: self._word("J_DEFERRED"))
    ignored = property(lambda self: self._word("J_IGNORED"))
    sysex_received = property(lambda self: self._word("J_SX_RECEIVED"))
    sysex_dropped = property(lambda self: self._word("J_SX_DROPPED"))
    process_calls = property(lambda self: self._word("J_CALLS"))

    @property
    def queued(self) -> int:
        return self._word("J_WRITE") - self._word("J_READ")


class MidiInputs:
    """The MIDI ports ``play`` listens to, kept connected by a watcher thread.

    Parameters
    ----------
    queue : MidiEventQueue
        Where timestamped messages go.
    pattern : str or None
        Case-insensitive substring of the source port names to open; ``None``: every
        hardware port (:func:`is_hardware_port`).
    virtual : bool
        Announce (ALSA: create) the input port ``pianosynth:midi_in`` for other programs.
        On JACK the port always exists: hardware ports are connected to it.
    api : {"jack", "alsa"} or None
        ``None``: :func:`choose_api`.
    poll_s : float
        Port-list polling period of the watcher thread, s.
    log : callable
        ``log(text)`` for user messages (default: print to stderr).
    mode : {"auto", "jack", "callback", "poll", "drain"}
        "drain": rtmidi queues (no callback, no thread of ours), the audio callback takes
        up to :data:`DRAIN_PER_BLOCK` messages a block with ``get_message`` (every block
        goes through Python: no silence in C). "jack" (JACK only; the default there,
        "auto"): our own JACK client ``pianosynth``
        with the input port ``midi_in`` whose process callback is compiled
        (:class:`JackMidiRing`): no Python in JACK's thread, no MIDI thread of ours, the
        audio callback drains the ring. "callback" (the default on ALSA): stamp in
        rtmidi's callback (its thread; on JACK the process thread of rtmidi's client, which
        then takes the GIL). "poll": rtmidi queues, a Python thread drains it every
        :data:`POLL_S` and stamps (keeps the GIL out of JACK's thread, up to 1 ms more
        jitter, and wakes 1000 times a second also in silence).

    Notes
    -----
    JACK: one client ``pianosynth`` with the input port ``midi_in`` (our own in "jack"
    mode, else rtmidi's), created by :meth:`start` (call it before the audio starts);
    sources are connected to it by :class:`JackPorts`. ALSA: one rtmidi input per source
    port, plus the virtual port.

    Raises
    ------
    PianosynthError
        ``virtual`` asked for but no MIDI system to create it on.
    """

    def __init__(self, queue: MidiEventQueue, pattern: str | None = None,
                 virtual: bool = False, api: str | None = None, poll_s: float = 0.5,
                 log=None, mode: str = "auto"):
        self.queue = queue
        self.pattern = pattern.lower() if pattern else None
        self.virtual = virtual
        self.poll_s = float(poll_s)
        self.log = log or (lambda text: print(f"pianosynth: {text}", file=sys.stderr,
                                              flush=True))
        if mode not in MIDI_MODES:
            raise ValueError(f"mode must be one of {MIDI_MODES}, not {mode!r}")
        self.requested_mode = mode
        self.api, self.unavailable = choose_api(api)
        self.mode = self._resolve_mode()
        if self.api is None and virtual:
            raise PianosynthError(f"cannot open the virtual MIDI port: "
                                  f"{no_midi_text(self.unavailable)}")
        self._open: dict[str, object] = {}      # source name (ALSA: port key) -> MidiIn/None
        self._names: dict[str, str] = {}        # key -> full name
        self._lost: set[str] = set()
        self._virtual_in = None                 # ALSA virtual port / JACK's one input port
        self._lister = None                     # ALSA: rtmidi lister; JACK: JackPorts
        self.own_port: str | None = None        # JACK: full name of our input port
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._waiting_reported = False
        self._lock = threading.Lock()           # control threads only, never the audio one
        self._cycle_age = _zero                 # JACK: time since the cycle started
        self.ring: JackMidiRing | None = None   # "jack" mode
        self._retired: list = []                # "drain" mode: ports closed next scan

    def _resolve_mode(self) -> str:
        m = self.requested_mode
        if m in ("auto", "jack"):
            return "jack" if self.api == "jack" else "callback"
        return m

    # ------------------------------------------------------------------ message path
    def _make_callback(self):
        push = self.queue.push
        perf = time.perf_counter
        age = self._cycle_age

        push_sysex = self.queue.push_sysex

        def on_message(event, data=None):
            t = perf() - age()
            msg = event[0]
            n = len(msg)
            if n == 0 or not 0x80 <= msg[0] < 0xF0:
                if n and msg[0] == 0xF0:
                    push_sysex(t, msg)
                return
            # data bytes are 7-bit by the protocol; a broken device must not reach the engine
            # with more (a CC value of 254 gave NaN there)
            push(t, msg[0], msg[1] & 0x7F if n > 1 else 0, msg[2] & 0x7F if n > 2 else 0)

        return on_message

    def _new_midiin(self, name: str):
        rtmidi = _rtmidi()
        with _quiet_stderr():
            m = rtmidi.MidiIn(_api_const(self.api), name=name, queue_size_limit=4096)
        m.ignore_types(sysex=False, timing=True, active_sense=True)
        if self.mode == "callback":
            m.set_callback(self._make_callback())
        return m

    def _publish_sources(self) -> None:
        """ "drain" mode: hand the open rtmidi inputs to the audio thread (one tuple swap);
        ports dropped here are closed a scan later, when no block can still read them."""
        if self.mode != "drain":
            return
        ports = [m for m in self._open.values() if m is not None]
        if self._virtual_in is not None:
            ports.append(self._virtual_in)
        self.queue.sources = tuple(ports)

    def _poll_loop(self):
        push = self.queue.push
        perf = time.perf_counter
        while not self._stop.is_set():
            with self._lock:
                ports = [m for m in self._open.values() if m is not None]
                if self._virtual_in is not None:
                    ports.append(self._virtual_in)
                self._poll_once(ports, push, perf, self.queue.push_sysex)
            # one batch per period, also in a flood: the GIL is taken once a batch and the
            # thread never spins (a spinning poller holds the GIL against the audio
            # callback for a whole switch interval)
            time.sleep(POLL_S)

    @staticmethod
    def _poll_once(ports, push, perf, push_sysex=None) -> bool:
        got = False
        for m in ports:
            while True:
                try:
                    item = m.get_message()
                except Exception:  # noqa: BLE001 - port closed under us
                    break
                if not item:
                    break
                got = True
                msg = item[0]
                if msg and 0x80 <= msg[0] < 0xF0:
                    push(perf(), msg[0], msg[1] & 0x7F if len(msg) > 1 else 0,
                         msg[2] & 0x7F if len(msg) > 2 else 0)
                elif msg and msg[0] == 0xF0 and push_sysex is not None:
                    push_sysex(perf(), msg)
        return got

    # ------------------------------------------------------------------ ports
    def start(self) -> None:
        """Open the input port(s) and start the watcher (and poller) threads.

        On JACK call this before starting the audio stream (see :class:`JackPorts`).
        """
        if self.api == "jack":
            self._start_jack()
        elif self.api == "alsa":
            self._lister = self._new_midiin(f"{CLIENT_NAME}-watch")
            self._lister.cancel_callback()
            if self.virtual:
                self._virtual_in = self._new_midiin(CLIENT_NAME)
                try:
                    self._virtual_in.open_virtual_port(VIRTUAL_PORT)
                except Exception as exc:  # noqa: BLE001
                    raise PianosynthError(f"cannot open the virtual MIDI port on "
                                          f"{API_NAMES[self.api]}: {exc}") from None
        self.scan(report=True)
        t = threading.Thread(target=self._watch, name="pianosynth-midi-watch", daemon=True)
        t.start()
        self._threads.append(t)
        if self.mode == "poll":
            t = threading.Thread(target=self._poll_loop, name="pianosynth-midi-poll",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _start_jack(self):
        self.mode = self._resolve_mode()
        if self.mode == "jack":
            try:
                self._start_jack_ring()
                return
            except Exception as exc:  # noqa: BLE001 - no numba cfunc, JACK refused: rtmidi
                self.log(f"warning: own JACK MIDI port unavailable ({exc}); using rtmidi's")
                self._close_ring()
                self.mode = "callback"
        self._lister = JackPorts()
        if self.mode == "callback":
            self._cycle_age = self._lister.cycle_age()
        before = set(self._lister.midi_ports(JackPorts.IS_INPUT))
        self._virtual_in = self._new_midiin(CLIENT_NAME)
        try:
            self._virtual_in.open_virtual_port(VIRTUAL_PORT)
        except Exception as exc:  # noqa: BLE001
            raise PianosynthError(f"cannot open the MIDI input port on JACK: {exc}") from None
        mine = [p for p in set(self._lister.midi_ports(JackPorts.IS_INPUT)) - before
                if p.endswith(":" + VIRTUAL_PORT)]
        self.own_port = mine[0] if mine else f"{CLIENT_NAME}:{VIRTUAL_PORT}"

    def _start_jack_ring(self):
        ring = JackMidiRing()
        jp = JackPorts(CLIENT_NAME)
        self._lister = jp
        self.own_port = jp.open_midi_input(VIRTUAL_PORT, ring)
        self.ring = ring
        self.queue.attach_ring(ring)

    def _close_ring(self):
        if self.ring is not None and self.queue.ring is self.ring:
            self.queue.detach_ring()
        self.ring = None

    @property
    def virtual_port_name(self) -> str | None:
        if self.api == "jack":
            return self.own_port
        return f"{CLIENT_NAME}:{VIRTUAL_PORT}" if self._virtual_in is not None else None

    @property
    def connected(self) -> list[str]:
        return [self._names[k] for k in self._open]

    def _wanted(self, name: str, physical: bool = False) -> bool:
        if is_own_port(name):
            return False
        if self.pattern is not None:
            return self.pattern in name.lower()
        return physical or is_hardware_port(name, self.api)

    def scan(self, report: bool = False) -> None:
        """Compare the port list with what is open: open new matches, drop vanished ports."""
        with self._lock:
            if self.api is None:
                self._retry_api()
                return
            if self.api == "jack":
                ports = self._scan_jack()
            else:
                ports = self._scan_alsa()
            if ports is None:
                return
            self._publish_sources()
            if not self._open and not self.virtual:
                if report or not self._waiting_reported:
                    what = (f"a port matching {self.pattern!r}" if self.pattern
                            else "a hardware MIDI input")
                    self.log(f"waiting for {what} on {API_NAMES[self.api]} "
                             f"(ports now: {', '.join(ports) or 'none'}; or use --virtual)")
                    self._waiting_reported = True
            else:
                self._waiting_reported = False

    def _gone(self, key):
        self._open.pop(key, None)
        self._lost.add(key)
        self.log(f"warning: MIDI port {self._names[key]!r} disappeared; what rings keeps "
                 "ringing, reconnecting when it returns")

    def _found(self, key, name, m):
        self._open[key] = m
        self._names[key] = name
        if key in self._lost:
            self._lost.discard(key)
            self.log(f"MIDI port {name!r} is back: reconnected")
        else:
            self.log(f"MIDI input: {name}")

    def _scan_jack(self):
        jp = self._lister
        try:
            sources = jp.sources()
            linked = set(jp.connections(self.own_port))
        except Exception:  # noqa: BLE001 - server went away
            return None
        if self.ring is not None:
            self.ring.calibrate()               # JACK's clock vs perf_counter (drift)
        for name in list(self._open):
            if name not in sources:
                self._gone(name)
            elif name not in linked:            # disconnected by someone else: forget it
                self._open.pop(name)
        for name, physical in sources.items():
            if name in self._open:
                continue
            if name in linked or (self._wanted(name, physical)
                                  and jp.connect(name, self.own_port)):
                self._found(name, name, None)
        return list(sources)

    def _scan_alsa(self):
        try:
            ports = list(self._lister.get_ports())
        except Exception:  # noqa: BLE001
            return None
        present = {port_key(p): p for p in ports}
        for m in self._retired:                 # unpublished a scan ago
            _close_quietly(m)
        self._retired.clear()
        for key in list(self._open):
            if key not in present:
                if self.mode == "drain":
                    self._retired.append(self._open[key])
                else:
                    _close_quietly(self._open[key])
                self._gone(key)
        for key, name in present.items():
            if key in self._open or not self._wanted(name):
                continue
            try:
                m = self._new_midiin(f"{CLIENT_NAME}-in")
                m.open_port(ports.index(name), f"in_{len(self._open)}")
            except Exception as exc:  # noqa: BLE001
                self.log(f"warning: cannot open MIDI port {name!r}: {exc}")
                continue
            self._found(key, name, m)
        return ports

    def _retry_api(self):
        if not self._waiting_reported:
            self.log(f"waiting for MIDI: {no_midi_text(self.unavailable)}")
            self._waiting_reported = True
        api, why = choose_api()
        if api is not None:
            self.api = api
            self.mode = self._resolve_mode()
            self._waiting_reported = False
            self.log(f"MIDI system found: {API_NAMES[api]}")
            if api == "jack":
                self._start_jack()
            else:
                self._lister = self._new_midiin(f"{CLIENT_NAME}-watch")
                self._lister.cancel_callback()

    def _watch(self):
        period = self.poll_s
        while not self._stop.wait(period if self.api else max(period, 2.0)):
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 - keep the watcher alive
                self.log(f"warning: MIDI port scan failed: {exc}")

    def close(self) -> None:
        """Stop the threads and close every port (idempotent)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads.clear()
        with self._lock:
            if self.queue.sources:
                self.queue.sources = ()
                time.sleep(0.05)                # a block reading the old tuple ends first
            for m in list(self._open.values()):
                if m is not None:
                    _close_quietly(m)
            self._open.clear()
            for m in self._retired:
                _close_quietly(m)
            self._retired.clear()
            if self._virtual_in is not None:
                _close_quietly(self._virtual_in)
                self._virtual_in = None
            if isinstance(self._lister, JackPorts):
                self._lister.close()            # deactivates the ring's callback first
            elif self._lister is not None:
                _close_quietly(self._lister)
            self._close_ring()
            self._lister = None


def _other_libjacks(ctypes) -> list:
    """libjack copies loaded in this process besides the system one (from /proc/self/maps)."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if line.strip() else ""
                name = os.path.basename(p)
                if name.startswith("libjack") and ".so" in name and "/" in p:
                    paths.add(p)
    except OSError:
        return []
    out = []
    for p in sorted(paths):
        try:
            out.append(ctypes.CDLL(p))
        except OSError:
            pass
    return out


def _zero() -> float:
    return 0.0


def _close_quietly(m) -> None:
    for step in ("cancel_callback", "close_port", "delete"):
        try:
            getattr(m, step)()
        except Exception:  # noqa: BLE001
            pass
