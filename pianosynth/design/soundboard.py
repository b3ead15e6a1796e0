"""Multirate soundboard radiation filter: target, low band, FDN high band (Bank et al. 2003 §5).

One shared instance filters the summed string (bridge) signal of all voices into the stereo
output (DESIGN.md, "SOUNDBOARD"). Structure (Fig. 6 of the paper, with the FDN the paper
leaves to future work as H_high)::

    x ─┬─ ↓8 (lowpass 2.2 kHz) ─┬─ H_low (modal bank + FIR @ fs/8) ── ↑8 ──────── ·g_low ─┬─ L
       │                        └────────────────────────────────── ↑8 ─┐  (same ↑8 table)  │
       └─ z^-N ───────────────────────────────────────────────── (+)─(−)┘                   │
                          x_high = x delayed − lowpassed x (the residual above 2.2 kHz)     │
                          x_high ─ tone filter ─ 8-line FDN ─ 2 output taps ── ·g_high ─────┴─ R

N = the latency of decimation + interpolation, so both bands are time aligned and the
bands are complementary: with H_low = 1 and an FDN = pure gain the chain is a pure delay.

The target (no measured soundboard response is available)
---------------------------------------------------------
A synthetic modal force-to-pressure response ``h_t(t) = sum_k a_k exp(-t/tau_k) sin(2 pi f_k t)``
(:func:`soundboard_modes`), the same board at every sample rate for a given ``seed``:

* modes from 60 Hz to 10 kHz (446 modes for seed 1); modal density ``d(f)`` (modes/Hz):
  0.01 up to 300 Hz (the first, well separated modes of a ribbed board), rising
  log-log from 0.01 at 300 Hz to 0.05 at 2.5 kHz, 0.05 above (high-frequency plate
  density). Frequencies: the cumulative count ``N(f) = int_60^f d`` inverted at
  ``k + 0.3 + U(-0.25, 0.25)`` (a jittered lattice: no two modes coincide), except the
  first mode, placed between 60 and 70 Hz;
* loss factor ``eta = 0.02`` for every mode: ``tau_k = 1 / (pi f_k eta)`` (Q = 50), so the
  60 Hz mode rings with T60 = 1.8 s and a 2.2 kHz mode with T60 = 50 ms;
* amplitudes ``a_k = abar(f_k) * g_k`` with ``g_k ~ N(0, 1)`` (seeded: random sign and size)
  and ``abar`` chosen so that the expected 1/3-octave-averaged magnitude follows the envelope
  ``env(f) = HP1(f; 100 Hz) * (f / 1 kHz)^-0.25 * LP1(f; 4 kHz)`` (first-order corners,
  a -1.5 dB/octave tilt in between, -7.5 dB/octave above 4 kHz), the gentle mobility tilt
  of a piano board (rising below the first modes, mass/rib controlled at high frequencies),
  normalised to 0 dB at its maximum: ``abar = env/fs * sqrt(8 pi f eta / d(f))`` because one
  mode contributes ``a^2 tau fs^2 / 8`` to the integral of ``|H|^2`` over Hz (Parseval).

Low band (below the split ``SPLIT_HZ`` = 2.2 kHz)
-------------------------------------------------
Decimate by 8 (equiripple, 0.02 dB ripple, 70 dB stopband from
min(fs/8 − 2.2 kHz, 3.3 kHz): no alias reaches the passband, same crossover at every rate), then
``H_low`` at fs/8: one second-order section per target mode below 2.5 kHz with the exact
decimated pole pair ``(r_k^8, 8 theta_k)`` and impulse-invariant numerator, plus an 8-tap
FIR fitted by least squares (complex, so amplitude AND phase) to what the modes do not
explain below 2.2 kHz (the low-frequency tails of the modes above 2.5 kHz and the aliasing of
the impulse-invariant sections); then interpolate by 8 (same spec). Fixed-pole parallel
filter design in the sense of Bank (2007).

High band
---------
The residual above 2.2 kHz drives an 8-line feedback delay network (Jot & Chaigne 1991):
Hadamard feedback matrix / sqrt(8) (orthogonal), delay lengths mutually prime with total
``sum m_i = 0.05 s * fs`` so the FDN's modal density (sum m_i / fs modes per Hz) equals the
target's 0.05 modes/Hz above 2.5 kHz. Each line has a one-pole absorption filter designed
from T60 at DC and at Nyquist (Jot): ``g_i(0) = 10^(-3 m_i/(fs T60_0))``,
``g_i(pi) = 10^(-3 m_i/(fs T60_pi))``, ``T60_pi = T60_0 / 20``, pole
``p_i = (g_0 - g_pi)/(g_0 + g_pi)``; ``|H_i| <= max(g_0, g_pi) < 1`` for every finite
positive T60 so every loop gain is < 1 by construction. Each line's ``T60_0`` is solved so
that its T60 at 2.2 kHz equals ``fdn_t60_s`` exactly. A first-order tone filter
at the FDN input is fitted so the FDN's diffuse field starts at the level of the target's
high band (its initial per-Hz power ``d(f) abar(f)^2 / 2``); ``fdn_t60_s`` then sets how
long it rings (at ``fdn_t60_s`` = 0.05 s both decay alike at 2.2 kHz). Stereo: each channel
reads every line at its input (gains ``c``) and at one mid-line tap ``d_l < min m_i``
(gains ``e``, Moorer/Jot output taps) so the high band starts within 0.5 ms instead of after
the shortest line, with no click at t = 0; ``c_L, c_R, e_L, e_R`` are orthonormal (x 1/sqrt 2)
and orthogonal to the input vector, so the two channels are decorrelated.

Parameters (physical, units): ``level_db`` (dB, both bands), ``fdn_t60_s`` (s, T60 of the
high band at 2.2 kHz, clamped to [0.01, 10] with a warning), ``balance`` (-1 low band only,
0 both at full level, +1 high band only), ``seed`` (the board). Latency: ``coeffs.latency[0]``
samples at fs (44.1 kHz: 144, 48 kHz: 156, 96 kHz: 312; about 3.3 ms).

References
----------
B. Bank et al., "Physically informed signal processing methods for piano sound synthesis:
a research overview", EURASIP JASP 2003:10, §5 and Fig. 6.
B. Bank, G. De Poli, L. Sujbert, "A multi-rate approach to instrument body modeling for
real-time sound synthesis applications", 112th AES Conv., 2002.
B. Bank, "Direct design of parallel second-order filters for instrument body modeling",
ICMC 2007 (fixed-pole parallel filters).
J.-M. Jot, A. Chaigne, "Digital delay networks for designing artificial reverberators",
90th AES Conv., 1991.
D. Rocchesso, J. O. Smith, "Circulant and elliptic feedback delay networks for artificial
reverberation", IEEE Trans. Speech Audio Proc. 5(1), 1997.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np


def _optimize():
    """scipy.optimize, imported on first use (its import costs ~1 s of start-up)."""
    from scipy import optimize
    return optimize

from .multirate import (decimator_table, design_decimator, design_interpolator,
                        fir_latency, interpolator_table)

__all__ = [
    "SoundboardCoeffs", "design_soundboard", "soundboard_target_ir", "soundboard_modes",
    "soundboard_latency", "modal_density", "soundboard_envelope",
    "ETA", "SPLIT_HZ", "FACTOR",
]

#: loss factor of every target mode (tau = 1 / (pi f eta)).
ETA = 0.02
#: lowest / highest target mode, Hz.
F_LOW_HZ, F_HIGH_HZ = 60.0, 10000.0
#: band split: passband edge of the decimation and interpolation filters, Hz.
SPLIT_HZ = 2200.0
#: decimation factor of the low band.
FACTOR = 8
#: decimation/interpolation filter spec: passband ripple (peak to peak) and stopband, dB.
#: The small ripple keeps the complementary high band's leak below the split near -50 dB.
#: The stopband sets the images of the low band at fs/8 +- f: at 70 dB the image of a C6's
#: partial 1 (fs/8 + 1055 Hz) sat 8 dB below its weak partial 6 (recorded 60 dB below
#: partial 1) and was read as it (pianosynth fit, C6 L3: 17.7 cents); at 90 dB it is 28 dB
#: below. Costs 183 instead of 145 taps at 44.1 kHz, latency 4.1 instead of 3.3 ms.
RIPPLE_DB, STOPBAND_DB = 0.01, 90.0
#: widest transition band of those filters, Hz: the crossover region where the low band
#: fades out and the FDN fades in is the same at every sample rate (at 44.1 kHz the alias
#: limit fs/8 - SPLIT_HZ is the tighter bound).
TRANSITION_HZ = 1100.0
#: modes below SPLIT_HZ + BANK_MARGIN_HZ get a section in H_low.
BANK_MARGIN_HZ = 300.0
#: length of the low-rate correction FIR.
FIR_LEN = 8
#: FDN size, modal density it reproduces (modes/Hz = sum m_i / fs), T60_pi / T60_0.
FDN_LINES = 8
FDN_DENSITY = 0.05
FDN_T60_RATIO = 0.05
#: clamp of fdn_t60_s, s.
T60_MIN_S, T60_MAX_S = 0.01, 10.0
#: gain smoothing time constant (level / balance changes), s.
GAIN_LAG_S = 0.01


class SoundboardCoeffs(NamedTuple):
    """All soundboard coefficients (arrays; read-only for the kernel).

    Shapes: M = FACTOR, Jd/Ji = decimator/interpolator branch length, nb = low-band sections,
    K = FIR_LEN, L = FDN_LINES, nm = target modes.
    """
    dec_table: np.ndarray   #: (M, Jd) float64, decimator table (reversed prototype)
    int_table: np.ndarray   #: (M, Ji) float64, interpolator polyphase table (gain M)
    bank_a: np.ndarray      #: (nb, 2) float64, [a1, a2] of 1 + a1 z^-1 + a2 z^-2 at fs/M
    bank_b: np.ndarray      #: (nb, 2) float64, [b0, b1] numerators at fs/M
    fir_rev: np.ndarray     #: (K,) float64, low-rate FIR taps reversed (c[K-1-j])
    tone: np.ndarray        #: (3,) float64, [k, q, p]: t = k (x - q x1) + p t1
    fdn_off: np.ndarray     #: (L+1,) int64, line l occupies buffer [off[l], off[l+1])
    fdn_b: np.ndarray       #: (L,) float64, absorption numerator g0 (1 - p) / sqrt(L)
    fdn_p: np.ndarray       #: (L,) float64, absorption pole
    fdn_in: np.ndarray      #: (L,) float64, input gains (unit norm)
    fdn_out: np.ndarray     #: (2, L) float64, L/R gains of the line inputs w_l[n]
    fdn_tap: np.ndarray     #: (L,) int64, mid-line tap delays d_l, 1 <= d_l < min(m)
    fdn_tap_out: np.ndarray  #: (2, L) float64, L/R gains of the taps w_l[n - d_l]
    gains: np.ndarray       #: (2,) float64, target [g_low, g_high] (level and balance)
    smooth: np.ndarray      #: (1,) float64, per-sample gain lag coefficient 1 - exp(-1/(tau fs))
    latency: np.ndarray     #: (1,) int64, latency of the whole model in samples at fs
    fs: np.ndarray          #: (1,) float64, sample rate, Hz
    bank_at: np.ndarray     #: (2, nb) float64, ``bank_a`` one row per coefficient (kernel)
    bank_bt: np.ndarray     #: (2, nb) float64, ``bank_b`` one row per coefficient (kernel)
    int_scatter: np.ndarray  #: (M Ji,) float64, the interpolator's prototype (zero-padded):
    #: a low-rate value pushed at sample n adds int_scatter[d] times itself to sample n + d


# ------------------------------------------------------------------ target board
def modal_density(f_hz):
    """Target modal density d(f) in modes/Hz (see module docstring)."""
    f = np.asarray(f_hz, dtype=np.float64)
    slope = np.log(5.0) / np.log(2500.0 / 300.0)
    return np.where(f <= 300.0, 0.01,
                    np.where(f >= 2500.0, 0.05, 0.01 * (np.maximum(f, 1e-9) / 300.0) ** slope))


def _envelope_raw(f):
    f = np.asarray(f, dtype=np.float64)
    hp = (f / 100.0) / np.sqrt(1.0 + (f / 100.0) ** 2)
    lp = 1.0 / np.sqrt(1.0 + (f / 4000.0) ** 2)
    return hp * (np.maximum(f, 1e-9) / 1000.0) ** -0.25 * lp


_ENV_MAX = float(_envelope_raw(np.geomspace(F_LOW_HZ, F_HIGH_HZ, 4001)).max())


def soundboard_envelope(f_hz):
    """Expected 1/3-octave-averaged target magnitude (linear, max 1) at ``f_hz``."""
    return _envelope_raw(f_hz) / _ENV_MAX


@lru_cache(maxsize=16)
def _modes_unit(seed: int):
    fg = np.linspace(F_LOW_HZ, F_HIGH_HZ, 200001)
    d = modal_density(fg)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(fg))])
    n_modes = int(np.floor(cum[-1] - 0.3))
    rng = np.random.default_rng(seed)
    pos = np.arange(n_modes) + 0.3 + rng.uniform(-0.25, 0.25, n_modes)
    pos[0] = rng.uniform(0.0, 0.1)  # the fundamental board mode between 60 and 70 Hz
    f_k = np.interp(pos, cum, fg)
    g_k = rng.standard_normal(n_modes)
    return f_k, g_k


def soundboard_modes(fs: float, seed: int = 1):
    """Target modes of the synthetic board.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (amplitudes are per-sample impulse-response values, so they scale
        as 1/fs and the frequency response does not depend on fs).
    seed : int
        Board identity (numpy default_rng seed).

    Returns
    -------
    f_hz, amp, tau_s : ndarray, shape (nm,), float64
        Mode frequency (Hz), amplitude (impulse-response units at fs, random sign) and decay
        time constant ``1/(pi f eta)`` (s); ``h[n] = sum amp exp(-n/(tau fs)) sin(2 pi f n/fs)``.
    """
    f_k, g_k = _modes_unit(int(seed))
    tau = 1.0 / (np.pi * f_k * ETA)
    abar = soundboard_envelope(f_k) / fs * np.sqrt(8.0 * np.pi * f_k * ETA / modal_density(f_k))
    return f_k.copy(), abar * g_k, tau


def soundboard_target_ir(fs: float, level_db: float = 0.0, seed: int = 1,
                         length_s: float = 2.0) -> np.ndarray:
    """Full-rate modal target impulse response ``h_t[n]`` (float64, shape (round(length_s*fs),)).

    The low band of :func:`design_soundboard` reproduces this (delayed by the latency) below
    2.2 kHz; ``level_db`` scales it like the model's output.
    """
    f_k, a_k, tau = soundboard_modes(fs, seed)
    n = int(round(length_s * fs))
    out = np.zeros(n)
    t = np.arange(n) / fs
    for s in range(0, f_k.shape[0], 32):
        sl = slice(s, s + 32)
        out += (a_k[sl, None] * np.exp(-t[None, :] / tau[sl, None])
                * np.sin(2.0 * np.pi * f_k[sl, None] * t[None, :])).sum(0)
    return out * 10.0 ** (level_db / 20.0)


def _target_response(fs, seed, w):
    """Exact DTFT of the sampled target at normalised frequencies ``w`` (rad/sample)."""
    f_k, a_k, tau = soundboard_modes(fs, seed)
    r = np.exp(-1.0 / (tau * fs))
    th = 2.0 * np.pi * f_k / fs
    out = np.zeros(w.shape[0], dtype=np.complex128)
    for s in range(0, w.shape[0], 4096):
        z1 = np.exp(-1j * w[s:s + 4096])[:, None]
        out[s:s + 4096] = ((a_k * r * np.sin(th)) * z1
                           / (1.0 - 2.0 * r * np.cos(th) * z1 + r * r * z1 * z1)).sum(1)
    return out


# ------------------------------------------------------------------ low band
@lru_cache(maxsize=16)
def _low_band(fs: float, seed: int):
    """Multirate filters and H_low; depends on (fs, seed) only."""
    fs_low = fs / FACTOR
    stop = min(fs_low - SPLIT_HZ, SPLIT_HZ + TRANSITION_HZ)
    h_dec = design_decimator(fs, FACTOR, SPLIT_HZ, stop, RIPPLE_DB, STOPBAND_DB)
    h_int = design_interpolator(fs, FACTOR, SPLIT_HZ, stop, RIPPLE_DB, STOPBAND_DB)
    f_k, a_k, tau = soundboard_modes(fs, seed)
    bank = f_k < min(SPLIT_HZ + BANK_MARGIN_HZ, 0.92 * fs_low / 2.0)
    r8 = np.exp(-FACTOR / (tau[bank] * fs))
    th8 = 2.0 * np.pi * f_k[bank] * FACTOR / fs
    a1 = -2.0 * r8 * np.cos(th8)
    a2 = r8 * r8
    # impulse invariance at fs/M: g[m] = M a r^(M m) sin(M theta m)
    b1 = FACTOR * a_k[bank] * r8 * np.sin(th8)
    b0 = np.zeros_like(b1)
    # FIR fit of the residual below the split (complex LS, weighted ~ per log-frequency and
    # relative to the envelope), small weight towards 0 above the split.
    f = np.arange(1.0, fs_low / 2.0, 0.25)
    w = 2.0 * np.pi * f / fs
    zl = np.exp(-1j * FACTOR * w)[:, None]
    bank_resp = ((b0 + b1 * zl) / (1.0 + a1 * zl + a2 * zl * zl)).sum(1)
    inband = f < SPLIT_HZ
    resid = np.where(inband, _target_response(fs, seed, w) - bank_resp, 0.0)
    wt = np.where(inband, 1.0, 0.05) / (np.sqrt(f / 1000.0) * soundboard_envelope(f))
    basis = np.exp(-1j * FACTOR * w[:, None] * np.arange(FIR_LEN)) * wt[:, None]
    rhs = resid * wt
    c = np.linalg.lstsq(np.r_[basis.real, basis.imag], np.r_[rhs.real, rhs.imag],
                        rcond=None)[0]
    return (decimator_table(h_dec, FACTOR), interpolator_table(h_int, FACTOR), h_int,
            np.c_[a1, a2], np.c_[b0, b1], np.ascontiguousarray(c[::-1]),
            fir_latency(h_dec) + fir_latency(h_int))


# ------------------------------------------------------------------ high band (FDN)
def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % p for p in range(2, int(n ** 0.5) + 1))


def _fdn_lengths(fs: float) -> np.ndarray:
    """Distinct primes, geometric spread 1 : 2.2, sum ~ FDN_DENSITY * fs."""
    rel = np.geomspace(1.0, 2.2, FDN_LINES)
    target = rel / rel.sum() * FDN_DENSITY * fs
    out = []
    for t in target:
        m = int(round(t))
        while not _is_prime(m) or m in out:
            m += 1
        out.append(m)
    return np.array(out, dtype=np.int64)


def _onepole_t60(f_hz, t60_0, m, fs, ratio=FDN_T60_RATIO):
    """T60 (s) at f_hz of a line of m samples with Jot's one-pole from T60_0, T60_pi."""
    g0 = 10.0 ** (-3.0 * m / (fs * t60_0))
    gp = 10.0 ** (-3.0 * m / (fs * t60_0 * ratio))
    p = (g0 - gp) / (g0 + gp)
    h = g0 * (1.0 - p) / np.abs(1.0 - p * np.exp(-2j * np.pi * f_hz / fs))
    with np.errstate(divide="ignore"):
        return -3.0 * m / (fs * np.log10(h))


def _absorption(fs, lengths, t60_split):
    """Per-line one-pole absorption (b incl. 1/sqrt(L), p).

    Line l gets (T60_0,l, T60_pi,l = FDN_T60_RATIO T60_0,l), Jot's design from T60 at DC and
    Nyquist, with T60_0,l solved so that the line's T60 at SPLIT_HZ is exactly t60_split
    (a common pair would only match at DC and Nyquist; in between the one-pole's shape
    depends on the attenuation per pass, i.e. on the line length)."""
    b = np.empty(lengths.shape[0])
    p = np.empty(lengths.shape[0])
    for i, m in enumerate(lengths):
        t60_0 = _optimize().brentq(
            lambda s: _onepole_t60(SPLIT_HZ, s, float(m), fs) - t60_split,
            t60_split, t60_split / FDN_T60_RATIO, xtol=1e-12 * t60_split)
        g0 = 10.0 ** (-3.0 * m / (fs * t60_0))
        gp = 10.0 ** (-3.0 * m / (fs * t60_0 * FDN_T60_RATIO))
        p[i] = (g0 - gp) / (g0 + gp)
        b[i] = g0 * (1.0 - p[i]) / np.sqrt(FDN_LINES)
    return b, p


@lru_cache(maxsize=16)
def _high_band(fs: float, seed: int):
    """FDN structure, taps and tone filter; depends on (fs, seed) only."""
    lengths = _fdn_lengths(fs)
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rng = np.random.default_rng([int(seed), 0xB0A2D])
    b = rng.choice([-1.0, 1.0], FDN_LINES) / np.sqrt(FDN_LINES)
    # four orthonormal vectors, all orthogonal to b (no click at t = 0): line-end taps c_L,
    # c_R and mid-line taps e_L, e_R, each pair scaled so ||c||^2 + ||e||^2 = 1.
    q, _ = np.linalg.qr(np.c_[b, rng.standard_normal((FDN_LINES, 4))])
    c_out = q[:, 1:3].T / np.sqrt(2.0)
    e_out = q[:, 3:5].T / np.sqrt(2.0)
    # mid-line taps fill the first min(m) samples before the first recirculation (one
    # arrival per line, spread over the gap; also doubles the echo density later).
    m_min = int(lengths.min())
    taps = np.floor((np.arange(FDN_LINES) + rng.uniform(0.05, 0.95, FDN_LINES))
                    * m_min / FDN_LINES).astype(np.int64)
    taps = np.clip(taps, 1, m_min - 1)[rng.permutation(FDN_LINES)]
    # tone filter: |T(f)|^2 ||b||^2 ||c||^2 = 2 pi eta M_tot f env(f)^2 / fs, i.e. the FDN's
    # diffuse per-sample variance ||b||^2 ||c||^2 / M_tot spread over fs/2 equals the
    # target's initial per-Hz power d abar^2 / 2 (module docstring).
    f = np.geomspace(SPLIT_HZ, min(F_HIGH_HZ, 0.45 * fs), 200)
    want_db = 10.0 * np.log10(2.0 * np.pi * ETA * lengths.sum() * f
                              * soundboard_envelope(f) ** 2 / fs)
    z1 = np.exp(-2j * np.pi * f / fs)

    def shape_db(v):
        qz, pz = v
        return 20.0 * np.log10(np.abs((1.0 - qz * z1) / (1.0 - pz * z1)))

    def resid(v):
        e = shape_db(v) - want_db
        return e - e.mean()

    sol = _optimize().least_squares(resid, x0=[0.0, 0.5], bounds=([-0.95, -0.95], [0.95, 0.95]))
    qz, pz = sol.x
    k = 10.0 ** (np.mean(want_db - shape_db(sol.x)) / 20.0)
    tone = np.array([k, qz, pz])
    return lengths, off, b, c_out, taps, e_out, tone


# ------------------------------------------------------------------ public design
def design_soundboard(fs: float, level_db: float = 0.0, fdn_t60_s: float = 0.35,
                      balance: float = 0.0, seed: int = 1) -> SoundboardCoeffs:
    """Coefficients of the multirate soundboard from physical parameters.

    Parameters
    ----------
    fs : float
        Output sample rate in Hz (44100, 48000, 96000; anything >= 32 kHz works).
    level_db : float
        Gain of both bands in dB (0 dB: the loudest 1/3 octave of the board averages unity).
    fdn_t60_s : float
        T60 of the high band at 2.2 kHz in seconds; clamped to [0.01, 10] with a warning.
    balance : float
        -1 low band only .. 0 both at full level .. +1 high band only; clamped to [-1, 1].
    seed : int
        Board identity (target modes, FDN taps).

    Returns
    -------
    SoundboardCoeffs
        The array shapes depend on (fs, seed) only, so a state made for one design stays
        valid for a redesign with other level / T60 / balance (gains are smoothed in the
        kernel; the absorption filters switch at once).

    Raises
    ------
    ValueError
        Non-finite parameters or fs < 32 kHz.
    """
    fs = float(fs)
    if not np.isfinite(fs) or fs < 32000.0:
        raise ValueError("fs must be >= 32 kHz")
    for name, v in (("level_db", level_db), ("fdn_t60_s", fdn_t60_s), ("balance", balance)):
        if not np.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    t60 = float(fdn_t60_s)
    if not T60_MIN_S <= t60 <= T60_MAX_S:
        warnings.warn(f"fdn_t60_s={t60} clamped to [{T60_MIN_S}, {T60_MAX_S}] s", stacklevel=2)
        t60 = min(max(t60, T60_MIN_S), T60_MAX_S)
    balance = min(max(float(balance), -1.0), 1.0)
    seed = int(seed)

    dec_t, int_t, h_int, bank_a, bank_b, fir_rev, latency = _low_band(fs, seed)
    int_scatter = np.zeros(int_t.size)   # the interpolator's prototype, padded to the table
    int_scatter[:len(h_int)] = h_int
    lengths, off, b_in, c_out, taps, e_out, tone = _high_band(fs, seed)
    fdn_b, fdn_p = _absorption(fs, lengths, t60)
    level = 10.0 ** (float(level_db) / 20.0)
    gains = np.array([level * min(1.0, 1.0 - balance), level * min(1.0, 1.0 + balance)])
    cp = np.array  # fresh arrays: a caller may keep or edit one design without touching another
    return SoundboardCoeffs(
        dec_table=cp(dec_t), int_table=cp(int_t), bank_a=cp(bank_a), bank_b=cp(bank_b),
        fir_rev=cp(fir_rev), tone=cp(tone), fdn_off=cp(off), fdn_b=fdn_b, fdn_p=fdn_p,
        fdn_in=cp(b_in), fdn_out=cp(c_out), fdn_tap=cp(taps), fdn_tap_out=cp(e_out),
        gains=gains, smooth=np.array([1.0 - np.exp(-1.0 / (GAIN_LAG_S * fs))]),
        latency=np.array([latency], dtype=np.int64), fs=np.array([fs]),
        bank_at=np.ascontiguousarray(np.asarray(bank_a).T),
        bank_bt=np.ascontiguousarray(np.asarray(bank_b).T),
        int_scatter=int_scatter)


def soundboard_latency(coeffs: SoundboardCoeffs) -> int:
    """Latency of the model in samples at fs (decimation + interpolation group delay)."""
    return int(coeffs.latency[0])
