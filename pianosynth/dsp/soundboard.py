"""Multirate soundboard kernel: low band at fs/8 + FDN high band (Bank et al. 2003 §5, Fig. 6).

Coefficients: :func:`pianosynth.design.soundboard.design_soundboard` (the block diagram, the
target and every number are documented there). This module only runs them::

    per sample n (x = summed string signal at fs):
      ↓8 decimator tick (phase 0 every 8th sample):
          y      = sum_k h[k] x[n - k]
          u      = sum_sections (b0 + b1 z^-1)/(1 + a1 z^-1 + a2 z^-2) y + FIR(y)    @ fs/8
          push u into the low-band interpolator, y into the complement interpolator
          (each pushed value adds its interpolator taps to the samples it reaches)
      low    = ↑8(u)[n]                     (taps int_scatter: the polyphase table)
      x_high = x[n - N] - ↑8(y)[n]          (residual above 2.2 kHz, time aligned)
      t      = k (x_high - q x_high[n-1]) + p t[n-1]                   (tone filter)
      s_l    = line_l[n - m_l];  a_l = b_l s_l + p_l a_l[n-1]          (absorption, Jot)
      v      = Hadamard(a)      (the 1/sqrt(8) is folded into b_l)
      w_l    = v_l + in_l t;    line_l <- w_l
      out[n] = g_low low + g_high (c_L . w[n] + e_L . w[n-d], c_R . w[n] + e_R . w[n-d])

The gains follow ``coeffs.gains`` through a one-pole lag (``coeffs.smooth``, 10 ms), so a
redesign with another level or balance does not click. Everything that runs (phases, ring
positions, filter states) is in :class:`SoundboardState`: output is identical for any block
size.

References
----------
B. Bank et al., EURASIP JASP 2003, §5 / Fig. 6; J.-M. Jot, A. Chaigne, AES 1991 (FDN with
absorption filters); D. Rocchesso, J. O. Smith, IEEE TSAP 1997.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .jit import JIT, JIT_INLINE, JIT_NO_RC, JIT_SUMS, njit

__all__ = ["SoundboardState", "make_soundboard_state", "reset_soundboard",
           "reset_soundboard_at", "render_soundboard"]


#: samples the kernel renders per pass (longer calls are split): the low band of a pass is
#: computed first, its interpolated samples accumulated ahead in ``acc_lo``/``acc_lp``
SUB_BLOCK = 512


class SoundboardState(NamedTuple):
    """Running state of the soundboard (allocated once, float64 unless noted)."""
    dec_hist: np.ndarray   #: (2*M*Jd,) decimator history (doubled ring)
    dec_idx: np.ndarray    #: (2,) int64 [phase, pos]
    acc_lo: np.ndarray     #: (SUB_BLOCK + M*Ji,) low band interpolated ahead (scatter sums)
    acc_lp: np.ndarray     #: (SUB_BLOCK + M*Ji,) complement interpolated ahead
    bank_w: np.ndarray     #: (2, nb) direct-form-II states: rows w[m-1], w[m-2]
    fir_hist: np.ndarray   #: (2*K,) low-rate FIR history (doubled ring)
    align: np.ndarray      #: (N,) alignment delay line, N = latency
    pos: np.ndarray        #: (2,) int64 [fir ring pos, align pos]
    tone_z: np.ndarray     #: (2,) [x_high[n-1], t[n-1]]
    fdn_buf: np.ndarray    #: (sum m_l,) all delay lines, line l at [off[l], off[l+1])
    fdn_pos: np.ndarray    #: (L,) int64 absolute read/write index of each line
    fdn_lp: np.ndarray     #: (L,) absorption filter outputs a_l[n-1]
    gain: np.ndarray       #: (2,) current (smoothed) [g_low, g_high]


def make_soundboard_state(coeffs) -> SoundboardState:
    """Zeroed state sized for ``coeffs`` (a SoundboardCoeffs); gains snap to their targets."""
    m, jd = coeffs.dec_table.shape
    ji = coeffs.int_table.shape[1]
    nl = coeffs.fdn_in.shape[0]
    if nl != 8:
        raise ValueError(f"the soundboard kernel runs an 8-line FDN, the design has {nl}")
    return SoundboardState(
        dec_hist=np.zeros(2 * m * jd), dec_idx=np.zeros(2, np.int64),
        acc_lo=np.zeros(SUB_BLOCK + m * ji), acc_lp=np.zeros(SUB_BLOCK + m * ji),
        bank_w=np.zeros((2, coeffs.bank_a.shape[0])),
        fir_hist=np.zeros(2 * coeffs.fir_rev.shape[0]),
        align=np.zeros(int(coeffs.latency[0])), pos=np.zeros(2, np.int64),
        tone_z=np.zeros(2), fdn_buf=np.zeros(int(coeffs.fdn_off[-1])),
        fdn_pos=np.array(coeffs.fdn_off[:-1], dtype=np.int64),
        fdn_lp=np.zeros(nl),
        gain=np.array(coeffs.gains, dtype=np.float64))


def reset_soundboard(state: SoundboardState) -> None:
    """Silence every signal state and restart the decimation phase at 0 (in place).

    The smoothed gains are kept; ring positions need not move (the buffers are zero).
    """
    reset_soundboard_at(state, 0)


@njit(**JIT_NO_RC)
def reset_soundboard_at(state, phase):
    """:func:`reset_soundboard` inside a kernel, the decimation phase set to ``phase`` (the
    caller passes t % 8 for sample t: where a soundboard that had run since sample 0 would
    be; with zero buffers only the phase matters, so the output does not depend on when the
    reset happened)."""
    state.dec_hist[:] = 0.0
    state.acc_lo[:] = 0.0
    state.acc_lp[:] = 0.0
    state.bank_w[:, :] = 0.0
    state.fir_hist[:] = 0.0
    state.align[:] = 0.0
    state.tone_z[:] = 0.0
    state.fdn_buf[:] = 0.0
    state.fdn_lp[:] = 0.0
    state.dec_idx[:] = 0
    state.pos[:] = 0
    state.dec_idx[0] = phase


@njit(**JIT_INLINE)
def _fdn_write(buf, k, tap, lo, hi, v, gin, t):
    """Line with read/write index ``k`` in buf[lo:hi]: its tap ``tap`` samples back, and
    the new sample v + gin t written at k. Returns (written, tap value, next k)."""
    kt = k - tap
    if kt < lo:
        kt += hi - lo
    wt = buf[kt]
    w = v + gin * t
    buf[k] = w
    k += 1
    if k == hi:
        k = lo
    return w, wt, k


@njit(**JIT_SUMS)
def render_soundboard(state, coeffs, x, out, n):
    """Render ``n`` stereo samples of soundboard radiation (WRITES ``out[:n, :]``).

    Parameters
    ----------
    state : SoundboardState
    coeffs : SoundboardCoeffs
    x : float64 (>= n,)
        Summed string (bridge) signal at fs.
    out : float64 (>= n, 2)
        Left/right pressure at fs; the model delays by ``coeffs.latency[0]`` samples.
    n : int
        Samples to render.

    Notes
    -----
    The difference equations are in the module docstring. Per pass of at most
    :data:`SUB_BLOCK` samples: first the low band of the whole pass (the decimator of
    :mod:`pianosynth.dsp.multirate`, H_low at fs/8 with its sections in one vector loop,
    and both interpolators *scattered*: each fs/8 value adds its taps to the ``M Ji``
    samples it reaches, ``acc_lo``/``acc_lp``, one contiguous multiply-add the compiler
    runs in SIMD lanes), then the high band sample by sample (its FDN is recursive at fs).
    Every output sample gets the same terms in the same order whatever the block size.
    Cost per output sample: L_dec/8 (one contiguous dot product) + 2 L_int/8 + (5 nb + 2 K)/8
    MACs of low band plus about 100 flops of FDN.
    """
    done = 0
    while done < n:
        m = min(n - done, SUB_BLOCK)
        _soundboard_pass(state, coeffs, x[done:done + m], out[done:done + m], m)
        done += m


@njit(**JIT_SUMS)
def _soundboard_pass(state, coeffs, x, out, n):
    """:func:`render_soundboard` for n <= SUB_BLOCK samples."""
    # ---- coefficients
    dec_t = coeffs.dec_table
    factor = dec_t.shape[0]
    njd = dec_t.shape[1]
    dsize = factor * njd
    dec_flat = dec_t.ravel()
    ba0 = coeffs.bank_at[0]
    ba1 = coeffs.bank_at[1]
    bb0 = coeffs.bank_bt[0]
    bb1 = coeffs.bank_bt[1]
    hs = coeffs.int_scatter
    nh = hs.shape[0]
    fir = coeffs.fir_rev
    nb = ba0.shape[0]
    nk = fir.shape[0]
    tk = coeffs.tone[0]
    tq = coeffs.tone[1]
    tp = coeffs.tone[2]
    off = coeffs.fdn_off
    fb = coeffs.fdn_b
    fp = coeffs.fdn_p
    fin = coeffs.fdn_in
    cl = coeffs.fdn_out[0]
    cr = coeffs.fdn_out[1]
    dtap = coeffs.fdn_tap
    el = coeffs.fdn_tap_out[0]
    er = coeffs.fdn_tap_out[1]
    g_low_t = coeffs.gains[0]
    g_high_t = coeffs.gains[1]
    sm = coeffs.smooth[0]
    # ---- state into locals
    dh = state.dec_hist
    acc_lo = state.acc_lo
    acc_lp = state.acc_lp
    bw1 = state.bank_w[0]
    bw2 = state.bank_w[1]
    fh = state.fir_hist
    al = state.align
    nal = al.shape[0]
    buf = state.fdn_buf
    fpos = state.fdn_pos
    lp = state.fdn_lp
    phase = state.dec_idx[0]
    dpos = state.dec_idx[1]
    fir_pos = state.pos[0]
    al_pos = state.pos[1]
    x1 = state.tone_z[0]
    t1 = state.tone_z[1]
    g_low = state.gain[0]
    g_high = state.gain[1]
    # the FDN's line positions and absorption states in locals (see the loop)
    q0 = fpos[0]
    q1 = fpos[1]
    q2 = fpos[2]
    q3 = fpos[3]
    q4 = fpos[4]
    q5 = fpos[5]
    q6 = fpos[6]
    q7 = fpos[7]
    s0 = lp[0]
    s1 = lp[1]
    s2 = lp[2]
    s3 = lp[3]
    s4 = lp[4]
    s5 = lp[5]
    s6 = lp[6]
    s7 = lp[7]

    # ---- low band of the pass: decimator (doubled ring, dot product at phase 0), H_low
    # at fs/8 (parallel sections, direct form II, + FIR), both interpolators scattered.
    # The vector loops index with unsigned integers: numba adds a negative-index
    # wraparound to every signed index it cannot prove >= 0, and with it LLVM turned the
    # dot product into gathers and the scatter into vscatterqpd (37 -> 31 ns a sample)
    for i in range(n):
        xi = x[i]
        dh[dpos] = xi
        dh[dpos + dsize] = xi
        if phase == 0:
            base = np.uint64(dpos + 1)  # dh[dpos+1 .. dpos+dsize] = oldest .. newest
            y = 0.0
            for k in range(dsize):       # the table's rows one after the other
                y += dec_flat[k] * dh[base + np.uint64(k)]
            u0 = 0.0
            u1 = 0.0
            for s in range(nb):
                w1 = bw1[s]
                w2 = bw2[s]
                w = y - ba0[s] * w1 - ba1[s] * w2
                u0 += bb0[s] * w
                u1 += bb1[s] * w1
                bw2[s] = w1
                bw1[s] = w
            fh[fir_pos] = y
            fh[fir_pos + nk] = y
            fbase = np.uint64(fir_pos + 1)
            for j in range(nk):
                u0 += fir[j] * fh[fbase + np.uint64(j)]
            fir_pos += 1
            if fir_pos == nk:
                fir_pos = 0
            u = u0 + u1
            # u (low band) and y (complement) reach the next nh samples
            ui = np.uint64(i)
            for d in range(nh):
                acc_lo[ui + np.uint64(d)] += u * hs[d]
                acc_lp[ui + np.uint64(d)] += y * hs[d]
        dpos += 1
        if dpos == dsize:
            dpos = 0
        phase += 1
        if phase == factor:
            phase = 0

    for i in range(n):
        xi = x[i]
        low = acc_lo[i]
        lpx = acc_lp[i]
        # ---- high band input: aligned residual, tone filter
        xd = al[al_pos]
        al[al_pos] = xi
        al_pos += 1
        if al_pos == nal:
            al_pos = 0
        xh = xd - lpx
        t = tk * (xh - tq * x1) + tp * t1
        x1 = xh
        t1 = t
        # ---- FDN (the design's 8 lines): read, absorb, Hadamard, write; positions,
        # absorption states and the Hadamard vector in registers, no store-then-load of
        # small arrays every sample (with them the same machine code ran at 67 to 170 ns
        # a sample, depending on where it landed)
        a0 = fb[0] * buf[q0] + fp[0] * s0
        a1 = fb[1] * buf[q1] + fp[1] * s1
        a2 = fb[2] * buf[q2] + fp[2] * s2
        a3 = fb[3] * buf[q3] + fp[3] * s3
        a4 = fb[4] * buf[q4] + fp[4] * s4
        a5 = fb[5] * buf[q5] + fp[5] * s5
        a6 = fb[6] * buf[q6] + fp[6] * s6
        a7 = fb[7] * buf[q7] + fp[7] * s7
        s0 = a0
        s1 = a1
        s2 = a2
        s3 = a3
        s4 = a4
        s5 = a5
        s6 = a6
        s7 = a7
        h0 = a0 + a1
        h1 = a0 - a1
        h2 = a2 + a3
        h3 = a2 - a3
        h4 = a4 + a5
        h5 = a4 - a5
        h6 = a6 + a7
        h7 = a6 - a7
        b0 = h0 + h2
        b2 = h0 - h2
        b1 = h1 + h3
        b3 = h1 - h3
        b4 = h4 + h6
        b6 = h4 - h6
        b5 = h5 + h7
        b7 = h5 - h7
        w0, e0, q0 = _fdn_write(buf, q0, dtap[0], off[0], off[1],
                               b0 + b4, fin[0], t)
        w1, e1, q1 = _fdn_write(buf, q1, dtap[1], off[1], off[2],
                               b1 + b5, fin[1], t)
        w2, e2, q2 = _fdn_write(buf, q2, dtap[2], off[2], off[3],
                               b2 + b6, fin[2], t)
        w3, e3, q3 = _fdn_write(buf, q3, dtap[3], off[3], off[4],
                               b3 + b7, fin[3], t)
        w4, e4, q4 = _fdn_write(buf, q4, dtap[4], off[4], off[5],
                               b0 - b4, fin[4], t)
        w5, e5, q5 = _fdn_write(buf, q5, dtap[5], off[5], off[6],
                               b1 - b5, fin[5], t)
        w6, e6, q6 = _fdn_write(buf, q6, dtap[6], off[6], off[7],
                               b2 - b6, fin[6], t)
        w7, e7, q7 = _fdn_write(buf, q7, dtap[7], off[7], off[8],
                               b3 - b7, fin[7], t)
        yl0 = (cl[0] * w0 + cl[1] * w1 + cl[2] * w2 + cl[3] * w3
               + cl[4] * w4 + cl[5] * w5 + cl[6] * w6 + cl[7] * w7)
        yr0 = (cr[0] * w0 + cr[1] * w1 + cr[2] * w2 + cr[3] * w3
               + cr[4] * w4 + cr[5] * w5 + cr[6] * w6 + cr[7] * w7)
        yl1 = (el[0] * e0 + el[1] * e1 + el[2] * e2 + el[3] * e3
               + el[4] * e4 + el[5] * e5 + el[6] * e6 + el[7] * e7)
        yr1 = (er[0] * e0 + er[1] * e1 + er[2] * e2 + er[3] * e3
               + er[4] * e4 + er[5] * e5 + er[6] * e6 + er[7] * e7)
        g_low += sm * (g_low_t - g_low)
        g_high += sm * (g_high_t - g_high)
        out[i, 0] = g_low * low + g_high * (yl0 + yl1)
        out[i, 1] = g_low * low + g_high * (yr0 + yr1)

    # the interpolated samples beyond this pass move to the front
    un = np.uint64(n)
    for d in range(nh):
        acc_lo[np.uint64(d)] = acc_lo[un + np.uint64(d)]
        acc_lp[np.uint64(d)] = acc_lp[un + np.uint64(d)]
    for d in range(n):
        acc_lo[np.uint64(nh) + np.uint64(d)] = 0.0
        acc_lp[np.uint64(nh) + np.uint64(d)] = 0.0
    fpos[0] = q0
    fpos[1] = q1
    fpos[2] = q2
    fpos[3] = q3
    fpos[4] = q4
    fpos[5] = q5
    fpos[6] = q6
    fpos[7] = q7
    lp[0] = s0
    lp[1] = s1
    lp[2] = s2
    lp[3] = s3
    lp[4] = s4
    lp[5] = s5
    lp[6] = s6
    lp[7] = s7
    state.dec_idx[0] = phase
    state.dec_idx[1] = dpos
    state.pos[0] = fir_pos
    state.pos[1] = al_pos
    state.tone_z[0] = x1
    state.tone_z[1] = t1
    state.gain[0] = g_low
    state.gain[1] = g_high
