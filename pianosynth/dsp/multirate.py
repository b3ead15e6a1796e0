"""Streaming decimator and polyphase interpolator kernels (numba).

Coefficient tables come from :mod:`pianosynth.design.multirate`
(:func:`~pianosynth.design.multirate.decimator_table`,
:func:`~pianosynth.design.multirate.interpolator_table`); the factor is ``table.shape[0]``.
All running state (phase counter, ring position, history) lives in the state arrays, so the
output is identical for any block split.

Timing convention: low-rate sample ``m`` belongs to full-rate time ``n = m*factor``. The
decimator emits ``y[m]`` while consuming ``x[m*factor]`` (phase 0); the interpolator consumes
``u[m]`` while producing ``z[m*factor]`` (phase 0). So a chain decimator -> any low-rate
filter without delay -> interpolator run sample by sample is causal and delays by exactly
``(L_dec - 1)/2 + (L_int - 1)/2`` samples at fs.

Engine use (one interpolator for a sum of many low-rate sources, Bank et al. 2003 §4.3)::

    k = interp_inputs_needed(st, table, n)   # low-rate samples the next n outputs consume
    low[:k] = 0; for each voice: add its k low-rate samples into low[:k]
    render_interpolate(st, table, low, out, n)   # returns k

The per-sample helpers (``decimate_tick``, ``interpolate_tick``) compute the same numbers
for callers that need one sample at a time; the block kernels hold phase and ring position
in local variables and are 3-4x faster (numba keeps them in registers), so prefer them.
Latency: ``pianosynth.design.multirate.fir_latency(taps)`` samples at fs per filter.

State layout: ``hist`` is a doubled ring (every sample is written at ``pos`` and
``pos + size``) so each dot product reads contiguous memory; ``idx = [phase, pos]``.

References
----------
R. E. Crochiere, L. R. Rabiner, *Multirate Digital Signal Processing*, 1983, §3.3.
B. Bank et al., "Physically informed signal processing methods for piano sound synthesis:
a research overview", EURASIP JASP 2003, §4.3 and §5 (Fig. 6).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .jit import JIT, JIT_INLINE, njit

__all__ = [
    "DecimatorState", "InterpolatorState",
    "make_decimator_state", "make_interpolator_state",
    "reset_decimator", "reset_interpolator",
    "decimate_tick", "interp_push", "interp_tick", "interpolate_tick",
    "render_decimate", "render_interpolate",
    "interp_inputs_needed", "decim_outputs_produced", "phase_count",
]


class DecimatorState(NamedTuple):
    """Running state of one streaming decimator.

    hist : float64 (2*factor*J,)  doubled ring of the last factor*J full-rate inputs
    idx  : int64 (2,)             [phase 0..factor-1, ring position]
    """
    hist: np.ndarray
    idx: np.ndarray


class InterpolatorState(NamedTuple):
    """Running state of one streaming polyphase interpolator.

    hist : float64 (2*J,)  doubled ring of the last J low-rate inputs
    idx  : int64 (2,)      [phase 0..factor-1 (0 = next output consumes a new input),
                            ring position]
    """
    hist: np.ndarray
    idx: np.ndarray


def make_decimator_state(table: np.ndarray) -> DecimatorState:
    """Zeroed state for a decimator table of shape (factor, J)."""
    f, j = table.shape
    return DecimatorState(np.zeros(2 * f * j), np.zeros(2, np.int64))


def make_interpolator_state(table: np.ndarray) -> InterpolatorState:
    """Zeroed state for an interpolator table of shape (factor, J)."""
    return InterpolatorState(np.zeros(2 * table.shape[1]), np.zeros(2, np.int64))


def reset_decimator(state: DecimatorState) -> None:
    """Silence the history and restart at phase 0 (in place)."""
    state.hist[:] = 0.0
    state.idx[:] = 0


def reset_interpolator(state: InterpolatorState) -> None:
    """Silence the history and restart at phase 0 (in place)."""
    state.hist[:] = 0.0
    state.idx[:] = 0


# ---------------------------------------------------------------- per-sample helpers
@njit(**JIT_INLINE)
def decimate_tick(hist, idx, table, x):
    """Consume one full-rate sample; return (ready, y).

    ``ready`` is True once every ``factor`` inputs (phase 0), and then
    ``y[m] = sum_k h[k] x[m*factor - k]``; otherwise y = 0. Cost: L MACs per output,
    L/factor per input sample (the polyphase cost).
    """
    factor = table.shape[0]
    nj = table.shape[1]
    size = factor * nj
    pos = idx[1]
    hist[pos] = x
    hist[pos + size] = x
    phase = idx[0]
    y = 0.0
    ready = phase == 0
    if ready:
        base = pos + 1  # hist[pos+1 .. pos+size] = oldest .. newest
        y0 = 0.0
        y1 = 0.0
        for r in range(factor):
            b = base + r * nj
            j = 0
            while j + 2 <= nj:  # two accumulators: independent add chains
                y0 += table[r, j] * hist[b + j]
                y1 += table[r, j + 1] * hist[b + j + 1]
                j += 2
            if j < nj:
                y0 += table[r, j] * hist[b + j]
        y = y0 + y1
    pos += 1
    if pos == size:
        pos = 0
    idx[1] = pos
    phase += 1
    if phase == factor:
        phase = 0
    idx[0] = phase
    return ready, y


@njit(**JIT_INLINE)
def interp_push(hist, idx, u):
    """Append one low-rate sample to an interpolator history (call only at phase 0)."""
    nj = hist.shape[0] // 2
    pos = idx[1]
    hist[pos] = u
    hist[pos + nj] = u
    pos += 1
    if pos == nj:
        pos = 0
    idx[1] = pos


@njit(**JIT_INLINE)
def interp_tick(hist, idx, table):
    """Produce one full-rate output from the current history and advance the phase.

    ``z[m*factor + r] = sum_j g[r + factor*j] u[m - j]`` with r = phase.
    """
    factor = table.shape[0]
    nj = table.shape[1]
    r = idx[0]
    pos = idx[1]  # hist[pos .. pos+J-1] = oldest .. newest
    z0 = 0.0
    z1 = 0.0
    j = 0
    while j + 2 <= nj:
        z0 += table[r, j] * hist[pos + j]
        z1 += table[r, j + 1] * hist[pos + j + 1]
        j += 2
    if j < nj:
        z0 += table[r, j] * hist[pos + j]
    z = z0 + z1
    r += 1
    if r == factor:
        r = 0
    idx[0] = r
    return z


@njit(**JIT_INLINE)
def interpolate_tick(hist, idx, table, u):
    """One full-rate output; ``u`` is consumed only when the phase is 0 (ignored otherwise)."""
    if idx[0] == 0:
        interp_push(hist, idx, u)
    return interp_tick(hist, idx, table)


@njit(**JIT_INLINE)
def phase_count(phase, factor, n):
    """How many of the next ``n`` samples, starting at ``phase``, are at phase 0."""
    if n <= 0:
        return 0
    first = (factor - phase) % factor
    if first >= n:
        return 0
    return 1 + (n - 1 - first) // factor


# ---------------------------------------------------------------- block kernels
@njit(**JIT)
def interp_inputs_needed(state, table, n_out):
    """Number of low-rate samples :func:`render_interpolate` consumes for the next ``n_out``
    outputs, given the state's current phase: ceil-count of phase-0 samples in the block."""
    return phase_count(state.idx[0], table.shape[0], n_out)


@njit(**JIT)
def decim_outputs_produced(state, table, n_in):
    """Number of low-rate samples :func:`render_decimate` writes for the next ``n_in`` inputs."""
    return phase_count(state.idx[0], table.shape[0], n_in)


@njit(**JIT)
def render_decimate(state, table, x, y_low, n):
    """Decimate ``x[:n]`` (full rate) into ``y_low`` (WRITES ``y_low[:k]``); return k.

    Same arithmetic as :func:`decimate_tick`, with phase and ring position held in locals.

    Parameters
    ----------
    state : DecimatorState
    table : float64 (factor, J)   from ``decimator_table``
    x : float64 (>= n,)           input at fs
    y_low : float64 (>= k,)       output at fs/factor, k = ``decim_outputs_produced``
    n : int                       samples of x to consume
    """
    factor = table.shape[0]
    nj = table.shape[1]
    size = factor * nj
    hist = state.hist
    phase = state.idx[0]
    pos = state.idx[1]
    k = 0
    for i in range(n):
        xi = x[i]
        hist[pos] = xi
        hist[pos + size] = xi
        if phase == 0:
            base = pos + 1
            y0 = 0.0
            y1 = 0.0
            for r in range(factor):
                b = base + r * nj
                j = 0
                while j + 2 <= nj:
                    y0 += table[r, j] * hist[b + j]
                    y1 += table[r, j + 1] * hist[b + j + 1]
                    j += 2
                if j < nj:
                    y0 += table[r, j] * hist[b + j]
            y_low[k] = y0 + y1
            k += 1
        pos += 1
        if pos == size:
            pos = 0
        phase += 1
        if phase == factor:
            phase = 0
    state.idx[0] = phase
    state.idx[1] = pos
    return k


@njit(**JIT)
def render_interpolate(state, table, x_low, out, n_out):
    """Interpolate into ``out[:n_out]`` (WRITES) reading ``x_low`` in order; return how many
    low-rate samples were consumed (= ``interp_inputs_needed`` before the call).

    Same arithmetic as :func:`interpolate_tick`, with phase and ring position in locals.

    Parameters
    ----------
    state : InterpolatorState
    table : float64 (factor, J)   polyphase table from ``interpolator_table``
    x_low : float64 (>= k,)       low-rate input (e.g. a sum of many sources)
    out : float64 (>= n_out,)     output at fs
    n_out : int
    """
    factor = table.shape[0]
    nj = table.shape[1]
    hist = state.hist
    r = state.idx[0]
    pos = state.idx[1]
    k = 0
    for i in range(n_out):
        if r == 0:
            u = x_low[k]
            k += 1
            hist[pos] = u
            hist[pos + nj] = u
            pos += 1
            if pos == nj:
                pos = 0
        z0 = 0.0
        z1 = 0.0
        j = 0
        while j + 2 <= nj:
            z0 += table[r, j] * hist[pos + j]
            z1 += table[r, j + 1] * hist[pos + j + 1]
            j += 2
        if j < nj:
            z0 += table[r, j] * hist[pos + j]
        out[i] = z0 + z1
        r += 1
        if r == factor:
            r = 0
    state.idx[0] = r
    state.idx[1] = pos
    return k
