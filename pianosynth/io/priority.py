"""Real-time scheduling for the audio threads, where the system allows it.

A JACK server started with real-time scheduling (jackd's default) runs every client's
process thread SCHED_FIFO; one started with ``--no-realtime`` leaves them ordinary threads
that wait behind the panel, the MIDI sender and everything else each time they are woken.
Every period JACK wakes each client's thread in turn, and one woken late is an xrun for
all. Measured on a JACK dummy server (``--no-realtime``, 48 kHz / 256, 2 cores, the panel
open, 10 minutes): jackd blamed 68 xruns on our MIDI client's thread and 32 on PortAudio's
that had been triggered but not yet run.

So the audio process asks for SCHED_FIFO for its two process threads (PortAudio's, which
runs the engine, and the MIDI client's, :func:`pianosynth.io.gate_callback.jack_midi_process`)
when they do not have it, as audio programs do (JACK clients, PortAudio's ALSA back end,
Ardour). It needs ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` (Debian's jackd2 package offers
``@audio - rtprio 95`` in ``/etc/security/limits.d/audio.conf``); without them the thread
tries a lower niceness, and failing that keeps its priority, which is only reported. The
kernel's real-time throttling (``sched_rt_runtime_us``, 95 % by default) still bounds a
runaway thread. Opt-in for now: ``PIANOSYNTH_REALTIME=1`` (see :func:`realtime_wanted`).
"""
from __future__ import annotations

import os
import threading

#: SCHED_FIFO priority asked for (a real-time JACK server gives its clients 5-70 depending on
#: its ``-P``; 10 keeps us below the kernel's interrupt threads (50) and any RT server)
AUDIO_RT_PRIORITY = 10
#: niceness tried when real-time scheduling is refused
AUDIO_NICE = -11
#: environment variable that turns the request off (``PIANOSYNTH_REALTIME=0``)
RT_ENV = "PIANOSYNTH_REALTIME"


def realtime_wanted() -> bool:
    """True when the environment says ``PIANOSYNTH_REALTIME=1``. Off by default for now: with
    it on, a clean-clone suite once failed the live end-to-end test (silence recorded,
    not yet understood); off, the threads stay as the audio library made them."""
    return os.environ.get(RT_ENV, "0").strip() in ("1", "yes", "on", "true")


def thread_policy(tid: int = 0) -> str:
    """``"SCHED_FIFO 10"``, ``"SCHED_OTHER nice 0"`` ... for thread ``tid`` (0: this one)."""
    try:
        pol = os.sched_getscheduler(tid)
        if pol in (os.SCHED_FIFO, os.SCHED_RR):
            name = "SCHED_FIFO" if pol == os.SCHED_FIFO else "SCHED_RR"
            return f"{name} {os.sched_getparam(tid).sched_priority}"
        return f"SCHED_OTHER nice {os.getpriority(os.PRIO_PROCESS, tid)}"
    except (AttributeError, OSError):
        return "unknown"


def boost_thread(tid: int = 0, priority: int = AUDIO_RT_PRIORITY,
                 nice: int = AUDIO_NICE) -> str:
    """Give thread ``tid`` (Linux thread id, 0: the calling thread) real-time scheduling.

    Leaves a thread that is already SCHED_FIFO/SCHED_RR alone (a real-time JACK server set
    it). Otherwise asks for SCHED_FIFO at ``priority``; refused, a niceness of ``nice``
    (only if lower than the current one); refused again, nothing.

    Returns
    -------
    str
        What the thread has now and why, for the log (e.g. ``"SCHED_FIFO 10"``,
        ``"SCHED_OTHER nice 0 (real-time scheduling not permitted)"``). Never raises: a
        system without these calls keeps its priority.
    """
    if not hasattr(os, "sched_setscheduler"):
        return "unchanged (no real-time scheduling on this system)"
    if not realtime_wanted():
        return thread_policy(tid) + f" ({RT_ENV}=0)"
    try:
        if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
            return thread_policy(tid) + " (already)"
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        return thread_policy(tid)
    except OSError:
        pass
    why = "real-time scheduling not permitted"
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) > nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass
    return f"{thread_policy(tid)} ({why})"


def boost_current_thread(priority: int = AUDIO_RT_PRIORITY) -> str:
    """:func:`boost_thread` for the calling thread (called once from the audio callback:
    two system calls)."""
    return boost_thread(threading.get_native_id(), priority)


def touch_pages(a: np.ndarray, page_bytes: int = 4096) -> None:
    """Read and write back one byte in every memory page of ``a`` (values unchanged), so
    that no page fault is left for the audio thread. Non-contiguous or read-only arrays are
    left alone."""
    if a.nbytes == 0 or not a.flags.writeable or not a.flags.c_contiguous:
        return
    b = a.reshape(-1).view("u1")
    b[::page_bytes] += 0
