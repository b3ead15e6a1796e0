"""The parameter table: every user-facing parameter of the instrument in one place.

Like Vital's parameter table, one entry describes a parameter completely (default, range,
unit, when a change takes effect, schema version added), so presets, the control panel and
validation all read the same source. Per-key physical curves (B, T60, hammer K/p/m ...) are
derived from these scalars by :mod:`pianosynth.design.keyboard`; a preset may override
single keys (``[keys.60]`` tables, written by ``pianosynth fit``).

``apply`` is ``"live"`` (smoothed in the block loop, no click), ``"note"`` (takes effect
from the next struck note, e.g. a new dispersion filter order) or ``"restart"`` (structural,
e.g. polyphony, needs a new engine).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: highest preset schema this build reads. 1: [parameters], [keys.N]; 2 adds the [tuning]
#: and [velocity] tables (a preset is saved with the lowest version that holds its content).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    min: float
    max: float
    unit: str
    group: str
    apply: str
    doc: str
    integer: bool = False
    added: int = 1


PARAMETERS: tuple[Param, ...] = (
    # Tuning
    Param("a4_hz", 440.0, 400.0, 480.0, "Hz", "tuning", "note", "Reference pitch of A4."),
    Param("stretch_scale", 1.0, 0.0, 2.0, "x", "tuning", "note",
          "Scale of the Railsback stretch curve (0 = pure 12-TET partial 1)."),
    # Hammer
    Param("felt_stiffness_scale", 1.0, 0.1, 10.0, "x", "hammer", "note",
          "Scale of felt stiffness K (F = K*dy^p, Bank et al. eq. 2)."),
    Param("felt_exponent_offset", 0.0, -0.5, 0.5, "", "hammer", "note",
          "Added to the felt exponent p of every key (K rescaled so F at 1 mm is kept)."),
    Param("hammer_mass_scale", 1.0, 0.25, 4.0, "x", "hammer", "note", "Scale of hammer mass."),
    Param("strike_position", 0.11, 0.05, 0.5, "of length", "hammer", "note",
          "Strike position as a fraction of the speaking length, from the agraffe."),
    Param("hammer_knock_db", -12.0, -80.0, 12.0, "dB", "hammer", "note",
          "Level of the hammer knock sent to the soundboard (-80 = off)."),
    Param("velocity_min_m_s", 0.4, 0.05, 2.0, "m/s", "hammer", "note",
          "Hammer velocity at MIDI velocity 1."),
    Param("velocity_max_m_s", 5.0, 1.0, 10.0, "m/s", "hammer", "note",
          "Hammer velocity at MIDI velocity 127."),
    Param("velocity_curve", 1.0, 0.3, 3.0, "", "hammer", "note",
          "Exponent of the velocity curve: v = vmin*(vmax/vmin)**(((vel-1)/126)**curve)."),
    # String
    Param("inharmonicity_scale", 1.0, 0.0, 4.0, "x", "string", "note",
          "Scale of the inharmonicity coefficient B (f_k = k f0 sqrt(1+B k^2), eq. 12)."),
    Param("t60_scale", 1.0, 0.05, 4.0, "x", "string", "note",
          "Scale of the string T60 at f0 (loss filter, eq. 8-10)."),
    Param("t60_high_scale", 1.0, 0.05, 4.0, "x", "string", "note",
          "Scale of the string T60 at high frequency (loss filter, eq. 8-10)."),
    Param("unison_detune_cents", 1.0, 0.0, 10.0, "cent", "string", "note",
          "Detuning of the second mode of each unison (resonator bank, section 4.3)."),
    Param("resonators_on", 1.0, 0.0, 1.0, "bool", "string", "note",
          "Resonator bank for beating and two-stage decay (Fig. 5) on/off.", integer=True),
    Param("resonator_count", 8.0, 0.0, 10.0, "", "string", "note",
          "Resonators per key (partials with a second mode).", integer=True),
    Param("sympathetic_coupling", 1.0, 0.0, 4.0, "x", "string", "live",
          "Sympathetic resonance: coupling of undamped strings through the bridge "
          "(1 = a bridge impedance of 2000 kg/s; 0 = off)."),
    Param("damper_t60_s", 0.25, 0.05, 2.0, "s", "string", "note",
          "T60 at f0 of a damped string (key up, no pedal)."),
    # Noises
    Param("damper_noise_db", -40.0, -80.0, 0.0, "dB", "noises", "live",
          "Damper noise: the felt landing on a sounding string at key-up, relative to a "
          "mezzo-forte C4 (-80 = off).", added=2),
    Param("pedal_noise_db", -36.0, -80.0, 0.0, "dB", "noises", "live",
          "Sustain pedal noise: the damper rail lifting (press) and the dampers falling "
          "(release), relative to a mezzo-forte C4 (-80 = off).", added=2),
    # Soundboard
    Param("soundboard_level_db", 0.0, -40.0, 12.0, "dB", "soundboard", "live",
          "Level of the soundboard radiation (both bands)."),
    Param("soundboard_t60_s", 0.35, 0.05, 3.0, "s", "soundboard", "live",
          "T60 of the high-band FDN at 2.2 kHz (soundboard size/decay)."),
    Param("soundboard_balance", 0.0, -1.0, 1.0, "", "soundboard", "live",
          "Low/high band balance (-1 low only, +1 high only)."),
    # Output
    Param("master_gain_db", 0.0, -60.0, 12.0, "dB", "output", "live", "Master volume."),
    Param("polyphony", 64.0, 1.0, 256.0, "voices", "voices", "restart",
          "Most voices sounding at once; past it the quietest is stolen.", integer=True),
)

PARAM_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}

#: per-key override fields a preset's ``[keys.N]`` table may carry, with ranges.
KEY_OVERRIDES: dict[str, tuple[float, float, str]] = {
    "f0_hz": (20.0, 5000.0, "Hz"),
    "inharmonicity_b": (0.0, 0.05, ""),
    "t60_f0_s": (0.05, 120.0, "s"),
    "t60_high_s": (0.02, 120.0, "s"),
    "t60_high_hz": (100.0, 20000.0, "Hz"),
    "felt_stiffness_k": (1e5, 1e16, "N/m^p"),
    "felt_exponent_p": (1.5, 4.0, ""),
    "hammer_mass_kg": (0.5e-3, 20e-3, "kg"),
    "strike_position": (0.03, 0.5, ""),
    "unison_detune_cents": (0.0, 20.0, "cent"),
    "late_t60_ratio": (1.0, 50.0, "x"),
    "second_mode_level": (0.0, 2.0, "x"),
    "output_gain_db": (-40.0, 40.0, "dB"),
    # higher-order loss filter (Bank et al. §4.1): one-pole + (loss_order - 1) peaking cuts
    # fitted to measured T60s of partials 1..N_T60_PARTIALS (``pianosynth fit --loss-order``)
    "loss_order": (1.0, 9.0, ""),
    # the dispersion allpass covers at least this many partials (0: the perceptual band)
    "dispersion_partials": (0.0, 40.0, ""),
    **{f"t60_k{k:02d}_s": (0.02, 120.0, "s") for k in range(1, 21)},
    # offsets (cents) of partials 1..20 from eq. 12: the fitted key's dispersion allpass places
    # the recording's measured partials directly (design.string.choose_dispersion_measured)
    **{f"partial_k{k:02d}_cents": (-50.0, 50.0, "cent") for k in range(1, 21)},
    # the second mode of partial k (resonator bank, §4.3, eq. 16) on its own: level relative
    # to the string partial (0 = none: the partial decays in one stage), T60 over the string
    # partial's T60 (< 1: the second mode is the fast one), detuning; absent = the key's
    # second_mode_level / late_t60_ratio / +-unison_detune_cents
    **{f"second_level_k{k:02d}": (0.0, 2.0, "x") for k in range(1, 11)},
    **{f"second_ratio_k{k:02d}": (0.05, 200.0, "x") for k in range(1, 11)},
    **{f"second_detune_k{k:02d}_cents": (-20.0, 20.0, "cent") for k in range(1, 11)},
    # the level of partial k as radiated, dB over the model's (absent = 0 dB): a peaking
    # filter on the string's output at the partial (design.string.design_partial_eq); the
    # recorded partials' levels differ from the hammer's spectrum by the bridge, soundboard
    # and microphone, which the fit reads per partial (``pianosynth fit``)
    **{f"partial_gain_k{k:02d}_db": (-40.0, 40.0, "dB") for k in range(1, 21)},
}
#: partials whose second mode a preset may give on its own (``second_level_k01`` ..)
N_SECOND_MODES = 10
#: partials whose T60 a preset may give (``t60_k01_s`` .. ``t60_k20_s``)
N_T60_PARTIALS = 20


def defaults() -> dict[str, float]:
    """All parameters at their defaults, ``{name: value}``."""
    return {p.name: p.default for p in PARAMETERS}



# ------------------------------------------------------------------------- velocity curve
#: hammer speeds a velocity-curve point may give, m/s (the extremes of velocity_min_m_s and
#: velocity_max_m_s; Askenfelt & Jansson measured about 0.5 .. 5 m/s from pp to ff)
VELOCITY_POINT_MIN_M_S, VELOCITY_POINT_MAX_M_S = 0.05, 10.0

#: named velocity curves for a preset's ``[velocity] curve = "..."``: (MIDI velocity, hammer
#: m/s) points, piecewise linear in log speed. "normal" is the parameter table's default
#: map (velocity_curve = 1); "soft" is a light touch (a given velocity strikes harder: 64 ->
#: 2.4 m/s instead of 1.41), "hard" a heavy one (64 -> 0.85 m/s).
VELOCITY_CURVES: dict[str, tuple[tuple[int, float], ...]] = {
    "normal": ((1, 0.4), (127, 5.0)),
    "soft": ((1, 0.5), (64, 2.4), (127, 5.0)),
    "hard": ((1, 0.3), (64, 0.85), (127, 5.0)),
}


def validate_velocity_points(points) -> list[tuple[int, float]]:
    """Check a velocity curve given as points.

    Parameters
    ----------
    points : sequence of (int, float)
        ``[[midi_velocity, hammer_m_s], ...]``: at least 2 points, velocities whole numbers
        1..127 strictly increasing, speeds VELOCITY_POINT_MIN_M_S..VELOCITY_POINT_MAX_M_S
        (0.05..10 m/s) not decreasing.

    Returns
    -------
    list of (int, float)

    Raises
    ------
    ValueError
        With a message naming the offending point.
    """
    if isinstance(points, (str, bytes, dict)) or not hasattr(points, "__len__"):
        raise ValueError(f"points must be a list of [velocity, m/s] pairs, not {points!r}")
    if len(points) < 2:
        raise ValueError(f"a velocity curve needs at least 2 points, got {len(points)}")
    out: list[tuple[int, float]] = []
    for i, pt in enumerate(points, 1):
        if isinstance(pt, (str, bytes, dict)) or not hasattr(pt, "__len__") or len(pt) != 2:
            raise ValueError(f"point {i} must be a pair [velocity, m/s], not {pt!r}")
        vel, speed = pt
        if isinstance(vel, bool) or not isinstance(vel, (int, float)) or float(vel) != int(vel) \
                or not 1 <= vel <= 127:
            raise ValueError(f"point {i}: velocity must be a whole number 1..127, not {vel!r}")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) \
                or not math.isfinite(speed) \
                or not VELOCITY_POINT_MIN_M_S <= speed <= VELOCITY_POINT_MAX_M_S:
            raise ValueError(f"point {i}: hammer speed must be {VELOCITY_POINT_MIN_M_S:g} to "
                             f"{VELOCITY_POINT_MAX_M_S:g} m/s, not {speed!r}")
        if out and int(vel) <= out[-1][0]:
            raise ValueError(f"point {i}: velocities must increase ({int(vel)} after "
                             f"{out[-1][0]})")
        if out and float(speed) < out[-1][1]:
            raise ValueError(f"point {i}: the curve must not fall ({float(speed):g} m/s after "
                             f"{out[-1][1]:g} m/s): a harder key stroke never strikes softer")
        out.append((int(vel), float(speed)))
    return out


def velocity_table_from_points(points) -> np.ndarray:
    """The engine's MIDI velocity -> hammer speed table from curve points.

    Parameters
    ----------
    points : sequence of (int, float)
        As :func:`validate_velocity_points` (validated here).

    Returns
    -------
    numpy.ndarray, float64, shape (128,)
        Hammer speed in m/s for MIDI velocities 0..127: piecewise linear in log speed
        between the points, held at the first / last point's speed outside them; entry 0
        (not a note-on) copies entry 1.

    Raises
    ------
    ValueError
        On invalid points.

    Notes
    -----
    ln v(vel) = ln v_i + (vel - vel_i) / (vel_{i+1} - vel_i) (ln v_{i+1} - ln v_i): loudness
    is roughly logarithmic in hammer speed, so equal velocity steps give about equal steps
    in level, as with the exponential default map.

    Examples
    --------
    >>> t = velocity_table_from_points([(1, 0.4), (127, 5.0)])
    >>> round(float(t[64]), 4), round(float(t[127]), 9)
    (1.4142, 5.0)
    """
    pts = validate_velocity_points(points)
    vel = np.array([p[0] for p in pts], float)
    lnv = np.log([p[1] for p in pts])
    table = np.exp(np.interp(np.arange(128, dtype=float), vel, lnv))
    table[0] = table[1]
    return table
