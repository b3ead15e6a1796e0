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
        eng = get_engine(FS, sympathetic_coupling=0.0)   # the released string alone
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


def _band_level_db(y, f_hz, t0, t1):
    """Level (dB) of ``y`` in +-1.5 % around ``f_hz`` between t0 and t1 s."""
    seg = y[int(t0 * FS):int(t1 * FS)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f = np.fft.rfftfreq(len(seg), 1 / FS)
    band = (f > f_hz * 0.985) & (f < f_hz * 1.015)
    return 20 * np.log10(np.max(spec[band]) + 1e-30)


def test_silently_held_key_rings_in_sympathy():
    """Silently held C3 rings at its partials after a staccato C4 (>= 20 dB above the same
    render without C3 held): C4's partials 1, 2 excite C3's partials 2, 4."""
    kp = get_engine(FS).keys.kp
    f_c3 = kp.f0_hz[48 - 21]
    b_c3 = kp.inharmonicity_b[48 - 21]
    base = [(int(0.05 * FS), 0x90, 60, 110), (int(0.15 * FS), 0x80, 60, 0)]
    held = get_engine(FS).render_frames(int(1.5 * FS),
                                        make_events([(0, 0x90, 48, 1)] + base))[:, 0]
    free = get_engine(FS).render_frames(int(1.5 * FS), make_events(base))[:, 0]
    # C3's second partial: C4's fundamental drives it through the bridge
    f2 = 2 * f_c3 * np.sqrt(1 + 4 * b_c3)
    assert _band_level_db(held, f2, 0.5, 1.5) - _band_level_db(free, f2, 0.5, 1.5) >= 20


def test_pedalled_chord_excites_unplayed_strings():
    """A chord with the pedal down has more energy at the partials of un-played strings
    than without: below the chord's lowest fundamental only un-played bass strings can
    sound (G2 and C2 share partials with C-E-G), and at G2's fundamental."""
    kp = get_engine(FS).keys.kp
    chord = [(0, 0x90, k, 100) for k in (60, 64, 67)] + \
        [(int(0.2 * FS), 0x80, k, 0) for k in (60, 64, 67)]
    ped = get_engine(FS).render_frames(int(1.2 * FS),
                                       make_events([(0, 0xB0, 64, 127)] + chord))[:, 0]
    dry = get_engine(FS).render_frames(int(1.2 * FS), make_events(chord))[:, 0]
    f1 = kp.f1_hz[43 - 21]
    assert _band_level_db(ped, f1, 0.4, 1.2) > _band_level_db(dry, f1, 0.4, 1.2) + 6

    def low_band_db(y):
        seg = y[int(0.4 * FS):]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
        f = np.fft.rfftfreq(len(seg), 1 / FS)
        return 10 * np.log10(np.sum(spec[(f > 50) & (f < 240)]) + 1e-30)
    assert low_band_db(ped) > low_band_db(dry) + 6
