"""Every parameter at its limits and at random values: finite, bounded output; a stable loop.

- Output: finite and within the limiter's ceiling (|y| <= 1), and -- because the limiter
  turns a NaN into 0 and an infinity into the ceiling, which would hide a blow-up -- the
  signal *before* the limiter and every state array of the engine stay finite and bounded,
  block after block.
- Loop gain: for every key's design (``engine.keys.strings[key]``) the loss filter
  H_l(z) = g (1 + a1) / (1 + a1 z^-1) (Bank et al. 2003, eq. 8) has |H_l| < 1 on a frequency
  grid, undamped and damped; the dispersion allpass sections and the Thiran allpass have
  their poles inside the unit circle (so they are allpass, gain 1); the resonators
  (eq. 16) have pole radius < 1.
- Values out of range are clamped with a warning, never an exception; unknown names raise
  a clear error.

Hypothesis runs derandomized (the same examples every run, so their key tables come from the
design cache after the first run); set PIANOSYNTH_FUZZ_RANDOM=1 for fresh examples.
"""
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pianosynth.design.string import design_loss_filter, loss_filter_response
from pianosynth.engine import core
from pianosynth.engine.core import CEILING, Engine, clamp_settings
from pianosynth.engine.events import EVENT_DTYPE, make_events
from pianosynth.engine.params import PARAM_BY_NAME, PARAMETERS, defaults

FS = 44100
#: digital frequencies of the loop-gain check, rad/sample (0 excluded: |H_l(1)| = g).
W_GRID = np.linspace(0.0, np.pi, 257)
#: bound of the signal before the limiter (a runaway loop passes it within a block or two;
#: a fortissimo chord at +24 dB of master and soundboard gain stays far below).
PRE_LIMITER_MAX = 1e3
PROPERTY = settings(deadline=None, database=None, max_examples=20,
                    derandomize=not os.environ.get("PIANOSYNTH_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow])


def pattern_events(fs: int) -> np.ndarray:
    """0.4 s that exercise the whole instrument: pedals down, fortissimo notes over the
    compass and a pianissimo one, re-strikes, releases with and without the pedal,
    sostenuto and una corda, all notes off."""
    def t(seconds):
        return int(seconds * fs)
    keys = (21, 28, 40, 52, 60, 67, 79, 91, 100, 108)
    rows = [(0, 0xB0, 64, 127), (0, 0xB0, 67, 127)]
    rows += [(t(0.002 * i), 0x90, k, 127) for i, k in enumerate(keys)]
    rows += [(t(0.03), 0x90, 64, 1), (t(0.05), 0xB0, 66, 127)]
    rows += [(t(0.12), 0x90, k, 90) for k in (21, 60, 108)]           # re-strike, sounding
    rows += [(t(0.15), 0x80, k, 127) for k in keys]
    rows += [(t(0.2), 0xB0, 64, 0), (t(0.22), 0xB0, 66, 0), (t(0.25), 0xB0, 67, 0),
             (t(0.27), 0x90, 45, 127), (t(0.3), 0x80, 45, 0), (t(0.33), 0xB0, 123, 0)]
    return make_events(rows)


def state_arrays(engine: Engine):
    arrays = {"fv": engine.fv, "nut": engine.nut, "bridge": engine.bridge,
              "dstate": engine.dstate, "rstate": engine.rstate, "ring": engine.ring,
              "ring2": engine.ring2, "ring4": engine.ring4, "drive": engine.drive,
              "gf": engine.gf}
    for i, a in enumerate(getattr(engine, "sb_state", ()) or ()):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            arrays[f"sb_state[{i}]"] = a
    return arrays


def render_checked(engine: Engine, n: int, events=None, block: int = core.CHUNK):
    """Render ``n`` frames block by block; after every block check the signal before the
    limiter and all state arrays. Returns the output (n, 2) and the pre-limiter peak."""
    ev = events if events is not None else np.zeros(0, EVENT_DTYPE)
    out = np.zeros((n, 2))
    peak = 0.0
    for pos in range(0, n, block):
        m = min(block, n - pos)
        sel = ev[(ev["offset"] >= pos) & (ev["offset"] < pos + m)].copy()
        sel["offset"] -= pos
        engine.render(out[pos:pos + m], sel)
        pre = engine.stereo[:min(m, core.CHUNK)]
        assert np.all(np.isfinite(pre)), f"non-finite signal before the limiter at {pos}"
        peak = max(peak, float(np.max(np.abs(pre))))
        assert peak < PRE_LIMITER_MAX, f"pre-limiter level {peak:g} at frame {pos}"
        for name, a in state_arrays(engine).items():
            assert np.all(np.isfinite(a)), f"non-finite engine state {name} at frame {pos}"
    return out, peak


def check_output(y: np.ndarray) -> None:
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= CEILING + 1e-12 <= 1.0
    assert np.max(np.abs(y)) > 0.0                   # it played (-60 dB master: ~1e-7)


def check_loop_stable(engine: Engine) -> None:
    """|H_l| < 1 for every key (undamped and damped); allpass poles and resonator poles
    inside the unit circle."""
    playable = 0
    for key in range(21, 109):
        s = engine.keys.strings[key]
        if s is None:
            continue
        playable += 1
        for g, a1, what in ((s.loss_g, s.loss_a1, "loss"), (s.damped_g, s.damped_a1, "damped")):
            mag = np.abs(loss_filter_response(g, a1, W_GRID))
            assert np.all(mag < 1.0), f"key {key}: {what} filter |H_l| max {mag.max():.9f} " \
                                      f"(g={g!r}, a1={a1!r})"
            # closed form of the same: g (1 + a1) / |1 + a1 e^{-jw}|
            closed = g * (1 + a1) / np.abs(1 + a1 * np.exp(-1j * W_GRID))
            np.testing.assert_allclose(mag, closed, rtol=1e-12)
        assert abs(s.thiran_eta) < 1.0, f"key {key}: Thiran eta {s.thiran_eta}"
        for c1, c2 in s.disp_sos:
            r = np.abs(np.roots([1.0, c1, c2]))
            assert np.all(r < 1.0), f"key {key}: dispersion section ({c1}, {c2}) poles {r}"
        n_res = int(engine.keys.kt_i[key, core.B.K_N_RES])
        a2 = engine.keys.kt_res[key, :n_res, 3]
        assert np.all((a2 >= 0.0) & (a2 < 1.0)), f"key {key}: resonator |p|^2 {a2}"
    assert playable >= 80, f"only {playable} keys playable"


def play_and_check(engine: Engine) -> float:
    y, peak = render_checked(engine, int(0.4 * FS), pattern_events(FS))
    check_output(y)
    check_loop_stable(engine)
    return peak


def _value(p, which: str, rng: np.random.Generator | None = None):
    v = {"min": p.min, "max": p.max}.get(which)
    if v is None:
        v = rng.uniform(p.min, p.max)
    return int(round(v)) if p.integer else float(v)


def _extreme_settings(case: str) -> dict:
    """all_min, all_max, alternate (even table index at min, odd at max), alternate_r."""
    out = {}
    for i, p in enumerate(PARAMETERS):
        if case == "all_min":
            which = "min"
        elif case == "all_max":
            which = "max"
        else:
            which = ("min", "max")[(i + (case == "alternate_r")) % 2]
        out[p.name] = _value(p, which)
    return out


# ------------------------------------------------------------------ limits and random values
@pytest.mark.parametrize("case", ["all_min", "all_max", "alternate", "alternate_r"])
def test_every_parameter_at_its_limits(case):
    """Each parameter at its minimum and at its maximum, in two different contexts each."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # limits are in range: no clamping
        engine = Engine(_extreme_settings(case), FS)
    play_and_check(engine)


@st.composite
def random_settings(draw):
    out = {}
    for p in PARAMETERS:
        kind = draw(st.sampled_from(["min", "max", "random", "random", "default", "default"]))
        if kind == "default":
            continue
        if kind == "random":
            v = draw(st.integers(int(p.min), int(p.max)) if p.integer
                     else st.floats(p.min, p.max, allow_nan=False))
        else:
            v = _value(p, kind)
        out[p.name] = v
    return out


@PROPERTY
@given(settings_=random_settings(), quality=st.sampled_from(["high", "high", "normal", "eco"]))
def test_random_settings_finite_bounded_and_loop_gain_below_one(settings_, quality):
    engine = Engine(settings_, FS, quality=quality)
    play_and_check(engine)


@settings(deadline=None, database=None, max_examples=500,
          derandomize=not os.environ.get("PIANOSYNTH_FUZZ_RANDOM"))
@given(loop_f0=st.floats(5.0, 8000.0), fs=st.sampled_from([11025.0, 22050.0, 44100.0,
                                                           96000.0, 192000.0]),
       t60_f0=st.floats(0.0, 1e4), t60_high=st.floats(0.0, 1e4), f_high=st.floats(1.0, 1e5),
       f1_ratio=st.one_of(st.none(), st.floats(0.5, 2.0)))
def test_loss_filter_design_is_stable_for_any_input(loop_f0, fs, t60_f0, t60_high, f_high,
                                                    f1_ratio):
    """The design function itself, far outside the parameter table: 0 < g < 1,
    -1 < a1 <= 0, so |H_l| <= g < 1 at every frequency."""
    loop_f0 = min(loop_f0, 0.45 * fs)
    f1 = None if f1_ratio is None else min(loop_f0 * f1_ratio, 0.45 * fs)
    g, a1 = design_loss_filter(loop_f0, fs, t60_f0, t60_high, f_high, f1)
    assert 0.0 < g < 1.0 and -1.0 < a1 <= 0.0, (g, a1)
    assert np.all(np.abs(loss_filter_response(g, a1, W_GRID)) < 1.0)


def test_live_parameters_changed_while_notes_ring():
    """Every live parameter (and the soundboard, redesigned with its state kept) jumps to its
    minimum and maximum in the middle of a fortissimo chord under the pedal."""
    engine = Engine({}, FS)
    ev = make_events([(0, 0xB0, 64, 127)] + [(0, 0x90, k, 127) for k in (24, 48, 60, 72, 96)])
    render_checked(engine, 2048, ev)
    live = [p for p in PARAMETERS if p.apply == "live"]
    assert {p.group for p in live} >= {"soundboard", "output"}
    for p in live:
        for which in ("max", "min", "max"):
            engine.set_param(p.name, _value(p, which))
            y, _ = render_checked(engine, 1024)
            assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= CEILING + 1e-12
        engine.set_param(p.name, p.default)


def test_hammer_parameters_at_their_limits_via_set_param():
    """Hammer parameters redesign only the hammer (fast): each at min and max, set on a live
    engine, then a fortissimo and a pianissimo note."""
    engine = Engine({}, FS)
    ev = make_events([(0, 0x90, 33, 127), (0, 0x90, 64, 1), (0, 0x90, 100, 127)])
    for p in [p for p in PARAMETERS if p.group == "hammer"]:
        for which in ("min", "max"):
            engine.set_param(p.name, _value(p, which))
            engine.reset()
            y, _ = render_checked(engine, 4096, ev)
            check_output(y)
        engine.set_param(p.name, p.default)


# ------------------------------------------------------------------------- clamping, names
@pytest.mark.parametrize("name", [p.name for p in PARAMETERS])
def test_out_of_range_values_are_clamped_with_a_warning(name):
    """Beyond a limit -> that limit; not a number (NaN, +-inf) -> the default."""
    p = PARAM_BY_NAME[name]
    span = p.max - p.min
    for value, expect in [(p.min - span - 1, p.min), (p.max + span + 1, p.max),
                          (math.inf, p.default), (-math.inf, p.default), (math.nan, p.default),
                          (1e300, p.max), (-1e300, p.min)]:
        with pytest.warns(UserWarning, match=name):
            s = clamp_settings({name: value})
        assert s[name] == (round(expect) if p.integer else expect), (value, s[name])
        assert p.min <= s[name] <= p.max
        assert {k: v for k, v in s.items() if k != name} == \
            {k: v for k, v in defaults().items() if k != name}


def test_in_range_values_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in PARAMETERS:
            for v in (p.min, p.max, p.default):
                clamp_settings({p.name: v})


def test_engine_clamps_out_of_range_settings_instead_of_raising():
    with pytest.warns(UserWarning) as rec:
        engine = Engine({"master_gain_db": 1e6, "polyphony": 10_000, "hammer_knock_db": -1e9,
                         "velocity_curve": math.nan}, FS)
    text = " ".join(str(w.message) for w in rec)
    for name in ("master_gain_db", "polyphony", "hammer_knock_db", "velocity_curve"):
        assert name in text
    assert engine.settings["master_gain_db"] == 12.0
    assert engine.settings["polyphony"] == 256
    assert engine.settings["hammer_knock_db"] == -80.0
    assert engine.settings["velocity_curve"] == PARAM_BY_NAME["velocity_curve"].default
    play_and_check(engine)


def test_set_param_clamps_with_a_warning_and_keeps_playing():
    engine = Engine({}, FS)
    for name, value, expect in [("master_gain_db", 99.0, 12.0),
                                ("soundboard_t60_s", -5.0, 0.05),
                                ("sympathetic_coupling", 1e9, 4.0),
                                ("sympathetic_coupling", math.inf, 1.0),
                                ("soundboard_balance", math.nan, 0.0),
                                ("polyphony", 0, 1)]:
        with pytest.warns(UserWarning, match=name):
            engine.set_param(name, value)
        assert engine.settings[name] == expect
    y, _ = render_checked(engine, 4096, make_events([(0, 0x90, 60, 127)]))
    check_output(y)


def test_unknown_names_raise_a_clear_error():
    with pytest.raises(ValueError, match="unknown parameter 'volume'"):
        Engine({"volume": 1.0}, FS)
    engine = Engine({}, FS)
    before = dict(engine.settings)
    with pytest.raises(ValueError, match="unknown parameter 'a4_herz'"):
        engine.set_param("a4_herz", 442.0)
    assert engine.settings == before
    with pytest.raises(ValueError, match="must be a number"):
        engine.set_param("a4_hz", "loud")
    assert engine.settings == before


# ------------------------------------------------------------------------- event inputs
def _random_blocks(rng: np.random.Generator, n_blocks: int, byte_max: int):
    """Random event blocks: note on/off, pedals, all notes/sound off, odd status bytes;
    data bytes 0..byte_max."""
    for _ in range(n_blocks):
        n = int(rng.integers(0, 40))
        ev = np.zeros(n, EVENT_DTYPE)
        ev["offset"] = np.sort(rng.integers(0, core.CHUNK, n))
        ev["status"] = rng.choice([0x80, 0x90, 0x90, 0xB0, 0xB0, 0xA0, 0xE0, 0xF0, 0xFF, 0x00],
                                  n) | rng.integers(0, 16, n)
        ev["data1"] = np.where(rng.random(n) < 0.5,
                               rng.choice([64, 66, 67, 120, 123, 21, 60, 108, 0, 127], n),
                               rng.integers(0, byte_max + 1, n))
        ev["data2"] = rng.integers(0, byte_max + 1, n)
        yield ev


def test_random_midi_event_streams_stay_finite():
    """600 blocks of random valid MIDI (7-bit data): notes, re-strikes, all three pedals
    at any value, all notes off, all sound off, messages the piano ignores."""
    engine = Engine({}, FS)
    rng = np.random.default_rng(7)
    out = np.zeros((core.CHUNK, 2))
    for i, ev in enumerate(_random_blocks(rng, 600, 127)):
        engine.render(out, ev)
        assert np.all(np.isfinite(engine.stereo)), f"block {i}"
        assert np.all(np.isfinite(engine.fv)) and np.max(np.abs(out)) <= CEILING


def test_event_bytes_above_127_stay_finite():
    """Event fields are uint8: a caller may pass data bytes 128..255 (MIDI never does).
    Regression: CC 67 = 254 gave s = 2 in the una corda, hammer impedance and felt
    stiffness 0 on the two-string keys, NaN, and a soundboard silent until reset (fixed in
    the engine by masking data bytes to 7 bits)."""
    engine = Engine({}, FS)
    y = engine.render_frames(4 * core.CHUNK, make_events([(0, 0xB0, 67, 254),
                                                         (10, 0x90, 36, 100)]))
    assert np.all(np.isfinite(engine.stereo)) and np.all(np.isfinite(engine.fv))
    assert np.max(np.abs(y)) > 0.0
    out = np.zeros((core.CHUNK, 2))
    for i, ev in enumerate(_random_blocks(np.random.default_rng(8), 300, 255)):
        engine.render(out, ev)
        assert np.all(np.isfinite(engine.stereo)), f"block {i}"
        assert np.all(np.isfinite(engine.fv)) and np.max(np.abs(out)) <= CEILING
