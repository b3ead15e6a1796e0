"""Silence costs nothing: an engine holding nothing skips its block loop (exact zeros) and
comes back from it exactly as if it had computed every sample."""
import numpy as np

from pianosynth.engine import blockloop as B
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

FS = 48000


def _idle(e):
    return e._sb_quiet >= 2 and B.is_idle(e.iv, e.noise, e.ring, e.ring2, e.ring4, e.drive,
                                          e.drive_zi, e.gf)


def test_idle_engine_is_skipped_and_resumes_identically_for_any_block_size():
    # staccato notes with the pedal, then silence long enough for every tail to end, then
    # notes again (a bass one at fs/2, the resonator bank, noises)
    ev = make_events([(0, 0xB0, 64, 127), (100, 0x90, 60, 90), (2000, 0x80, 60, 64),
                      (4000, 0xB0, 64, 0), (5000, 0x90, 72, 30), (6000, 0x80, 72, 64),
                      (int(9.0 * FS), 0x90, 30, 100), (int(9.0 * FS) + 77, 0x90, 64, 80),
                      (int(9.5 * FS), 0x80, 30, 64)])
    n = int(10.0 * FS)
    e1 = Engine({}, FS)
    a = e1.render_frames(n, ev, block_size=512)
    b = Engine({}, FS).render_frames(n, ev, block_size=333)
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))
    # the engine really went idle in the gap: render up to the gap and look
    e = Engine({}, FS)
    e.render_frames(int(8.9 * FS), ev[ev["offset"] < int(8.9 * FS)])
    assert _idle(e)
    assert not np.any(a[int(8.5 * FS):int(9.0 * FS)])
    assert np.max(np.abs(a[int(9.0 * FS):])) > 0.01      # and it plays again


def test_not_idle_while_anything_rings():
    e = Engine({}, FS)
    e.render_frames(4800, make_events([(0, 0x90, 60, 90)]))
    assert not _idle(e)
    e.render_frames(int(1.0 * FS), make_events([(0, 0x80, 60, 64)]))
    assert not _idle(e) or not np.any(e.out64)
