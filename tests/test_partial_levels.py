"""Partial levels as radiated (per-key ``partial_gain_kNN_db``): peaking filters on a string's
output, outside the waveguide loop (design.string.design_partial_eq).

Checked against what they are meant to be: the design's magnitude at each partial is the gain
asked; the kernel's filters equal scipy's ``sosfilt`` of the same render without them; in a
render the partials' levels move by the gains asked while their decays stay the loop's; the
fit's correction recovers gains an engine render was given; every extreme renders finite.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from pianosynth import analysis as A
from pianosynth import fit as F
from pianosynth.design.string import biquads_response, design_partial_eq
from pianosynth.engine import blockloop as B
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

FS = 48000
KEY = 72                  # C5: runs at fs (string rate 1), three strings
QUIET = {"sympathetic_coupling": 0.0, "hammer_knock_db": -80.0}


def _partials(f0, b, n=20):
    k = np.arange(1, n + 1)
    return k * f0 * np.sqrt(1 + b * k * k)


def _render(settings, overrides, dur_s=3.0, velocity=90, key=KEY):
    eng = Engine(settings, FS, overrides, max_voices=2)
    y = eng.render_frames(int(dur_s * FS), make_events([(0, 0x90, key, velocity)]),
                          block_size=512)
    return y.mean(axis=1), eng


@pytest.mark.parametrize("f0,b", [(27.5, 2.5e-4), (523.3, 8.8e-4)])
def test_design_meets_the_gains_at_the_partials(f0, b):
    """|H| at each partial with a gain is that gain within 0.05 dB (the sections' skirts on
    their neighbours solved for); every section is stable and minimum phase."""
    fs = FS / 2 if f0 < 100 else FS
    f = _partials(f0, b)
    rng = np.random.default_rng(1)
    g = rng.uniform(-25, 25, 20)
    g[[4, 11]] = np.nan                               # no gain asked there
    sos = design_partial_eq(f, g, fs)
    ok = np.isfinite(g)
    assert len(sos) == ok.sum()
    got = 20 * np.log10(np.abs(biquads_response(sos, 2 * np.pi * f[ok] / fs)))
    assert np.max(np.abs(got - g[ok])) < 0.05, np.round(got - g[ok], 3)
    for b0, b1, b2, a1, a2 in sos:
        assert np.all(np.abs(np.roots([1, a1, a2])) < 1)        # stable
        assert np.all(np.abs(np.roots([b0, b1, b2])) < 1)       # minimum phase
    assert len(design_partial_eq(f, np.full(20, np.nan), fs)) == 0
    assert len(design_partial_eq(f, np.full(20, 0.01), fs)) == 0


def test_kernel_filters_equal_scipy_on_the_same_render():
    """With the resonators, sympathetic strings and knock off (the only paths around the
    filters) the engine's output with partial gains is scipy.signal.sosfilt of its output
    without them through the key table's biquads, to 3e-3 of the peak: not to rounding,
    because the multirate soundboard (its low band at fs/8, §5) is periodically time-varying
    and its aliases do not commute with the filters (1.1e-3 here; the gains themselves
    change the output by more than 10 % of its peak)."""
    s = {**QUIET, "resonators_on": 0}
    gains = {"partial_gain_k01_db": 6.0, "partial_gain_k02_db": -18.0,
             "partial_gain_k03_db": 12.0, "partial_gain_k05_db": -30.0}
    y0, _ = _render(s, None, 1.0)
    y1, eng = _render(s, {KEY: gains}, 1.0)
    kt = eng.keys
    assert kt.kt_i[KEY, B.K_RATE] == 1
    n = int(kt.kt_i[KEY, B.K_N_EQ])
    assert n == 4
    c = kt.kt_f[KEY, B.KF_EQ:B.KF_EQ + 5 * n].reshape(n, 5)
    sos = np.column_stack([c[:, :3], np.ones(n), c[:, 3:]])
    ref = signal.sosfilt(sos, y0)
    assert np.max(np.abs(y1 - ref)) < 3e-3 * np.max(np.abs(ref))
    assert np.max(np.abs(y1 - y0)) > 0.1 * np.max(np.abs(y0))     # the gains did something


def test_render_levels_move_by_the_gains_and_decays_stay():
    """A render with gains on partials 2-4 (resonators on: the second modes are scaled
    alike): their levels over 0.3-2.5 s move by the gains within 0.7 dB, partial 1's (no gain)
    by less than 1 dB; the single-exponential T60 of partials 1-4 within 5 % of the render
    without gains."""
    gains = {2: -12.0, 3: 8.0, 4: -20.0}
    over = {KEY: {f"partial_gain_k{k:02d}_db": g for k, g in gains.items()}}
    y0, eng = _render(QUIET, None, 4.0)
    y1, _ = _render(QUIET, over, 4.0)
    kp = eng.keys.kp
    f = A.find_partials(y0, FS, kp.f1_hz[KEY - 21], n_partials=4)
    t, e0 = A.partial_envelopes(y0, FS, f)
    _, e1 = A.partial_envelopes(y1, FS, f)
    sel = (t > 0.3) & (t < 2.5)
    d = 10 * np.log10(np.mean(10 ** (e1[:, sel] / 10), axis=1)
                      / np.mean(10 ** (e0[:, sel] / 10), axis=1))
    want = np.array([0.0] + [gains[k] for k in (2, 3, 4)])
    assert np.max(np.abs(d[1:] - want[1:])) < 0.7, np.round(d, 2)
    assert abs(d[0]) < 1.0, np.round(d, 2)
    two0, _, _ = F.partial_decays(y0, FS, f, np.full(4, 0.05), np.full(4, 3.8))
    two1, _, _ = F.partial_decays(y1, FS, f, np.full(4, 0.05), np.full(4, 3.8))
    r = np.array([a.t60_single_s / b_.t60_single_s for a, b_ in zip(two1, two0)])
    assert np.all(np.abs(r - 1) < 0.05), np.round(r, 3)


def test_fit_correction_recovers_the_gains_of_a_render():
    """A render given partial gains, analysed as a recording; one correction of
    :func:`fit.set_partial_levels` from the render without them (both at the same level)
    recovers the gains of partials 1-8 within 1.5 dB."""
    gains = np.array([0.0, -10.0, 6.0, -15.0, 10.0, -5.0, 0.0, 8.0])
    over = {f"partial_gain_k{k:02d}_db": float(g) for k, g in enumerate(gains, 1)}
    y_rec, eng = _render(QUIET, {KEY: over}, 4.0)
    kp = eng.keys.kp
    rec = F.analyse_note(y_rec, FS, KEY, f1_guess_hz=float(kp.f1_hz[KEY - 21]), n_partials=12,
                         n_decay=8, n_two_mode=8, n_beat=0)
    y, _ = _render(QUIET, None, 4.0)
    err = F.compare(rec, y_rec, y, FS)
    e_rec = F.partial_energy_db(y_rec, FS, rec.decay_freqs_hz, rec.t_peak_s, rec.t_end_s)
    o = {}
    assert F.set_partial_levels(o, rec, e_rec, y, err, FS) >= 8
    got = np.array([o[f"partial_gain_k{k:02d}_db"] for k in range(1, 9)])
    # the correction is relative to the whole note's level, which the gains also moved
    got -= got[0] - gains[0]
    assert np.max(np.abs(got - gains)) < 1.5, np.round(got, 2)


@pytest.mark.parametrize("pattern", ["boost", "cut", "zigzag"])
def test_extreme_gains_render_finite_and_bounded(pattern):
    """Every one of the 20 gains at +40 dB, at -40 dB, or alternating: A0, C4 and C8 at
    velocity 127 render finite and within full scale."""
    g = {"boost": [40.0] * 20, "cut": [-40.0] * 20,
         "zigzag": [40.0 if k % 2 else -40.0 for k in range(20)]}[pattern]
    over = {key: {f"partial_gain_k{k:02d}_db": v for k, v in enumerate(g, 1)}
            for key in (21, 60, 108)}
    eng = Engine(None, 44100, over, max_voices=4)
    y = eng.render_frames(30000, make_events([(0, 0x90, 21, 127), (0, 0x90, 60, 127),
                                              (0, 0x90, 108, 127)]))
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0
