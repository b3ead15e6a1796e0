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
