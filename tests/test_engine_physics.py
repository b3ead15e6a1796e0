"""Physics of the rendered instrument against theory (Bank et al. 2003 §3-4)."""
import math

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.design.keyboard import KEYS, design_keyboard
from pianosynth.design.string import loop_group_delay, t60_of_loop
from pianosynth.dsp import voice as V
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

from conftest import get_engine, render_note


@pytest.mark.parametrize("fs", [44100, 48000])
def test_tuning_all_88_keys_within_half_cent(fs):
    """Partial 1 of every key's rendered note is within 0.5 cent of 12-TET + stretch.

    The string model alone (resonator bank off): the second modes of the bank are detuned by
    the unison detuning on purpose, see the next test."""
    eng = get_engine(fs, resonators_on=0)
    kp = eng.keys.kp
    errors = []
    for i, key in enumerate(KEYS):
        dur = 3.0 if key < 40 else 1.5
        y = render_note(int(key), 80, dur, fs, engine=eng)
        f1 = A.partial_frequency(y[int(0.05 * fs):], fs, kp.f1_hz[i])
        errors.append(1200 * math.log2(f1 / kp.f1_hz[i]))
    errors = np.array(errors)
    worst = int(np.argmax(np.abs(errors)))
    assert np.max(np.abs(errors)) < 0.5, f"key {KEYS[worst]}: {errors[worst]:+.3f} cent"


@pytest.mark.parametrize("key", [40, 60, 83, 88])
def test_pitch_with_unison_detuning(key):
    """With the resonator bank on, partial 1 is a pair detuned by the unison detuning
    (1 cent): its measured pitch over the first 0.5 s stays within 0.5 cent + that spread."""
    fs = 44100
    eng = get_engine(fs)
    f1 = eng.keys.kp.f1_hz[key - 21]
    y = render_note(key, 80, 0.6, fs, engine=eng)
    m = A.partial_frequency(y, fs, f1, t_start_s=0.02, dur_s=0.5)
    assert abs(1200 * math.log2(m / f1)) < 0.5 + eng.settings["unison_detune_cents"]


@pytest.mark.parametrize("key", [21, 36, 60, 84])
def test_partials_follow_stiff_string_law(key):
    """Measured partials follow f_k = k f0 sqrt(1 + B k^2) (eq. 12) within 3 cents in the
    dispersion filter's design band, and B fitted to them is within 5 % of the preset's."""
    fs = 44100
    eng = get_engine(fs, resonators_on=0)
    i = key - 21
    kp = eng.keys.kp
    f0, b = kp.f0_hz[i], kp.inharmonicity_b[i]
    n_band = eng.keys.strings[key].n_band
    assert n_band >= 2
    y = render_note(key, 90, 3.0, fs, engine=eng)
    k = np.arange(1, n_band + 1)
    theory = k * f0 * np.sqrt(1 + b * k * k)
    measured = np.array([A.partial_frequency(y[int(0.05 * fs):], fs, f) for f in theory])
    ok = np.isfinite(measured)
    assert ok.sum() >= min(n_band, 4)
    dev = 1200 * np.log2(measured[ok] / theory[ok])
    assert np.max(np.abs(dev)) < 3.0, f"worst deviation {np.max(np.abs(dev)):.2f} cent"
    f0_fit, b_fit = A.fit_f0_B(measured[ok], k[ok])
    assert abs(b_fit / b - 1) < 0.05, f"B fitted {b_fit:.3e} vs {b:.3e}"


@pytest.mark.parametrize("key, notches", [(30, (5, 10)), (60, (5,))])
@pytest.mark.parametrize("dispersion_partials", [0, 40])
def test_strike_position_comb_follows_the_string(key, notches, dispersion_partials):
    """A string struck at beta = 1/5 of its length excites partial k in proportion to
    sin(k pi beta) (the mode shapes of a pinned stiff string are sin(k pi x / L)): partials
    5 and 10 sit in notches at least 18 dB below the mean (dB) of their neighbours, whatever
    share of the loop the dispersion allpass takes (the perceptual band's few sections or
    the 40-partial design's many: the strike point divides the whole loop, Fig. 3).
    Single-string key 30 (the string at fs/2) and three-string key 60, resonators and
    sympathetic strings off; the comb is read over 50-550 ms. C4's partial 10 is left out:
    one delay cannot place the comb on inharmonic partials exactly (there it lands on
    beta k f_k / (k f_1) = 2.03 periods: about -15 dB by theory, -11.6 measured)."""
    fs = 48000
    settings = {"strike_position": 0.2, "resonators_on": 0, "sympathetic_coupling": 0.0,
                "hammer_knock_db": -80.0}
    eng = Engine(settings, sample_rate=fs,
                 key_overrides={key: {"dispersion_partials": float(dispersion_partials)}})
    i = key - 21
    kk = np.arange(1, 12)
    fk = kk * eng.keys.kp.f0_hz[i] * np.sqrt(1 + eng.keys.kp.inharmonicity_b[i] * kk * kk)
    y = render_note(key, 40, 0.8, fs, engine=eng)
    n0 = A.detect_onset(y, fs)
    seg = y[n0 + int(0.05 * fs):n0 + int(0.55 * fs)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), 8 * seg.size))
    f = np.fft.rfftfreq(8 * seg.size, 1 / fs)
    lev = np.array([20 * np.log10(spec[(f > 0.99 * x) & (f < 1.01 * x)].max() + 1e-300)
                    for x in fk])
    for k in notches:
        depth = lev[k - 1] - 0.5 * (lev[k - 2] + lev[k])
        assert depth < -18.0, f"partial {k}: {depth:.1f} dB against its neighbours"


def test_loss_filter_t60_matches_design():
    """T60 of partials 1-10 of a single-string note within 10 % of the loss filter design
    (eq. 8-10, exact loop magnitude)."""
    fs = 44100
    key = 45
    eng = get_engine(fs, resonators_on=0)
    sd = eng.keys.strings[key]
    kp = eng.keys.kp
    i = key - 21
    k = np.arange(1, 11)
    fk = k * kp.f0_hz[i] * np.sqrt(1 + kp.inharmonicity_b[i] * k * k)
    d_g = loop_group_delay(kp.f0_hz[i], kp.inharmonicity_b[i], k, fs)
    design = t60_of_loop(sd.loss_g, sd.loss_a1, d_g, 2 * np.pi * fk / fs, fs)
    y = render_note(key, 100, 6.0, fs, engine=eng)
    res = A.decay_times(y, fs, fk)
    measured = np.asarray(res.t60_whole_s, float)
    ok = np.isfinite(measured)
    assert ok.sum() >= 8
    rel = measured[ok] / design[ok] - 1
    assert np.max(np.abs(rel)) < 0.10, f"T60 errors {np.round(rel, 3)}"


@pytest.mark.parametrize("key", [21, 36, 48, 60, 72, 84, 96, 108])
@pytest.mark.parametrize("velocity", [20, 100, 127])
def test_hammer_contact_duration(key, velocity):
    """Contact lasts 0.5-4 ms across the keyboard (Fig. 2: about 2 ms at C5).

    Known limit: the top keys at forte (C8, velocity >= 100) separate after ~0.45 ms with the
    Table 1 hammer held above C6; that one case is checked against 0.4 ms."""
    fs = 44100
    eng = get_engine(fs)
    render_note(key, velocity, 0.04, fs, engine=eng)
    f = eng.hammer_force_trace()
    on = np.nonzero(f > 1e-3 * f.max())[0]
    contact_ms = (on[-1] - on[0] + 1) / fs * 1e3
    low = 0.4 if (key > 96 and velocity >= 100) else 0.5
    assert low <= contact_ms <= 4.0, f"{contact_ms:.2f} ms"
    assert f.max() > 0


def _max_force(mode, velocity_m_s, key=72, fs=44100):
    settings = {"velocity_min_m_s": 0.05, "velocity_max_m_s": 10.0}
    eng = Engine(settings, sample_rate=fs, hammer_mode=mode, max_voices=2)
    eng.keys.vel_m_s[:] = velocity_m_s
    eng.render_frames(int(0.02 * fs), make_events([(0, 0x90, key, 100)]))
    f = eng.hammer_force_trace()
    return float(np.max(np.abs(f))) if np.all(np.isfinite(f)) else math.inf


def test_multirate_hammer_bounded_at_ten_times_divergence_velocity():
    """§3.2: the single-rate hammer with a fictitious delay diverges above some velocity;
    the multirate hammer stays bounded at ten times that velocity."""
    key = 84
    i = key - 21
    kp = design_keyboard()
    m = kp.hammer_mass_kg[i]
    # divergence: force far above what the hammer's kinetic energy allows
    def diverged(fmax, v):
        # a bounded contact cannot exceed the force of the whole kinetic energy stored in
        # the felt: F <= K (dy_max)^p with 1/2 m v^2 = K dy^(p+1)/(p+1)
        kk, p = kp.felt_stiffness_k[i], kp.felt_exponent_p[i]
        dy = ((p + 1) * 0.5 * m * v * v / kk) ** (1 / (p + 1))
        return not math.isfinite(fmax) or fmax > 3.0 * kk * dy ** p
    v_div = None
    for v in np.geomspace(0.5, 200, 40):
        if diverged(_max_force(V.HAMMER_FICTITIOUS_SINGLE_RATE, v, key), v):
            v_div = v
            break
    assert v_div is not None, "the single-rate fictitious-delay hammer never diverged"
    v10 = 10 * v_div
    fmax = _max_force(V.HAMMER_IMPLICIT_MULTIRATE, v10, key)
    assert not diverged(fmax, v10), f"multirate hammer diverged at {v10:.1f} m/s"


def test_resonators_give_two_stage_decay_and_beating():
    """C4 with the resonator bank: early T60 well below late T60 (two-stage decay, §4.3);
    without it a single exponential (early ~ late)."""
    fs = 44100
    key = 60
    kp = design_keyboard()
    f1 = kp.f1_hz[key - 21]
    on = render_note(key, 100, 8.0, fs, engine=get_engine(fs))
    off = render_note(key, 100, 8.0, fs, engine=get_engine(fs, resonators_on=0))
    r_on = A.decay_times(on, fs, [f1])
    r_off = A.decay_times(off, fs, [f1])
    e_on, l_on = float(r_on.t60_early_s[0]), float(r_on.t60_late_s[0])
    e_off, l_off = float(r_off.t60_early_s[0]), float(r_off.t60_late_s[0])
    assert l_on > 3 * e_on, f"on: early {e_on:.2f} s, late {l_on:.2f} s"
    assert abs(l_off / e_off - 1) < 0.2, f"off: early {e_off:.2f} s, late {l_off:.2f} s"
    beat_hz, depth_db = A.beating(on, fs, f1)
    assert depth_db > 3.0 and 0.05 < beat_hz < 10
