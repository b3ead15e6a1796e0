"""Offline analysis of one key for the panel: render it with a private engine, measure it.

Runs on a worker thread with its own :class:`~pianosynth.engine.core.Engine`, never the live
one, so the audio thread is not disturbed beyond sharing the CPU (the kernels release the GIL).

Measured partial frequencies are compared with the stiff-string series
``f_k = k·f0·sqrt(1 + B·k²)`` (Bank et al. 2003, eq. 12) of the designed f0 and B, and the
partial envelopes come from heterodyne filtering (Sec. 4.1), as in :mod:`pianosynth.analysis`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import analysis as A
from ..engine.events import make_events

#: the analysed note: velocity, how long the key is held, s.
VELOCITY = 100
DURATION_S = 2.5
#: partials compared with theory, partials whose decay is drawn.
N_PARTIALS = 24
N_DECAY = 6


class KeyAnalysis(NamedTuple):
    """Result of :func:`analyse_key`.

    Attributes
    ----------
    key : int
        MIDI key.
    f0_hz, inharmonicity_b : float
        Designed f0 (Hz) and B of the key (``engine.keys.kp``).
    t60_f0_s : float
        Designed T60 at f0, s.
    k : ndarray, int, shape (m,)
        Partial numbers 1..m (below 0.45 fs).
    measured_hz : ndarray, shape (m,)
        Measured partial frequencies (nan where not found).
    theory_hz : ndarray, shape (m,)
        k·f0·sqrt(1 + B k²).
    t_s : ndarray, shape (frames,)
        Envelope times, s from the note-on.
    env_db : ndarray, shape (min(m, N_DECAY), frames)
        Partial envelopes, dB re full scale.
    centroid_hz : float
        Spectral centroid of the first 100 ms (brightness of the attack).
    """

    key: int
    f0_hz: float
    inharmonicity_b: float
    t60_f0_s: float
    k: np.ndarray
    measured_hz: np.ndarray
    theory_hz: np.ndarray
    t_s: np.ndarray
    env_db: np.ndarray
    centroid_hz: float


def render_note(settings: dict, keys: dict, key: int, velocity: int = VELOCITY,
                dur_s: float = DURATION_S, fs: int = 48000, engine_factory=None):
    """Render one held note on a fresh private engine.

    Returns
    -------
    (x, engine) : (ndarray float64 shape (n,), Engine)
        Mono (left channel) output from the note-on, and the engine (for its key table).
    """
    if engine_factory is None:
        from ..engine.core import Engine
        engine_factory = Engine
    eng = engine_factory(settings, fs, key_overrides=keys, max_voices=4)
    y = eng.render_frames(int(dur_s * fs), make_events([(0, 0x90, int(key), int(velocity))]),
                          block_size=512)
    return y[:, 0], eng


def analyse_key(settings: dict, keys: dict, key: int, fs: int = 48000,
                velocity: int = VELOCITY, dur_s: float = DURATION_S,
                n_partials: int = N_PARTIALS, engine_factory=None) -> KeyAnalysis:
    """Render ``key`` with ``settings`` and measure partials and their decay.

    Parameters
    ----------
    settings : dict
        Parameter values by name.
    keys : dict
        Per-key overrides.
    key : int
        MIDI key 21..108.
    fs : int
        Sample rate of the private engine, Hz.
    """
    x, eng = render_note(settings, keys, key, velocity, dur_s, fs, engine_factory)
    kp = eng.keys.kp
    i = int(key) - int(kp.keys[0])
    f0 = float(kp.f0_hz[i])
    b = float(kp.inharmonicity_b[i])
    k = np.arange(1, n_partials + 1)
    theory = k * f0 * np.sqrt(1.0 + b * k * k)
    k = k[theory < 0.45 * fs]
    theory = theory[:len(k)]
    if len(k) and np.max(np.abs(x)) > 0:
        measured = A.find_partials(x, fs, f0, n_partials=len(k), inharmonicity_guess=b,
                                   onset=0)
        nd = min(N_DECAY, len(k))
        f_env = np.where(np.isfinite(measured[:nd]), measured[:nd], theory[:nd])
        t, env = A.partial_envelopes(x, fs, f_env)
        centroid = A.spectral_centroid(x, fs, onset=0)
    else:
        measured = np.full(len(k), np.nan)
        t, env = np.zeros(0), np.zeros((0, 0))
        centroid = float("nan")
    return KeyAnalysis(int(key), f0, b, float(kp.t60_f0_s[i]), k, measured, theory, t, env,
                       float(centroid))


def warm_up(fs: int = 48000) -> None:
    """Load everything a first :func:`analyse_key` needs (float64 kernel specialisations,
    analysis imports) now, before the audio stream starts: loading holds the GIL for
    about a second, which would starve a running audio callback."""
    from ..engine.params import defaults
    analyse_key(defaults(), {}, 60, fs=fs, dur_s=0.4, n_partials=4)


def cents(f_hz, ref_hz):
    """1200·log2(f / ref), nan-safe."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1200.0 * np.log2(np.asarray(f_hz, float) / np.asarray(ref_hz, float))
