"""The physics of the engine in every quality mode (issue: performance)."""
import math

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.design.keyboard import KEYS
from pianosynth.engine.core import QUALITY_MODES, SYMPATHETIC_BY_QUALITY, Engine
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


@pytest.mark.parametrize("quality", list(QUALITY_MODES))
def test_sympathetic_strings_up_to_the_modes_top_key(quality):
    """With the pedal down every key up to the mode's top key has a sympathetic string (the
    struck one has its played voice), none above it (SYMPATHETIC_BY_QUALITY)."""
    from pianosynth.dsp import voice as V
    top = SYMPATHETIC_BY_QUALITY[quality][1]
    eng = engine(quality)
    eng.render_frames(2048, make_events([(0, 0xB0, 64, 127), (10, 0x90, 60, 100)]))
    live = eng.iv[:, V.I_STATE] != V.FREE
    symp = set(eng.iv[live & (eng.iv[:, V.I_SYMP] != 0), V.I_KEY].tolist())
    assert symp == set(range(21, top + 1)) - {60}, (quality, sorted(symp)[-5:])


@pytest.mark.parametrize("quality", ["normal", "eco"])
def test_pedalled_chord_excites_unplayed_strings_every_mode(quality):
    """The cheaper sympathetic strings of normal and eco still bloom: a C-E-G chord with the
    pedal down puts >= 6 dB more at G2's partial 1 (an un-played string) than without."""
    fs = 44100
    chord = [(0, 0x90, k, 100) for k in (60, 64, 67)] + \
        [(int(0.2 * fs), 0x80, k, 0) for k in (60, 64, 67)]
    eng = engine(quality)
    f1 = eng.keys.kp.f1_hz[43 - 21]
    ped = eng.render_frames(int(1.2 * fs), make_events([(0, 0xB0, 64, 127)] + chord))[:, 0]
    dry = engine(quality).render_frames(int(1.2 * fs), make_events(chord))[:, 0]

    def band_db(y):
        seg = y[int(0.4 * fs):]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        f = np.fft.rfftfreq(len(seg), 1 / fs)
        return 20 * np.log10(np.max(spec[(f > f1 * 0.985) & (f < f1 * 1.015)]) + 1e-30)
    gain = band_db(ped) - band_db(dry)
    print(f"{quality}: G2 partial 1 +{gain:.1f} dB with the pedal")
    assert gain > 6
