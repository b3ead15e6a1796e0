"""The engine: parameter state, the key table, voices and the block loop.

``Engine.render(out, events)`` is the one entry point used by offline rendering and by the
live audio callback, so both sound identical. Per block it makes one ``nogil`` kernel call
(:func:`pianosynth.engine.blockloop.render_block`: strings + resonators, soundboard, output
stage) on preallocated arrays.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..design.keyboard import (KEY_MAX, KEY_MIN, KeyboardParams, design_keyboard,
                               velocity_to_hammer_m_s)
from ..design.multirate import design_interpolator
from ..design.resonators import design_interpolator_taps, design_resonators
from ..design.string import (MAX_SECTIONS, design_partial_eq, design_string, loop_group_delay,
                             partial_eq_response)
from ..dsp import voice as V
from . import blockloop as B
from .designcache import cached_call
from .events import EVENT_DTYPE, NO_EVENTS
from .params import (PARAM_BY_NAME, defaults, validate_velocity_points,
                     velocity_table_from_points)
from ..io.priority import touch_pages

#: samples per inner chunk (scratch buffers); blocks of any size are split into chunks
CHUNK = B.CHUNK
#: the soundboard's silence is judged over whole windows of this many samples (see render)
SB_QUIET_WINDOW = B.SB_QUIET_WINDOW
MAX_RESONATORS = 10
RES_FACTOR = 8
TRACE_S = 0.03
#: bridge force (N) -> output units. Calibrated so a fortissimo C4 peaks near -12 dBFS.
OUTPUT_SCALE = 0.02
#: hammer force (N) -> soundboard input at hammer_knock_db = 0
KNOCK_SCALE = 0.01
#: driving-point impedance of the bridge for sympathetic coupling, kg/s (order of magnitude
#: of measured piano bridge impedances, 10^3; Giordano 1997)
Z_BRIDGE = 2000.0
#: the limiter's ceiling: -0.3 dBFS
CEILING = 10.0 ** (-0.3 / 20.0)

from ..design.soundboard import design_soundboard          # the shared soundboard, §5
from ..dsp.soundboard import make_soundboard_state


_PIPELINED: dict = {}


def pipelined_available() -> bool:
    """True when the two-thread offline block loop
    (:func:`pianosynth.engine.blockloop.render_block_pipelined`) pays here: two or more CPUs,
    numba's OpenMP or TBB threading layer (its ``workqueue`` fallback takes ~100 us to start
    a parallel region, ~2 us for OpenMP: with ~500 regions a second of audio it would be
    slower than one thread), and ``PIANOSYNTH_PIPELINE`` not set to 0. Decided once per
    process (GNU OpenMP is not fork safe: a process forked after it ran decides again and
    says no)."""
    pid = os.getpid()
    if pid in _PIPELINED:
        return _PIPELINED[pid]
    ok = False
    if not _PIPELINED and (os.cpu_count() or 1) >= 2 \
            and os.environ.get("PIANOSYNTH_PIPELINE", "1").strip() != "0":
        try:
            import numba
            from numba.np.ufunc import parallel
            parallel._launch_threads()
            ok = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # noqa: BLE001 -- no threading layer loads: one thread
            ok = False
    _PIPELINED[pid] = ok
    return ok


def target_f1_hz(key: int, settings: dict | None = None) -> float:
    """Target frequency of partial 1 of ``key`` (12-TET from a4_hz plus the stretch), Hz."""
    kp = design_keyboard(settings)
    return float(kp.f1_hz[int(key) - KEY_MIN])


def clamp_settings(settings: dict | None) -> dict:
    """Defaults updated with ``settings``; out-of-range values are clamped with a warning and
    unknown names raise ValueError."""
    s = defaults()
    for name, value in (settings or {}).items():
        if name not in PARAM_BY_NAME:
            raise ValueError(f"unknown parameter {name!r}")
        p = PARAM_BY_NAME[name]
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(x) or x < p.min or x > p.max:
            clamped = min(max(x if math.isfinite(x) else p.default, p.min), p.max)
            warnings.warn(f"{name} = {value} is outside [{p.min}, {p.max}] {p.unit}; "
                          f"clamped to {clamped}", stacklevel=3)
            x = clamped
        s[name] = round(x) if p.integer else x
    return s


@dataclass
class KeyDesign:
    """Everything designed for the keyboard at one sample rate (built off the audio thread)."""

    kp: KeyboardParams
    kt_i: np.ndarray
    kt_f: np.ndarray
    kt_sos: np.ndarray
    kt_res: np.ndarray
    vel_m_s: np.ndarray
    strings: list


#: quality modes (issue "Performance"): string rate factor for the bass (keys below A2) and
#: for the rest, and the largest dispersion allpass order. Bank et al. §4.2: the lowest two
#: or three octaves have little energy up high and run at half rate; §6 for the trade-off.
QUALITY_MODES = {
    "high": (2, 1, 16),
    "normal": (4, 2, 12),
    "eco": (4, 4, 8),
}
BASS_KEY_LIMIT = 45
#: string rates and dispersion order of the sympathetic strings (key-table rows 128 + key):
#: an unstruck string ringing in sympathy adds a quiet bloom of its low partials, so it runs
#: at fs/8 where its f1 allows (the drive is low-passed before, see blockloop) with at most
#: a 4th-order dispersion allpass and no resonator bank (Bank et al. §4.2-4.3, §6)
SYMPATHETIC_MODE = (8, 8, 4)
#: shortest loop (samples at its rate) of a sympathetic string: with no hammer point its
#: delay lines may be one sample each, plus the Thiran's 0.5..1.5 (design_string), so the
#: undamped top of the keyboard runs at fs/8 up to C#7 and at fs/4 up to C8 (partial 1 in
#: the interpolators' passband 0.4 fs/r) instead of fs/4 and fs/2 with loops >= 4: their
#: partial 2 (above 3 kHz at fs/8, above 4.8 kHz at fs/4) is left out of the bloom
SYMPATHETIC_MIN_LOOP = 2.6
#: the sympathetic strings of each quality mode: (their design, the highest key that has
#: one). normal and eco trade some of the bloom for CPU (an unstruck string costs as much
#: per sample whatever it contributes; in Debussy's Clair de lune with the pedal ~70 of them
#: ring, more CPU than the struck strings in eco): a 2nd-order dispersion allpass, and no
#: sympathetic string for the top keys (normal: above C7, whose partial 1 > 2 kHz needs
#: fs/2 or fs/4 instead of fs/8; eco: above E6, the undamped top of the keyboard)
SYMPATHETIC_BY_QUALITY = {
    "high": ("sympathetic", 108),
    "normal": ("sympathetic_lean", 96),
    "eco": ("sympathetic_lean", 88),
}
#: scale of the one-way bridge coupling at sympathetic_coupling = 1: with 2 F / Z_b in full
#: (factor 1) all 88 undamped strings lifted a pedalled C4 (v100) by +19 dB into the limiter;
#: at 0.1 its level 0.1-0.5 s after the key is released under the pedal is +2.5 dB, and
#: +4 dB at 1.4-2.9 s, over the same note held without pedal (measured by
#: tests/test_pedals.py::test_pedal_bloom_is_moderate)
SYMPATHETIC_CALIBRATION = 0.1
#: amplitude of a damper / pedal noise burst at 0 dB on the string sum: the peak of a C4
#: struck at velocity 64 (so the noise levels read as dB below a mezzo-forte note)
NOISE_REF = 0.216
_STRING_MODES = dict(QUALITY_MODES, sympathetic=SYMPATHETIC_MODE,
                     sympathetic_lean=SYMPATHETIC_MODE[:2] + (2,))


def string_interpolator_taps(fs: float, factor: int) -> np.ndarray:
    """Interpolation filter of the fs/``factor`` string sum (gain ``factor``, equiripple):
    passband to 0.4 fs/factor, stopband from 0.6 fs/factor (the images of the passband)."""
    if factor == 1:
        return np.ones(1)
    return design_interpolator(fs, factor, 0.4 * fs / factor, 0.6 * fs / factor,
                               ripple_db=0.1, stopband_db=60.0)


def drive_ring_len(fs: float) -> int:
    """Length of the sympathetic drive rings: a power of two holding a chunk plus the
    longest read-back, a whole period of a 20 Hz string beyond ``DRIVE_DELAY``
    (:func:`sympathetic_drive_delay`)."""
    return 1 << int(math.ceil(math.log2(fs / 20.0 + B.DRIVE_DELAY + CHUNK)))


def sympathetic_drive_delay(f1_hz: float, fs: float, rate: int, drive_sos=None) -> int:
    """Samples (at ``fs``) back a sympathetic string with partial 1 at ``f1_hz`` reads the
    summed bridge drive: the whole number of its periods nearest above
    :data:`~pianosynth.engine.blockloop.DRIVE_DELAY`, less the phase delay at f1 of the
    anti-alias lowpass ``drive_sos`` its drive passes at fs/8 (``rate`` 8).

    The drive of a chunk is complete only after it (block-size independence), so a
    string cannot hear it at once; a delay of whole periods leaves the phase at the
    string's partials where zero delay would put it (exactly at partial 1, within
    pi m n^3 B at partial n), so its bloom adds to the direct sound as in a real piano
    (Bank et al. 2003 §4.3: the strings share one bridge) instead of meeting it at a
    phase that varies with the frequency (a fixed 512 samples took energy from a
    pedalled piece). Rounded to whole samples: <= 0.5 sample off, a few degrees below
    2.4 kHz."""
    period = fs / float(f1_hz)
    tau = 0.0
    if rate == 8 and drive_sos is not None:
        from scipy import signal
        w = np.linspace(0.0, 2.0 * np.pi * f1_hz / fs, 256)
        _, h = signal.sosfreqz(drive_sos, worN=w)
        tau = -float(np.unwrap(np.angle(h))[-1]) / w[-1]
    m = max(1, int(math.ceil((B.DRIVE_DELAY + tau) / period)))
    d = int(round(m * period - tau))
    while d < B.DRIVE_DELAY:
        m += 1
        d = int(round(m * period - tau))
    return d


def design_drive_lowpass(fs: float) -> np.ndarray:
    """Anti-alias lowpass of the sympathetic drive before strings at fs/8 sample it:
    elliptic, passband to 0.4 fs/8 (0.5 dB), 60 dB from 0.6 fs/8. Returns SOS (3, 6): the
    kernel (blockloop._strings_end) runs exactly three sections."""
    from scipy import signal
    return signal.ellip(6, 0.5, 60.0, 0.4 / 8 * 2.0, output="sos").astype(np.float64)


#: the output the kernel does not write this call (see ``Engine.render``)
_NO_OUT64 = np.zeros((0, 2), np.float64)
_NO_OUT32 = np.zeros((0, 2), np.float32)

#: extra samples per delay-line row: with rows a power of two long, the voices' (short)
#: strings would all sit at the same offsets modulo 4 KiB and compete for the same cache
#: sets (measured: up to 40 % slower, varying from run to run); 40 samples = 5 cache lines
DELAY_ROW_PAD = 40


def delay_line_len(fs: float) -> int:
    """Length of a voice's delay-line rows: a power of two holding the longest string (20 Hz
    at fs) with room for the hammer window; each key's string uses only the start of it
    (key table column ``K_MASK``)."""
    return 1 << int(math.ceil(math.log2(fs / 20.0 + 64)))


def design_key_table(settings: dict, fs: float, key_overrides=None,
                     quality: str = "high") -> KeyDesign:
    """Design every key's string, hammer and resonators for output rate ``fs``.

    Each key's string runs at fs / r with r from :data:`QUALITY_MODES` (lowered where f1
    would come too close to the string rate's Nyquist frequency)."""
    if quality not in _STRING_MODES:
        raise ValueError(f"quality must be one of {', '.join(QUALITY_MODES)}, got {quality!r}")
    r_bass, r_rest, max_order = _STRING_MODES[quality]
    kp = design_keyboard(settings, key_overrides)
    kt_i = np.zeros((128, B.N_KI), np.int64)
    kt_f = np.zeros((128, B.N_KF), np.float64)
    kt_sos = np.zeros((128, MAX_SECTIONS, 2), np.float64)
    kt_res = np.zeros((128, MAX_RESONATORS, 4), np.float64)
    taps = design_interpolator_taps(RES_FACTOR)
    interp_delay = (len(taps) - 1) / 2.0
    damper_t60 = settings["damper_t60_s"]
    n_res_max = int(settings["resonator_count"]) if settings["resonators_on"] >= 0.5 else 0
    unstruck = quality.startswith("sympathetic")
    drive_sos = design_drive_lowpass(fs) if unstruck else None
    if unstruck:
        n_res_max = 0        # the bank is driven by the hammer: nothing to do unstruck
    strings = [None] * 128
    delays = {r: (len(string_interpolator_taps(fs, r)) - 1) / 2.0 for r in (1, 2, 4)}
    for i, key in enumerate(kp.keys):
        f1 = kp.f1_hz[i]
        r = r_bass if key < BASS_KEY_LIMIT else r_rest
        # a struck string needs room for the hammer point: a loop of >= 8 samples; an
        # unstruck sympathetic one only what the filter design allows (SYMPATHETIC_MIN_LOOP)
        min_loop = SYMPATHETIC_MIN_LOOP if unstruck else 8
        while r > 1 and (f1 >= 0.4 * fs / r or fs / r / f1 < min_loop):
            r //= 2
        bass = float(np.clip((60 - key) / 39.0, 0.0, 1.0))
        d_t60 = min(damper_t60 * (1.0 + bass), kp.t60_f0_s[i])
        d_t60_high = min(0.5 * d_t60, kp.t60_high_s[i])
        # a fitted key's higher-order loss and wide dispersion band (not for the cheap
        # sympathetic design: its kernel runs the one-pole only)
        full = not unstruck
        sd = None
        while sd is None:
            fs_s = fs / r
            if f1 >= 0.45 * fs_s or fs_s / f1 < min_loop:
                break  # cannot be played at this rate
            try:
                sd = design_string(kp.f0_hz[i], kp.inharmonicity_b[i], fs_s, kp.t60_f0_s[i],
                                   kp.t60_high_s[i], kp.t60_high_hz[i], d_t60, d_t60_high,
                                   kp.strike_position[i], max_order=max_order,
                                   t60_partials_s=kp.t60_partials_s[i] if full else None,
                                   loss_order=int(kp.loss_order[i]) if full else 1,
                                   band_partials=int(kp.dispersion_partials[i]) if full else 0,
                                   partial_cents=kp.partial_cents[i] if full else None,
                                   min_loop=min_loop)
            except ValueError:
                if r == 1:
                    raise
                r //= 2  # the filters' delays leave too little loop: the next rate up
        if sd is None:
            continue
        strings[key] = sd
        kt_i[key, B.K_NUT_LEN] = sd.nut_delay
        kt_i[key, B.K_BRIDGE_LEN] = sd.bridge_delay
        kt_i[key, B.K_N_SEC] = len(sd.disp_sos)
        kt_i[key, B.K_HAS_DAMPER] = 1 if kp.has_damper[i] else 0
        kt_i[key, B.K_VALID] = 1
        kt_i[key, B.K_N_STRINGS] = kp.n_strings[i]
        kt_i[key, B.K_RATE] = r
        kt_i[key, B.K_DRIVE_DELAY] = (sympathetic_drive_delay(kp.f1_hz[i], fs, r, drive_sos)
                                      if unstruck else B.DRIVE_DELAY)
        # the voice uses the start of its delay-line rows: a power of two > longest delay
        need = max(int(sd.nut_delay), int(sd.bridge_delay)) + 2
        kt_i[key, B.K_MASK] = min(1 << int(math.ceil(math.log2(max(need, 16)))),
                                  delay_line_len(fs)) - 1
        kt_sos[key, :len(sd.disp_sos)] = sd.disp_sos
        nl = len(sd.loss_sos)
        kt_i[key, B.K_N_LOSS] = nl
        kt_f[key, B.KF_LC:B.KF_LC + 5 * nl] = np.ravel(sd.loss_sos)
        kt_f[key, B.KF_G] = sd.loss_g
        kt_f[key, B.KF_A1] = sd.loss_a1
        kt_f[key, B.KF_GD] = sd.damped_g
        kt_f[key, B.KF_A1D] = sd.damped_a1
        kt_f[key, B.KF_ETA] = sd.thiran_eta
        kt_f[key, B.KF_MASS] = kp.hammer_mass_kg[i]
        kt_f[key, B.KF_K] = kp.felt_stiffness_k[i]
        kt_f[key, B.KF_P] = kp.felt_exponent_p[i]
        kt_f[key, B.KF_TWOZ] = 2.0 * kp.n_strings[i] * kp.string_impedance[i]
        rf = RES_FACTOR
        kt_f[key, B.KF_GAIN] = OUTPUT_SCALE * 10.0 ** (kp.output_gain_db[i] / 20.0)
        knock_db = settings["hammer_knock_db"]
        kt_f[key, B.KF_KNOCK] = 0.0 if knock_db <= -80.0 else \
            KNOCK_SCALE * 10.0 ** ((knock_db + kp.output_gain_db[i]) / 20.0)
        # the resonator bank (§4.3, Fig. 5) gives unison strings their second modes; a
        # single string gets them only where a preset gives its own (``second_level_kNN``,
        # written by ``pianosynth fit``): the bass monochords' recorded two-stage decays and
        # beats come from the string's two polarizations and the bridge (Weinreich 1977)
        own_second = bool(np.any(np.nan_to_num(kp.second_level[i], nan=0.0) > 0.0))
        k = np.arange(1, 41, dtype=float)
        fk = k * kp.f0_hz[i] * np.sqrt(1.0 + kp.inharmonicity_b[i] * k * k)
        if full and np.isfinite(kp.partial_cents[i]).any():
            fk[:sd.n_band] = sd.partials_hz[:sd.n_band]   # placed off eq. 12 (fitted)
        # a fitted key's partial levels as radiated: peaking filters on the string's output
        # at its partials (outside the loop: levels only), its second modes scaled alike
        eq = design_partial_eq(fk, kp.partial_gain_db[i], fs_s) if full and np.isfinite(
            kp.partial_gain_db[i]).any() else np.zeros((0, 5))
        kt_i[key, B.K_N_EQ] = len(eq)
        kt_f[key, B.KF_EQ:B.KF_EQ + 5 * len(eq)] = np.ravel(eq)
        if (kp.n_strings[i] >= 2 or own_second) and n_res_max > 0:
            rf = resonator_rate(fk, kp.second_level[i], fs, r)
            d_g = loop_group_delay(kp.f0_hz[i], kp.inharmonicity_b[i], k, fs_s)
            t60k = sd.t60_s(2 * np.pi * fk / fs_s, fs_s, d_g)
            # string delays in fs samples; the resonator path is later than the string by
            # the difference of the two interpolators' latencies
            rc = design_resonators(fk, t60k, sd.nut_delay * r, sd.bridge_delay * r, fs,
                                   rf, min(n_res_max, MAX_RESONATORS),
                                   kp.unison_detune_cents[i], kp.late_t60_ratio[i],
                                   kp.second_mode_level[i] if kp.n_strings[i] >= 2 else 0.0,
                                   (interp_delay if rf == RES_FACTOR else delays[rf])
                                   - delays[r],
                                   kp.second_level[i], kp.second_ratio[i],
                                   kp.second_detune_cents[i],
                                   partial_eq=partial_eq_response(eq, 2 * np.pi * fk / fs_s))
            kt_res[key, :len(rc)] = rc
            kt_i[key, B.K_N_RES] = len(rc)
        kt_i[key, B.K_RES_RATE] = rf
        kt_f[key, B.KF_RES_DAMP] = math.exp(-rf * math.log(1000.0) / (fs * d_t60))
    return KeyDesign(kp, kt_i, kt_f, kt_sos, kt_res, parameter_velocity_table(settings),
                     strings)


def resonator_rate(partials_hz, second_level, fs: float, r: int) -> int:
    """Decimation factor of a key's resonator bank (Bank et al. §4.3, Fig. 5).

    The bank runs at fs / RES_FACTOR (8) and holds partials below fs / (4 RES_FACTOR) (the
    lower half of its band: no anti-alias filter on the hammer force, §4.3), about 1.4 kHz
    at 44.1 kHz. A key whose preset gives its own second modes (``second_level`` > 0 for
    partial k = index + 1, written by ``pianosynth fit``) to partials above that -- the
    treble's two-stage decays: C7's fundamental drops 20 dB in 0.1 s and then rings for
    seconds -- runs its bank at the highest of fs/8, fs/4, fs/2, fs that holds them below
    fs / (4 factor), never faster than its string's rate fs / ``r`` asks (factor >= 1, a
    multiple of ``r``); its output then joins that rate's string sum and interpolator.
    Without such modes: 8 (the default preset's keys all keep the fs/8 bank).

    Parameters
    ----------
    partials_hz : array (n,)
        The string's partial frequencies, Hz, index k - 1 (those the bank is designed for).
    second_level : array (N_SECOND_MODES,)
        The key's own second-mode levels (nan: not given).

    Returns
    -------
    int: 8, 4, 2 or 1.
    """
    lev = np.nan_to_num(np.asarray(second_level, float), nan=0.0)
    own = np.flatnonzero(lev > 0.0)
    own = own[own < len(partials_hz)]
    if own.size == 0:
        return RES_FACTOR
    f_top = float(np.max(np.asarray(partials_hz, float)[own]))
    rf = RES_FACTOR
    while rf > max(int(r), 1) and f_top >= fs / (4.0 * rf):
        rf //= 2
    return rf


def parameter_velocity_table(settings: dict) -> np.ndarray:
    """MIDI velocity -> hammer speed of the velocity parameters (velocity_min_m_s,
    velocity_max_m_s, velocity_curve): float64 (128,), m/s; entry 0 copies entry 1."""
    vel = np.zeros(128)
    vel[1:] = velocity_to_hammer_m_s(np.arange(1, 128), settings)
    vel[0] = vel[1]
    return vel


#: design of the sympathetic strings (rows 128 + key of the key table), see SYMPATHETIC_MODE
SYMPATHETIC_QUALITY = "sympathetic"


def design_tables(settings: dict, fs: float, key_overrides=None, quality: str = "high",
                  cache: bool = True) -> KeyDesign:
    """The engine's key table: rows 0..127 the played strings at ``quality``, rows 128..255
    the sympathetic strings of :data:`SYMPATHETIC_BY_QUALITY` (omitted for a sympathetic
    design itself); a key above the mode's top key has an invalid row there (no sympathetic
    string)."""
    call = cached_call if cache else (lambda fn, *a: fn(*a))
    main = call(design_key_table, settings, fs, key_overrides, quality)
    if quality.startswith(SYMPATHETIC_QUALITY):
        return main
    symp_quality, top_key = SYMPATHETIC_BY_QUALITY.get(quality, (SYMPATHETIC_QUALITY, 108))
    symp = call(design_key_table, settings, fs, key_overrides, symp_quality)
    symp_i = symp.kt_i.copy()
    symp_i[top_key + 1:, B.K_VALID] = 0      # no sympathetic string above top_key
    return KeyDesign(main.kp, np.concatenate([main.kt_i, symp_i]),
                     np.concatenate([main.kt_f, symp.kt_f]),
                     np.concatenate([main.kt_sos, symp.kt_sos]),
                     np.concatenate([main.kt_res, symp.kt_res]), main.vel_m_s, main.strings)


class Engine:
    """The instrument: voices, resonator bank, soundboard and output stage, one block at a time.

    Parameters
    ----------
    settings : dict, optional
        Parameter values by name (:mod:`pianosynth.engine.params`); missing ones default,
        out-of-range ones are clamped with a warning.
    sample_rate : int
        Output rate in Hz, 44100..192000 (44100, 48000, 96000 are the usual ones).
    key_overrides : dict[int, dict], optional
        Per-key overrides ``{midi_key: {field: value}}`` (see ``params.KEY_OVERRIDES``).
    max_voices : int, optional
        Voice slots (default: polyphony + 8 + 88: stolen voices fade out in the extra 8,
        and every key can have a sympathetic string).
    hammer_mode : int
        0 multirate implicit hammer (default), 1 single-rate fictitious delay, 2 multirate
        fictitious delay (§3.2; the last two for comparison only).
    quality : {"high", "normal", "eco"}
        String rates (see :data:`QUALITY_MODES`): high runs the bass at fs/2 and the rest
        at fs; normal fs/4 and fs/2; eco everything at fs/4 with shorter dispersion filters.
    velocity_points : sequence of (int, float), optional
        Velocity curve as points ``[(midi_velocity, hammer_m_s), ...]`` (a preset's
        ``[velocity]`` table, :func:`params.velocity_table_from_points`); when given it
        replaces the map of velocity_min_m_s / velocity_max_m_s / velocity_curve.

    Raises
    ------
    ValueError
        On a sample rate out of range, an unknown parameter name or invalid velocity points.
    """

    def __init__(self, settings=None, sample_rate=48000, key_overrides=None, max_voices=None,
                 hammer_mode=V.HAMMER_IMPLICIT_MULTIRATE, quality="high",
                 velocity_points=None):
        fs = int(sample_rate)
        if not 44100 <= fs <= 192000:
            raise ValueError(f"sample rate {sample_rate} Hz is outside 44100..192000 Hz")
        self.sample_rate = fs
        if quality not in QUALITY_MODES:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_MODES)}, "
                             f"got {quality!r}")
        self.quality = quality
        self.settings = clamp_settings(settings)
        self.key_overrides = {int(k): dict(v) for k, v in (key_overrides or {}).items()}
        poly = int(self.settings["polyphony"])
        nv = int(max_voices) if max_voices else poly + 8 + 88   # + one sympathetic string a key
        self.max_voices = nv
        buf_len = delay_line_len(fs)
        self.iv = np.zeros((nv, V.N_IVARS), np.int64)
        self.fv = np.zeros((nv, V.N_FVARS), np.float64)
        self.nut = np.zeros((nv, buf_len + DELAY_ROW_PAD), np.float64)
        self.bridge = np.zeros((nv, buf_len + DELAY_ROW_PAD), np.float64)
        self.dsos = np.zeros((nv, MAX_SECTIONS, 2), np.float64)
        self.dstate = np.zeros((nv, MAX_SECTIONS, 4), np.float64)
        self.rcoef = np.zeros((nv, MAX_RESONATORS, 4), np.float64)
        self.rstate = np.zeros((nv, MAX_RESONATORS, 3), np.float64)
        self.gi = np.zeros(B.N_GI, np.int64)
        self.gf = np.zeros(B.N_GF, np.float64)
        self.taps = cached_call(design_interpolator_taps, RES_FACTOR)
        self.ring = np.zeros(len(self.taps) + CHUNK, np.float64)   # pending outputs
        self.taps2 = cached_call(string_interpolator_taps, fs, 2)
        self.ring2 = np.zeros(len(self.taps2) + CHUNK, np.float64)
        self.taps4 = cached_call(string_interpolator_taps, fs, 4)
        self.ring4 = np.zeros(len(self.taps4) + CHUNK, np.float64)
        # anti-alias filter of the sympathetic drive read at fs/8 (elliptic, 0.4 fs/8)
        self.drive_sos = cached_call(design_drive_lowpass, fs)
        if self.drive_sos.shape != (3, 6):       # the kernel runs exactly three sections
            raise RuntimeError(f"drive lowpass has {len(self.drive_sos)} sections, not 3")
        self.drive_zi = np.zeros(2 * len(self.drive_sos), np.float64)
        self.drive_lp = np.zeros(drive_ring_len(fs), np.float64)
        self.noise = np.zeros((B.NOISE_SLOTS, B.N_NZ), np.float64)
        self.drive = np.zeros(drive_ring_len(fs), np.float64)
        self.mix2 = np.zeros(CHUNK, np.float64)
        self.mix4 = np.zeros(CHUNK, np.float64)
        self.mono = np.zeros(CHUNK, np.float64)
        self.resbuf = np.zeros(CHUNK, np.float64)
        # the voices' partial sums (blockloop.render_strings: slot v in part v % NPART) of
        # the fs, fs/8, fs/2 and fs/4 strings; two sets: the two-thread loop adds one while
        # the next chunk's strings write the other
        self.partsums = np.zeros((2, 4, B.NPART, CHUNK), np.float64)
        self.drivep = np.zeros((B.NPART, drive_ring_len(fs)), np.float64)
        self._task_cost = np.zeros(B.TC_SIZE, np.float64)
        self._task_cost[B.TC_OUT] = B.OUTPUT_COST
        self._task_thread = np.full(B.NPART + 1, -1, np.int64)
        self.trace = np.zeros(int(TRACE_S * fs), np.float64)
        self.trace_info = np.zeros(1, np.int64)
        self.stereo = np.zeros((CHUNK, 2), np.float64)
        self.out64 = np.zeros((CHUNK, 2), np.float64)
        self._grow_events(4096)         # event arrays: the block's and one chunk's
        self.sb_ctl = np.zeros(2, np.float64)
        self._out_scratch = np.zeros((CHUNK, 2), np.float64)
        self.gi[B.G_POLYPHONY] = poly
        self.gi[B.G_HAMMER_MODE] = int(hammer_mode)
        self.gi[B.G_RES_FACTOR] = RES_FACTOR
        self.gi[B.G_TRACE_VOICE] = -1
        self.gf[B.GF_FS] = fs
        self.gf[B.GF_DAMP_ALPHA] = 1.0 - math.exp(-1.0 / (0.02 * fs))   # damper lands ~20 ms
        self.gf[B.GF_LEVEL_RELEASE] = math.exp(-1.0 / (0.05 * fs))
        self.gf[B.GF_FREE_LEVEL] = 10.0 ** (-100.0 / 20.0)
        self.gf[B.GF_STEAL_STEP] = 1.0 / (0.005 * fs)
        self.gf[B.GF_GAIN_ALPHA] = 1.0 - math.exp(-1.0 / (0.02 * fs))
        self.gf[B.GF_CEILING] = CEILING
        self._apply_live()
        self.gf[B.GF_GAIN] = self.gf[B.GF_GAIN_TARGET]   # snap: no fade-in at start
        #: the velocity curve's points (validated), None: the velocity parameters' map
        self.velocity_points = None if velocity_points is None else \
            validate_velocity_points(velocity_points)
        self._vel_table = None if velocity_points is None else \
            velocity_table_from_points(self.velocity_points)
        self.keys = self._with_velocity(design_tables(self.settings, fs, self.key_overrides,
                                                      quality))
        self._soundboard_design()
        self.prefault()

    def prefault(self) -> None:
        """Write every memory page of the engine's state arrays once, keeping their values.

        ``np.zeros`` maps pages lazily: the first write to each costs a page fault. Left to
        the audio thread, the first sustain-pedal press (~90 sympathetic strings' delay
        lines, 340 faults) took 1.6 ms of a 5.3 ms block here and 7-16 ms in a loaded
        clean-clone suite (an underflow each). Called at construction (~25 MB resident with
        256 voices); the soundboard state is touched wherever it is made
        (:meth:`_new_soundboard_state`); the key tables are written whole by their design."""
        for a in vars(self).values():
            if isinstance(a, np.ndarray):
                touch_pages(a)

    def _new_soundboard_state(self) -> None:
        """A zeroed soundboard state for the current design, every page already mapped."""
        self.sb_state = make_soundboard_state(self.sb_coeffs)
        for a in self.sb_state:
            touch_pages(a)

    # -- parameters ------------------------------------------------------------------------
    def _with_velocity(self, kd: KeyDesign) -> KeyDesign:
        """``kd`` with the velocity table of the velocity points, if any (a copy: designs
        may come from the cache)."""
        if self._vel_table is None:
            return kd
        return dataclasses.replace(kd, vel_m_s=self._vel_table.copy())

    def set_velocity_points(self, points) -> None:
        """Set the velocity curve from points ``[(midi_velocity, hammer_m_s), ...]`` (None:
        back to the parameters' map); acts from the next struck note.

        Only the key table's velocity column changes (no redesign; one reference swap, so
        it may be called beside a running audio callback, as the panel's applier does).

        Raises ValueError on invalid points (see :func:`params.validate_velocity_points`)."""
        pts = None if points is None else validate_velocity_points(points)
        table = None if pts is None else velocity_table_from_points(pts)
        vel = parameter_velocity_table(self.settings) if table is None else table.copy()
        self._vel_table = table
        self.velocity_points = pts
        self.keys = dataclasses.replace(self.keys, vel_m_s=vel)

    def _apply_live(self):
        s = self.settings
        self.gf[B.GF_GAIN_TARGET] = 10.0 ** (s["master_gain_db"] / 20.0)
        # bridge velocity F / Z_b launches a wave of about 2 F / Z_b into an undamped string;
        # the drive signal is the bridge force times OUTPUT_SCALE. The coupling is one way
        # (the struck string does not lose what the others gain), so the physical value
        # overstates the bloom: SYMPATHETIC_CALIBRATION scales it to what a pedalled note
        # gains in its tail (see the constant)
        self.gf[B.GF_COUPLING] = (s["sympathetic_coupling"] * SYMPATHETIC_CALIBRATION
                                  * 2.0 / (OUTPUT_SCALE * Z_BRIDGE))
        # mechanical noises, relative to NOISE_REF (-80 dB = off)
        for idx, name in ((B.GF_DAMPER_NOISE, "damper_noise_db"),
                          (B.GF_PEDAL_NOISE, "pedal_noise_db")):
            db = s[name]
            self.gf[idx] = 0.0 if db <= -80.0 else NOISE_REF * 10.0 ** (db / 20.0)

    def _soundboard_design(self):
        s = self.settings
        self.sb_coeffs = cached_call(design_soundboard, self.sample_rate,
                                     level_db=s["soundboard_level_db"],
                                     fdn_t60_s=s["soundboard_t60_s"],
                                     balance=s["soundboard_balance"])
        self._new_soundboard_state()

    def set_param(self, name: str, value: float) -> None:
        """Set one parameter (clamped with a warning). Live ones act at the next block;
        "note" ones redesign the key table and act from the next struck note."""
        new = clamp_settings({**self.settings, name: value})
        self.settings = new
        p = PARAM_BY_NAME[name]
        if p.group == "soundboard":
            old_state = getattr(self, "sb_state", None)
            self._soundboard_design()
            if old_state is not None:
                for a, b in zip(self.sb_state, old_state):
                    if a.shape == b.shape:
                        a[...] = b
        elif p.apply == "live":
            self._apply_live()
        elif p.apply == "note":
            self.keys = self._with_velocity(design_tables(self.settings, self.sample_rate,
                                                          self.key_overrides, self.quality))
        elif name == "polyphony":
            self.gi[B.G_POLYPHONY] = min(int(new[name]), self.max_voices)

    def retune_keys(self, f1_hz: dict) -> None:
        """Retune keys live (MIDI Tuning Standard single-note change, Scala ...).

        Parameters
        ----------
        f1_hz : dict[int, float]
            New partial-1 frequency (Hz) per MIDI key; keys off the piano are ignored.

        The keys are redesigned off the audio thread (other keys come from the design cache)
        and the new table is published by one reference swap; notes struck afterwards use
        it, sounding notes keep their tuning (also for a real-time MTS message, which the
        standard lets retune sounding notes: a string's delay lines are not resized while
        it rings).
        """
        kp = self.keys.kp
        over = {k: dict(v) for k, v in self.key_overrides.items()}
        for key, f in f1_hz.items():
            key = int(key)
            if not KEY_MIN <= key <= KEY_MAX or not (20.0 < float(f) < 0.45 * self.sample_rate):
                continue
            b = float(kp.inharmonicity_b[key - KEY_MIN])
            over.setdefault(key, {})["f0_hz"] = float(f) / math.sqrt(1.0 + b)
        self.key_overrides = over
        self.keys = self._with_velocity(design_tables(self.settings, self.sample_rate, over,
                                                      self.quality, cache=False))

    # -- state -----------------------------------------------------------------------------
    @property
    def active_voices(self) -> int:
        return int(np.count_nonzero(self.iv[:, V.I_STATE] != V.FREE))

    def hammer_force_trace(self) -> np.ndarray:
        """Force (N) of the most recently struck hammer, one value per sample at fs."""
        return self.trace[: int(self.trace_info[0])].copy()

    def is_silent(self, threshold_db: float = -90.0) -> bool:
        """True when no voice sounds above ``threshold_db`` and the last block's output
        was below it too (soundboard tail included)."""
        thr = 10.0 ** (threshold_db / 20.0)
        live = self.iv[:, V.I_STATE] != V.FREE
        if np.any(self.fv[live, V.F_LEVEL] > thr) or np.any(self.iv[live, V.I_HAMMER_ON] != 0):
            return False
        return float(np.max(np.abs(self.out64))) < thr

    def reset(self) -> None:
        """Silence everything at once and clear all state (voices, resonators, soundboard);
        pedal up. Not for use while playing (it clicks); use :meth:`all_notes_off`."""
        for a in (self.iv, self.fv, self.nut, self.bridge, self.dstate, self.rstate, self.ring,
                  self.ring2, self.ring4, self.drive,
                  self.drive_lp, self.drive_zi, self.drivep, self.partsums, self.noise,
                  self.trace, self.trace_info, self.out64):
            a[...] = 0
        keep = self.gi.copy()
        self.gi[...] = 0
        for idx in (B.G_POLYPHONY, B.G_HAMMER_MODE, B.G_RES_FACTOR):
            self.gi[idx] = keep[idx]
        self.gi[B.G_TRACE_VOICE] = -1
        self._new_soundboard_state()
        self.sb_ctl[:] = 0.0

    def all_notes_off(self) -> None:
        """Fade every voice out within 5 ms."""
        B.all_sound_off(self.iv, self.fv, self.gf)

    # -- rendering -------------------------------------------------------------------------
    def render(self, out: np.ndarray, events: np.ndarray = NO_EVENTS,
               pipelined: bool = False) -> None:
        """Render ``out.shape[0]`` frames into ``out`` ((n, 2) float64 or float32), applying
        ``events`` (EVENT_DTYPE, sorted by offset, 0 <= offset < n) at their sample offsets.
        Output is identical for any split of the same stream into blocks.

        One kernel call per block (:func:`pianosynth.engine.blockloop.render_block`): the
        cost of a call does not grow with the block, so offline rendering uses long blocks.
        ``pipelined=True`` (offline only; ignored unless :func:`pipelined_available`): the
        same output, bit for bit, from two threads
        (:func:`pianosynth.engine.blockloop.render_block_pipelined`); never in an audio
        callback (its threads are not real-time and spin between regions).
        """
        n = out.shape[0]
        direct = (out.dtype in (np.float64, np.float32) and out.flags.c_contiguous
                  and out.ndim == 2 and out.shape[1] == 2)
        if not direct:
            # the kernel writes C-ordered (n, 2) float64 or float32 blocks: render into a
            # scratch block of that layout (grown when a longer block comes) and copy
            if self._out_scratch.shape[0] < n:
                self._out_scratch = np.zeros((n, 2), np.float64)
            tmp = self._out_scratch[:n]
            self.render(tmp, events, pipelined)
            np.copyto(out, tmp, casting="same_kind")
            return
        ne = len(events)
        if ne == 0 and self.is_idle():
            # silence costs nothing: the kernel would skip every chunk (exact zeros); the
            # clock advances exactly as it would, without its long argument list
            B.skip_idle(n, self.gi)
            self.out64[:] = 0.0
            out[...] = 0.0
            return
        if ne > len(self._ev_off):
            self._grow_events(ne)
        if ne:
            self._eb_off[:ne] = events["offset"]
            self._eb_st[:ne] = events["status"]
            self._eb_d1[:ne] = events["data1"]
            self._eb_d2[:ne] = events["data2"]
        k = self.keys
        # one compiled kernel for both output types: the unused one is an empty dummy
        out64, out32 = (out, _NO_OUT32) if out.dtype == np.float64 else (_NO_OUT64, out)
        args = (out64, out32, n, self._eb_off[:ne], self._eb_st[:ne], self._eb_d1[:ne],
                self._eb_d2[:ne], self._ev_off, self._ev_st, self._ev_d1, self._ev_d2,
                self.iv, self.fv, self.nut, self.bridge, self.dsos, self.dstate,
                self.rcoef, self.rstate, k.kt_i, k.kt_f, k.kt_sos, k.kt_res,
                k.vel_m_s, self.gi, self.gf, self.taps, self.ring,
                self.trace, self.trace_info, self.mono, self.resbuf, self.mix2, self.mix4,
                self.taps2, self.ring2, self.taps4, self.ring4,
                self.drive, self.drive_sos, self.drive_zi, self.drive_lp, self.noise,
                self.sb_state, self.sb_coeffs, self.sb_ctl, self.stereo, self.out64,
                self.partsums, self.drivep)
        if pipelined and pipelined_available():
            B.render_block_pipelined(*args, self._task_cost, self._task_thread)
        else:
            B.render_block(*args)

    def is_idle(self) -> bool:
        """True when the engine holds exactly nothing (no voice, no tail anywhere, the
        soundboard silent): rendering a block without events gives exact zeros, so a live
        callback may skip the call (``render`` itself takes the same short-cut)."""
        return self._sb_quiet >= 2 and bool(B.is_idle(self.iv, self.noise, self.ring,
                                                      self.ring2, self.ring4, self.drive,
                                                      self.drive_zi, self.gf))

    @property
    def _sb_quiet(self) -> int:
        """Whole 4096-sample windows the soundboard has been silent in a row (2: skipped)."""
        return int(self.sb_ctl[B.SB_QUIET])

    def _grow_events(self, n):
        size = 1 << int(math.ceil(math.log2(max(n, 1))))
        for name in ("_ev_off", "_ev_st", "_ev_d1", "_ev_d2", "_eb_off", "_eb_st", "_eb_d1",
                     "_eb_d2"):
            setattr(self, name, np.zeros(size, np.int64))

    def render_frames(self, n: int, events: np.ndarray = NO_EVENTS,
                      block_size: int = 512) -> np.ndarray:
        """Convenience: render ``n`` frames (events' offsets relative to the start) -> (n, 2)."""
        out = np.zeros((n, 2), np.float64)
        pos = 0
        ev = np.asarray(events, EVENT_DTYPE)
        ev = ev[np.argsort(ev["offset"], kind="stable")]
        while pos < n:
            m = min(block_size, n - pos)
            sel = (ev["offset"] >= pos) & (ev["offset"] < pos + m)
            blk = ev[sel].copy()
            blk["offset"] -= pos
            self.render(out[pos:pos + m], blk)
            pos += m
        return out
