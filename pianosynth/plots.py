"""PNG plots for looking at analysis results: spectrograms, partial envelopes, hammer forces.

Matplotlib is imported lazily inside each function and used through its object API with the
Agg canvas (no pyplot, no global backend switch), so importing this module costs nothing and
plotting is safe from any thread or next to a running Qt GUI. Every function takes a list of
curves/signals and writes one PNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["spectrogram_png", "decay_png", "force_png"]


def _figure(width_in, height_in):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def spectrogram_png(signals, path, fmax_hz: float = 5000.0, dur_s: float | None = 4.0,
                    dyn_range_db: float = 90.0, nfft: int = 4096, hop: int | None = None,
                    fmin_hz: float = 0.0, log_freq: bool = False, align_onset: bool = True,
                    title: str | None = None) -> Path:
    """Side-by-side spectrograms on one colour scale.

    Parameters
    ----------
    signals : list of (label, x, fs)
        ``x`` audio (mono or (n, channels), averaged), ``fs`` its sample rate in Hz.
    path : str or Path
        Output PNG file.
    fmax_hz, fmin_hz : float
        Frequency range shown in Hz.
    dur_s : float or None
        Time span shown in s (from the onset when ``align_onset``); None = whole signals.
    dyn_range_db : float
        Colour range in dB below the loudest bin over all signals (same scale for all panels).
    nfft : int
        FFT size in samples (Hann window); 4096 at 44.1 kHz resolves 10.8 Hz.
    hop : int, optional
        Hop in samples (default nfft // 8).
    log_freq : bool
        Logarithmic frequency axis.
    align_onset : bool
        Start each panel 20 ms before its detected onset (:func:`analysis.detect_onset`).
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    from scipy import signal as sps

    from .analysis import detect_onset, to_mono

    hop = nfft // 8 if hop is None else int(hop)
    specs = []
    for label, x, fs in signals:
        xm = to_mono(x)
        if align_onset:
            xm = xm[max(0, detect_onset(xm, fs) - int(0.02 * fs)):]
        if dur_s is not None:
            xm = xm[:int(dur_s * fs)]
        if xm.size < nfft:
            xm = np.pad(xm, (0, nfft - xm.size))
        f, t, S = sps.stft(xm, fs=fs, window="hann", nperseg=nfft, noverlap=nfft - hop,
                           boundary=None, padded=False)
        # amplitude of a sinusoid: |X| * 2 (scipy scales by 1 / sum(window))
        S_db = 20.0 * np.log10(2.0 * np.abs(S) + 1e-12)
        keep = (f >= fmin_hz) & (f <= fmax_hz)
        specs.append((label, t, f[keep], S_db[keep]))
    vmax = max(float(s[3].max()) for s in specs)
    vmin = vmax - dyn_range_db
    n = len(specs)
    fig = _figure(4.2 * n + 1.0, 4.5)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    im = None
    for ax, (label, t, f, S_db) in zip(axes, specs):
        im = ax.pcolormesh(t, f, S_db, vmin=vmin, vmax=vmax, cmap="magma", shading="auto",
                           rasterized=True)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("time (s)")
        if log_freq:
            ax.set_yscale("log")
            ax.set_ylim(max(fmin_hz, 20.0), fmax_hz)
    axes[0].set_ylabel("frequency (Hz)")
    cb = fig.colorbar(im, ax=list(axes), shrink=0.9)
    cb.set_label("level (dB re full-scale sine)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def decay_png(curves, path, fits=None, title: str | None = None, ylabel: str = "level (dB)",
              xlabel: str = "time (s)", ylim_db: float | None = 80.0,
              xlim_s: tuple | None = None) -> Path:
    """Partial envelopes (or any dB curves) against time, with optional fitted lines.

    Parameters
    ----------
    curves : list of (label, t, y_db)
        ``t`` in s, ``y_db`` in dB, same length; one line each, colours cycled.
    path : str or Path
        Output PNG file.
    fits : list of (label, t, y_db), optional
        Drawn as dashed black-edged lines (e.g. the regression lines of a T60 fit).
    title, ylabel, xlabel : str
        Labels.
    ylim_db : float or None
        Show this many dB below the highest finite value (None: autoscale).
    xlim_s : (float, float), optional
        Time range in s.

    Returns
    -------
    Path
        The written file.
    """
    fig = _figure(9.0, 5.0)
    ax = fig.subplots()
    top = -np.inf
    for label, t, y in curves:
        y = np.asarray(y, float)
        ax.plot(t, y, lw=1.0, label=label)
        if np.isfinite(y).any():
            top = max(top, float(np.nanmax(y[np.isfinite(y)])))
    for label, t, y in fits or []:
        ax.plot(t, y, "--", lw=1.5, color="k", label=label)
    if ylim_db is not None and np.isfinite(top):
        ax.set_ylim(top - ylim_db, top + 5.0)
    if xlim_s is not None:
        ax.set_xlim(*xlim_s)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if len(curves) + len(fits or []) <= 16:
        ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def force_png(t, force, path, labels=None, title: str | None = None,
              t_unit: str = "ms") -> Path:
    """Hammer-string contact force pulses (cf. Bank et al. 2003, Fig. 2).

    Parameters
    ----------
    t : array_like, shape (n,), or list of such arrays
        Time in s (one array shared by all pulses, or one per pulse).
    force : array_like, shape (n,) or (m, n), or list of arrays
        Force in N.
    path : str or Path
        Output PNG file.
    labels : list of str, optional
        One label per pulse.
    title : str, optional
        Figure title.
    t_unit : {"ms", "s"}
        Unit of the time axis.

    Returns
    -------
    Path
        The written file.
    """
    if isinstance(force, np.ndarray):
        forces = [force] if force.ndim == 1 else list(force)
    elif len(force) and np.ndim(force[0]) == 0:
        forces = [np.asarray(force, float)]
    else:
        forces = [np.asarray(f, float) for f in force]
    if isinstance(t, (list, tuple)) and len(t) and np.ndim(t[0]) == 1:
        ts = [np.asarray(tt, float) for tt in t]
    else:
        ts = [np.asarray(t, float)] * len(forces)
    scale = 1e3 if t_unit == "ms" else 1.0
    fig = _figure(8.0, 4.5)
    ax = fig.subplots()
    for i, (tt, ff) in enumerate(zip(ts, forces)):
        lab = labels[i] if labels is not None and i < len(labels) else None
        ax.plot(np.asarray(tt) * scale, ff, lw=1.2, label=lab)
    ax.set_xlabel(f"time ({t_unit})")
    ax.set_ylabel("force (N)")
    ax.grid(True, alpha=0.3)
    if labels:
        ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return _save(fig, path)
