"""The two-thread offline block loop (blockloop.render_block_pipelined) gives the output of
the one-thread loop bit for bit: the strings of chunk k and the output half of chunk k - 1
share no state, and the one decision that crosses (skipping an idle chunk) drains first."""
import numpy as np
import pytest

from pianosynth.engine.core import Engine, pipelined_available
from pianosynth.engine.events import make_events
from pianosynth.io import render
from pianosynth.io.midi_file import MIDI_EVENT_DTYPE

FS = 48000

pytestmark = pytest.mark.skipif(not pipelined_available(),
                                reason="no OpenMP/TBB threading layer or one CPU: the engine "
                                       "renders on one thread only")


def _events():
    """A staccato note, silence long enough for the soundboard to be skipped, then pedalled
    chords (sympathetic strings, fs/2 bass, the resonator bank), a release under the pedal
    and a pedal-up in the middle of a block."""
    s = lambda t: int(round(t * FS))  # noqa: E731
    return make_events([
        (s(0.0), 0x90, 72, 90), (s(0.05), 0x80, 72, 0),
        (s(4.2), 0xB0, 64, 127), (s(4.2), 0x90, 36, 100), (s(4.21), 0x90, 60, 80),
        (s(4.22), 0x90, 64, 70), (s(4.23), 0x90, 96, 110), (s(4.6), 0x80, 60, 0),
        (s(4.9), 0x90, 30, 60), (s(5.1), 0xB0, 64, 0), (s(5.1003), 0xB0, 67, 90),
        (s(5.2), 0x90, 84, 127),
    ])


def _render(pipelined, block, n):
    eng = Engine(sample_rate=FS, quality="high")
    ev = _events()
    out = np.zeros((n, 2))
    quiet = []
    pos = 0
    while pos < n:
        m = min(block, n - pos)
        sel = (ev["offset"] >= pos) & (ev["offset"] < pos + m)
        blk = ev[sel].copy()
        blk["offset"] -= pos
        eng.render(out[pos:pos + m], blk, pipelined=pipelined)
        quiet.append(eng._sb_quiet)
        pos += m
    return out, max(quiet)


def test_pipelined_render_is_bit_identical_to_one_thread():
    n = int(5.8 * FS)
    ref, quiet_ref = _render(False, 512, n)
    # (the soundboard is skipped from ~3.1 s on: every block size below ends a block
    # between that and the chords at 4.2 s)
    assert quiet_ref >= 2, "the passage must reach the skipped (idle) soundboard state"
    assert np.max(np.abs(ref[int(4.3 * FS):])) > 1e-3
    for block in (5000, 32768):
        got, quiet = _render(True, block, n)
        assert quiet >= 2
        bad = np.flatnonzero(np.any(got != ref, axis=1))
        assert bad.size == 0, (f"block {block}: {bad.size} frames differ, first at "
                               f"{bad[0] / FS:.4f} s, max {np.max(np.abs(got - ref)):.3g}")


def test_render_midi_pipelined_matches_one_thread():
    ev = np.array([(0.0, 0xB0, 64, 127), (0.0, 0x90, 48, 100), (0.3, 0x90, 67, 90),
                   (0.9, 0x80, 48, 0), (1.2, 0xB0, 64, 0)], MIDI_EVENT_DTYPE)
    one = render.render_midi(ev, Engine(sample_rate=FS), FS, tail=0.5, pipelined=False)
    two = render.render_midi(ev, Engine(sample_rate=FS), FS, tail=0.5, pipelined=True)
    assert one.shape == two.shape
    assert np.array_equal(one, two)


@pytest.mark.parametrize("pipelined", [False, True])
def test_float32_output_is_the_float64_output_rounded(pipelined):
    """The kernel writes float32 blocks itself (offline renders, audio callbacks): every
    sample is the float64 output rounded to float32, through the direct path (C-ordered
    (n, 2)) and the scratch copy (a strided view), the idle start (skipped chunks) too."""
    n = int(0.5 * FS)
    s = lambda t: int(round(t * FS))  # noqa: E731
    ev = make_events([(s(0.05), 0x90, 60, 100), (s(0.15), 0x80, 60, 0),
                      (s(0.2), 0x90, 33, 120)])
    ref = np.zeros((n, 2))
    Engine(sample_rate=FS).render(ref, ev, pipelined=pipelined)
    assert np.max(np.abs(ref)) > 1e-2
    direct = np.full((n, 2), np.nan, np.float32)
    Engine(sample_rate=FS).render(direct, ev, pipelined=pipelined)
    wide = np.full((n, 4), np.nan, np.float32)
    Engine(sample_rate=FS).render(wide[:, 1:3], ev, pipelined=pipelined)
    want = ref.astype(np.float32)
    assert np.array_equal(direct, want)
    assert np.array_equal(wide[:, 1:3], want)
    assert np.isnan(wide[:, 0]).all() and np.isnan(wide[:, 3]).all()
