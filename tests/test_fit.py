"""pianosynth fit: the analysis recovers what our own engine was given; fits of recorded notes;
bad recordings end in one clear error.

Synthetic notes are rendered by the engine with known parameters and measured with the same
functions the fit uses on recordings (Bank et al. 2003 §4.1-4.3): B against the design value
(eq. 12), T60 against the loss filter's exact loop decay (eq. 8-10), the beat against the
resonator bank's second-mode detuning (eq. 16). The recordings are the Yamaha C3 notes in
../shared/data (tests skip without them).
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth import fit as F
from pianosynth.cli import main
from pianosynth.design.string import loop_group_delay, t60_of_loop
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

from conftest import SHARED_DATA

FS = 44100


def _render(key, velocity, dur_s, settings=None, overrides=None):
    eng = Engine(settings, FS, overrides, max_voices=2)
    y = eng.render_frames(int(dur_s * FS), make_events([(0, 0x90, key, velocity)]),
                          block_size=4096)
    return y.mean(axis=1), eng


# ------------------------------------------------------------ analysis on our own renders
@pytest.mark.parametrize("key,b", [(36, 1.2e-4), (60, 4.0e-4), (72, 1.5e-3)])
def test_B_of_engine_render_within_2_percent(key, b):
    """B fitted (eq. 12) to the partials inside the dispersion design band of a render with
    a known B is within 2 % of it."""
    over = {key: {"inharmonicity_b": b}}
    y, eng = _render(key, 90, 3.0, {"resonators_on": 0}, over)
    sd = eng.keys.strings[key]
    kp = eng.keys.kp
    p = A.find_partials(y, FS, kp.f1_hz[key - 21], n_partials=sd.n_band)
    _, b_fit = A.fit_f0_B(p)
    assert np.isfinite(p).sum() >= min(sd.n_band, 6)
    assert abs(b_fit / b - 1) < 0.02, f"B {b_fit:.4e} vs {b:.4e}"


def test_T60_of_engine_render_within_5_percent():
    """Single-exponential decay (fit_two_mode on the backward-integrated envelope) of
    partials 1-10 of a one-string render within 5 % of the loss filter's loop T60."""
    key = 45
    y, eng = _render(key, 100, 6.0, {"resonators_on": 0})
    kp, sd = eng.keys.kp, eng.keys.strings[key]
    i = key - 21
    k = np.arange(1, 11)
    fk = k * kp.f0_hz[i] * np.sqrt(1 + kp.inharmonicity_b[i] * k * k)
    design = t60_of_loop(sd.loss_g, sd.loss_a1, loop_group_delay(kp.f0_hz[i],
                         kp.inharmonicity_b[i], k, FS), 2 * np.pi * fk / FS, FS)
    n0 = A.detect_onset(y, FS)
    t0 = np.full(k.size, n0 / FS + 0.1)
    two, _, _ = F.partial_decays(y, FS, fk, t0, t0 + 4.0, None, 0)
    t60 = np.array([tm.t60_single_s for tm in two])
    rel = t60 / design - 1
    assert np.all(np.abs(rel[np.isfinite(rel)]) < 0.05), np.round(rel, 3)
    assert np.isfinite(rel).sum() >= 8


def test_beat_of_engine_render_within_5_percent():
    """The beat of partial 1 with its resonator (second mode detuned by the unison detuning,
    §4.3) within 5 % of the designed |f_2 - f_1|."""
    key, cents = 60, 3.0
    over = {key: {"unison_detune_cents": cents, "second_mode_level": 0.5,
                  "late_t60_ratio": 2.0, "t60_f0_s": 4.0, "t60_high_s": 2.0}}
    y, eng = _render(key, 90, 6.0, None, over)
    f1 = float(eng.keys.strings[key].partials_hz[0])
    beat, depth = A.beating(y, FS, f1)
    design = f1 * (2 ** (cents / 1200) - 1)
    assert beat == pytest.approx(design, rel=0.05)
    assert depth > 3.0


# ------------------------------------------------------------ analysis on the recordings
def _b_table():
    with open(SHARED_DATA / "tables" / "B_f0_headroom_yamahaC3.csv", newline="") as fh:
        return {int(r["midi"]): float(r["B_median"]) for r in csv.DictReader(fh) if r["B_median"]}


@pytest.mark.parametrize("name", ["L1_close_21", "L5_close_21", "L1_close_24", "L5_close_24",
                                  "L1_close_36", "L1_close_48", "L1_close_60", "L1_close_72",
                                  "L1_close_84", "L3_close_84", "L5_close_84"])
def test_recording_B_agrees_with_table(shared_data, name):
    """Layers and keys tests/test_analysis.py leaves out: B (find_partials + fit_f0_B, 30
    partials) within 10 % of B_f0_headroom_yamahaC3.csv (median over layers)."""
    key = int(name.rsplit("_", 1)[1])
    x, fs = A.load_audio(shared_data / "recordings" / "headroom_yamahaC3" / f"{name}.flac")
    p = A.find_partials(x, fs, float(F.equal_tempered_hz(key)), n_partials=30)
    _, b = A.fit_f0_B(p)
    assert abs(b / _b_table()[key] - 1) < 0.10, f"B {b:.3e} vs {_b_table()[key]:.3e}"


# ------------------------------------------------------------ the fit
@pytest.mark.parametrize("v_true, v_start", [(90, 60)])
def test_velocity_search_recovers_the_velocity_of_an_engine_render(v_true, v_start):
    """The fit's velocity search (STFT distance at the recording's level, so only the
    hammer's spectrum tells velocities apart: the nonlinear felt of Bank et al. §3, eq. 2)
    finds the velocity an engine note was played at, within 3, from 30 below."""
    from pianosynth.presets import default_preset

    key, base = 84, default_preset()
    settings, keys = dict(base.settings), {int(k): dict(v) for k, v in base.keys.items()}
    x = F.render_note(settings, keys, key, v_true, int(3.5 * FS), FS)
    rec = F.analyse_note(x, FS, key)
    v = F._velocity_for_stft(settings, keys, key, v_start, rec, x, FS)
    assert abs(v - v_true) <= 3, v


@pytest.fixture(scope="module")
def fits(shared_data):
    # the two fits side by side, one process each (the suite runs on 2 cores)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    names = ("L3_close_60", "L3_close_84")
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        futures = {}
        for name in names:
            data, fs = F.load_recording(shared_data / "recordings" / "headroom_yamahaC3"
                                        / f"{name}.flac")
            # C4 L3's T60 stage (seven 20 s renders, ~95 s) ends "not kept" (16 of 18 T60s
            # within 20 %, STFT distance 1.015 against the base preset's 0.898), so the fit
            # without it returns the same result; C6 L3 runs it and keeps it, and
            # scripts/fit_all.py runs it on all 27 (keeps the suite under 10 minutes)
            stage = name != "L3_close_60"
            futures[name] = ex.submit(F.fit_note, data, fs, int(name.rsplit("_", 1)[1]),
                                      t60_stage=stage)
        return {name: futures[name].result() for name in names}


@pytest.mark.parametrize("name", ["L3_close_60", "L3_close_84"])
def test_fit_matches_level_brightness_and_early_decay(fits, name):
    """The fitted note has the recording's level (+-0.5 dB) and brightness (attack centroid
    within 10 %), and its early decay time within x1.5."""
    r = fits[name]
    assert abs(r.after.level_db) < 0.5
    assert abs(r.after.centroid_ratio - 1) < 0.10
    assert 1 / 1.5 < r.after.edt_ratio < 1.5


def test_fit_improves_on_default_C6(fits):
    """C6 L3: the fitted note is closer to the recording than the default preset played as
    loud as the recording (multi-resolution STFT distance over 3 s)."""
    r = fits["L3_close_84"]
    assert r.after.stft < r.before.stft


def test_fit_improves_on_default_C4(fits):
    """C4 L3: the fitted note is closer to the recording than the default preset played as
    loud as the recording (it read 0.900 against 0.898 while the STFT search scored each
    render at its own level, not at the recording's)."""
    r = fits["L3_close_60"]
    assert r.after.stft < r.before.stft


@pytest.mark.parametrize("name", ["L3_close_60", "L3_close_84"])
def test_fit_partials_inside_the_dispersion_band(fits, name):
    """Partials inside the dispersion allpass's design band (where the model follows eq. 12)
    within 2 cents of the recording's, partial 1 within 1.5 cents."""
    r = fits[name]
    inside = (np.arange(1, r.after.cents.size + 1) <= r.n_band) & np.isfinite(r.after.cents)
    assert inside.sum() >= 4
    assert np.max(np.abs(r.after.cents[inside])) < 2.0, np.round(r.after.cents[inside], 2)
    assert abs(r.after.cents[0]) < 1.5


@pytest.mark.xfail(strict=True, reason="the allpass places the measured partials 1-20 "
                   "(partial_kNN_cents, designed with the fine-tuning allpass and, where the "
                   "partials zigzag, narrow cuts between them) and a last stage corrects them "
                   "on short renders (fit_partial_cents): within 1 cent on 25 of 27 "
                   "(docs/realism/fit_all.md); left: C2 L3 at 1.6 cents (the last stage "
                   "reaches 0.13 but takes the early decay from x0.96 to x0.64, out of the "
                   "x1.5 band, and is not kept) and C6 L3 partial 6: rendered some 40 dB "
                   "weaker than recorded, so the render's peak there is not the partial "
                   "(17.7 cents)")
def test_fit_partials_1_to_20_within_1_cent(fits):
    for r in fits.values():
        c = r.after.cents[:20]
        assert np.max(np.abs(c[np.isfinite(c)])) < 1.0


@pytest.mark.xfail(strict=True, reason="the recorded partials decay in two stages, each with "
                   "its own prompt T60, aftersound T60 and level, and beat above the "
                   "resonator partials (C3 L3: partials 9-12, 2-3 s periods); the per-partial "
                   "T60 stage (fit_partial_t60) meets every T60 on 12 of 27 but keeps it only "
                   "where the note stays closer to the recording than the default preset: "
                   "met on 2 of 27 (C6 L1, C6 L3; C4 L3 is not); docs/realism/fit_t60.md")
def test_fit_T60_within_20_percent(fits):
    for r in fits.values():
        p = r.after.t60_pct[np.isfinite(r.after.t60_pct)]
        assert np.all(np.abs(p) < 20.0)


def test_fit_cli_writes_a_loadable_preset(shared_data, tmp_path, capsys):
    """``pianosynth fit`` end to end on a short treble note: the preset loads, holds the
    key's overrides and the error table is printed."""
    from pianosynth.presets import load_preset

    out = tmp_path / "fitted.toml"
    rc = main(["fit", str(shared_data / "recordings" / "headroom_yamahaC3" / "L3_close_96.flac"),
               "--key", "C7", "-o", str(out), "-q"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "STFT distance" in text and "cents" in text
    preset = load_preset(out)
    assert {"f0_hz", "inharmonicity_b", "t60_f0_s", "output_gain_db"} <= set(preset.keys[96])


# ------------------------------------------------------------ bad recordings
def _write(path, x, fs=FS):
    import soundfile as sf
    sf.write(str(path), np.asarray(x, float), fs, subtype="PCM_16")
    return path


def _fit_cli(tmp_path, rec, key, capsys):
    out = tmp_path / "out.toml"
    rc = main(["fit", str(rec), "--key", str(key), "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err, out


def test_bad_recordings_give_one_clear_line(tmp_path, capsys):
    """Silence, clipping, not an audio file, too short: exit 2, one line, no preset."""
    t = np.arange(2 * FS) / FS
    note = 0.3 * np.exp(-t) * np.sin(2 * np.pi * 261.6 * t)
    cases = {
        "silent": (_write(tmp_path / "silent.wav", np.zeros(2 * FS)), "silent"),
        "clipped": (_write(tmp_path / "clip.wav", np.clip(4 * note, -1, 1)), "clipped"),
        "short": (_write(tmp_path / "short.wav", note[:FS // 10]), "long"),
        "text": ((tmp_path / "notes.wav"), "not an audio file"),
        "missing": ((tmp_path / "nothere.flac"), "not found"),
    }
    (tmp_path / "notes.wav").write_text("this is not audio\n")
    for what, (path, needle) in cases.items():
        rc, err, out = _fit_cli(tmp_path, path, 60, capsys)
        assert rc == 2, what
        assert len(err) == 1 and err[0].startswith("pianosynth: error:"), (what, err)
        assert needle in err[0], (what, err[0])
        assert not out.exists()


@pytest.mark.parametrize("given,needle", [(61, "sounds like C4"), (48, "may be C4 or higher"),
                                          (72, "may be C4 or lower"), (67, "wrong key")])
def test_wrong_key_is_refused(shared_data, tmp_path, capsys, given, needle):
    """A C4 recording fitted as C#4, C3, C5 or G4 is refused with a hint."""
    rec = shared_data / "recordings" / "headroom_yamahaC3" / "L3_close_60.flac"
    rc, err, out = _fit_cli(tmp_path, rec, given, capsys)
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_two_notes_are_refused(shared_data, tmp_path, capsys):
    """A note struck twice, and a chord (C4 + E4), are not single notes."""
    x, fs = A.load_audio(shared_data / "recordings" / "headroom_yamahaC3" / "L3_close_60.flac")
    x = x[:3 * fs]
    twice = x.copy()
    twice[fs:] += x[:2 * fs]
    rc, err, _ = _fit_cli(tmp_path, _write(tmp_path / "twice.wav", 0.5 * twice, fs), 60, capsys)
    assert rc == 2 and "not a single note" in err[0], err
    t = np.arange(3 * fs) / fs
    e4 = 0.1 * np.exp(-t / 2) * np.sin(2 * np.pi * 329.6 * t)
    rc, err, _ = _fit_cli(tmp_path, _write(tmp_path / "chord.wav", 0.5 * (x + e4), fs), 60,
                          capsys)
    assert rc == 2 and len(err) == 1, err


def test_loss_order_out_of_range_is_refused(tmp_path, capsys):
    rc = main(["fit", str(tmp_path / "x.wav"), "--key", "60", "-o", str(tmp_path / "o.toml"),
               "--loss-order", "10"])
    err = capsys.readouterr().err
    assert rc == 2 and "must be 1" in err


def test_higher_order_loss_follows_a_T60_list():
    """One-pole + 3 peaking cuts (Bank et al. §4.1, eq. 11) designed from a C4-like T60 list
    (prompt partials 1-2, slow 3-5): stable with |H| < 1 (checked on a dense grid), its loop
    T60s within 15 % of the list, and a render's measured T60s within 5 % of the design."""
    from pianosynth.design.string import check_loss_filter

    key = 60
    t60 = [1.8, 1.9, 8.0, 7.5, 7.0, 6.0, 5.5, 5.0, 4.6, 4.2]
    over = {key: {"loss_order": 4, **{f"t60_k{k:02d}_s": t for k, t in enumerate(t60, 1)}}}
    y, eng = _render(key, 100, 4.0, {"resonators_on": 0}, over)
    kp, sd = eng.keys.kp, eng.keys.strings[key]
    i = key - 21
    assert len(sd.loss_sos) == 3
    check_loss_filter(sd.loss_g, sd.loss_a1, sd.loss_sos, FS)
    k = np.arange(1, len(t60) + 1)
    fk = k * kp.f0_hz[i] * np.sqrt(1 + kp.inharmonicity_b[i] * k * k)
    design = sd.t60_s(2 * np.pi * fk / FS, FS, loop_group_delay(kp.f0_hz[i],
                      kp.inharmonicity_b[i], k, FS))
    assert np.all(np.abs(design / t60 - 1) < 0.15), np.round(design / t60 - 1, 3)
    n0 = A.detect_onset(y, FS)
    t0 = np.full(k.size, n0 / FS + 0.1)
    two, _, _ = F.partial_decays(y, FS, fk, t0, t0 + 3.5, None, 0)
    rel = np.array([tm.t60_single_s for tm in two]) / design - 1
    assert np.all(np.abs(rel[2:]) < 0.05), np.round(rel, 3)      # the slow ones, exactly
    assert np.all(np.abs(rel[:2]) < 0.10), np.round(rel, 3)


def test_fit_partial_t60_matches_a_T60_list():
    """The per-partial T60 stage (fit_partial_t60: loss order 5, secant steps on the render's
    single-exponential reading, Bank et al. §4.1 eq. 11) brings a note rendered from a
    non-monotonic T60 list (prompt partials 1-2, slow 3-5), read like a recording, within
    20 % on every partial with >= 20 dB of decay, from the default preset's one-pole that
    misses it; and model_t60 (the design's loop T60) agrees with that render's reading."""
    from pianosynth.presets import default_preset

    key = 60
    settings = {**default_preset().settings, "resonators_on": 0}
    t60 = [2.0, 2.2, 7.0, 6.5, 6.0, 5.0, 4.5, 4.2, 3.8, 3.5, 3.3, 3.0]
    truth = {"loss_order": 5, **{f"t60_k{k:02d}_s": t for k, t in enumerate(t60, 1)}}
    n = int(4.0 * FS)
    x = F.render_note(settings, {key: truth}, key, 100, n, FS)
    rec = F.analyse_note(x, FS, key, n_partials=20, n_decay=20, n_two_mode=20)
    start = {"output_gain_db": 0.0}
    keys_with = (lambda o: {key: dict(o)})
    e0 = F.compare(rec, x, F.render_note(settings, keys_with(start), key, 100, n, FS), FS)
    p0 = e0.t60_pct[np.isfinite(e0.t60_pct)]
    assert p0.size >= 8 and np.any(np.abs(p0) > 20), np.round(p0)
    over, y, e = F.fit_partial_t60(settings, keys_with, start, rec, x, key, 100, FS, n,
                                   lambda *_: None)
    p = e.t60_pct[np.isfinite(e.t60_pct)]
    assert p.size == p0.size
    assert np.all(np.abs(p) <= 20.0), np.round(p)
    assert over["loss_order"] == 5 and "t60_k01_s" in over
    d = F.model_t60(settings, keys_with(over), key, FS, 12)
    ok = np.isfinite(e.t60_pct[:12])
    assert np.all(np.abs(e.t60_ren_s[:12][ok] / d[ok] - 1) < 0.1), np.round(
        e.t60_ren_s[:12][ok] / d[ok], 2)


def test_render_partials_are_read_over_the_recordings_window():
    """A render whose weak second mode (+15 cents) rings longer than the recording's gets a
    longer automatic analysis window, over which that mode outweighs the partial; read over
    the recording's window (NoteAnalysis.partials_dur_s), as the recording was, partial 1 is
    the string's (C6 L5 read +15.2 cents and the fit dragged the string 15 cents flat)."""
    t = np.arange(4 * FS) / FS
    f1 = 987.77

    def note(second_db, second_t60_s):
        x = sum(0.3 / k * np.exp(-6.91 * t / 0.8) * np.sin(2 * np.pi * k * f1 * t + k)
                for k in range(1, 7))
        x = x + 0.3 * 10 ** (second_db / 20) * np.exp(-6.91 * t / second_t60_s) \
            * np.sin(2 * np.pi * f1 * 2 ** (15 / 1200) * t)
        x = np.concatenate([np.zeros(FS // 10), x])
        return x + 1e-6 * np.random.default_rng(1).standard_normal(x.size)

    rec = F.analyse_note(note(-40.0, 2.0), FS, 83)
    y = note(-30.0, 8.0)
    assert rec.partials_dur_s < 0.7 < 1.5 < A.auto_duration_s(y, FS)
    cents = F.render_cents(rec, y, FS, 6)[1]
    assert np.all(np.abs(cents[:6]) < 0.05), np.round(cents[:6], 3)


def test_measured_partials_are_placed_by_the_dispersion_allpass():
    """Partials 1-16 of C4 given off eq. 12 by +-1.5 cents (an irregular, measured-like list,
    ``partial_kNN_cents``): the allpass designed to that list (Bank et al. §4.2, eq. 14-15
    made to the list, then refined on the cent errors) is stable, and a render (resonators
    off) measured with find_partials puts every partial within 0.5 cent of its target."""
    from pianosynth.design.string import check_loss_filter

    key = 60
    offs = 1.5 * np.array([1, -1, 0.5, 1, -0.5, -1, 1, 0.2, -1, 0.7, 1, -0.3, -1, 0.5, 1, -1])
    over = {key: {"inharmonicity_b": 4e-4, "t60_f0_s": 8.0, "t60_high_s": 4.0,
                  **{f"partial_k{k:02d}_cents": c for k, c in enumerate(offs, 1)}}}
    y, eng = _render(key, 100, 3.0, {"resonators_on": 0}, over)
    kp, sd = eng.keys.kp, eng.keys.strings[key]
    i = key - 21
    assert sd.n_band == offs.size
    c1, c2 = sd.disp_sos[:, 0], sd.disp_sos[:, 1]
    assert np.all(np.abs(c2) < 1) and np.all(np.abs(c1) < 1 + c2)      # stable sections
    check_loss_filter(sd.loss_g, sd.loss_a1, sd.loss_sos, FS)
    assert np.all(np.isfinite(y))
    k = np.arange(1, offs.size + 1)
    target = k * kp.f0_hz[i] * np.sqrt(1 + kp.inharmonicity_b[i] * k * k) * 2 ** (offs / 1200)
    p = A.find_partials(y, FS, target[0], n_partials=offs.size, inharmonicity_guess=4e-4)
    cents = 1200 * np.log2(p / target)
    assert np.isfinite(cents).sum() >= 14
    assert np.nanmax(np.abs(cents)) < 0.5, np.round(cents, 2)


def test_placed_treble_partials_include_the_fine_tuning():
    """C8 with partials 1-3 placed (B = 0.0113, as the Yamaha C3 recording of C8 reads): in a
    loop of ten samples the fine-tuning allpass's phase delay is far from flat at partial 3
    (13.8 kHz), so allpass and Thiran are designed together; a render measured with
    find_partials puts partials 1-3 within 0.5 cent of their targets (designed with the
    Thiran left out, partial 3 was 25 cents off at 48 kHz)."""
    key, f0, b = 108, 4376.6, 0.0113
    offs = np.array([1.0, -2.0, 3.0])
    over = {key: {"f0_hz": f0, "inharmonicity_b": b, "t60_f0_s": 1.5, "t60_high_s": 1.0,
                  **{f"partial_k{k:02d}_cents": c for k, c in enumerate(offs, 1)}}}
    y, eng = _render(key, 100, 1.5, {"resonators_on": 0}, over)
    assert eng.keys.strings[key].n_band == offs.size
    k = np.arange(1, offs.size + 1)
    target = k * f0 * np.sqrt(1 + b * k * k) * 2 ** (offs / 1200)
    p = A.find_partials(y, FS, target[0], n_partials=offs.size, inharmonicity_guess=b)
    cents = 1200 * np.log2(p / target)
    assert np.all(np.isfinite(cents)), cents
    assert np.max(np.abs(cents)) < 0.5, np.round(cents, 2)


# A0's partials 1-20 as the Yamaha C3 recording L3_close_21 reads them: cents off eq. 12 with
# its fitted f0 and B; they zigzag up to 2 cents about any smooth curve
A0_OFFSETS_CENTS = np.array([-11.51, -11.36, -12.67, -10.20, -11.22, -7.20, -8.62, -6.52,
                             -3.67, -4.89, -4.13, -0.11, -0.53, -0.82, 0.62, -1.27, 1.26,
                             3.06, 2.65, 2.50])
A0_F0_HZ, A0_B = 27.4662, 3.213e-4


def _loop_cents(sd, fs, target):
    """Cents between the designed loop's partials and ``target`` (phase-delay form)."""
    from pianosynth.design.string import loop_phase_delay

    k = np.arange(1, target.size + 1)
    w = 2 * np.pi * target / fs
    d = loop_phase_delay(w, sd.nut_delay + sd.bridge_delay, sd.thiran_eta, sd.disp_sos,
                         sd.loss_g, sd.loss_a1, sd.loss_sos)
    return 1200 * np.log2(k * fs / target / d)


def test_zigzag_partials_are_placed_by_notches_where_no_allpass_can(monkeypatch):
    """A0 with its recorded partials 1-20 (zigzagging up to 2 cents about any smooth curve):
    the dispersion allpass alone leaves them more than 1 cent off (its group delay is
    positive and each section adds 2 pi of phase, so it cannot move one partial against its
    neighbours); with the narrow cuts between the partials (design_placement_notches) every
    partial is within 0.2 cent, the loss filter keeps |H| <= 1, and each partial's designed
    T60 stays within 15 % of the design without the cuts."""
    import pianosynth.design.string as DS
    from pianosynth.design.string import check_loss_filter, design_string, loop_group_delay

    fs = FS / 2
    k = np.arange(1, 21)
    target = k * A0_F0_HZ * np.sqrt(1 + A0_B * k * k) * 2 ** (A0_OFFSETS_CENTS / 1200)
    args = (A0_F0_HZ, A0_B, fs, 22.0, 5.4, 582.0, 0.3, 0.1)
    sd = design_string(*args, partial_cents=tuple(A0_OFFSETS_CENTS))
    monkeypatch.setattr(DS, "NOTCH_TOL_CENTS", 1e9)
    DS._design_string_cached.cache_clear()
    plain = design_string(*args, partial_cents=tuple(A0_OFFSETS_CENTS))
    DS._design_string_cached.cache_clear()
    assert len(plain.loss_sos) == 0 and len(sd.loss_sos) == 19
    assert np.max(np.abs(_loop_cents(plain, fs, target))) > 1.0
    c = _loop_cents(sd, fs, target)
    assert np.max(np.abs(c)) < 0.2, np.round(c, 2)
    check_loss_filter(sd.loss_g, sd.loss_a1, sd.loss_sos, fs)
    w = 2 * np.pi * target / fs
    gd = loop_group_delay(A0_F0_HZ, A0_B, k, fs)
    ratio = sd.t60_s(w, fs, gd) / plain.t60_s(w, fs, gd)
    assert np.all(np.abs(ratio - 1) < 0.15), np.round(ratio, 3)


def test_zigzag_partials_of_a_render_are_where_placed():
    """The engine plays what the notched design places: a render of A0 with the recorded
    offsets (resonators off, no per-partial T60) read by find_partials over 3 s has partials
    1-20 within 0.3 cent of their targets (1.2-1.8 cents with the allpass alone), and is
    finite."""
    key = 21
    over = {key: {"f0_hz": A0_F0_HZ, "inharmonicity_b": A0_B, "t60_f0_s": 22.0,
                  "t60_high_s": 5.4, "t60_high_hz": 582.0,
                  **{f"partial_k{j:02d}_cents": c for j, c in enumerate(A0_OFFSETS_CENTS, 1)}}}
    y, eng = _render(key, 90, 3.2, {"resonators_on": 0}, over)
    assert np.all(np.isfinite(y))
    assert len(eng.keys.strings[key].loss_sos) == 19
    k = np.arange(1, 21)
    target = k * A0_F0_HZ * np.sqrt(1 + A0_B * k * k) * 2 ** (A0_OFFSETS_CENTS / 1200)
    p = A.find_partials(y, FS, target[0], n_partials=20, inharmonicity_guess=A0_B, dur_s=3.0)
    cents = 1200 * np.log2(p / target)
    assert np.isfinite(cents).sum() >= 18
    assert np.nanmax(np.abs(cents)) < 0.3, np.round(cents, 2)


def test_fit_second_modes_choice_is_checked():
    """An unknown ``second_modes`` is refused before any work (the CLI offers the three)."""
    with pytest.raises(ValueError, match="second_modes"):
        F.fit_note(np.zeros(48000), 48000, 60, second_modes="all")
    assert F.SECOND_MODES == ("shared", "own", "both")
