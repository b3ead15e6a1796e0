"""The live output skips an idle engine (issue 8, "CPU in silence after the last note").

:class:`pianosynth.io.audio_out.IdleGate` stands between the audio callback and
``Engine.render``: while the engine holds nothing and no event comes it writes zeros
without calling the engine; an event, or every ``IDLE_RECHECK_BLOCKS`` blocks, renders
again. The panel's tap counts the skipped frames as silence and its ``activity`` counter
stays put, so the panel's timers can slow down.
"""
from __future__ import annotations

import numpy as np
import pytest

from pianosynth.engine.core import Engine
from pianosynth.engine.events import EVENT_DTYPE, NO_EVENTS
from pianosynth.io.audio_out import IDLE_RECHECK_BLOCKS, IdleGate, idle_probe

FS = 48000
N = 256


class Counting:
    """An engine wrapper counting its render calls."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = 0

    def render(self, out, events):
        self.calls += 1
        self.engine.render(out, events)

    def is_idle(self):
        return idle_probe(self.engine)()


def _note(key=60, vel=100, status=0x90):
    ev = np.zeros(1, EVENT_DTYPE)
    ev["offset"], ev["status"], ev["data1"], ev["data2"] = 0, status, key, vel
    return ev


@pytest.fixture(scope="module")
def engine():
    return Engine(sample_rate=FS)


def test_idle_probe_finds_a_fresh_engine_idle_and_a_struck_one_busy(engine):
    engine.reset()
    out = np.zeros((N, 2), np.float32)
    for _ in range(40):                       # the soundboard's two quiet windows
        engine.render(out, NO_EVENTS)
    probe = idle_probe(engine)
    assert probe is not None and probe()
    engine.render(out, _note())
    assert not probe()
    assert idle_probe(object()) is None       # a test double: never skipped


def test_gate_skips_silence_renders_events_and_rechecks(engine):
    engine.reset()
    eng = Counting(engine)
    gate = IdleGate(eng)
    out = np.ones((N, 2), np.float32)
    for _ in range(40):
        gate.render(out, NO_EVENTS)
    assert gate.idle and gate.skipped > 0
    calls = eng.calls
    for _ in range(IDLE_RECHECK_BLOCKS // 2):
        out[:] = 1.0
        gate.render(out, NO_EVENTS)
        assert not out.any(), "a skipped block is exact zeros"
    assert eng.calls == calls, "an idle engine is not called"
    for _ in range(IDLE_RECHECK_BLOCKS):
        gate.render(out, NO_EVENTS)
    assert eng.calls == calls + 1, "one render per IDLE_RECHECK_BLOCKS skipped blocks"
    gate.render(out, _note())                  # an event always renders
    assert eng.calls == calls + 2 and not gate.idle
    peak = 0.0
    for _ in range(20):                        # the note sounds: never skipped
        gate.render(out, NO_EVENTS)
        peak = max(peak, float(np.abs(out).max()))
    assert eng.calls == calls + 22 and peak > 1e-3


def test_a_note_after_a_skipped_silence_sounds_as_after_no_silence():
    """The skipped engine keeps its state: a note struck after N skipped blocks gives the
    output of the same note struck right after the block that found the engine idle."""
    a, b = Engine(sample_rate=FS), Engine(sample_rate=FS)
    out = np.zeros((N, 2), np.float32)
    for e in (a, b):
        for _ in range(40):
            e.render(out, NO_EVENTS)
    gate = IdleGate(a)
    gate.render(out, NO_EVENTS)
    assert gate.idle
    for _ in range(IDLE_RECHECK_BLOCKS - 1):   # skipped: the engine is not touched
        gate.render(out, NO_EVENTS)
    b.render(out, NO_EVENTS)                   # b rendered the one block that a did
    ya = np.zeros((20 * N, 2), np.float32)
    yb = np.zeros_like(ya)
    for i in range(20):
        ev = _note() if i == 0 else NO_EVENTS
        gate.render(ya[i * N:(i + 1) * N], ev)
        b.render(yb[i * N:(i + 1) * N], ev)
    assert np.abs(ya).max() > 1e-3
    np.testing.assert_array_equal(ya, yb)


def test_tap_counts_silence_and_activity_only_for_sound():
    pytest.importorskip("numpy")
    from pianosynth.gui.session import RING_FRAMES, Tap, TappedEngine
    eng = Engine(sample_rate=FS)
    tap = Tap()
    te = TappedEngine(eng, tap)
    gate = IdleGate(te)
    out = np.zeros((N, 2), np.float32)
    gate.render(out, _note())
    act = tap.activity
    assert act > 0 and tap.keys_down[60] == 1
    gate.render(out, _note(status=0x80, vel=0))
    for _ in range(2000):                      # the note dies, the soundboard settles
        gate.render(out, NO_EVENTS)
        if gate.skipped:
            break
    assert gate.skipped, "the engine never went idle"
    act = tap.activity
    w = tap.written
    for _ in range(10):
        gate.render(out, NO_EVENTS)
    assert tap.activity == act, "silence is nothing new to show"
    assert tap.written == w + 10 * N, "skipped frames still count as output"
    assert not tap.latest(RING_FRAMES // 2)[-10 * N:].any()


# ---------------------------------------------------------------- silence in C
def _c_gate():
    from pianosynth.io.audio_out import gate_cfunc
    f = gate_cfunc()
    if f is None:
        pytest.skip("numba cannot build the C callback here")
    return f


def test_c_callback_writes_zeros_only_while_armed_and_else_calls_python():
    """:func:`gate_cfunc` (driven through ctypes as PortAudio would): zeros and no Python
    call for blocks up to LIMIT while nothing woke it; WAKE, HOLD, an underflow flag or a
    block past LIMIT reach the Python callback with the same arguments."""
    import ctypes

    from pianosynth.io import audio_out as A
    f = _c_gate()
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong,
                             ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p)
    seen = []

    def python(inp, outp, frames, tinfo, flags, user):
        seen.append((frames, flags))
        return 0
    py = proto(python)
    st = np.zeros(A.G_LEN, np.int64)
    st[A.G_PYFN] = ctypes.cast(py, ctypes.c_void_p).value
    st[A.G_CHANNELS] = 2
    out = np.ones((N, 2), np.float32)
    cb = proto(f.address)

    def block(flags=0):
        return cb(None, out.ctypes.data, N, None, flags, st.ctypes.data)

    assert block() == 0 and seen == [(N, 0)], "not armed: Python"
    assert out.min() == 1.0, "... which writes the block, not C"
    st[A.G_FRAME], st[A.G_LIMIT] = 1000, 1000 + 2 * N
    assert block() == 0 and block() == 0 and len(seen) == 1
    assert not out.any() and st[A.G_FRAME] == 1000 + 2 * N and st[A.G_BLOCKS] == 2
    out[:] = 1.0
    block()
    assert len(seen) == 2 and out.min() == 1.0, "past LIMIT: Python"
    st[A.G_LIMIT] = 1 << 62
    for word in (A.G_WAKE, A.G_HOLD):
        st[word] = 1
        block()
        st[word] = 0
    block(A.PA_OUTPUT_UNDERFLOW)
    assert seen[2:] == [(N, 0), (N, 0), (N, A.PA_OUTPUT_UNDERFLOW)]
    block()
    assert len(seen) == 5 and st[A.G_BLOCKS] == 3


def test_a_queued_midi_message_wakes_the_c_callback():
    """MidiEventQueue.push sets the output's wake word after the message is queued."""
    from pianosynth.io.midi_live import MidiEventQueue
    q = MidiEventQueue()
    q.push(0.0, 0x90, 60, 100)                 # no output attached: nothing to wake
    wake = np.zeros(1, np.int64)
    q.wake = wake
    q.push(0.0, 0x80, 60, 0)
    assert wake[0] == 1 and len(q) == 2
