"""Damper and pedal noise (issue 7 "Noises"): mechanical bursts through the soundboard,
levels in the preset, measured on the string sum that feeds the soundboard."""
import numpy as np
import pytest

from pianosynth.engine.core import NOISE_REF, Engine
from pianosynth.engine.events import make_events

from test_engine_voices import string_sum

FS = 48000
QUIET = {"sympathetic_coupling": 0.0, "damper_noise_db": -80.0, "pedal_noise_db": -80.0}


def _peak_db(x):
    return 20 * np.log10(np.max(np.abs(x)) / NOISE_REF + 1e-30)


@pytest.mark.parametrize("db", [-40.0, -20.0])
def test_pedal_noise_level_follows_the_preset(db):
    """A full pedal press with no note: a burst whose peak is the preset's level re a
    mezzo-forte C4 (+-4 dB: the noise is random); -80 dB is exactly silent."""
    ev = make_events([(100, 0xB0, 64, 127)])
    y = string_sum(Engine(dict(QUIET, pedal_noise_db=db), FS), FS // 2, ev)
    off = string_sum(Engine(QUIET, FS), FS // 2, ev)
    print(f"pedal press at {db:.0f} dB: burst peak {_peak_db(y):.1f} dB re NOISE_REF")
    assert abs(_peak_db(y) - db) <= 4.0
    assert not np.any(off)
    # a burst, not a drone: 0.3 s later it is 60 dB down
    assert _peak_db(y[int(0.35 * FS):]) < db - 60


def test_pedal_noise_scales_with_travel():
    """Half a pedal stroke (into the half-pedal zone) knocks less than a full one."""
    def peak(cc):
        ev = make_events([(100, 0xB0, 64, cc)])
        return _peak_db(string_sum(Engine(dict(QUIET, pedal_noise_db=-20.0), FS), FS // 4, ev))
    assert peak(64) < peak(127) - 3.0


def test_damper_noise_at_key_up_only_where_a_damper_lands():
    """Key-up of C4 adds a burst at the release (level as set, +-4 dB); a top key (no
    damper) and a key released under the pedal add none."""
    def diff(key, pedal):
        ev = [(0, 0xB0, 64, 127)] if pedal else []
        ev = make_events(ev + [(10, 0x90, key, 64), (int(0.5 * FS), 0x80, key, 64)])
        on = string_sum(Engine(dict(QUIET, damper_noise_db=-30.0), FS), FS, ev)
        off = string_sum(Engine(QUIET, FS), FS, ev)
        return on - off
    d = diff(60, False)
    at = np.argmax(np.abs(d)) / FS
    print(f"damper noise C4: peak {_peak_db(d):.1f} dB re NOISE_REF at {at:.3f} s")
    assert abs(_peak_db(d) - (-30.0)) <= 4.0
    assert 0.5 <= at < 0.56
    assert not np.any(diff(100, False))           # above F6: no damper, no noise
    assert not np.any(diff(60, True))             # the pedal holds the damper off


def test_noises_identical_for_any_block_size():
    ev = make_events([(300, 0xB0, 64, 127), (500, 0x90, 60, 90), (9000, 0x80, 60, 30),
                      (15000, 0xB0, 64, 0), (16000, 0x90, 48, 70), (22000, 0x80, 48, 127)])
    st = {"damper_noise_db": -10.0, "pedal_noise_db": -10.0}
    a = Engine(st, FS).render_frames(30000, ev, block_size=64)
    b = Engine(st, FS).render_frames(30000, ev, block_size=333)
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))
