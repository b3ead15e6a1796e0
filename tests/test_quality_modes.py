"""The physics of the engine in every quality mode (issue: performance)."""
import math

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.design.keyboard import KEYS
from pianosynth.engine.core import QUALITY_MODES, Engine
from pianosynth.engine.events import make_events

_E = {}


def engine(quality, **settings):
    k = (quality, tuple(sorted(settings.items())))
    if k not in _E:
        _E[k] = Engine(settings or None, sample_rate=44100, quality=quality)
    e = _E[k]
    e.reset()
    return e


@pytest.mark.parametrize("quality", ["normal", "eco"])
def test_tuning_every_eighth_key(quality):
    eng = engine(quality, resonators_on=0)
    kp = eng.keys.kp
    for key in KEYS[::8]:
        i = key - 21
        y = eng.render_frames(int((3.0 if key < 40 else 1.2) * 44100),
                              make_events([(0, 0x90, int(key), 80)]))[:, 0]
        f1 = A.partial_frequency(y[2205:], 44100, kp.f1_hz[i])
        assert abs(1200 * math.log2(f1 / kp.f1_hz[i])) < 0.5, (quality, int(key))


@pytest.mark.parametrize("quality", list(QUALITY_MODES))
def test_inharmonicity_in_band_every_mode(quality):
    eng = engine(quality, resonators_on=0)
    key = 36
    i = key - 21
    f0, b = eng.keys.kp.f0_hz[i], eng.keys.kp.inharmonicity_b[i]
    n = eng.keys.strings[key].n_band
    y = eng.render_frames(3 * 44100, make_events([(0, 0x90, key, 90)]))[:, 0]
    k = np.arange(1, n + 1)
    th = k * f0 * np.sqrt(1 + b * k * k)
    m = np.array([A.partial_frequency(y[2205:], 44100, f) for f in th])
    ok = np.isfinite(m)
    assert np.max(np.abs(1200 * np.log2(m[ok] / th[ok]))) < 3.0
    assert abs(A.fit_f0_B(m[ok], k[ok])[1] / b - 1) < 0.05


@pytest.mark.parametrize("quality", ["normal", "eco"])
def test_block_size_invariance_and_finite(quality):
    ev = make_events([(0, 0x90, 30, 120), (10, 0x90, 60, 90), (300, 0xB0, 64, 127),
                      (2000, 0x80, 60, 0), (3001, 0x90, 100, 127), (5000, 0xB0, 64, 0)])
    outs = [engine(quality).render_frames(7000, ev, block_size=bs) for bs in (1, 65, 512)]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    assert np.all(np.isfinite(outs[0])) and np.max(np.abs(outs[0])) > 1e-3


def test_retune_keys_live_moves_partial_one():
    """Engine.retune_keys (the MTS path): a note struck after the retune sounds at the new
    frequency within 0.5 cent."""
    eng = Engine({"resonators_on": 0}, sample_rate=44100)
    eng.retune_keys({60: 265.0})
    y = eng.render_frames(44100, make_events([(0, 0x90, 60, 80)]))[:, 0]
    f1 = A.partial_frequency(y[2205:], 44100, 265.0)
    assert abs(1200 * math.log2(f1 / 265.0)) < 0.5
