"""Multirate resonator bank for beating and two-stage decay (Bank et al. §4.3, Fig. 5, eq. 16).

Two coupled unison strings give, per partial, a pair of exponentially decaying sinusoids
(Weinreich 1977). One of the pair is the waveguide's partial; the other is a second-order
resonator driven in parallel by the same hammer force, running at fs / ``factor``:

    R_k(z) = (Re{a_k} - Re{a_k conj(p_k)} z^-1) / (1 - 2 Re{p_k} z^-1 + |p_k|^2 z^-2)   (eq. 16)
    a_k = A_k e^{j phi_k},   p_k = exp(j 2 pi f_k / fs_low - 1 / (fs_low tau_k))

The resonators see the force decimated without an anti-alias filter, which is safe when they
sit in the lower half of the low-rate band (aliasing < -20 dB, §4.3); their sum over all keys
is interpolated once. A_k and phi_k are set relative to the waveguide's own partial k so the
second mode starts in phase with the first at level ``second_mode_level``.
"""
from __future__ import annotations

import math

import numpy as np


def _signal():
    """scipy.signal, imported on first use (its import costs ~1 s of start-up)."""
    from scipy import signal
    return signal

LN1000 = math.log(1000.0)


def design_interpolator_taps(factor: int, n_per_phase: int = 8, beta: float = 7.0) -> np.ndarray:
    """Lowpass FIR for ``factor``-fold interpolation of the resonator sum (gain ``factor``).

    Cutoff at fs / (2 factor): the resonators use only the lower half of the low-rate band,
    so the first image starts at 3/4 of the low-rate rate and a short Kaiser window suffices
    (§4.3: its passband errors are absorbed by the resonator amplitudes).
    """
    n = factor * n_per_phase
    taps = _signal().firwin(n, 1.0 / factor, window=("kaiser", beta)) * factor
    return taps.astype(np.float64)


def resonator_coefficients(freq_hz, t60_s, amp, phase, fs_low):
    """Coefficients (b0, b1, a1, a2) of eq. 16 for arrays of resonator parameters.

    Parameters
    ----------
    freq_hz, t60_s, amp, phase : array_like, shape (R,)
        Frequency (Hz), T60 (s), initial amplitude A_k and phase phi_k (rad).
    fs_low : float
        Rate the resonators run at, Hz.

    Returns
    -------
    ndarray, shape (R, 4), float64: b0, b1, a1, a2 with y = b0 x + b1 x1 - a1 y1 - a2 y2.
    """
    freq_hz = np.asarray(freq_hz, float)
    tau = np.maximum(np.asarray(t60_s, float), 1e-3) / LN1000
    a = np.asarray(amp, float) * np.exp(1j * np.asarray(phase, float))
    p = np.exp(1j * 2.0 * np.pi * freq_hz / fs_low - 1.0 / (fs_low * tau))
    out = np.empty((len(freq_hz), 4))
    out[:, 0] = a.real
    out[:, 1] = -(a * np.conj(p)).real
    out[:, 2] = -2.0 * p.real
    out[:, 3] = np.abs(p) ** 2
    return out


def design_resonators(partials_hz, partial_t60_s, nut_len, bridge_len, fs, factor,
                      count, detune_cents, late_t60_ratio, level, interp_delay,
                      level_k=None, ratio_k=None, detune_k_cents=None, partial_eq=None):
    """Resonator bank of one key.

    Parameters
    ----------
    partials_hz, partial_t60_s : arrays
        The waveguide's partial frequencies (Hz) and their T60 (s) (from the loss filter).
    nut_len, bridge_len : int
        The two delay-line lengths (samples at ``fs``): they fix the partials' complex
        amplitude at the bridge, (2/N)(e^{-jwb} - e^{-jw(b+2a)}) per unit force impulse.
    factor : int
        Decimation factor of the bank. ``count`` resonators at most, only partials below
        fs / (4 factor).
    detune_cents, late_t60_ratio, level : float
        Second mode: frequency offset (cents), T60 relative to the partial's, initial level
        relative to the partial.
    interp_delay : float
        Latency of the interpolation filter (samples at fs); compensated in the phase.
    level_k, ratio_k, detune_k_cents : arrays, optional
        The second mode of partial k+1 on its own (level, T60 ratio, detuning in cents);
        nan or beyond the array = the scalar above. A level of 0 leaves that partial without
        a resonator (it decays in one stage). ``pianosynth fit`` writes them (per-key
        ``second_level_kNN`` ...).
    partial_eq : complex array (n,), optional
        Response of the key's partial level filters at ``partials_hz`` (the string's output
        passes them, ``design.string.design_partial_eq``): the second modes are scaled and
        shifted alike, so each stays at its level and phase relative to its partial.

    Returns
    -------
    ndarray (n, 4): coefficients of eq. 16 at fs / factor.
    """
    fs_low = fs / factor
    f = np.asarray(partials_hz, float)
    sel = np.nonzero(f < fs / (4.0 * factor))[0][:count]

    def per_partial(arr, default):
        out = np.full(len(sel), float(default))
        if arr is not None:
            a = np.asarray(arr, float)
            inside = sel < len(a)
            given = np.zeros(len(sel), bool)
            given[inside] = np.isfinite(a[sel[inside]])
            out[given] = a[sel[given]]
        return out
    # alternate the sign of the detuning so neighbouring partials do not beat in lockstep
    sign = np.where(np.arange(len(sel)) % 2 == 0, 1.0, -1.0)
    lev = per_partial(level_k, level)
    ratio = per_partial(ratio_k, late_t60_ratio)
    det = per_partial(detune_k_cents, np.nan)
    det = np.where(np.isfinite(det), det, sign * detune_cents)
    keep = lev > 0.0
    sel, lev, ratio, det = sel[keep], lev[keep], ratio[keep], det[keep]
    if len(sel) == 0:
        return np.zeros((0, 4))
    f = f[sel]
    w = 2.0 * np.pi * f / fs
    n_loop = nut_len + bridge_len
    b = bridge_len / 2.0
    h = (2.0 / n_loop) * (np.exp(-1j * w * b) - np.exp(-1j * w * (b + nut_len)))
    h = h * np.exp(1j * w * interp_delay)
    if partial_eq is not None:
        h = h * np.asarray(partial_eq, complex)[sel]
    f2 = f * 2.0 ** (det / 1200.0)
    t60 = np.asarray(partial_t60_s, float)[sel] * ratio
    amp = lev * factor * np.abs(h)
    return resonator_coefficients(f2, t60, amp, np.angle(h), fs_low)
