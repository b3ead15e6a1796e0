"""The resonator bank's per-partial second modes (Bank et al. §4.3, eq. 16; per-key
``second_level_kNN``, ``second_ratio_kNN``, ``second_detune_kNN_cents``)."""
import numpy as np

from pianosynth.design.keyboard import design_keyboard
from pianosynth.design.resonators import design_resonators
from pianosynth.engine.core import Engine
from pianosynth.engine import blockloop as B

FS = 44100.0


def _bank(**kw):
    f = 130.8 * np.arange(1, 11)
    t60 = np.full(10, 10.0)
    return design_resonators(f, t60, 80, 90, FS, 8, 8, 1.0, 3.0, 0.5, 20.0, **kw)


def _pole(row, fs_low=FS / 8):
    """Frequency (Hz) and T60 (s) of one resonator row (a1 = -2 r cos w, a2 = r^2 in
    columns 2, 3 of eq. 16's coefficients)."""
    r = np.sqrt(row[3])
    w = np.arccos(-row[2] / (2 * r))
    return w * fs_low / (2 * np.pi), -3.0 * np.log(10.0) / (fs_low * np.log(r))


def test_per_partial_second_modes_replace_the_keys_values():
    ref = _bank()
    assert ref.shape == (8, 4)
    # nothing given (nan) = the key's values, exactly
    same = _bank(level_k=np.full(10, np.nan), ratio_k=np.full(10, np.nan),
                 detune_k_cents=np.full(10, np.nan))
    np.testing.assert_array_equal(same, ref)
    # partial 2: T60 ratio 10 instead of 3 -> its second mode decays 10/3 as slowly
    r = _bank(ratio_k=[np.nan, 10.0])
    f_ref, t_ref = _pole(ref[1])
    f_new, t_new = _pole(r[1])
    assert abs(t_new / t_ref - 10.0 / 3.0) < 0.01 * 10.0 / 3.0
    np.testing.assert_array_equal(r[[0] + list(range(2, 8))], ref[[0] + list(range(2, 8))])
    # partial 3 detuned by +7 cents on its own (the key's: -1 cent, alternating sign)
    d = _bank(detune_k_cents=[np.nan, np.nan, 7.0])
    f3, _ = _pole(d[2])
    assert abs(1200 * np.log2(f3 / (3 * 130.8)) - 7.0) < 0.05
    # level 0 drops partial 1's resonator: one row fewer, the rest unchanged
    z = _bank(level_k=[0.0])
    assert z.shape == (7, 4)
    np.testing.assert_array_equal(z, ref[1:])


def test_per_key_fields_reach_the_engine():
    over = {60: {"second_level_k01": 0.0, "second_ratio_k02": 10.0}}
    kp = design_keyboard(None, over)
    assert kp.second_level[60 - 21, 0] == 0.0 and kp.second_ratio[60 - 21, 1] == 10.0
    assert np.isnan(kp.second_level[60 - 21, 1]) and np.isnan(kp.second_level[59 - 21, 0])
    plain = Engine(sample_rate=44100)
    fitted = Engine(sample_rate=44100, key_overrides=over)
    n_plain = plain.keys.kt_i[60, B.K_N_RES]
    assert fitted.keys.kt_i[60, B.K_N_RES] == n_plain - 1
    # every other key keeps its bank exactly
    np.testing.assert_array_equal(fitted.keys.kt_res[61], plain.keys.kt_res[61])


def test_single_string_gets_only_its_own_second_modes():
    """A single-string key (C#1) has no resonator bank, unless a preset gives a partial its
    own second mode (the recorded bass monochords decay in two stages: the string's two
    polarizations): then that partial alone gets one, and the rendered partial 1 decays in
    two stages (late T60 over early T60 at least twice the plain string's)."""
    from pianosynth import analysis as A
    from pianosynth.engine.events import make_events

    key, fs = 25, 44100
    short = {"t60_f0_s": 4.0, "t60_high_s": 2.0}       # the crossing inside the note
    plain = Engine(sample_rate=fs, key_overrides={key: short})
    assert plain.keys.kp.n_strings[key - 21] == 1 and plain.keys.kt_i[key, B.K_N_RES] == 0
    over = {key: {**short, "second_level_k01": 0.1, "second_ratio_k01": 8.0}}
    own = Engine(sample_rate=fs, key_overrides=over)
    assert own.keys.kt_i[key, B.K_N_RES] == 1
    f1 = plain.keys.kp.f1_hz[key - 21]
    ratios = []
    for eng in (plain, own):
        y = eng.render_frames(int(10 * fs), make_events([(0, 0x90, key, 100)]))[:, 0]
        r = A.decay_times(y, fs, [f1])
        ratios.append(float(r.t60_late_s[0]) / float(r.t60_early_s[0]))
    assert np.all(np.isfinite(ratios)) and ratios[1] > 2.0 * ratios[0], ratios


def test_treble_second_modes_run_the_bank_at_a_faster_rate():
    """The fs/8 bank holds partials below fs/32 only (1.4 kHz at 44.1 kHz, §4.3: no
    anti-alias filter on the force). A preset's own second mode on C7's partial 1 (2.1 kHz,
    the treble's recorded two-stage decays) runs that key's bank at fs/4 instead: the key
    gets the resonator, the rendered partial 1 decays in two stages with the designed
    T60 and level (two-mode fit, Bank et al. §4.3), every block size gives the same
    samples, and the default preset keeps every key's bank at fs/8."""
    from pianosynth import analysis as A
    from pianosynth.engine.events import make_events
    from pianosynth.fit import fit_two_mode, model_t60
    from pianosynth.presets import default_preset

    fs = 44100
    plain = Engine(sample_rate=fs)
    assert np.all(plain.keys.kt_i[21:109, B.K_RES_RATE] == 8)
    key, ratio, level = 96, 15.0, 0.1
    assert plain.keys.kt_i[key, B.K_N_RES] == 0          # 2.1 kHz: beyond the fs/8 bank
    over = {key: {"second_level_k01": level, "second_ratio_k01": ratio,
                  "second_detune_k01_cents": 0.0}}
    own = Engine(sample_rate=fs, key_overrides=over)
    assert own.keys.kt_i[key, B.K_RES_RATE] == 4 and own.keys.kt_i[key, B.K_N_RES] == 1
    f_res, _ = _pole(own.keys.kt_res[key, 0], fs / 4)
    f1 = own.keys.kp.f1_hz[key - 21]
    assert abs(1200 * np.log2(f_res / f1)) < 0.5
    ev = make_events([(0, 0x90, key, 80)])
    n = int(4 * fs)
    y = own.render_frames(n, ev, block_size=4096)[:, 0]
    assert np.all(np.isfinite(y))
    again = Engine(sample_rate=fs, key_overrides=over).render_frames(n, ev, block_size=97)
    np.testing.assert_array_equal(again[:, 0], y)
    t, env = A.partial_envelopes(y, fs, [f1])
    dt = A.decay_times(y, fs, [f1])
    tm = fit_two_mode(t, env[0], float(dt.t_peak_s[0]), float(dt.t_end_s[0]))
    assert tm is not None and not tm.single
    # the second mode's T60: the string partial's designed T60 (loss filter, eq. 7) times
    # the ratio (the resonator's pole, eq. 16); its level near the designed one (the fs/8
    # bank's read -17 dB for -20 dB on C4 and C5; C7 reads -14 dB)
    t60_string = model_t60(default_preset().settings, over, key, fs, 1)[0]
    assert abs(tm.t60_slow_s / (ratio * t60_string) - 1.0) < 0.1, (tm, t60_string)
    assert abs(tm.level_db - 20 * np.log10(level)) < 7.0, tm
    # the same second mode from the fs/8 bank and from fs/4 (C5's partial 1; partial 5's
    # own mode, 2.6 kHz, moves the key's bank to fs/4): the same level and T60 (the
    # interpolators' latencies are compensated in the resonators' phases)
    reads = []
    for extra in ({}, {"second_level_k05": 0.05, "second_ratio_k05": 2.0}):
        o = {72: {"second_level_k01": level, "second_ratio_k01": ratio,
                  "second_detune_k01_cents": 0.0, **extra}}
        eng = Engine(sample_rate=fs, key_overrides=o)
        f = eng.keys.kp.f1_hz[72 - 21]
        y5 = eng.render_frames(int(6 * fs), make_events([(0, 0x90, 72, 80)]), 4096)[:, 0]
        t, env = A.partial_envelopes(y5, fs, [f])
        dt = A.decay_times(y5, fs, [f])
        reads.append((eng.keys.kt_i[72, B.K_RES_RATE],
                      fit_two_mode(t, env[0], float(dt.t_peak_s[0]), float(dt.t_end_s[0]))))
    assert [r[0] for r in reads] == [8, 4]
    (_, a), (_, b) = reads
    assert not a.single and not b.single
    assert abs(a.level_db - b.level_db) < 0.5 and abs(a.t60_slow_s / b.t60_slow_s - 1) < 0.02
    # the plain key decays in one stage
    yp = plain.render_frames(n, ev, block_size=4096)[:, 0]
    t, env = A.partial_envelopes(yp, fs, [f1])
    dt = A.decay_times(yp, fs, [f1])
    assert fit_two_mode(t, env[0], float(dt.t_peak_s[0]), float(dt.t_end_s[0])).single
