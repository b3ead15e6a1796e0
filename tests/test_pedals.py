"""Pedals measured on renders: half-pedalling, sostenuto, una corda."""
import numpy as np

from pianosynth import analysis as A
from pianosynth.dsp import voice as V
from pianosynth.engine.events import make_events

from conftest import get_engine
from test_engine_voices import string_sum

FS = 44100


def _decay_db_per_s(y, t0, t1):
    a = 10 * np.log10(np.mean(y[int(t0 * FS):int(t0 * FS) + 2205] ** 2) + 1e-30)
    b = 10 * np.log10(np.mean(y[int(t1 * FS):int(t1 * FS) + 2205] ** 2) + 1e-30)
    return (a - b) / (t1 - t0)


def test_half_pedal_decay_time_grows_monotonically_with_cc64():
    rates = []
    for cc in (0, 40, 56, 64, 72, 88, 127):
        eng = get_engine(FS)
        ev = make_events([(0, 0xB0, 64, cc), (0, 0x90, 60, 100), (int(0.3 * FS), 0x80, 60, 0)])
        y = string_sum(eng, int(1.0 * FS), ev)
        rates.append(_decay_db_per_s(y, 0.4, 0.7))
    assert all(a > b for a, b in zip(rates, rates[1:])), np.round(rates, 1)


def test_sostenuto_holds_exactly_the_keys_held_at_press():
    eng = get_engine(FS)
    ev = make_events([(0, 0x90, 48, 100), (0, 0x90, 55, 100), (100, 0xB0, 66, 127),
                      (200, 0x90, 64, 100),                      # pressed after: not held
                      (int(0.3 * FS), 0x80, 48, 0), (int(0.3 * FS), 0x80, 55, 0),
                      (int(0.3 * FS), 0x80, 64, 0)])
    eng.render_frames(int(0.8 * FS), ev)
    sounding = {int(k) for k, st, lvl in zip(eng.iv[:, V.I_KEY], eng.iv[:, V.I_STATE],
                                             eng.fv[:, V.F_LEVEL])
                if st != V.FREE and lvl > 1e-4}
    targets = {int(eng.iv[v, V.I_KEY]): eng.fv[v, V.F_DAMP_TARGET]
               for v in range(eng.max_voices) if eng.iv[v, V.I_STATE] != V.FREE}
    assert {48, 55} <= sounding
    assert targets.get(48) == 0.0 and targets.get(55) == 0.0
    assert 64 not in sounding or targets[64] == 1.0


def test_una_corda_softer_attack_and_different_two_stage_decay():
    key = 60
    f1 = get_engine(FS).keys.kp.f1_hz[key - 21]
    out = {}
    for cc in (0, 127):
        eng = get_engine(FS)
        y = eng.render_frames(int(4.0 * FS), make_events([(0, 0xB0, 67, cc),
                                                          (0, 0x90, key, 90)]))[:, 0]
        d = A.decay_times(y, FS, [f1])
        out[cc] = (A.spectral_centroid(y, FS), d.t60_early_s[0], d.t60_late_s[0])
    assert out[127][0] < 0.95 * out[0][0], out
    # the two-stage decay changes: the early (struck-strings) decay is slower
    assert out[127][1] > 1.1 * out[0][1], out
