"""Multirate building blocks: decimation and interpolation FIR design (numpy/scipy).

Designs the linear-phase lowpass filters used around every slow path of the instrument
(soundboard low band, Bank et al. 2003 §5 / Fig. 6; the resonator-bank sum, §4.3) and lays
their taps out as the tables the streaming kernels of :mod:`pianosynth.dsp.multirate` read.

Conventions (shared with the kernels)
-------------------------------------
* Low-rate sample ``m`` belongs to full-rate time ``n = m*factor``: the decimator emits
  ``y[m] = sum_k h[k] x[m*factor - k]`` when input ``x[m*factor]`` arrives, and the
  interpolator needs ``u[m]`` when it produces output ``n = m*factor``.
  Output ``z[n] = sum_m u[m] g[n - m*factor]``.
* Both prototypes have odd length ``L``, so each one delays by the integer
  ``(L - 1) / 2`` samples at fs (:func:`fir_latency`). A decimator followed by an
  interpolator (with any zero-latency low-rate filter in between) delays by the sum.

References
----------
R. E. Crochiere, L. R. Rabiner, *Multirate Digital Signal Processing*, Prentice-Hall 1983,
ch. 3 (polyphase structures) and ch. 4 (filter specifications).
B. Bank, G. De Poli, L. Sujbert, "A multi-rate approach to instrument body modeling for
real-time sound synthesis applications", 112th AES Convention, 2002 (the ↓8 soundboard).
"""
from __future__ import annotations

import numpy as np


def _signal():
    """scipy.signal, imported on first use (its import costs ~1 s of start-up)."""
    from scipy import signal
    return signal

__all__ = [
    "design_decimator",
    "design_interpolator",
    "decimator_table",
    "interpolator_table",
    "fir_latency",
    "fir_spec_check",
]


def _ripple_to_deltas(ripple_db: float, stopband_db: float) -> tuple[float, float]:
    """Peak deviations (delta_p, delta_s) from a peak-to-peak passband ripple and an
    attenuation, both in dB."""
    g = 10.0 ** (ripple_db / 20.0)
    dp = (g - 1.0) / (g + 1.0)
    ds = 10.0 ** (-stopband_db / 20.0)
    return dp, ds


def fir_spec_check(taps: np.ndarray, fs: float, passband_hz: float, stopband_hz: float,
                   gain: float = 1.0, n_grid: int = 1 << 15) -> tuple[float, float]:
    """Measured (passband ripple peak-to-peak in dB, minimum stopband attenuation in dB).

    Parameters
    ----------
    taps : ndarray, shape (L,), float64
        FIR prototype.
    fs : float
        Rate of the prototype in Hz.
    passband_hz, stopband_hz : float
        Band edges in Hz.
    gain : float
        Nominal passband gain (1 for a decimator, ``factor`` for an interpolator).
    n_grid : int
        Frequency grid size on [0, fs/2].
    """
    w, h = _signal().freqz(taps, worN=n_grid, fs=fs)
    mag = np.abs(h) / gain
    pb = mag[w <= passband_hz]
    sb = mag[w >= stopband_hz]
    ripple = 20.0 * np.log10(pb.max() / pb.min())
    atten = -20.0 * np.log10(max(sb.max(), 1e-300))
    return float(ripple), float(atten)


def _design_lowpass(fs: float, passband_hz: float, stopband_hz: float,
                    ripple_db: float, stopband_db: float) -> np.ndarray:
    """Shortest odd-length equiripple (Parks-McClellan) lowpass meeting the spec, DC gain 1."""
    if not 0.0 < passband_hz < stopband_hz < fs / 2.0:
        raise ValueError(f"need 0 < passband ({passband_hz}) < stopband ({stopband_hz}) < fs/2")
    dp, ds = _ripple_to_deltas(ripple_db, stopband_db)
    # Kaiser/Herrmann length estimate, then grow until the measured spec holds.
    dw = (stopband_hz - passband_hz) / fs
    n_est = int(np.ceil((-20.0 * np.log10(np.sqrt(dp * ds)) - 13.0) / (14.6 * dw))) + 1
    n = max(5, n_est - 8) | 1
    for _ in range(200):
        taps = _signal().remez(n, [0.0, passband_hz, stopband_hz, fs / 2.0], [1.0, 0.0],
                            weight=[1.0, dp / ds], fs=fs, maxiter=100)
        taps = taps / np.sum(taps)  # exact unity at DC
        rip, att = fir_spec_check(taps, fs, passband_hz, stopband_hz)
        if rip <= ripple_db and att >= stopband_db:
            return taps.astype(np.float64)
        n += 2
    raise RuntimeError("remez did not meet the specification")  # pragma: no cover


def design_decimator(fs: float, factor: int, passband_hz: float, stopband_hz: float,
                     ripple_db: float = 0.1, stopband_db: float = 70.0) -> np.ndarray:
    """Linear-phase anti-alias FIR for decimation by ``factor``, DC gain 1.

    Parameters
    ----------
    fs : float
        Input (high) rate in Hz.
    factor : int
        Decimation factor M >= 2; the output rate is ``fs / factor``.
    passband_hz : float
        Edge of the flat band in Hz (e.g. 2200 for the soundboard's low band).
    stopband_hz : float
        Start of the stopband in Hz; ``fs/factor - passband_hz`` keeps every alias out of
        the passband. Must be < fs/2.
    ripple_db : float
        Maximum passband ripple, peak to peak, dB.
    stopband_db : float
        Minimum stopband attenuation, dB.

    Returns
    -------
    taps : ndarray, shape (L,), float64
        Odd length L, symmetric (linear phase), group delay ``(L-1)/2`` samples at fs.

    Notes
    -----
    Parks-McClellan equiripple design (``scipy.signal.remez``) with the stopband weighted
    by delta_p / delta_s; L is the shortest odd length meeting both specs.
    """
    if int(factor) < 2:
        raise ValueError("factor must be >= 2")
    return _design_lowpass(fs, passband_hz, stopband_hz, ripple_db, stopband_db)


def design_interpolator(fs: float, factor: int, passband_hz: float, stopband_hz: float,
                        ripple_db: float = 0.1, stopband_db: float = 70.0) -> np.ndarray:
    """Linear-phase anti-image FIR for interpolation by ``factor``, DC gain ``factor``.

    Parameters
    ----------
    fs : float
        Output (high) rate in Hz.
    factor : int
        Interpolation factor M >= 2; the input rate is ``fs / factor``.
    passband_hz, stopband_hz, ripple_db, stopband_db
        As in :func:`design_decimator`; ``stopband_hz = fs/factor - passband_hz`` removes
        the first image of a signal band-limited to ``passband_hz``.

    Returns
    -------
    taps : ndarray, shape (L,), float64
        Prototype with gain ``factor`` (zero-stuffed upsampling keeps the amplitude); lay it
        out for the kernel with :func:`interpolator_table`. Latency ``(L-1)/2`` at fs.
    """
    if int(factor) < 2:
        raise ValueError("factor must be >= 2")
    return float(factor) * _design_lowpass(fs, passband_hz, stopband_hz, ripple_db,
                                           stopband_db)


def fir_latency(taps: np.ndarray) -> int:
    """Group delay in samples at the high rate of an odd-length linear-phase prototype."""
    n = int(np.asarray(taps).shape[0])
    if n % 2 != 1:
        raise ValueError("linear-phase prototypes here have odd length")
    return (n - 1) // 2


def decimator_table(taps: np.ndarray, factor: int) -> np.ndarray:
    """Kernel table of a decimator: the prototype zero-padded to ``factor*J`` taps, reversed,
    reshaped to (factor, J).

    ``table.ravel()[i] = h[factor*J - 1 - i]`` so that the kernel's dot product runs over its
    full-rate history oldest-to-newest in contiguous memory; ``factor = table.shape[0]``.

    Returns
    -------
    table : ndarray, shape (factor, J), float64, C-contiguous
    """
    h = np.asarray(taps, dtype=np.float64)
    factor = int(factor)
    j = -(-h.shape[0] // factor)
    hp = np.zeros(factor * j)
    hp[: h.shape[0]] = h
    return np.ascontiguousarray(hp[::-1].reshape(factor, j))


def interpolator_table(taps: np.ndarray, factor: int) -> np.ndarray:
    """Polyphase table of an interpolator, each branch reversed.

    ``table[r, J-1-j] = g[r + factor*j]``: output ``z[m*factor + r] =
    sum_j table[r, j] * u[m - (J-1) + j]`` reads the low-rate history oldest-to-newest.

    Returns
    -------
    table : ndarray, shape (factor, J), float64, C-contiguous
    """
    g = np.asarray(taps, dtype=np.float64)
    factor = int(factor)
    j = -(-g.shape[0] // factor)
    gp = np.zeros(factor * j)
    gp[: g.shape[0]] = g
    poly = gp.reshape(j, factor).T  # poly[r, j] = g[r + factor*j]
    return np.ascontiguousarray(poly[:, ::-1])
