"""Per-key physical parameters of all 88 keys, from published and measured data.

Every curve is a smooth function of the MIDI key (21 = A0 ... 108 = C8), interpolated through
anchor points whose source is named next to them. The tables live in ``../shared/data/tables``
(see its README); the anchor values below were read from those files so the package does not
need ``../shared`` at run time.

Curves
------
The default preset is tuned so that the recorded keys of the Yamaha C3 (``../shared/data/
recordings``, measured like renders by ``scripts/realism_report.py``, report in
``docs/realism/``) fall inside the bands of the issue "Sound like a real grand".

- **f0 and stretch**: 12-TET from ``a4_hz`` plus a stretch in cents of partial 1, anchored on
  every measured key of ``B_f0_headroom_yamahaC3.csv`` (f1_cents_vs_ET, [1, 2, 1] smoothed;
  this C3's top octave is tuned sharp: +24 cents at C7, +86 at C8).
- **Inharmonicity B** (eq. 12): log-linear through the measured B of the same table (A0-D#6)
  and of the C7/C8 recordings (Rigaud, David & Daudet 2013 agree within ~25 %): falling from
  A0 to a minimum near C2-A2, then rising ~x2 per octave to the treble.
- **Two-stage decay** (loss filter §4.1, resonator bank §4.3): the string loop carries the
  prompt decay of the coupled strings (T60 of partial 1; T60 at a high frequency), the
  resonators the aftersound (T60 ratio and level of the second mode), anchored on two-mode
  fits of the recorded partial envelopes (``pianosynth.fit.fit_two_mode``) and on the early
  decay times of ``broadband_decay_headroom.csv``.
- **Unison strings**: 1 from A0 to G#1, 2 to B2, 3 above (typical grand stringing).
- **Hammer** (§3.1, Table 1 after Chaigne & Askenfelt 1994): p, log10 K and mass interpolated
  linearly in key through C2, C4, C6 and extrapolated below C2; p clamped to [2.0, 3.5]; mass
  clamped to [2 g, 9 g] (real bass hammers weigh ~10 g, trebles ~2-3 g; see the data README).
  Above C6, p and K are fitted to the recorded soft-to-loud level range at C7 and C8.
- **Output trim**: per-key level matching the recordings' (first 500 ms) at the layer
  velocities ``pianosynth.fit.LAYER_VELOCITY`` (L1 18, L3 70, L5 109).
- **String wave impedance** Z = sqrt(T mu): from the Steinway D string table of Chabassier,
  Chaigne & Joly 2013 (``chabassier_steinwayD_strings_via_Hammers2Strings2Plate.csv``, set A),
  log-log interpolated against f0.
- **Strike position**: 1/8 of the speaking length by default (Chaigne & Askenfelt: 0.12 at C4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.params import N_SECOND_MODES, N_T60_PARTIALS, PARAM_BY_NAME, defaults

#: partials whose frequency a per-key override may move off eq. 12 (``partial_k01_cents`` ..
#: ``partial_k20_cents``, written by ``pianosynth fit``)
N_PARTIAL_CENTS = 20

KEY_MIN = 21
KEY_MAX = 108
KEYS = np.arange(KEY_MIN, KEY_MAX + 1)

# Anchor keys of the Yamaha C3 tables (every third key, A0 .. C8).
_TABLE_KEYS = np.arange(21, 109, 3)

# Stretch of partial 1 in cents vs 12-TET: B_f0_headroom_yamahaC3.csv, f1_cents_vs_ET (the
# measured partial 1 of every third key), smoothed by a [1, 2, 1] / 4 kernel inside (the ends
# kept), which leaves every recorded key within 3 cents of its measurement below C7.
_STRETCH_MEASURED = np.array([
    -2.7, -9.5, -10.2, -4.0, 0.4, -4.0, -6.1, 4.9, 3.4, -1.6, 2.1, 4.9, 3.8, 6.5, 5.4, 6.5,
    6.3, 8.4, 7.7, 12.4, 8.1, 13.0, 9.5, 14.0, 14.5, 23.7, 33.9, 40.6, 51.7, 85.7])

# Inharmonicity B: B_f0_headroom_yamahaC3.csv (B_median over the three layers) from A0 to
# D#6; above it the table has no or single-layer values, so C7 and C8 take the B measured on
# the C7/C8 recordings with pianosynth.analysis (8.1e-3, 1.13e-2; Rigaud et al. 2013 give
# 1.2e-2 at F7) and the keys between are interpolated log-linearly. Smoothed like the stretch
# (in log B).
_B_KEYS = np.concatenate([np.arange(21, 88, 3), [96, 108]])
_B_MEASURED = np.array([
    2.756e-4, 2.752e-4, 1.997e-4, 1.426e-4, 1.056e-4, 1.068e-4, 1.032e-4, 1.188e-4, 1.108e-4,
    1.732e-4, 1.597e-4, 1.804e-4, 2.492e-4, 3.369e-4, 4.680e-4, 5.909e-4, 7.668e-4, 9.513e-4,
    1.405e-3, 1.627e-3, 2.150e-3, 2.757e-3, 3.649e-3, 8.1e-3, 1.13e-2])

# Loss filter (§4.1) and second modes (§4.3), from two-mode fits of the partial envelopes of
# the 27 recordings (pianosynth.fit.fit_two_mode; median over layers of the strongest partials):
# the string loop carries the PROMPT decay of the coupled strings (T60 of partial 1,
# ``_T60_F0``), the resonator bank the aftersound: its T60 over the prompt one
# (``_LATE_RATIO``) and its level at the strike (``_SECOND_LEVEL``, amplitude ratio).
# A0-C1 (one string in the model, no resonators) show a single long decay. Above C6 the
# recorded EDT (0.5 s) is far shorter than partial 1's decay: the attack knock and the
# upper partials dominate the energy there, so the anchors follow the EDT. Where the
# measurement and the physics tests pull apart, the anchors compromise, inside the realism
# bands: C3 3.5 s (prompt decay of partials 2-3: 2.7 s; 6.5 s for partial 1) and C4 2.6 s
# (recorded 1.8 s) with a second mode at 0.117 (-19 dB, as measured) and a ratio of 8.0
# (recorded ~20): a string-only C4 must still decay as one exponential down to the analysis
# floor within 8 s, and its beat must be deeper than 3 dB (tests/test_engine_physics.py),
# while the early decay time stays within x1.5 of the recording's.
_T60_KEYS = np.array([21, 24, 36, 48, 60, 72, 84, 96, 108])
_T60_F0 = np.array([14.0, 16.0, 12.0, 3.5, 2.6, 1.3, 0.9, 0.6, 0.45])
_LATE_RATIO = np.array([1.0, 1.0, 5.0, 18.0, 8.0, 16.0, 18.0, 3.0, 3.0])
_SECOND_LEVEL = np.array([0.0, 0.0, 0.14, 0.063, 0.117, 0.07, 0.03, 0.08, 0.08])
# T60 at the high reference frequency t60_high_hz (decay of the upper partials) in s, at most
# the T60 at partial 1 (a one-pole loss filter cannot make it longer).
_T60_HIGH = np.array([3.0, 3.0, 3.0, 2.8, 2.0, 1.3, 0.9, 0.5, 0.35])


# Output trim per key (dB): the RMS level of the first 500 ms of the recorded keys minus the
# model's at the matched velocities (pianosynth.fit.LAYER_VELOCITY), averaged over the three
# layers (scripts/realism_report.py); the close microphones favour the middle of the
# keyboard by a few dB.
_GAIN_KEYS = _T60_KEYS
_GAIN_DB = np.array([-1.4, -2.5, -7.2, -2.4, -0.1, -0.8, -4.0, 10.6, 7.7])


def _smooth121(v):
    """[1, 2, 1] / 4 smoothing of an anchor sequence, ends kept."""
    v = np.asarray(v, float)
    out = v.copy()
    out[1:-1] = 0.25 * v[:-2] + 0.5 * v[1:-1] + 0.25 * v[2:]
    return out


_STRETCH_KEYS = _TABLE_KEYS
_STRETCH_CENTS = _smooth121(_STRETCH_MEASURED)
_B_VALUES = np.exp(_smooth121(np.log(_B_MEASURED)))

# Hammer, Bank et al. 2003 Table 1 (C2, C4, C6).
_HAMMER_KEYS = np.array([36.0, 60.0, 84.0])
_HAMMER_P = np.array([2.3, 2.5, 3.0])
_HAMMER_LOG10K = np.log10([4.0e8, 4.5e9, 1.0e12])
_HAMMER_MASS = np.array([4.9e-3, 2.97e-3, 2.2e-3])
# Above C6 (where Table 1 ends) the felt exponent p and a factor on K (at equal force for a
# 1 mm compression) are fitted to the Yamaha C3's soft-to-loud level range at C7 and C8
# (17.5 dB; the C6 hammer held up there gives 29 dB at C7, because its contact at pp lasts
# two periods of partial 1) under the contact-time limits of the physics tests (>= 0.5 ms at
# C7, >= 0.4 ms at C8 at full velocity).
_TREBLE_KEYS = np.array([84.0, 96.0, 108.0])
_TREBLE_P = np.array([3.0, 1.5, 2.6])
_TREBLE_K_FACTOR = np.array([1.0, 0.27, 1.0])

# String wave impedance from Chabassier et al. set A: f0 (Hz) -> Z = sqrt(T * rho * pi d^2/4).
_Z_F0 = np.array([38.98, 65.56, 104.06, 175.01, 220.49, 555.6, 832.54, 1571.35, 2098.32, 2965.15])
_Z_T = np.array([1773, 915, 783, 766, 755, 695, 696, 689, 670, 631.0])
_Z_RHO = np.array([43195, 23919, 7589, 7850, 7850, 7850, 7850, 7850, 7850, 7850.0])
_Z_D = np.array([1.492, 1.051, 1.095, 1.049, 1.027, 0.928, 0.904, 0.86, 0.831, 0.787]) * 1e-3
_Z_VALUES = np.sqrt(_Z_T * _Z_RHO * np.pi * _Z_D ** 2 / 4.0)

#: keys at and above this one have no damper (grand pianos: above about E6/F6).
FIRST_UNDAMPED_KEY = 89


def _interp_linear_extrap(x, xp, fp):
    """Piecewise-linear interpolation with linear extrapolation at both ends."""
    x = np.asarray(x, dtype=float)
    y = np.interp(x, xp, fp)
    lo = x < xp[0]
    hi = x > xp[-1]
    y[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    y[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return y


@dataclass
class KeyboardParams:
    """Physical parameters of every key. Arrays have shape (88,) indexed by ``key - 21``.

    Attributes
    ----------
    keys : int64, MIDI keys 21..108.
    f1_hz : target frequency of partial 1 (12-TET from ``a4_hz`` plus stretch), Hz.
    f0_hz : f0 of eq. 12 (f_k = k f0 sqrt(1 + B k^2)), so f_1 = f1_hz, Hz.
    inharmonicity_b : B of eq. 12, dimensionless.
    t60_f0_s : T60 of partial 1 of the string model (loss filter, eq. 8-10), s.
    t60_high_s, t60_high_hz : T60 (s) at the high reference frequency (Hz).
    n_strings : unison strings (1, 2, 3).
    unison_detune_cents : detuning of the second mode of each beating partial, cents.
    felt_stiffness_k : K of eq. 2, N/m^p. felt_exponent_p : p of eq. 2.
    hammer_mass_kg : m_h of eq. 1, kg.
    string_impedance : wave impedance of one string, Z = sqrt(T mu), kg/s.
    strike_position : strike point as a fraction of the speaking length.
    late_t60_ratio : late (second-mode) T60 over early T60 (two-stage decay, §4.3).
    second_mode_level : initial amplitude of the second mode relative to the string partial.
    output_gain_db : per-key output trim, dB.
    has_damper : bool.
    loss_order : int, 1 = the one-pole loss filter; > 1 adds loss_order - 1 peaking cuts
    fitted to ``t60_partials_s`` (Bank et al. §4.1, ``design.string.design_loss_correction``).
    t60_partials_s : (88, N_T60_PARTIALS) measured T60 of partials 1.. (s), nan = not given.
    dispersion_partials : int, partials the dispersion allpass must cover (0: perceptual band).
    partial_cents : (88, N_PARTIAL_CENTS) offsets (cents) of partials 1.. from eq. 12, nan =
    not given; when given, the dispersion allpass places those partials directly
    (``design.string.choose_dispersion_measured``; per-key ``partial_kNN_cents``).
    second_level, second_ratio, second_detune_cents : (88, N_SECOND_MODES) the second mode of
    partials 1.. on its own (level, T60 ratio, detuning), nan = the key's values
    (per-key ``second_level_kNN``, ``second_ratio_kNN``, ``second_detune_kNN_cents``).
    partial_gain_db : (88, N_PARTIAL_CENTS) level of partials 1.. as radiated, dB over the
    model's, nan = 0 dB (per-key ``partial_gain_kNN_db``; ``design.string.design_partial_eq``).
    """

    keys: np.ndarray
    f1_hz: np.ndarray
    f0_hz: np.ndarray
    inharmonicity_b: np.ndarray
    t60_f0_s: np.ndarray
    t60_high_s: np.ndarray
    t60_high_hz: np.ndarray
    n_strings: np.ndarray
    unison_detune_cents: np.ndarray
    felt_stiffness_k: np.ndarray
    felt_exponent_p: np.ndarray
    hammer_mass_kg: np.ndarray
    string_impedance: np.ndarray
    strike_position: np.ndarray
    late_t60_ratio: np.ndarray
    second_mode_level: np.ndarray
    output_gain_db: np.ndarray
    has_damper: np.ndarray
    loss_order: np.ndarray = None
    t60_partials_s: np.ndarray = None
    dispersion_partials: np.ndarray = None
    partial_cents: np.ndarray = None
    second_level: np.ndarray = None
    second_ratio: np.ndarray = None
    second_detune_cents: np.ndarray = None
    partial_gain_db: np.ndarray = None

    def index(self, key: int) -> int:
        return int(key) - KEY_MIN


def equal_tempered_hz(key, a4_hz: float = 440.0):
    """12-TET frequency of MIDI ``key`` (float or array), Hz."""
    return a4_hz * 2.0 ** ((np.asarray(key, dtype=float) - 69.0) / 12.0)


def stretch_cents(key, stretch_scale: float = 1.0):
    """Stretch of partial 1 against 12-TET in cents (smoothed measurement, see module doc)."""
    return stretch_scale * np.interp(np.asarray(key, float), _STRETCH_KEYS, _STRETCH_CENTS)


def design_keyboard(settings: dict | None = None,
                    key_overrides: dict | None = None) -> KeyboardParams:
    """Per-key physical parameters for all 88 keys from the global settings.

    Parameters
    ----------
    settings : dict
        Parameter values by name (:mod:`pianosynth.engine.params`); missing ones default.
    key_overrides : dict[int, dict]
        ``{midi_key: {field: value}}`` with fields from ``params.KEY_OVERRIDES``; ``f0_hz``
        there is the f0 of eq. 12.

    Returns
    -------
    KeyboardParams
    """
    s = defaults()
    s.update(settings or {})
    k = KEYS.astype(float)
    n = len(k)
    f1 = equal_tempered_hz(k, s["a4_hz"]) * 2.0 ** (stretch_cents(k, s["stretch_scale"]) / 1200.0)
    b = np.exp(np.interp(k, _B_KEYS, np.log(_B_VALUES))) * s["inharmonicity_scale"]
    f0 = f1 / np.sqrt(1.0 + b)
    t60_f0 = np.exp(np.interp(k, _T60_KEYS, np.log(_T60_F0))) * s["t60_scale"]
    late_ratio = np.interp(k, _T60_KEYS, _LATE_RATIO)
    second_level = np.interp(k, _T60_KEYS, _SECOND_LEVEL)
    t60_high = np.exp(np.interp(k, _T60_KEYS, np.log(_T60_HIGH))) * s["t60_high_scale"]
    t60_high = np.minimum(t60_high, t60_f0)
    t60_high_hz = np.maximum(3000.0, 3.0 * f1)
    n_strings = np.where(k < 33, 1, np.where(k < 48, 2, 3)).astype(np.int64)
    # extrapolated below C2, held above C6 (Table 1 ends there; harder felt above C6 would
    # shorten the contact below the ~0.5 ms measured on real trebles)
    kx = np.minimum(k, _HAMMER_KEYS[-1])
    p = np.clip(_interp_linear_extrap(kx, _HAMMER_KEYS, _HAMMER_P), 2.0, 3.5)
    treble = k > _TREBLE_KEYS[0]
    p[treble] = np.interp(k[treble], _TREBLE_KEYS, _TREBLE_P)
    log10k = _interp_linear_extrap(kx, _HAMMER_KEYS, _HAMMER_LOG10K) \
        + np.interp(k, _TREBLE_KEYS, np.log10(_TREBLE_K_FACTOR))
    # keep the force at 1 mm compression when p is clamped or offset: K' = K * 1e-3**(p - p')
    p_raw = _interp_linear_extrap(kx, _HAMMER_KEYS, _HAMMER_P)
    p_new = np.clip(p + s["felt_exponent_offset"], 1.5, 4.0)
    kk = 10.0 ** log10k * (1e-3) ** (p_raw - p_new) * s["felt_stiffness_scale"]
    mass = np.clip(_interp_linear_extrap(kx, _HAMMER_KEYS, _HAMMER_MASS), 2.0e-3, 9.0e-3)
    mass = mass * s["hammer_mass_scale"]
    z = np.exp(np.interp(np.log(f1), np.log(_Z_F0), np.log(_Z_VALUES)))
    kp = KeyboardParams(
        keys=KEYS.copy(), f1_hz=f1, f0_hz=f0, inharmonicity_b=b, t60_f0_s=t60_f0,
        t60_high_s=t60_high, t60_high_hz=t60_high_hz, n_strings=n_strings,
        unison_detune_cents=np.full(n, s["unison_detune_cents"]), felt_stiffness_k=kk,
        felt_exponent_p=p_new, hammer_mass_kg=mass, string_impedance=z,
        strike_position=np.full(n, s["strike_position"]), late_t60_ratio=late_ratio,
        second_mode_level=second_level, output_gain_db=np.interp(k, _GAIN_KEYS, _GAIN_DB),
        has_damper=k < FIRST_UNDAMPED_KEY,
        loss_order=np.ones(n, np.int64), t60_partials_s=np.full((n, N_T60_PARTIALS), np.nan),
        dispersion_partials=np.zeros(n, np.int64),
        partial_cents=np.full((n, N_PARTIAL_CENTS), np.nan),
        second_level=np.full((n, N_SECOND_MODES), np.nan),
        second_ratio=np.full((n, N_SECOND_MODES), np.nan),
        second_detune_cents=np.full((n, N_SECOND_MODES), np.nan),
        partial_gain_db=np.full((n, N_PARTIAL_CENTS), np.nan),
    )
    # per-partial fields ``<prefix>NN<suffix>`` -> column NN - 1 of their (88, n) array
    per_partial = (("t60_k", "_s", kp.t60_partials_s),
                   ("partial_k", "_cents", kp.partial_cents),
                   ("second_level_k", "", kp.second_level),
                   ("second_ratio_k", "", kp.second_ratio),
                   ("second_detune_k", "_cents", kp.second_detune_cents),
                   ("partial_gain_k", "_db", kp.partial_gain_db))
    for key, over in (key_overrides or {}).items():
        i = int(key) - KEY_MIN
        if not 0 <= i < n:
            continue
        for field, value in over.items():
            for prefix, suffix, arr in per_partial:
                if field.startswith(prefix) and field.endswith(suffix):
                    arr[i, int(field[len(prefix):len(field) - len(suffix)]) - 1] = value
                    break
            else:
                arr = getattr(kp, field)
                arr[i] = int(round(value)) if arr.dtype.kind == "i" else value
        if "f0_hz" in over or "inharmonicity_b" in over:
            kp.f1_hz[i] = kp.f0_hz[i] * np.sqrt(1.0 + kp.inharmonicity_b[i])
    return kp


def velocity_to_hammer_m_s(velocity, settings: dict | None = None):
    """MIDI velocity (1..127) -> hammer velocity in m/s.

    v = vmin * (vmax / vmin) ** (((vel - 1) / 126) ** curve): an exponential map (loudness is
    roughly logarithmic in hammer velocity; Askenfelt & Jansson measured 0.5-5 m/s from pp to ff).
    """
    s = defaults()
    s.update(settings or {})
    x = np.clip((np.asarray(velocity, float) - 1.0) / 126.0, 0.0, 1.0) ** s["velocity_curve"]
    return s["velocity_min_m_s"] * (s["velocity_max_m_s"] / s["velocity_min_m_s"]) ** x


__all__ = ["KeyboardParams", "design_keyboard", "velocity_to_hammer_m_s", "equal_tempered_hz",
           "stretch_cents", "KEYS", "KEY_MIN", "KEY_MAX", "FIRST_UNDAMPED_KEY", "PARAM_BY_NAME"]
