"""Per-voice kernels: multirate hammer, two-delay-line digital waveguide, reflection filter
chain and the multirate resonator bank (Bank et al. 2003, §3-4, Fig. 3 and Fig. 5).

All state lives in preallocated arrays indexed by voice; the column layout of the per-voice
scalar arrays is given by the ``I_*`` (int64 ``ivars``) and ``F_*`` (float64 ``fvars``)
constants below. Kernels never design coefficients: they copy them from the key table at
note-on (:func:`start_voice`) and run.

Waveguide (Fig. 3, two delay lines)
----------------------------------
Velocity waves. The hammer at a fraction beta of the string from the nut splits the loop into
a *nut line* of ``nut_len`` = 2a samples (there and back to the rigid nut, reflection -1) and a
*bridge line* of ``bridge_len`` = 2b samples whose far end holds the reflection filter
H_r = -H_l H_d H_fd (loss eq. 8, dispersion allpass eq. 13-15, Thiran fine tuning). The wave
arriving at the bridge (``bridge_len // 2`` samples into the bridge line) is the voice output.
A hammer force F adds F / (2 Z) to both outgoing waves (Z: wave impedance of the struck
unison strings).

Hammer (§3.2, eq. 1-2)
---------------------
Lumped mass m on a felt spring F = K (y_h - y_s)^p running at 2 fs: the string's incoming wave
sum is upsampled by linear interpolation, the force is downsampled by averaging. In the default
mode the delay-free loop of eq. 4 (compression depends on the force through the string's
immediate response) is solved per sub-step by a monotone Newton iteration -- the K-method
idea of eq. 5 solved numerically instead of by a table -- so the hammer is bounded for any
velocity. Mode 1 is the straightforward single-rate scheme with a fictitious delay
(F(n) ~ F(n-1)); mode 2 the multirate scheme with the fictitious delay, as in the paper.
"""
from __future__ import annotations



import numpy as np

from .jit import JIT, JIT_INLINE, JIT_NO_RC, njit

# ---- voice states -------------------------------------------------------------------------
FREE = 0        # slot unused
HELD = 1        # key down (the hammer may still be in contact: "struck")
SUSTAINED = 2   # key up, held by the sustain pedal
DAMPED = 3      # key up, damper on the string
STEALING = 4    # being faded out to free the slot

# ---- ivars columns ------------------------------------------------------------------------
I_KEY = 0
I_STATE = 1
I_NUT_LEN = 2
I_BRIDGE_LEN = 3
I_N_SEC = 4
I_N_RES = 5
I_WIDX = 6
I_HAMMER_ON = 7
I_HAMMER_AGE = 8
I_DAMPED_KEY = 9     # 1 when the key has a damper
I_STRIKES = 10
I_SOST = 11          # 1 when the sostenuto pedal holds this voice's damper
I_RATE = 12          # the string runs at fs / I_RATE (1, 2 or 4; multirate strings, §4.2)
I_SYMP = 13          # 1: an unstruck string ringing in sympathy (driven through the bridge)
I_DORMANT = 14       # 1: a sympathetic string at exactly zero, skipped while its drive is zero
I_N_LOSS = 15        # loss correction biquads after the one-pole (0: none; §4.1)
I_MASK = 16          # delay-line index mask: this string uses nut/bridge[v, :I_MASK + 1]
I_DRIVE_DELAY = 17   # samples back a sympathetic string reads the drive (key table)
I_RES_RATE = 18      # the resonator bank runs at fs / I_RES_RATE (8; 4, 2, 1 for treble modes)
I_N_EQ = 19          # partial level filters on the output (0: none; design_partial_eq)
N_IVARS = 20

# ---- fvars columns ------------------------------------------------------------------------
F_G = 0
F_A1 = 1
F_GD = 2
F_A1D = 3
F_LOSS_Y1 = 4
F_ETA = 5
F_TH_X1 = 6
F_TH_Y1 = 7
F_DAMP = 8
F_DAMP_TARGET = 9
F_MASS = 10
F_K = 11
F_P = 12
F_TWOZ = 13
F_YH = 14
F_VH = 15
F_YS = 16
F_UPREV = 17
F_FPREV = 18
F_GAIN = 19
F_LEVEL = 20
F_FADE = 21
F_FADE_STEP = 22
F_RES_DAMP = 23       # resonator pole radius factor per low-rate sample when fully damped
F_DAMP_SPEED = 24     # damper speed factor from the key's release velocity (1 = 64)
F_KNOCK = 25          # hammer knock: force -> soundboard input gain (0 = off)
F_DRIVE_SEEN = 26     # sympathetic drive seen since the last 64-sample check (0/1)
#: loss correction (higher-order loss filter, Bank et al. §4.1): MAX_LOSS_SECTIONS biquads
#: (b0, b1, b2, a1, a2) from F_LC, their transposed direct form II states (s1, s2) from F_LS
#: (loss_order = 1 + sections, <= 9: the bass T60 lists jump by 2x from partial to partial,
#: which 4 cuts could not follow); design.string sizes its designs from this
MAX_LOSS_CUTS = 8
#: then up to MAX_PLACEMENT_NOTCHES narrow cuts between partials that place a fitted string's
#: partials where the dispersion allpass cannot (design.string.design_placement_notches)
MAX_PLACEMENT_NOTCHES = 20
MAX_LOSS_SECTIONS = MAX_LOSS_CUTS + MAX_PLACEMENT_NOTCHES
F_LC = 27
F_LS = F_LC + 5 * MAX_LOSS_SECTIONS
#: partial level filters on the string's output (a fitted key's radiated partial levels,
#: design.string.design_partial_eq): MAX_PARTIAL_EQ biquads from F_EQC, states from F_EQS
MAX_PARTIAL_EQ = 20
F_EQC = F_LS + 2 * MAX_LOSS_SECTIONS
F_EQS = F_EQC + 5 * MAX_PARTIAL_EQ
N_FVARS = F_EQS + 2 * MAX_PARTIAL_EQ

HAMMER_IMPLICIT_MULTIRATE = 0
HAMMER_FICTITIOUS_SINGLE_RATE = 1
HAMMER_FICTITIOUS_MULTIRATE = 2

#: the damper leaves the string this many times faster than it lands (the pedal lifts it
#: at once; it lands through the felt's compression): lift time constant 20 ms / 6.7 = 3 ms
DAMPER_LIFT_SPEED = 6.7

#: the hammer is simulated for at most this long after a strike (s)
HAMMER_WINDOW_S = 0.03


@njit(**JIT_INLINE)
def felt_force_implicit(p_lin, c, k, p):
    """Solve F = K max(p_lin - c F, 0)^p for F >= 0 (eq. 2 with eq. 4's delay-free loop).

    G(F) = F - K (p_lin - c F)^p is increasing and concave on [0, p_lin / c], so Newton from
    F = 0 converges monotonically from below.
    """
    if p_lin <= 0.0:
        return 0.0
    f = 0.0
    hi = p_lin / c
    for _ in range(60):
        dy = p_lin - c * f
        if dy <= 0.0:
            return f
        t = k * dy ** p
        gval = f - t
        gd = 1.0 + k * p * dy ** (p - 1.0) * c
        step = -gval / gd
        f += step
        if f > hi:
            f = hi
        if abs(step) <= 1e-13 * (f + 1e-300):
            break
    return f


@njit(**JIT_INLINE)
def hammer_tick(fv, v, u_in, dt, mode):
    """One string-rate sample of the hammer for voice ``v``; returns the force (N).

    ``u_in`` is the sum of the incoming velocity waves at the strike point (m/s).
    """
    m = fv[v, F_MASS]
    k = fv[v, F_K]
    p = fv[v, F_P]
    twoz = fv[v, F_TWOZ]
    u0 = fv[v, F_UPREV]
    fv[v, F_UPREV] = u_in
    if mode == HAMMER_FICTITIOUS_SINGLE_RATE:
        f_prev = fv[v, F_FPREV]
        fv[v, F_VH] -= f_prev / m * dt
        fv[v, F_YH] += fv[v, F_VH] * dt
        fv[v, F_YS] += (u_in + f_prev / twoz) * dt
        dy = fv[v, F_YH] - fv[v, F_YS]
        f = k * dy ** p if dy > 0.0 else 0.0
        fv[v, F_FPREV] = f
        return f
    h = 0.5 * dt
    fsum = 0.0
    for s in range(2):
        u = u0 + (s + 1) * 0.5 * (u_in - u0)     # linear interpolation up to 2 fs
        if mode == HAMMER_FICTITIOUS_MULTIRATE:
            f_prev = fv[v, F_FPREV]
            fv[v, F_VH] -= f_prev / m * h
            fv[v, F_YH] += fv[v, F_VH] * h
            fv[v, F_YS] += (u + f_prev / twoz) * h
            dy = fv[v, F_YH] - fv[v, F_YS]
            f = k * dy ** p if dy > 0.0 else 0.0
            fv[v, F_FPREV] = f
        else:
            p_lin = fv[v, F_YH] + fv[v, F_VH] * h - fv[v, F_YS] - u * h
            f = felt_force_implicit(p_lin, h * h / m + h / twoz, k, p)
            fv[v, F_VH] -= f / m * h
            fv[v, F_YH] += fv[v, F_VH] * h
            fv[v, F_YS] += (u + f / twoz) * h
        fsum += f
    return 0.5 * fsum                              # downsampling by averaging


@njit(**JIT_INLINE)
def fv_biquads(fv, v, x, c0, s0, n):
    """``x`` through a cascade of ``n`` biquads of voice ``v`` (transposed direct form II):
    coefficients (b0, b1, b2, a1, a2) at ``fv[v, c0 + 5 s]``, states (s1, s2) at
    ``fv[v, s0 + 2 s]``, updated. Returns the output sample."""
    for s in range(n):
        c = c0 + 5 * s
        st = s0 + 2 * s
        out = fv[v, c] * x + fv[v, st]
        fv[v, st] = fv[v, c + 1] * x - fv[v, c + 3] * out + fv[v, st + 1]
        fv[v, st + 1] = fv[v, c + 2] * x - fv[v, c + 4] * out
        x = out
    return x


@njit(**JIT_INLINE)
def voice_mask(iv, v, nut):
    """Index mask of voice ``v``'s delay lines: a power of two minus one that holds the
    string's longest delay (set from the key table), so a string uses only the start of its
    rows (a string at fs/8 a few hundred samples, not the whole row: its lines stay in
    cache; the rows are a little longer than a power of two, see ``DELAY_ROW_PAD`` in
    engine/core.py, so the voices' starts fall on different cache sets); the whole row when
    unset (0)."""
    m = iv[v, I_MASK]
    if m <= 0 or m >= nut.shape[1]:
        p = 1                  # unset: the largest power of two that fits the row
        while 2 * p <= nut.shape[1]:
            p *= 2
        return p - 1
    return m


@njit(**JIT_INLINE)
def rate_constants(r, damper_moving, damp_alpha, damp_speed, level_release):
    """Per-sample constants of the fs-rate design compounded over the r samples a string at
    fs / r steps (r a power of two): ``(damp_alpha, lift_alpha, level_release)``. The level
    release by squarings; the damper's (a pow each) only while it moves, else unused and
    returned as given."""
    lift_alpha = damp_alpha
    if damper_moving:
        lift_alpha = 1.0 - (1.0 - damp_alpha) ** (r * DAMPER_LIFT_SPEED)
        damp_alpha = 1.0 - (1.0 - damp_alpha) ** (r * damp_speed)
    k = 1
    while k < r:
        level_release *= level_release
        k *= 2
    return damp_alpha, lift_alpha, level_release


@njit(**JIT_INLINE)
def struck_fast_path(iv, fv, v):
    """Whether :func:`render_struck_voice` may render voice ``v`` now: a struck string in
    free vibration (hammer gone, not a sympathetic string), its damper at rest, no fade,
    no loss correction, no partial level filters and at most four dispersion sections.
    None of these changes during a segment (only events move them)."""
    return (iv[v, I_HAMMER_ON] == 0 and iv[v, I_SYMP] == 0
            and fv[v, F_DAMP] == fv[v, F_DAMP_TARGET] and fv[v, F_FADE_STEP] == 0.0
            and iv[v, I_N_LOSS] == 0 and iv[v, I_N_EQ] == 0 and iv[v, I_N_SEC] <= 4)


@njit(**JIT_NO_RC)
def render_struck_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, n0, n1, t0, mix,
                        resbuf, level_release, free_level, res_factor, drive):
    """:func:`render_voice` for a voice that :func:`struck_fast_path` accepts: the same
    operations in the same order (Bank et al. §4: loss eq. 8, dispersion, Thiran; the
    resonator bank eq. 16; the free check every 64 samples of the clock), bit for bit,
    without the branches such a string never takes, and every state in a register: a
    section's input history is the previous section's output history, so the cascade
    keeps one pair per section (stored that way back into ``dstate``). Indices are
    unsigned (masked into range: numba then leaves out its negative-index wraparound).
    A separate function: inside :func:`render_voice` the compiler spilled these states
    to the stack (6.9 -> 4.1 ns a string-sample for C4 at 48 kHz)."""
    um = np.uint64(voice_mask(iv, v, nut))
    nl = iv[v, I_NUT_LEN]
    bl = iv[v, I_BRIDGE_LEN]
    tap = bl // 2
    nsec = iv[v, I_N_SEC]
    nres = iv[v, I_N_RES]
    r = iv[v, I_RATE]
    w = iv[v, I_WIDX]
    nrow = nut[v]
    brow = bridge[v]
    dmask = np.uint64(drive.shape[0] - 1)
    level_release = rate_constants(r, False, 0.0, 1.0, level_release)[2]
    damp = fv[v, F_DAMP]
    g = fv[v, F_G] + damp * (fv[v, F_GD] - fv[v, F_G])
    a1 = fv[v, F_A1] + damp * (fv[v, F_A1D] - fv[v, F_A1])
    gl = g * (1.0 + a1)
    ly1 = fv[v, F_LOSS_Y1]
    eta = fv[v, F_ETA]
    thx1 = fv[v, F_TH_X1]
    thy1 = fv[v, F_TH_Y1]
    gain = fv[v, F_GAIN] * fv[v, F_TWOZ]
    level = fv[v, F_LEVEL]
    fade = fv[v, F_FADE]
    gres = fv[v, F_GAIN]
    rad = 1.0 - damp * (1.0 - fv[v, F_RES_DAMP])
    rad2 = rad * rad
    c1a = dsos[v, 0, 0] if nsec > 0 else 0.0
    c2a = dsos[v, 0, 1] if nsec > 0 else 0.0
    c1b = dsos[v, 1, 0] if nsec > 1 else 0.0
    c2b = dsos[v, 1, 1] if nsec > 1 else 0.0
    c1c = dsos[v, 2, 0] if nsec > 2 else 0.0
    c2c = dsos[v, 2, 1] if nsec > 2 else 0.0
    c1d = dsos[v, 3, 0] if nsec > 3 else 0.0
    c2d = dsos[v, 3, 1] if nsec > 3 else 0.0
    xa1 = dstate[v, 0, 0]
    xa2 = dstate[v, 0, 1]
    ya1 = dstate[v, 0, 2]
    ya2 = dstate[v, 0, 3]
    xb1 = dstate[v, 1, 0]
    xb2 = dstate[v, 1, 1]
    yb1 = dstate[v, 1, 2]
    yb2 = dstate[v, 1, 3]
    yc1 = dstate[v, 2, 2] if nsec > 2 else 0.0
    yc2 = dstate[v, 2, 3] if nsec > 2 else 0.0
    yd1 = dstate[v, 3, 2] if nsec > 3 else 0.0
    yd2 = dstate[v, 3, 3] if nsec > 3 else 0.0
    freed = False
    i = n0 + ((r - (t0 + n0) % r) % r)
    while i < n1:
        ic = ((t0 + i + 63) & ~63) - t0      # the next free check
        stop = min(ic + 1, n1)
        for j in range(i, stop, r):
            t = t0 + j
            u_nb = -nrow[np.uint64(w - nl) & um]
            x = brow[np.uint64(w - bl) & um]
            ly1 = gl * x - a1 * ly1                      # loss, eq. 8
            y0 = ly1
            y = y0
            if nsec > 0:
                oa = c2a * y0 + c1a * xa1 + xa2 - c1a * ya1 - c2a * ya2
                y = oa
                if nsec > 1:
                    ob = c2b * oa + c1b * xb1 + xb2 - c1b * yb1 - c2b * yb2
                    y = ob
                    if nsec > 2:     # its input history: (yb1, yb2) before their shift
                        oc = c2c * ob + c1c * yb1 + yb2 - c1c * yc1 - c2c * yc2
                        y = oc
                        if nsec > 3:
                            od = c2d * oc + c1d * yc1 + yc2 - c1d * yd1 - c2d * yd2
                            y = od
                            yd2 = yd1
                            yd1 = od
                        yc2 = yc1
                        yc1 = oc
                    xb2 = xb1
                    xb1 = oa
                    yb2 = yb1
                    yb1 = ob
                xa2 = xa1
                xa1 = y0
                ya2 = ya1
                ya1 = oa
            th = eta * y + thx1 - eta * thy1             # Thiran fine tuning
            thx1 = y
            thy1 = th
            u_bn = -th
            nrow[np.uint64(w) & um] = u_bn + 0.0         # (+ 0.0: no hammer force)
            brow[np.uint64(w) & um] = u_nb + 0.0
            out_s = brow[np.uint64(w - tap) & um] * gain
            w += 1
            if (t & (res_factor - 1)) == 0:              # resonator bank, eq. 16
                acc = 0.0
                if rstate[v, 0, 2] == 0.0:               # free decay
                    for k in range(nres):
                        s0 = rstate[v, k, 0]
                        yr = 0.0 - rad * rcoef[v, k, 2] * s0 \
                            - rad2 * rcoef[v, k, 3] * rstate[v, k, 1]
                        rstate[v, k, 1] = s0
                        rstate[v, k, 0] = yr
                        acc += yr
                else:                                    # the last force leaves the input
                    for k in range(nres):
                        yr = rcoef[v, k, 0] * 0.0 + rcoef[v, k, 1] * rstate[v, k, 2] \
                            - rad * rcoef[v, k, 2] * rstate[v, k, 0] \
                            - rad2 * rcoef[v, k, 3] * rstate[v, k, 1]
                        rstate[v, k, 1] = rstate[v, k, 0]
                        rstate[v, k, 0] = yr
                        rstate[v, k, 2] = 0.0
                        acc += yr
                acc *= gres
                resbuf[np.uint64(j)] += acc * fade
                a = abs(acc)
                if a > level:
                    level = a
            out_s *= fade
            if not (abs(out_s) < 1e6):      # a non-finite voice is silenced and freed
                iv[v, I_STATE] = FREE
                iv[v, I_HAMMER_ON] = 0
                freed = True
                break
            mix[np.uint64(j)] += out_s
            drive[np.uint64(t) & dmask] += out_s
            a = abs(out_s)
            level = level * level_release
            if a > level:
                level = a
        if freed or stop <= ic:
            break           # freed, or the segment ends before the check
        if level < free_level:                           # silent: freed
            iv[v, I_STATE] = FREE
            break
        i = ic + r
    iv[v, I_WIDX] = w
    fv[v, F_LEVEL] = level
    fv[v, F_LOSS_Y1] = ly1
    fv[v, F_TH_X1] = thx1
    fv[v, F_TH_Y1] = thy1
    dstate[v, 0, 0] = xa1
    dstate[v, 0, 1] = xa2
    dstate[v, 0, 2] = ya1
    dstate[v, 0, 3] = ya2
    dstate[v, 1, 0] = xb1
    dstate[v, 1, 1] = xb2
    dstate[v, 1, 2] = yb1
    dstate[v, 1, 3] = yb2
    if nsec > 2:
        dstate[v, 2, 0] = yb1
        dstate[v, 2, 1] = yb2
        dstate[v, 2, 2] = yc1
        dstate[v, 2, 3] = yc2
    if nsec > 3:
        dstate[v, 3, 0] = yc1
        dstate[v, 3, 1] = yc2
        dstate[v, 3, 2] = yd1
        dstate[v, 3, 3] = yd2


@njit(**JIT_NO_RC)
def render_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, n0, n1, t0, mix, resbuf,
                 fs, hammer_mode, damp_alpha, level_release, free_level, res_factor,
                 trace, trace_info, trace_voice, drive, drive_in, drive_delay, coupling):
    """Render voice ``v`` for block samples [n0, n1), adding into ``mix`` and ``resbuf``.

    ``t0`` is the global sample index of block sample 0 (resonator decimation phase and
    voice-freeing checks are aligned to it, so output is identical for any block size).
    A string running at fs / r (``iv[v, I_RATE]`` = r, Bank et al. §4.2: the lowest octaves
    at half rate) computes only the samples with t % r == 0 and writes them zero-stuffed into
    ``mix`` (the caller picks the buffer of that rate and interpolates the sum once).

    Sympathetic resonance (§4.3, strings coupled through a common bridge, one way): a struck
    string adds its bridge signal to the ring ``drive`` at t; an unstruck undamped string
    (``I_SYMP``) receives ``coupling * drive_in[t - drive_delay]`` as a wave leaving the
    bridge (``drive_in``: the summed drive of all strings; it may be ``drive`` itself).
    The delay (>= any block; whole periods of the string, ``I_DRIVE_DELAY``) keeps the
    output independent of the block size, and the one-way path cannot become unstable.
    ``resbuf`` receives the resonator bank output on samples where t % res_factor == 0
    (a zero-stuffed fs-rate signal, interpolated once for all voices by the caller).
    """
    mask = voice_mask(iv, v, nut)
    nl = iv[v, I_NUT_LEN]
    bl = iv[v, I_BRIDGE_LEN]
    tap = bl // 2
    nsec = iv[v, I_N_SEC]
    nres = iv[v, I_N_RES]
    nloss = iv[v, I_N_LOSS]
    neq = iv[v, I_N_EQ]
    w = iv[v, I_WIDX]
    r = iv[v, I_RATE]
    dt = r / fs
    damp = fv[v, F_DAMP]
    damp_t = fv[v, F_DAMP_TARGET]
    damp_alpha, lift_alpha, level_release = rate_constants(
        r, damp != damp_t, damp_alpha, fv[v, F_DAMP_SPEED], level_release)
    g = fv[v, F_G] + damp * (fv[v, F_GD] - fv[v, F_G])
    a1 = fv[v, F_A1] + damp * (fv[v, F_A1D] - fv[v, F_A1])
    ly1 = fv[v, F_LOSS_Y1]
    eta = fv[v, F_ETA]
    thx1 = fv[v, F_TH_X1]
    thy1 = fv[v, F_TH_Y1]
    gain = fv[v, F_GAIN] * fv[v, F_TWOZ]
    level = fv[v, F_LEVEL]
    fade = fv[v, F_FADE]
    fade_step = fv[v, F_FADE_STEP] * r
    tracing = trace_voice == v
    symp = iv[v, I_SYMP] != 0
    dq = fv[v, F_DRIVE_SEEN]
    dmask = drive.shape[0] - 1
    cpl = coupling * r
    hammer_on = iv[v, I_HAMMER_ON] != 0
    c1a = dsos[v, 0, 0] if nsec > 0 else 0.0
    c2a = dsos[v, 0, 1] if nsec > 0 else 0.0
    c1b = dsos[v, 1, 0] if nsec > 1 else 0.0
    c2b = dsos[v, 1, 1] if nsec > 1 else 0.0
    xa1 = dstate[v, 0, 0]
    xa2 = dstate[v, 0, 1]
    ya1 = dstate[v, 0, 2]
    ya2 = dstate[v, 0, 3]
    xb1 = dstate[v, 1, 0]
    xb2 = dstate[v, 1, 1]
    yb1 = dstate[v, 1, 2]
    yb2 = dstate[v, 1, 3]
    start = n0 + ((r - (t0 + n0) % r) % r)
    for i in range(start, n1, r):
        t = t0 + i
        # damper: crossfade the loss filter toward its damped design (one-pole smoothing)
        if damp != damp_t:
            damp += (damp_t - damp) * (damp_alpha if damp_t > damp else lift_alpha)
            if abs(damp - damp_t) < 1e-9:
                damp = damp_t
            g = fv[v, F_G] + damp * (fv[v, F_GD] - fv[v, F_G])
            a1 = fv[v, F_A1] + damp * (fv[v, F_A1D] - fv[v, F_A1])
        # waves arriving at the hammer
        u_nb = -nut[v, (w - nl) & mask]                  # from the nut (reflection -1)
        x = bridge[v, (w - bl) & mask]                   # back from the bridge end
        # reflection filter chain H_r = -H_l H_d H_fd
        ly1 = g * (1.0 + a1) * x - a1 * ly1              # loss, eq. 8
        y = ly1
        if nloss > 0:
            # loss correction (peaking cuts, |H| <= 1), faded out as the damper lands:
            # (1 - damp) H_c + damp keeps |.| <= 1 at every frequency
            yc = fv_biquads(fv, v, y, F_LC, F_LS, nloss)
            y = yc + damp * (y - yc)
        # dispersion allpass biquads: the first two (all a treble string has) with their
        # states in registers, the rest through memory
        if nsec > 0:
            out = c2a * y + c1a * xa1 + xa2 - c1a * ya1 - c2a * ya2
            xa2 = xa1
            xa1 = y
            ya2 = ya1
            ya1 = out
            y = out
            if nsec > 1:
                out = c2b * y + c1b * xb1 + xb2 - c1b * yb1 - c2b * yb2
                xb2 = xb1
                xb1 = y
                yb2 = yb1
                yb1 = out
                y = out
                for s in range(2, nsec):
                    c1 = dsos[v, s, 0]
                    c2 = dsos[v, s, 1]
                    out = c2 * y + c1 * dstate[v, s, 0] + dstate[v, s, 1] \
                        - c1 * dstate[v, s, 2] - c2 * dstate[v, s, 3]
                    dstate[v, s, 1] = dstate[v, s, 0]
                    dstate[v, s, 0] = y
                    dstate[v, s, 3] = dstate[v, s, 2]
                    dstate[v, s, 2] = out
                    y = out
        th = eta * y + thx1 - eta * thy1                 # Thiran fine tuning
        thx1 = y
        thy1 = th
        u_bn = -th
        if symp:
            dr = drive_in[(t - drive_delay) & dmask]
            if dr != 0.0:
                iv[v, I_DORMANT] = 0
                dq = 1.0
            u_bn += cpl * dr
        # hammer
        f = 0.0
        winj = 0.0
        if hammer_on:
            f = hammer_tick(fv, v, u_nb + u_bn, dt, hammer_mode)
            age = iv[v, I_HAMMER_AGE] + 1
            iv[v, I_HAMMER_AGE] = age
            if age > HAMMER_WINDOW_S * fs:
                iv[v, I_HAMMER_ON] = 0
                hammer_on = False
            if tracing:        # held for r samples: the trace is always at fs
                for q in range(r):
                    j = trace_info[0]
                    if j < trace.shape[0]:
                        trace[j] = f
                        trace_info[0] = j + 1
            if f != 0.0:
                winj = f / fv[v, F_TWOZ]
                # hammer knock: the impact reaches the soundboard through the action and
                # frame (attacks should not read as plucks); a force pulse of about 1 ms
                mix[i] += fv[v, F_KNOCK] * f * fade
        nut[v, w & mask] = u_bn + winj
        bridge[v, w & mask] = u_nb + winj
        out_s = bridge[v, (w - tap) & mask] * gain       # wave arriving at the bridge -> force
        if neq > 0:
            # partial levels as radiated (peaking filters at a fitted key's partials; outside
            # the loop, so they set levels and leave the decays and the tuning alone)
            out_s = fv_biquads(fv, v, out_s, F_EQC, F_EQS, neq)
        w += 1
        # resonator bank at fs / res_factor (Fig. 5, eq. 16), no anti-alias filter (§4.3)
        if (t & (res_factor - 1)) == 0:     # res_factor is a power of two
            acc = 0.0
            # the damper also damps the second modes: pole radius scaled by rad (p -> rad p)
            rad = 1.0 - damp * (1.0 - fv[v, F_RES_DAMP])
            rad2 = rad * rad
            if f == 0.0 and rstate[v, 0, 2] == 0.0:
                # free decay (the hammer has left; rstate[., ., 2], the previous force, is
                # the same for every k): the input terms are exactly zero, the same sums
                for k in range(nres):
                    s0 = rstate[v, k, 0]
                    yr = 0.0 - rad * rcoef[v, k, 2] * s0 - rad2 * rcoef[v, k, 3] * rstate[v, k, 1]
                    rstate[v, k, 1] = s0
                    rstate[v, k, 0] = yr
                    acc += yr
            else:
                for k in range(nres):
                    yr = rcoef[v, k, 0] * f + rcoef[v, k, 1] * rstate[v, k, 2] \
                        - rad * rcoef[v, k, 2] * rstate[v, k, 0] \
                        - rad2 * rcoef[v, k, 3] * rstate[v, k, 1]
                    rstate[v, k, 1] = rstate[v, k, 0]
                    rstate[v, k, 0] = yr
                    rstate[v, k, 2] = f
                    acc += yr
            acc *= fv[v, F_GAIN]
            out_s_res = acc * fade
            resbuf[i] += out_s_res
            a = abs(acc)
            if a > level:
                level = a
        out_s *= fade
        if not (abs(out_s) < 1e6):          # a non-finite voice is silenced and freed
            iv[v, I_STATE] = FREE
            iv[v, I_HAMMER_ON] = 0
            break
        mix[i] += out_s
        if not symp:
            drive[t & dmask] += out_s
        a = abs(out_s)
        level = level * level_release
        if a > level:
            level = a
        if fade_step != 0.0:
            fade -= fade_step
            if fade <= 0.0:
                fade = 0.0
                iv[v, I_STATE] = FREE
                break
        if (t & 63) == 0 and level < free_level and not hammer_on:
            if not symp or damp_t >= 0.99 or iv[v, I_SYMP] == 2:
                iv[v, I_STATE] = FREE
                break
            if dq == 0.0 and iv[v, I_DORMANT] == 0:
                # a silent sympathetic string with no drive for 64 samples: set it to
                # exactly zero so the block loop may skip it until its drive returns
                # (rendering zero state with zero input gives exactly zero: no change)
                nut[v, :mask + 1] = 0.0
                bridge[v, :mask + 1] = 0.0
                dstate[v, :, :] = 0.0
                rstate[v, :, :] = 0.0
                for s in range(2 * MAX_LOSS_SECTIONS):
                    fv[v, F_LS + s] = 0.0
                for s in range(2 * MAX_PARTIAL_EQ):
                    fv[v, F_EQS + s] = 0.0
                xa1 = xa2 = ya1 = ya2 = 0.0
                xb1 = xb2 = yb1 = yb2 = 0.0
                ly1 = 0.0
                thx1 = 0.0
                thy1 = 0.0
                level = 0.0
                iv[v, I_DORMANT] = 1
            dq = 0.0
    dstate[v, 0, 0] = xa1
    dstate[v, 0, 1] = xa2
    dstate[v, 0, 2] = ya1
    dstate[v, 0, 3] = ya2
    dstate[v, 1, 0] = xb1
    dstate[v, 1, 1] = xb2
    dstate[v, 1, 2] = yb1
    dstate[v, 1, 3] = yb2
    iv[v, I_WIDX] = w
    fv[v, F_DRIVE_SEEN] = dq
    fv[v, F_LOSS_Y1] = ly1
    fv[v, F_TH_X1] = thx1
    fv[v, F_TH_Y1] = thy1
    fv[v, F_DAMP] = damp
    fv[v, F_LEVEL] = level
    fv[v, F_FADE] = fade


@njit(**JIT_INLINE)
def symp_steady(fv, v):
    """Whether :func:`render_symp_steady` may render sympathetic string ``v`` now: its
    damper at rest and no fade (neither changes during a segment: only events move them)."""
    return fv[v, F_DAMP] == fv[v, F_DAMP_TARGET] and fv[v, F_FADE_STEP] == 0.0


@njit(**JIT_NO_RC)
def render_symp_steady(iv, fv, nut, bridge, dsos, dstate, v, n0, n1, t0, mix, level_release,
                       free_level, drive, drive_delay, coupling):
    """:func:`render_symp_voice` for a string that :func:`symp_steady` accepts: the same
    operations in the same order, bit for bit, without the damper's and the fade's
    branches, in a function small enough that the compiler keeps every state in a
    register (the tight loop inside :func:`render_symp_voice` ran at 4.6 ns a
    string-sample). Indices are unsigned (masked into range: numba then leaves out its
    negative-index wraparound)."""
    mask = voice_mask(iv, v, nut)
    um = np.uint64(mask)
    nl = iv[v, I_NUT_LEN]
    bl = iv[v, I_BRIDGE_LEN]
    tap = bl // 2
    nsec = iv[v, I_N_SEC]
    w = iv[v, I_WIDX]
    r = iv[v, I_RATE]
    level_release = rate_constants(r, False, 0.0, 1.0, level_release)[2]
    damp = fv[v, F_DAMP]
    damp_t = fv[v, F_DAMP_TARGET]
    g = fv[v, F_G] + damp * (fv[v, F_GD] - fv[v, F_G])
    a1 = fv[v, F_A1] + damp * (fv[v, F_A1D] - fv[v, F_A1])
    gl = g * (1.0 + a1)                 # the one-pole's numerator, as in eq. 8
    ly1 = fv[v, F_LOSS_Y1]
    eta = fv[v, F_ETA]
    thx1 = fv[v, F_TH_X1]
    thy1 = fv[v, F_TH_Y1]
    gain = fv[v, F_GAIN] * fv[v, F_TWOZ]
    level = fv[v, F_LEVEL]
    fade = fv[v, F_FADE]
    dq = fv[v, F_DRIVE_SEEN]
    dmask = np.uint64(drive.shape[0] - 1)
    cpl = coupling * r
    c1a = dsos[v, 0, 0] if nsec > 0 else 0.0
    c2a = dsos[v, 0, 1] if nsec > 0 else 0.0
    c1b = dsos[v, 1, 0] if nsec > 1 else 0.0
    c2b = dsos[v, 1, 1] if nsec > 1 else 0.0
    xa1 = dstate[v, 0, 0]
    xa2 = dstate[v, 0, 1]
    ya1 = dstate[v, 0, 2]
    ya2 = dstate[v, 0, 3]
    xb1 = dstate[v, 1, 0]
    xb2 = dstate[v, 1, 1]
    yb1 = dstate[v, 1, 2]
    yb2 = dstate[v, 1, 3]
    nrow = nut[v]
    brow = bridge[v]
    symp_mode = iv[v, I_SYMP]
    dormant = iv[v, I_DORMANT]
    freed = False
    i = n0 + ((r - (t0 + n0) % r) % r)
    while i < n1:
        ic = ((t0 + i + 63) & ~63) - t0      # the next 64-sample check
        stop = min(ic + 1, n1)
        for j in range(i, stop, r):
            u_nb = -nrow[np.uint64(w - nl) & um]
            x = brow[np.uint64(w - bl) & um]
            ly1 = gl * x - a1 * ly1                      # loss, eq. 8
            y = ly1
            if nsec > 0:
                out = c2a * y + c1a * xa1 + xa2 - c1a * ya1 - c2a * ya2
                xa2 = xa1
                xa1 = y
                ya2 = ya1
                ya1 = out
                y = out
                if nsec > 1:
                    out = c2b * y + c1b * xb1 + xb2 - c1b * yb1 - c2b * yb2
                    xb2 = xb1
                    xb1 = y
                    yb2 = yb1
                    yb1 = out
                    y = out
            th = eta * y + thx1 - eta * thy1             # Thiran fine tuning
            thx1 = y
            thy1 = th
            u_bn = -th
            dr = drive[np.uint64(t0 + j - drive_delay) & dmask]
            if dr != 0.0:
                dormant = 0
                dq = 1.0
                u_bn += cpl * dr
            nrow[np.uint64(w) & um] = u_bn
            brow[np.uint64(w) & um] = u_nb
            out_s = brow[np.uint64(w - tap) & um] * gain * fade
            w += 1
            if not (abs(out_s) < 1e6):
                freed = True
                break
            mix[np.uint64(j)] += out_s
            a = abs(out_s)
            level = level * level_release
            if a > level:
                level = a
        if freed or stop <= ic:
            break           # freed, or the segment ends before the check
        if level < free_level:                           # the check (t % 64 == 0)
            if damp_t >= 0.99 or symp_mode == 2:
                freed = True
                break
            if dq == 0.0 and dormant == 0:
                nrow[:mask + 1] = 0.0
                brow[:mask + 1] = 0.0
                ly1 = 0.0
                thx1 = 0.0
                thy1 = 0.0
                xa1 = xa2 = ya1 = ya2 = 0.0
                xb1 = xb2 = yb1 = yb2 = 0.0
                level = 0.0
                dormant = 1
            dq = 0.0
        i = ic + r
    iv[v, I_DORMANT] = dormant
    if freed:
        iv[v, I_STATE] = FREE
    dstate[v, 0, 0] = xa1
    dstate[v, 0, 1] = xa2
    dstate[v, 0, 2] = ya1
    dstate[v, 0, 3] = ya2
    dstate[v, 1, 0] = xb1
    dstate[v, 1, 1] = xb2
    dstate[v, 1, 2] = yb1
    dstate[v, 1, 3] = yb2
    iv[v, I_WIDX] = w
    fv[v, F_DRIVE_SEEN] = dq
    fv[v, F_LOSS_Y1] = ly1
    fv[v, F_TH_X1] = thx1
    fv[v, F_TH_Y1] = thy1
    fv[v, F_LEVEL] = level


@njit(**JIT_NO_RC)
def render_symp_voice(iv, fv, nut, bridge, dsos, dstate, v, n0, n1, t0, mix, fs, damp_alpha,
                      level_release, free_level, drive, drive_delay, coupling):
    """Render an unstruck sympathetic string (``I_SYMP``, hammer off) for [n0, n1).

    The same waveguide as :func:`render_voice` (§4, Fig. 3; damper crossfade, loss eq. 8,
    dispersion allpass, Thiran) without what an unstruck string never needs: no hammer,
    no resonator bank (it is driven by the hammer force), no trace and no drive output.
    The dispersion allpass of a sympathetic design has at most two sections
    (``SYMPATHETIC_MODE`` order 4); their states are kept in registers. Driven by
    ``coupling * drive[t - drive_delay]`` entering as a wave leaving the bridge (§4.3).
    The block loop gives a string whose damper rests and that no fade runs on to
    :func:`render_symp_steady` instead; this one moves the damper and the fade.
    """
    mask = voice_mask(iv, v, nut)
    nl = iv[v, I_NUT_LEN]
    bl = iv[v, I_BRIDGE_LEN]
    tap = bl // 2
    nsec = iv[v, I_N_SEC]
    w = iv[v, I_WIDX]
    r = iv[v, I_RATE]
    damp = fv[v, F_DAMP]
    damp_t = fv[v, F_DAMP_TARGET]
    damp_alpha, lift_alpha, level_release = rate_constants(
        r, damp != damp_t, damp_alpha, fv[v, F_DAMP_SPEED], level_release)
    g = fv[v, F_G] + damp * (fv[v, F_GD] - fv[v, F_G])
    a1 = fv[v, F_A1] + damp * (fv[v, F_A1D] - fv[v, F_A1])
    ly1 = fv[v, F_LOSS_Y1]
    eta = fv[v, F_ETA]
    thx1 = fv[v, F_TH_X1]
    thy1 = fv[v, F_TH_Y1]
    gain = fv[v, F_GAIN] * fv[v, F_TWOZ]
    level = fv[v, F_LEVEL]
    fade = fv[v, F_FADE]
    fade_step = fv[v, F_FADE_STEP] * r
    dq = fv[v, F_DRIVE_SEEN]
    dmask = drive.shape[0] - 1
    cpl = coupling * r
    # at most two dispersion sections, in registers (DF-I, as render_voice)
    c1a = dsos[v, 0, 0] if nsec > 0 else 0.0
    c2a = dsos[v, 0, 1] if nsec > 0 else 0.0
    c1b = dsos[v, 1, 0] if nsec > 1 else 0.0
    c2b = dsos[v, 1, 1] if nsec > 1 else 0.0
    xa1 = dstate[v, 0, 0]
    xa2 = dstate[v, 0, 1]
    ya1 = dstate[v, 0, 2]
    ya2 = dstate[v, 0, 3]
    xb1 = dstate[v, 1, 0]
    xb2 = dstate[v, 1, 1]
    yb1 = dstate[v, 1, 2]
    yb2 = dstate[v, 1, 3]
    nrow = nut[v]              # 1-D rows: one base address, no per-sample row arithmetic
    brow = bridge[v]
    g0 = fv[v, F_G]
    gd = fv[v, F_GD]
    a10 = fv[v, F_A1]
    a1d = fv[v, F_A1D]
    symp_mode = iv[v, I_SYMP]
    dormant = iv[v, I_DORMANT]
    freed = False
    gl = g * (1.0 + a1)         # the one-pole's numerator, as in eq. 8
    start = n0 + ((r - (t0 + n0) % r) % r)
    for i in range(start, n1, r):
        t = t0 + i
        if damp != damp_t:
            damp += (damp_t - damp) * (damp_alpha if damp_t > damp else lift_alpha)
            if abs(damp - damp_t) < 1e-9:
                damp = damp_t
            g = g0 + damp * (gd - g0)
            a1 = a10 + damp * (a1d - a10)
            gl = g * (1.0 + a1)
        u_nb = -nrow[(w - nl) & mask]
        x = brow[(w - bl) & mask]
        ly1 = gl * x - a1 * ly1                          # loss, eq. 8
        y = ly1
        if nsec > 0:
            out = c2a * y + c1a * xa1 + xa2 - c1a * ya1 - c2a * ya2
            xa2 = xa1
            xa1 = y
            ya2 = ya1
            ya1 = out
            y = out
            if nsec > 1:
                out = c2b * y + c1b * xb1 + xb2 - c1b * yb1 - c2b * yb2
                xb2 = xb1
                xb1 = y
                yb2 = yb1
                yb1 = out
                y = out
        th = eta * y + thx1 - eta * thy1                 # Thiran fine tuning
        thx1 = y
        thy1 = th
        u_bn = -th
        dr = drive[(t - drive_delay) & dmask]
        if dr != 0.0:
            dormant = 0
            dq = 1.0
            u_bn += cpl * dr
        nrow[w & mask] = u_bn
        brow[w & mask] = u_nb
        out_s = brow[(w - tap) & mask] * gain * fade
        w += 1
        if not (abs(out_s) < 1e6):
            freed = True
            break
        mix[i] += out_s
        a = abs(out_s)
        level = level * level_release
        if a > level:
            level = a
        if fade_step != 0.0:
            fade -= fade_step
            if fade <= 0.0:
                fade = 0.0
                freed = True
                break
        if (t & 63) == 0 and level < free_level:
            if damp_t >= 0.99 or symp_mode == 2:
                freed = True
                break
            if dq == 0.0 and dormant == 0:
                nrow[:mask + 1] = 0.0
                brow[:mask + 1] = 0.0
                ly1 = 0.0
                thx1 = 0.0
                thy1 = 0.0
                xa1 = xa2 = ya1 = ya2 = 0.0
                xb1 = xb2 = yb1 = yb2 = 0.0
                level = 0.0
                dormant = 1
            dq = 0.0
    iv[v, I_DORMANT] = dormant
    if freed:
        iv[v, I_STATE] = FREE
    dstate[v, 0, 0] = xa1
    dstate[v, 0, 1] = xa2
    dstate[v, 0, 2] = ya1
    dstate[v, 0, 3] = ya2
    dstate[v, 1, 0] = xb1
    dstate[v, 1, 1] = xb2
    dstate[v, 1, 2] = yb1
    dstate[v, 1, 3] = yb2
    iv[v, I_WIDX] = w
    fv[v, F_DRIVE_SEEN] = dq
    fv[v, F_LOSS_Y1] = ly1
    fv[v, F_TH_X1] = thx1
    fv[v, F_TH_Y1] = thy1
    fv[v, F_DAMP] = damp
    fv[v, F_LEVEL] = level
    fv[v, F_FADE] = fade
