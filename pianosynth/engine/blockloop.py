"""The block loop: events at their sample offsets, voice allocation, all voices, the
resonator-bank interpolation and the output stage -- numba, ``nogil``, no allocation.

Voices meet in two sums here (strings at fs, resonators at fs/8 before ONE interpolation
filter, Bank et al. §4.3); the sum then feeds the shared soundboard (§5).
"""
from __future__ import annotations

import numpy as np

from numba import prange

from ..dsp.jit import JIT, JIT_INLINE, JIT_NO_RC, JIT_PIPELINE, cycle_counter, njit
from ..dsp.voice import (DAMPED, FREE, HELD, I_BRIDGE_LEN, I_DAMPED_KEY, I_HAMMER_AGE,
                         I_HAMMER_ON, I_DORMANT, I_KEY, I_N_RES, I_N_SEC, I_NUT_LEN, I_RATE, I_SOST, I_STATE, I_SYMP, I_STRIKES,
                         I_WIDX, I_MASK, I_DRIVE_DELAY, F_A1, F_A1D, F_DAMP, F_DAMP_TARGET, F_ETA, F_FADE,
                         F_FADE_STEP, F_FPREV, F_G, F_GAIN, F_GD, F_K, F_LEVEL, F_LOSS_Y1,
                         F_MASS, F_P, F_RES_DAMP, F_DAMP_SPEED, F_DRIVE_SEEN, F_KNOCK, F_TH_X1, F_TH_Y1, F_TWOZ, F_UPREV, F_VH, F_YH, F_YS,
                         STEALING, SUSTAINED, render_struck_voice, render_symp_steady,
                         render_symp_voice, render_voice, struck_fast_path, symp_steady,
                         voice_mask)
from ..dsp.voice import (F_EQC, F_EQS, F_LC, F_LS, I_N_EQ, I_N_LOSS, I_RES_RATE,
                         MAX_LOSS_SECTIONS, MAX_PARTIAL_EQ)
from ..dsp.soundboard import render_soundboard, reset_soundboard_at

# key table columns
K_NUT_LEN, K_BRIDGE_LEN, K_N_SEC, K_N_RES, K_HAS_DAMPER, K_VALID, K_N_STRINGS, K_RATE, \
    K_N_LOSS, K_MASK, K_DRIVE_DELAY, K_RES_RATE, K_N_EQ = range(13)
N_KI = 13
KF_G, KF_A1, KF_GD, KF_A1D, KF_ETA, KF_MASS, KF_K, KF_P, KF_TWOZ, KF_GAIN, KF_RES_DAMP, \
    KF_KNOCK = range(12)
#: loss correction biquads (b0, b1, b2, a1, a2) x MAX_LOSS_SECTIONS from this column
KF_LC = 12
#: partial level filters (b0, b1, b2, a1, a2) x MAX_PARTIAL_EQ from this column
KF_EQ = KF_LC + 5 * MAX_LOSS_SECTIONS
N_KF = KF_EQ + 5 * MAX_PARTIAL_EQ

# global int state
G_T, G_SUSTAIN, G_POLYPHONY, G_HAMMER_MODE, G_RES_FACTOR, G_TRACE_VOICE, G_SOFT, \
    G_SOSTENUTO, G_TRACE_RESET, G_NOW = range(10)
N_GI = 10
# global float state
GF_FS, GF_DAMP_ALPHA, GF_LEVEL_RELEASE, GF_FREE_LEVEL, GF_STEAL_STEP, GF_GAIN, \
    GF_GAIN_TARGET, GF_GAIN_ALPHA, GF_CEILING, GF_COUPLING, GF_DAMPER_NOISE, \
    GF_PEDAL_NOISE = range(12)
N_GF = 12
# mechanical noise bursts (damper and pedal noise), one row each in ``noise``
NZ_AMP, NZ_DECAY, NZ_LP, NZ_LPY, NZ_A1, NZ_A2, NZ_Y1, NZ_Y2, NZ_SEED, NZ_GAIN = range(10)
N_NZ = 10
NOISE_SLOTS = 16
#: shortest delay (samples) of the sympathetic drive; >= the longest chunk the engine
#: renders (a string reads only drive its chunk's predecessors completed). Each
#: sympathetic string reads it a whole number of its periods back (key table column
#: K_DRIVE_DELAY, see ``core.sympathetic_drive_delay``): at its partials that is no delay
DRIVE_DELAY = 512
#: samples per inner chunk (the scratch buffers' length); blocks of any size are split
CHUNK = 512
#: the voices' partial sums (slot v in part v % NPART): the two-thread offline loop spreads
#: the parts over its threads
NPART = 4
#: the work of the output half of a chunk (interpolators, soundboard, output stage) per
#: sample, in the units of :func:`_part_cost` (measured: ~110 ns against ~200 for the voices
#: of Clair de lune with the pedal)
OUTPUT_COST = 110.0
#: the two-thread loop's task-cost scratch: [0, NPART] this segment's costs, TC_OUT the
#: output half's cost per sample (:data:`OUTPUT_COST`), from TC_MEAS the measured cycles
#: per sample of each task (NPART + 1 of them; 0: not measured yet)
TC_OUT = NPART + 1
TC_MEAS = NPART + 2
TC_SIZE = 2 * NPART + 3
#: the soundboard's silence is judged over whole windows of this many samples
SB_QUIET_WINDOW = 4096
# soundboard silence control (``sb_ctl``): windows judged quiet in a row, peak so far
SB_QUIET, SB_PEAK = range(2)
#: the soundboard is silent when input and output stay below this (-160 dBFS: 16 dB under
#: the last bit of 24-bit audio) for two whole windows; its state is then set to zero
SB_QUIET_LEVEL = 1e-8
#: velocity of a silent key press (the hammer does not reach the string)
SILENT_VELOCITY = 1


@njit(**JIT)
def _reset_voice_buffers(v, iv, nut, bridge, dstate, rstate):
    """Zero voice ``v``'s filter states and the part of its delay lines its last string
    used (the rest is zero already)."""
    m = voice_mask(iv, v, nut)
    nut[v, :m + 1] = 0.0
    bridge[v, :m + 1] = 0.0
    dstate[v, :, :] = 0.0
    rstate[v, :, :] = 0.0


@njit(**JIT)
def _load_key(v, key, iv, fv, dsos, rcoef, kt_i, kt_f, kt_sos, kt_res, row=-1):
    """Copy key ``key``'s coefficients (table row ``row``, default the key itself; rows
    128 + key hold the cheaper design of sympathetic strings) into voice ``v``."""
    iv[v, I_KEY] = key
    if row < 0:
        row = key
    key = row
    iv[v, I_NUT_LEN] = kt_i[key, K_NUT_LEN]
    iv[v, I_BRIDGE_LEN] = kt_i[key, K_BRIDGE_LEN]
    iv[v, I_N_SEC] = kt_i[key, K_N_SEC]
    iv[v, I_N_RES] = kt_i[key, K_N_RES]
    iv[v, I_DAMPED_KEY] = kt_i[key, K_HAS_DAMPER]
    iv[v, I_RATE] = kt_i[key, K_RATE]
    iv[v, I_MASK] = kt_i[key, K_MASK]
    iv[v, I_DRIVE_DELAY] = max(kt_i[key, K_DRIVE_DELAY], DRIVE_DELAY)
    iv[v, I_RES_RATE] = max(kt_i[key, K_RES_RATE], 1)
    iv[v, I_SYMP] = 0
    fv[v, F_G] = kt_f[key, KF_G]
    fv[v, F_A1] = kt_f[key, KF_A1]
    fv[v, F_GD] = kt_f[key, KF_GD]
    fv[v, F_A1D] = kt_f[key, KF_A1D]
    fv[v, F_ETA] = kt_f[key, KF_ETA]
    fv[v, F_MASS] = kt_f[key, KF_MASS]
    fv[v, F_K] = kt_f[key, KF_K]
    fv[v, F_P] = kt_f[key, KF_P]
    fv[v, F_TWOZ] = kt_f[key, KF_TWOZ]
    fv[v, F_GAIN] = kt_f[key, KF_GAIN]
    fv[v, F_RES_DAMP] = kt_f[key, KF_RES_DAMP]
    fv[v, F_KNOCK] = kt_f[key, KF_KNOCK]
    fv[v, F_DAMP_SPEED] = 1.0
    iv[v, I_N_LOSS] = kt_i[key, K_N_LOSS]
    for j in range(5 * MAX_LOSS_SECTIONS):
        fv[v, F_LC + j] = kt_f[key, KF_LC + j]
    for j in range(2 * MAX_LOSS_SECTIONS):
        fv[v, F_LS + j] = 0.0
    iv[v, I_N_EQ] = kt_i[key, K_N_EQ]
    for j in range(5 * MAX_PARTIAL_EQ):
        fv[v, F_EQC + j] = kt_f[key, KF_EQ + j]
    for j in range(2 * MAX_PARTIAL_EQ):
        fv[v, F_EQS + j] = 0.0
    # element loops, not slice copies: the block loop runs without reference counting
    # (JIT_NO_RC), which an array-to-array slice assignment needs
    for s in range(dsos.shape[1]):
        for j in range(dsos.shape[2]):
            dsos[v, s, j] = kt_sos[key, s, j]
    for s in range(rcoef.shape[1]):
        for j in range(rcoef.shape[2]):
            rcoef[v, s, j] = kt_res[key, s, j]


@njit(**JIT)
def damper_contact(cc):
    """Damper contact (0 lifted .. 1 on the string) for sustain pedal position ``cc``
    (0..127): full contact below 32, lifted above 96, smoothstep between (half-pedalling)."""
    x = (cc - 32.0) / 64.0
    if x <= 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    return 1.0 - x * x * (3.0 - 2.0 * x)


@njit(**JIT)
def _update_dampers(iv, fv, gi):
    """Damper targets of every key-up voice from the pedals (sustain, sostenuto)."""
    contact = damper_contact(gi[G_SUSTAIN])
    for v in range(iv.shape[0]):
        st = iv[v, I_STATE]
        if st == SUSTAINED or st == DAMPED:
            if iv[v, I_DAMPED_KEY] == 0 or iv[v, I_SOST] != 0:
                fv[v, F_DAMP_TARGET] = 0.0
            else:
                fv[v, F_DAMP_TARGET] = contact
            iv[v, I_STATE] = DAMPED if fv[v, F_DAMP_TARGET] >= 0.5 else SUSTAINED
            # a sympathetic string of an undamped treble key: let it go once silent
            if iv[v, I_SYMP] != 0 and iv[v, I_DAMPED_KEY] == 0:
                iv[v, I_SYMP] = 2 if contact >= 0.99 else 1
            # a dormant (exactly silent) sympathetic string whose damper lands: free it
            if iv[v, I_DORMANT] != 0 and (fv[v, F_DAMP_TARGET] >= 0.99 or iv[v, I_SYMP] == 2):
                iv[v, I_STATE] = FREE


@njit(**JIT)
def _una_corda(v, key, fv, rcoef, kt_i, kt_f, kt_res, gi):
    """Una corda (CC67, read at the strike): the action shifts by s = cc/127 -- the hammer
    meets (n - s)/n of the n unison strings with a softer part of the felt (K x (1 - s/2)),
    and the unstruck string's second mode (resonator bank) is relatively stronger."""
    s = gi[G_SOFT] / 127.0
    n = kt_i[key, K_N_STRINGS]
    if n > 1:
        fv[v, F_TWOZ] = kt_f[key, KF_TWOZ] * (1.0 - s / n)
    else:
        fv[v, F_TWOZ] = kt_f[key, KF_TWOZ]
    fv[v, F_K] = kt_f[key, KF_K] * (1.0 - 0.5 * s)
    scale = 1.0 + 1.5 * s
    for r in range(kt_res.shape[1]):
        rcoef[v, r, 0] = kt_res[key, r, 0] * scale
        rcoef[v, r, 1] = kt_res[key, r, 1] * scale


@njit(**JIT)
def _strike(v, hammer_v, iv, fv):
    """Start the hammer on voice ``v`` touching the string, moving at ``hammer_v`` m/s."""
    iv[v, I_HAMMER_ON] = 1
    iv[v, I_DORMANT] = 0
    iv[v, I_HAMMER_AGE] = 0
    iv[v, I_STRIKES] += 1
    fv[v, F_YH] = fv[v, F_YS]
    fv[v, F_VH] = hammer_v
    fv[v, F_FPREV] = 0.0
    fv[v, F_DAMP_TARGET] = 0.0


@njit(**JIT)
def _init_voice(v, key, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                kt_i, kt_f, kt_sos, kt_res, row=-1):
    _reset_voice_buffers(v, iv, nut, bridge, dstate, rstate)
    _load_key(v, key, iv, fv, dsos, rcoef, kt_i, kt_f, kt_sos, kt_res, row)
    iv[v, I_STATE] = HELD
    iv[v, I_WIDX] = 0
    iv[v, I_STRIKES] = 0
    iv[v, I_HAMMER_ON] = 0
    iv[v, I_SOST] = 0
    iv[v, I_DORMANT] = 0
    fv[v, F_DRIVE_SEEN] = 1.0
    fv[v, F_LOSS_Y1] = 0.0
    fv[v, F_TH_X1] = 0.0
    fv[v, F_TH_Y1] = 0.0
    fv[v, F_DAMP] = 0.0
    fv[v, F_DAMP_TARGET] = 0.0
    fv[v, F_YS] = 0.0
    fv[v, F_UPREV] = 0.0
    fv[v, F_LEVEL] = 0.0
    fv[v, F_FADE] = 1.0
    fv[v, F_FADE_STEP] = 0.0


@njit(**JIT)
def _symp_row(key, kt_i):
    """Table row of a sympathetic string: the cheap design at 128 + key when present."""
    r = 128 + key
    if r < kt_i.shape[0] and kt_i[r, K_VALID] != 0:
        return r
    return key


@njit(**JIT)
def _free_slot(iv, fv, allow_steal):
    """A FREE slot; else (``allow_steal``) the quietest sympathetic string; else -1."""
    nv = iv.shape[0]
    for v in range(nv):
        if iv[v, I_STATE] == FREE:
            return v
    if not allow_steal:
        return -1
    q = -1
    ql = 1e300
    for v in range(nv):
        if iv[v, I_SYMP] != 0 and iv[v, I_STATE] != FREE and fv[v, F_LEVEL] < ql:
            ql = fv[v, F_LEVEL]
            q = v
    return q


@njit(**JIT)
def note_on(key, vel, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
            kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf):
    """Strike ``key``: re-strike its sounding voice, else take a free one (stealing the
    quietest past the polyphony limit, with a short fade). Velocity 1 presses the key
    silently: its string is freed from the damper and rings only in sympathy."""
    nv = iv.shape[0]
    while key < 21:
        key += 12
    while key > 108:
        key -= 12
    if kt_i[key, K_VALID] == 0:
        return
    silent = vel <= SILENT_VELOCITY
    hv = vel_m_s[vel]
    # re-strike the same string if it still sounds
    for v in range(nv):
        st = iv[v, I_STATE]
        if st != FREE and st != STEALING and iv[v, I_KEY] == key:
            iv[v, I_STATE] = HELD
            fv[v, F_DAMP_TARGET] = 0.0
            if not silent:
                if iv[v, I_SYMP] != 0 and _symp_row(key, kt_i) != key:
                    # a sympathetic string struck: the full design takes over
                    _init_voice(v, key, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                                kt_i, kt_f, kt_sos, kt_res)
                iv[v, I_SYMP] = 0
                _una_corda(v, key, fv, rcoef, kt_i, kt_f, kt_res, gi)
                _strike(v, hv, iv, fv)
                gi[G_TRACE_VOICE] = v
                gi[G_TRACE_RESET] = 1
            return
    active = 0
    for v in range(nv):
        st = iv[v, I_STATE]
        if st != FREE and st != STEALING and iv[v, I_SYMP] == 0:
            active += 1
    if active >= gi[G_POLYPHONY]:
        q = -1
        ql = 1e300
        for v in range(nv):
            st = iv[v, I_STATE]
            if st != FREE and st != STEALING and iv[v, I_SYMP] == 0 and fv[v, F_LEVEL] < ql:
                ql = fv[v, F_LEVEL]
                q = v
        if q >= 0:
            iv[q, I_STATE] = STEALING
            fv[q, F_FADE_STEP] = gf[GF_STEAL_STEP]
    slot = _free_slot(iv, fv, True)
    if slot < 0:       # every slot busy (all fading): take the most faded one now
        ql = 1e300
        for v in range(nv):
            if fv[v, F_FADE] < ql:
                ql = fv[v, F_FADE]
                slot = v
    v = slot
    if silent:
        _init_voice(v, key, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                    kt_i, kt_f, kt_sos, kt_res, _symp_row(key, kt_i))
        iv[v, I_SYMP] = 1
        return
    _init_voice(v, key, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                kt_i, kt_f, kt_sos, kt_res)
    _una_corda(v, key, fv, rcoef, kt_i, kt_f, kt_res, gi)
    _strike(v, hv, iv, fv)
    gi[G_TRACE_VOICE] = v
    gi[G_TRACE_RESET] = 1


@njit(**JIT)
def _sympathetic_strings(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                         kt_i, kt_f, kt_sos, kt_res, gi, gf):
    """With the dampers lifted, every key's string takes part: give each key that has no
    voice an unstruck sympathetic string, in free slots only (never stealing)."""
    if gf[GF_COUPLING] <= 0.0:
        return
    contact = damper_contact(gi[G_SUSTAIN])
    if contact >= 0.99:
        return
    nv = iv.shape[0]
    for key in range(21, 109):
        if kt_i[key, K_VALID] == 0:
            continue
        if 128 + key < kt_i.shape[0] and kt_i[128 + key, K_VALID] == 0:
            continue       # this quality mode gives the key no sympathetic string
        has = False
        for v in range(nv):
            if iv[v, I_STATE] != FREE and iv[v, I_KEY] == key:
                has = True
                break
        if has:
            continue
        v = _free_slot(iv, fv, False)
        if v < 0:
            return
        _init_voice(v, key, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                    kt_i, kt_f, kt_sos, kt_res, _symp_row(key, kt_i))
        iv[v, I_SYMP] = 1
        iv[v, I_STATE] = SUSTAINED
        fv[v, F_DAMP_TARGET] = contact if kt_i[key, K_HAS_DAMPER] != 0 else 0.0


@njit(**JIT)
def _noise_burst(noise, gi, gf, amp, f_hz, q, tau_s, lp_hz):
    """Start a mechanical noise burst: white noise (LCG, seeded from the sample clock so the
    result does not depend on the block size) through a one-pole lowpass at ``lp_hz`` and a
    two-pole body resonance at ``f_hz`` (quality ``q``), with an exponential envelope of
    time constant ``tau_s``; reuses the quietest slot. The callers' factors (0.56, 0.23,
    0.16) were measured so the burst's peak is ``gf`` level x NOISE_REF (core.py) at
    release velocity 64 / full pedal travel (tests/test_pedals.py checks it)."""
    if amp <= 0.0:
        return
    fs = gf[GF_FS]
    k = 0
    lo = 1e300
    for j in range(noise.shape[0]):
        if noise[j, NZ_AMP] < lo:
            lo = noise[j, NZ_AMP]
            k = j
    w = 2.0 * np.pi * f_hz / fs
    rad = np.exp(-w / (2.0 * q))
    noise[k, NZ_AMP] = amp
    noise[k, NZ_DECAY] = np.exp(-1.0 / (tau_s * fs))
    noise[k, NZ_LP] = 1.0 - np.exp(-2.0 * np.pi * lp_hz / fs)
    noise[k, NZ_LPY] = 0.0
    noise[k, NZ_A1] = -2.0 * rad * np.cos(w)
    noise[k, NZ_A2] = rad * rad
    noise[k, NZ_Y1] = 0.0
    noise[k, NZ_Y2] = 0.0
    noise[k, NZ_GAIN] = (1.0 - rad) * 2.0           # about unit gain at the resonance
    noise[k, NZ_SEED] = float((gi[G_NOW] * 2654435761 + k * 40503) & 0x7FFFFFFF)


@njit(**JIT)
def render_noise(noise, n0, n1, mono):
    """Add the running noise bursts to ``mono`` for samples [n0, n1) (string sum: they
    reach the soundboard through the frame, like the hammer knock)."""
    for k in range(noise.shape[0]):
        amp = noise[k, NZ_AMP]
        if amp == 0.0:
            continue
        dec = noise[k, NZ_DECAY]
        lp = noise[k, NZ_LP]
        lpy = noise[k, NZ_LPY]
        a1 = noise[k, NZ_A1]
        a2 = noise[k, NZ_A2]
        y1 = noise[k, NZ_Y1]
        y2 = noise[k, NZ_Y2]
        g = noise[k, NZ_GAIN]
        seed = int(noise[k, NZ_SEED])
        for i in range(n0, n1):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            x = (seed / 1073741824.0 - 1.0) * amp         # uniform in [-amp, amp)
            lpy += lp * (x - lpy)
            y = g * lpy - a1 * y1 - a2 * y2
            y2 = y1
            y1 = y
            mono[i] += y
            amp *= dec
            if amp < 1e-9:    # -180 dB: over; exactly zero from here (no denormal tail)
                amp = 0.0
                lpy = 0.0
                y1 = 0.0
                y2 = 0.0
                break
        noise[k, NZ_AMP] = amp
        noise[k, NZ_LPY] = lpy
        noise[k, NZ_Y1] = y1
        noise[k, NZ_Y2] = y2
        noise[k, NZ_SEED] = float(seed)


@njit(**JIT)
def _damper_noise(key, speed, iv, fv, noise, gi, gf):
    """The damper felt landing on a sounding string: a short soft thud, louder for a fast
    release, heavier and lower in the bass (none where the key has no damper or the pedal
    holds the damper off)."""
    for v in range(iv.shape[0]):
        if iv[v, I_KEY] == key and iv[v, I_SYMP] == 0 and iv[v, I_STATE] == DAMPED \
                and iv[v, I_DAMPED_KEY] != 0 and fv[v, F_DAMP_TARGET] >= 0.5:
            bass = min(max((60.0 - key) / 39.0, 0.0), 1.0)
            amp = 0.56 * gf[GF_DAMPER_NOISE] * min(speed, 2.0) ** 0.5 * (1.0 + 0.5 * bass)
            _noise_burst(noise, gi, gf, amp, 180.0 - 80.0 * bass, 1.5, 0.012, 2500.0)
            return


@njit(**JIT)
def note_off(key, iv, fv, gi, release_velocity=64):
    """Key up: the voice's damper follows the pedals (see :func:`_update_dampers`). The
    release velocity sets how fast the damper lands: 2**((vel - 64) / 32), x0.25 .. x4
    (a note-on with velocity 0 counts as 64)."""
    while key < 21:
        key += 12
    while key > 108:
        key -= 12
    rv = release_velocity if release_velocity > 0 else 64
    for v in range(iv.shape[0]):
        if iv[v, I_KEY] == key and iv[v, I_STATE] == HELD:
            iv[v, I_STATE] = DAMPED
            fv[v, F_DAMP_SPEED] = 2.0 ** ((rv - 64) / 32.0)
    _update_dampers(iv, fv, gi)


@njit(**JIT)
def sustain_pedal(value, iv, fv, gi):
    """CC64, continuous: damper contact of key-up strings from the pedal curve."""
    gi[G_SUSTAIN] = value
    _update_dampers(iv, fv, gi)


@njit(**JIT)
def sostenuto_pedal(value, iv, fv, gi):
    """CC66: on press, hold the dampers of exactly the keys down at that moment."""
    down = 1 if value >= 64 else 0
    if down == gi[G_SOSTENUTO]:
        return
    gi[G_SOSTENUTO] = down
    for v in range(iv.shape[0]):
        if down:
            iv[v, I_SOST] = 1 if iv[v, I_STATE] == HELD else 0
        else:
            iv[v, I_SOST] = 0
    _update_dampers(iv, fv, gi)


@njit(**JIT)
def all_sound_off(iv, fv, gf):
    for v in range(iv.shape[0]):
        if iv[v, I_STATE] != FREE:
            iv[v, I_STATE] = STEALING
            fv[v, F_FADE_STEP] = gf[GF_STEAL_STEP]


@njit(**JIT)
def apply_event(status, d1, d2, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise):
    kind = status & 0xF0
    d1 = d1 & 127          # data bytes are 7-bit; anything else is masked, never trusted
    d2 = d2 & 127
    if kind == 0x90 and d2 > 0:
        note_on(d1 & 127, d2 & 127, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf)
    elif kind == 0x80 or kind == 0x90:
        rv = d2 if kind == 0x80 else 64
        note_off(d1 & 127, iv, fv, gi, rv)
        if gf[GF_DAMPER_NOISE] > 0.0:
            _damper_noise(d1, 2.0 ** (((rv if rv > 0 else 64) - 64) / 32.0), iv, fv, noise,
                          gi, gf)
    elif kind == 0xB0:
        if d1 == 64:
            old = gi[G_SUSTAIN]
            sustain_pedal(d2, iv, fv, gi)
            if gf[GF_PEDAL_NOISE] > 0.0 and d2 != old:
                # the damper rail: lifting all dampers (press) knocks, the dampers
                # falling back on the strings (release) thud; scaled by the travel
                travel = abs(damper_contact(d2) - damper_contact(old))
                if travel > 0.05:
                    if d2 > old:
                        _noise_burst(noise, gi, gf, 0.23 * gf[GF_PEDAL_NOISE] * travel, 95.0, 2.0,
                                     0.035, 1200.0)
                    else:
                        _noise_burst(noise, gi, gf, 0.16 * gf[GF_PEDAL_NOISE] * travel,
                                     140.0, 1.2, 0.06, 3000.0)
            _sympathetic_strings(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                                 kt_i, kt_f, kt_sos, kt_res, gi, gf)
        elif d1 == 66:
            sostenuto_pedal(d2, iv, fv, gi)
        elif d1 == 67:
            gi[G_SOFT] = d2
        elif d1 == 120:
            all_sound_off(iv, fv, gf)
        elif d1 == 123:
            for v in range(iv.shape[0]):
                if iv[v, I_STATE] == HELD:
                    note_off(iv[v, I_KEY], iv, fv, gi)


@njit(**JIT)
def peak(a):
    """max |a| of a 1-D array (no temporary arrays)."""
    m = 0.0
    for i in range(a.shape[0]):
        x = abs(a[i])
        if x > m:
            m = x
    return m


@njit(**JIT)
def _all_zero(a):
    for i in range(a.shape[0]):
        if a[i] != 0.0:
            return False
    return True


@njit(**JIT)
def _all_zero_ring(a, t0, n, mask):
    for i in range(n):
        if a[(t0 + i) & mask] != 0.0:
            return False
    return True




@njit(**JIT)
def _sum_parts(n, ps, mono, resbuf, mix2, mix4):
    """The parts' string sums ``ps`` ((4, NPART, >= n): fs, fs/8, fs/2, fs/4) added in a
    fixed order into ``mono``, ``resbuf``, ``mix2``, ``mix4``, and zeroed for the next
    chunk that uses them."""
    for i in range(n):
        a = ps[0, 0, i]
        b = ps[1, 0, i]
        c = ps[2, 0, i]
        d = ps[3, 0, i]
        for p in range(1, NPART):
            a += ps[0, p, i]
            b += ps[1, p, i]
            c += ps[2, p, i]
            d += ps[3, p, i]
        mono[i] = a
        resbuf[i] = b
        mix2[i] = c
        mix4[i] = d
    for k in range(4):
        for p in range(NPART):
            for i in range(n):
                ps[k, p, i] = 0.0


@njit(**JIT)
def _segment_events(seg0, n, ei, t0, ev_off, ev_st, ev_d1, ev_d2, iv, fv, nut, bridge, dsos,
                    dstate, rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise,
                    trace, trace_info, drive):
    """Apply the events at offsets <= ``seg0``; returns (end of the segment that follows,
    index of the next event, whether no sympathetic drive arrives in it)."""
    ne = ev_off.shape[0]
    gi[G_NOW] = t0 + seg0        # the sample the events act at (noise seeds)
    while ei < ne and ev_off[ei] <= seg0:
        apply_event(ev_st[ei], ev_d1[ei], ev_d2[ei], iv, fv, nut, bridge, dsos, dstate,
                    rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise)
        ei += 1
        if gi[G_TRACE_RESET] != 0:
            trace[:] = 0.0
            trace_info[0] = 0
            gi[G_TRACE_RESET] = 0
    seg1 = n
    if ei < ne and ev_off[ei] < n:
        seg1 = ev_off[ei]
    # no drive reaches any string in the segment: none in what a string reads, DRIVE_DELAY
    # up to the ring's length less a chunk back (the longest K_DRIVE_DELAY fits there)
    dmask = drive.shape[0] - 1
    quiet = True
    for i in range(seg0 - (drive.shape[0] - CHUNK), seg1 - DRIVE_DELAY):
        if drive[(t0 + i) & dmask] != 0.0:
            quiet = False
            break
    return seg1, ei, quiet


@njit(**JIT_NO_RC)
def _render_part(p, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, gi, gf, trace,
                 trace_info, seg0, seg1, t0, quiet, mono, resbuf, mix2, mix4, drive, drive_in,
                 drive_lp):
    """Render the voices of part ``p`` (slots p, p + NPART, ...) for [seg0, seg1) into this
    part's sums ``mono`` (fs), ``mix2``/``mix4`` (fs/2, fs/4, §4.2) and ``resbuf`` (fs/8:
    resonator bank §4.3, fs/8 strings) and its drive ring ``drive`` (zero on entry where it
    is written; the strings read the summed drive of every part, ``drive_in``, a whole
    number of their periods back, >= DRIVE_DELAY: ``I_DRIVE_DELAY``). Unstruck sympathetic
    strings run the lean :func:`render_symp_steady` (damper at rest) or
    :func:`render_symp_voice`; struck strings in free vibration :func:`render_struck_voice`,
    the rest :func:`render_voice`. Those at fs/8 read the drive through
    the anti-alias lowpass (ring ``drive_lp``) and are summed with the resonator bank (the
    same rate, the same interpolator: their content stays below 0.4 fs/8, its passband)."""
    fs = gf[GF_FS]
    factor = gi[G_RES_FACTOR]
    for v in range(p, iv.shape[0], NPART):
        if iv[v, I_STATE] != FREE:
            if quiet and iv[v, I_DORMANT] != 0:
                continue        # exactly zero in, exactly zero state: nothing to do
            r = iv[v, I_RATE]
            dest = mono if r == 1 else (mix2 if r == 2 else (mix4 if r == 4 else resbuf))
            # the key's resonator bank: at fs/8 into the bank's sum (§4.3), or, for second
            # modes above fs/32 (treble, fitted presets), at fs/4, fs/2 or fs into that
            # rate's string sum and interpolator (core.resonator_rate)
            rf = iv[v, I_RES_RATE]
            rdest = resbuf if rf == factor else (mono if rf == 1 else (mix2 if rf == 2
                                                                        else mix4))
            if iv[v, I_SYMP] != 0 and iv[v, I_HAMMER_ON] == 0 and iv[v, I_N_SEC] <= 2:
                if symp_steady(fv, v):
                    render_symp_steady(iv, fv, nut, bridge, dsos, dstate, v, seg0, seg1, t0,
                                       dest, gf[GF_LEVEL_RELEASE], gf[GF_FREE_LEVEL],
                                       drive_lp if r == 8 else drive_in,
                                       iv[v, I_DRIVE_DELAY], gf[GF_COUPLING])
                    continue
                render_symp_voice(iv, fv, nut, bridge, dsos, dstate, v, seg0, seg1, t0,
                                  dest, fs, gf[GF_DAMP_ALPHA], gf[GF_LEVEL_RELEASE],
                                  gf[GF_FREE_LEVEL], drive_lp if r == 8 else drive_in,
                                  iv[v, I_DRIVE_DELAY], gf[GF_COUPLING])
                continue
            if struck_fast_path(iv, fv, v):
                render_struck_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, seg0,
                                    seg1, t0, dest, rdest, gf[GF_LEVEL_RELEASE],
                                    gf[GF_FREE_LEVEL], rf, drive)
                continue
            render_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, seg0, seg1,
                         t0, dest, rdest, fs, gi[G_HAMMER_MODE], gf[GF_DAMP_ALPHA],
                         gf[GF_LEVEL_RELEASE], gf[GF_FREE_LEVEL], rf, trace,
                         trace_info, gi[G_TRACE_VOICE], drive, drive_in,
                         iv[v, I_DRIVE_DELAY], gf[GF_COUPLING])


@njit(**JIT)
def _part_cost(p, iv, seg_len, quiet):
    """Estimated work of part ``p`` for ``seg_len`` samples (ns on the machine the weights
    were measured on: a struck string ~10 ns a sample at its rate, a sympathetic one ~6)."""
    c = 0.0
    for v in range(p, iv.shape[0], NPART):
        if iv[v, I_STATE] != FREE and not (quiet and iv[v, I_DORMANT] != 0):
            r = iv[v, I_RATE]
            if iv[v, I_SYMP] != 0 and iv[v, I_HAMMER_ON] == 0 and iv[v, I_N_SEC] <= 2:
                c += 6.0 / r + 0.3
            else:
                c += 10.0 / r + 1.0
    return c * seg_len


@njit(**JIT)
def _strings_end(n, t0, ev_off, ev_st, ev_d1, ev_d2, ei, iv, fv, nut, bridge, dsos, dstate,
                 rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise, drivep,
                 drive, drive_sos, drive_zi, drive_lp):
    """Close a chunk's strings: late events, the parts' drive added in a fixed order into
    ``drive`` (and the parts' rings zeroed there for their next turn), the drive low-passed
    for the fs/8 strings, the clock advanced. (The string sums are added by the output
    half, :func:`_sum_parts`.)"""
    ne = ev_off.shape[0]
    while ei < ne:       # events at offsets >= n (should not happen): apply at the end
        apply_event(ev_st[ei], ev_d1[ei], ev_d2[ei], iv, fv, nut, bridge, dsos, dstate,
                    rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise)
        ei += 1
    dmask = np.uint64(drive.shape[0] - 1)
    ut0 = np.uint64(t0)
    for i in range(n):
        j = (ut0 + np.uint64(i)) & dmask
        e = drivep[0, j]
        drivep[0, j] = 0.0
        for p in range(1, NPART):
            e += drivep[p, j]
            drivep[p, j] = 0.0
        drive[j] = e
    # the drive written in this block, low-passed for the fs/8 strings (read DRIVE_DELAY
    # samples later); zero in with zero state stays exactly zero
    drive_quiet = _all_zero_ring(drive, t0, n, drive.shape[0] - 1)
    if not (drive_quiet and _all_zero(drive_zi)):
        nsos = drive_sos.shape[0]
        # the design's three sections (design_drive_lowpass) with their states in
        # registers (through memory they made a ~40-cycle recursion per sample, on the
        # serial path)
        b00 = drive_sos[0, 0]
        b01 = drive_sos[0, 1]
        b02 = drive_sos[0, 2]
        a01 = drive_sos[0, 4]
        a02 = drive_sos[0, 5]
        b10 = drive_sos[1, 0]
        b11 = drive_sos[1, 1]
        b12 = drive_sos[1, 2]
        a11 = drive_sos[1, 4]
        a12 = drive_sos[1, 5]
        b20 = drive_sos[2, 0]
        b21 = drive_sos[2, 1]
        b22 = drive_sos[2, 2]
        a21 = drive_sos[2, 4]
        a22 = drive_sos[2, 5]
        z0 = drive_zi[0]
        z1 = drive_zi[1]
        z2 = drive_zi[2]
        z3 = drive_zi[3]
        z4 = drive_zi[4]
        z5 = drive_zi[5]
        for i in range(n):
            j = (ut0 + np.uint64(i)) & dmask
            x = drive[j]                           # transposed direct form II
            y = b00 * x + z0
            z0 = b01 * x - a01 * y + z1
            z1 = b02 * x - a02 * y
            x = y
            y = b10 * x + z2
            z2 = b11 * x - a11 * y + z3
            z3 = b12 * x - a12 * y
            x = y
            y = b20 * x + z4
            z4 = b21 * x - a21 * y + z5
            z5 = b22 * x - a22 * y
            if abs(y) < 1e-30:
                y = 0.0
            drive_lp[j] = y
        drive_zi[0] = z0
        drive_zi[1] = z1
        drive_zi[2] = z2
        drive_zi[3] = z3
        drive_zi[4] = z4
        drive_zi[5] = z5
        if drive_quiet:
            for s in range(nsos):          # flush the decaying filter tail once quiet
                if abs(drive_zi[2 * s]) < 1e-30 and abs(drive_zi[2 * s + 1]) < 1e-30:
                    drive_zi[2 * s] = 0.0
                    drive_zi[2 * s + 1] = 0.0
    else:
        for i in range(n):
            drive_lp[(ut0 + np.uint64(i)) & dmask] = 0.0
    gi[G_T] = t0 + n


@njit(**JIT_NO_RC)
def render_strings(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                   kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, trace, trace_info, ev_off,
                   ev_st, ev_d1, ev_d2, n, drive, drive_sos, drive_zi, drive_lp, noise, ps,
                   drivep):
    """Apply events and render every voice for ``n`` samples: the fs strings, the fs/2 and
    fs/4 strings (§4.2) and the fs/8 resonator bank (§4.3) and strings, each summed over
    the voices of a part (``ps`` float64 (4, NPART, >= n), zero on entry: fs, fs/8, fs/2,
    fs/4; :func:`_sum_parts` then adds the parts, :func:`mix_strings` runs each sum through
    its one interpolation filter); advances the global sample clock.

    Slot v is in part v % NPART (:func:`_render_part`), each part with its own drive ring
    (``drivep`` (NPART, len(drive))), and parts are added in a fixed order: the two-thread
    loop (:func:`render_block_pipelined`) renders parts on either thread and gets the same
    sums, bit for bit."""
    t0 = gi[G_T]
    ei = 0
    seg0 = 0
    while seg0 < n:
        seg1, ei, quiet = _segment_events(seg0, n, ei, t0, ev_off, ev_st, ev_d1, ev_d2, iv,
                                          fv, nut, bridge, dsos, dstate, rcoef, rstate, kt_i,
                                          kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise, trace,
                                          trace_info, drive)
        for p in range(NPART):
            _render_part(p, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, gi, gf, trace,
                         trace_info, seg0, seg1, t0, quiet, ps[0, p], ps[1, p], ps[2, p],
                         ps[3, p], drivep[p], drive, drive_lp)
        render_noise(noise, seg0, seg1, ps[0, 0])
        seg0 = seg1
    _strings_end(n, t0, ev_off, ev_st, ev_d1, ev_d2, ei, iv, fv, nut, bridge, dsos, dstate,
                 rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise, drivep,
                 drive, drive_sos, drive_zi, drive_lp)


@njit(**JIT)
def _interpolate_add(out, n, t0, factor, x_low, taps, acc):
    """Interpolate a zero-stuffed lower-rate sum, added into ``out[:n]`` (fs samples from
    clock ``t0``), by scattering: each lower-rate value x (on samples t with t % ``factor``
    == 0) adds x * taps to the nt = len(taps) outputs t .. t + nt - 1 it reaches: one
    contiguous multiply-add over ``acc`` that the compiler runs in SIMD lanes (with the
    direct form's gather it took 36 ns a sample for the three interpolators). Each output
    gets the terms of sum_j taps[t - t_j] x_j added in the order of j, whatever the block
    size.

    ``acc`` float64 (>= nt + CHUNK,): acc[:nt] holds what earlier values add to the next nt
    outputs; the rest is zero between calls."""
    nt = taps.shape[0]
    first = (factor - (t0 & (factor - 1))) & (factor - 1)
    # unsigned indices: numba's negative-index wraparound on i + k turned the
    # multiply-add into a gather and a scatter
    un = np.uint64(n)
    for i in range(first, n, factor):
        x = x_low[i]
        if x != 0.0:
            ui = np.uint64(i)
            for k in range(nt):
                acc[ui + np.uint64(k)] += x * taps[k]
    for i in range(n):
        out[i] += acc[i]
    for k in range(nt):
        acc[np.uint64(k)] = acc[un + np.uint64(k)]
    for k in range(n):
        acc[np.uint64(nt) + np.uint64(k)] = 0.0


@njit(**JIT_NO_RC)
def mix_strings(n, t0, factor, taps, ring, mono, resbuf, mix2, mix4, taps2, ring2, taps4,
                ring4):
    """The second half of a chunk's strings (after :func:`render_strings` filled the sums of
    the samples ``t0 .. t0 + n - 1``): each lower-rate sum (fs/8 resonators and strings,
    factor ``factor``, §4.3; fs/2 and fs/4 strings, §4.2) through its one interpolation
    filter (``ring*``: the pending outputs of :func:`_interpolate_add`), added into
    ``mono``, which is then the summed string signal at fs (runaway or NaN samples replaced
    by 0). An interpolator with nothing pending and zero input adds exactly zero: skipped
    (only ring[:len(taps)] can hold anything between calls)."""
    if not (_all_zero(ring[:taps.shape[0]]) and _all_zero(resbuf[:n])):
        _interpolate_add(mono, n, t0, factor, resbuf, taps, ring)
    if not (_all_zero(ring2[:taps2.shape[0]]) and _all_zero(mix2[:n])):
        _interpolate_add(mono, n, t0, 2, mix2, taps2, ring2)
    if not (_all_zero(ring4[:taps4.shape[0]]) and _all_zero(mix4[:n])):
        _interpolate_add(mono, n, t0, 4, mix4, taps4, ring4)
    for i in range(n):
        if not (abs(mono[i]) < 1e6):     # NaN/inf or runaway never reaches the soundboard
            mono[i] = 0.0


@njit(**JIT)
def is_idle(iv, noise, ring, ring2, ring4, drive, drive_zi, gf):
    """True when the engine holds exactly nothing: no voice, no noise burst, interpolator
    histories, sympathetic drive and its filter all zero, master gain settled. Rendering
    it would give exact zeros (see :func:`skip_idle`)."""
    for v in range(iv.shape[0]):
        if iv[v, I_STATE] != FREE:
            return False
    for k in range(noise.shape[0]):
        if noise[k, NZ_AMP] != 0.0:
            return False
    if gf[GF_GAIN] != gf[GF_GAIN_TARGET]:
        return False
    return (_all_zero(ring) and _all_zero(ring2) and _all_zero(ring4) and _all_zero(drive)
            and _all_zero(drive_zi))


@njit(**JIT)
def skip_idle(n, gi):
    """Advance an idle engine by ``n`` samples without computing them (the sample clock:
    everything else of an idle engine is exactly zero and stays so)."""
    gi[G_T] = gi[G_T] + n


@njit(**JIT)
def render_output(stereo, n, gf, out):
    """Master gain (smoothed, one-pole) and a soft limiter into ``out`` (n, 2).

    Limiter: linear below 0.7 of the ceiling, above it the excess is compressed by tanh so the
    output never exceeds the ceiling; C1-continuous, memoryless (no pumping, no latency).
    """
    ceil = gf[GF_CEILING]
    thr = 0.7 * ceil
    room = ceil - thr
    g = gf[GF_GAIN]
    gt = gf[GF_GAIN_TARGET]
    a = gf[GF_GAIN_ALPHA]
    for i in range(n):
        g += (gt - g) * a
        for c in range(2):
            x = stereo[i, c] * g
            if x != x:
                x = 0.0
            ax = abs(x)
            if ax > thr:
                y = thr + room * np.tanh((ax - thr) / room)
                x = y if x > 0 else -y
            out[i, c] = x
    gf[GF_GAIN] = g


@njit(**JIT)
def _chunk_events(pos, n, ei, gi, ev_off, ev_st, ev_d1, ev_d2, sc_off, sc_st, sc_d1, sc_d2):
    """The next chunk of a block from frame ``pos``: at most :data:`CHUNK` frames, never
    straddling a multiple of :data:`SB_QUIET_WINDOW` of the sample clock; its events (from
    index ``ei``) copied into the scratch ``sc_*`` with offsets relative to the chunk.
    Returns (frames, events, index of the next chunk's first event)."""
    m = min(CHUNK, n - pos)
    t_now = gi[G_T]
    m = min(m, SB_QUIET_WINDOW - t_now % SB_QUIET_WINDOW)
    ne_all = ev_off.shape[0]
    j = ei
    while j < ne_all and ev_off[j] < pos + m:
        j += 1
    ne = j - ei
    for k in range(ne):
        o = ev_off[ei + k] - pos
        sc_off[k] = 0 if o < 0 else (m - 1 if o > m - 1 else o)
        sc_st[k] = ev_st[ei + k]
        sc_d1[k] = ev_d1[ei + k]
        sc_d2[k] = ev_d2[ei + k]
    return m, ne, j


@njit(**JIT_INLINE)
def _write_out(out, out32, pos, m, out64):
    """Copy a chunk's output ``out64[:m]`` to ``out[pos:pos + m]``, or to ``out32`` (float32)
    when the caller gave one (rows > 0; ``out`` is then an empty dummy). Both layouts come
    through one compiled kernel: the float32 output of an offline render or an audio
    callback is written here, on the thread of the output half, with no copy after it
    (its first write to fresh memory costs a page fault per page: on two threads that
    cost runs beside the strings instead of after them)."""
    if out32.shape[0] > 0:
        for i in range(m):
            out32[pos + i, 0] = out64[i, 0]
            out32[pos + i, 1] = out64[i, 1]
    else:
        for i in range(m):
            out[pos + i, 0] = out64[i, 0]
            out[pos + i, 1] = out64[i, 1]


@njit(**JIT)
def _skip_chunk(out, out32, pos, m, gi, out64):
    """An idle chunk: exact zeros out, the clock advanced (:func:`skip_idle`)."""
    skip_idle(m, gi)
    for i in range(m):
        out64[i, 0] = 0.0
        out64[i, 1] = 0.0
    _write_out(out, out32, pos, m, out64)


@njit(**JIT)
def _chunk_out(out, out32, pos, m, t_end, gi, gf, taps, ring, mono, resbuf, mix2, mix4,
               taps2, ring2, taps4, ring4, sb_state, sb_coeffs, sb_ctl, stereo, out64, ps):
    """The output half of a chunk whose strings :func:`render_strings` rendered into the
    part sums ``ps`` (the samples ``t_end - m .. t_end - 1`` of the clock): the parts added
    (:func:`_sum_parts`), the interpolators
    (:func:`mix_strings`), the soundboard with its silence control, the output stage into
    ``out[pos:pos + m]``. Touches none of the state :func:`render_strings` uses."""
    factor = sb_coeffs.dec_table.shape[0]
    _sum_parts(m, ps, mono, resbuf, mix2, mix4)
    mix_strings(m, t_end - m, gi[G_RES_FACTOR], taps, ring, mono, resbuf, mix2, mix4, taps2,
                ring2, taps4, ring4)
    pin = peak(mono[:m])
    if sb_ctl[SB_QUIET] >= 2 and pin == 0.0:
        for i in range(m):             # zero state, zero input: exactly zero out
            stereo[i, 0] = 0.0
            stereo[i, 1] = 0.0
    else:
        if sb_ctl[SB_QUIET] >= 2:  # waking from silence: start from a clean state
            reset_soundboard_at(sb_state, (t_end - m) % factor)
            sb_ctl[SB_QUIET] = 0.0
            sb_ctl[SB_PEAK] = 0.0
        render_soundboard(sb_state, sb_coeffs, mono, stereo, m)
        pout = 0.0
        for i in range(m):
            a = abs(stereo[i, 0])
            b = abs(stereo[i, 1])
            if a > pout:
                pout = a
            if b > pout:
                pout = b
        sb_ctl[SB_PEAK] = max(sb_ctl[SB_PEAK], pin, pout)
        if t_end % SB_QUIET_WINDOW == 0:
            quiet = sb_ctl[SB_PEAK] < SB_QUIET_LEVEL
            sb_ctl[SB_PEAK] = 0.0
            sb_ctl[SB_QUIET] = sb_ctl[SB_QUIET] + 1.0 if quiet else 0.0
            if sb_ctl[SB_QUIET] == 2:
                reset_soundboard_at(sb_state, t_end % factor)
    render_output(stereo, m, gf, out64)
    _write_out(out, out32, pos, m, out64)


@njit(**JIT)
def render_block(out, out32, n, ev_off, ev_st, ev_d1, ev_d2, sc_off, sc_st, sc_d1, sc_d2,
                 iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                 kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, taps, ring, trace,
                 trace_info, mono, resbuf, mix2, mix4, taps2, ring2, taps4, ring4,
                 drive, drive_sos, drive_zi, drive_lp, noise, sb_state, sb_coeffs,
                 sb_ctl, stereo, out64, ps, drivep):
    """The whole engine for one block of ``n`` frames, in one call (``Engine.render``).

    Parameters
    ----------
    out : float64 (>= n, 2)
        Written with the output (limited to the ceiling), unless ``out32`` has rows.
    out32 : float32 (>= n, 2) or (0, 2)
        Written instead of ``out`` when it has rows (``out`` is then (0, 2)).
    ev_off, ev_st, ev_d1, ev_d2 : int64 (m,)
        The block's events: sample offsets 0 <= off < n (sorted), status, data bytes.
    sc_off, sc_st, sc_d1, sc_d2 : int64 (>= m,)
        Scratch for one chunk's events.
    sb_ctl : float64 (2,)
        Soundboard silence control [windows judged quiet in a row, peak in this window].
    (the rest: the engine's arrays, see :func:`render_strings`, :func:`render_output`,
    :func:`pianosynth.dsp.soundboard.render_soundboard`)

    The block is split into chunks of at most :data:`CHUNK` samples that never straddle
    a multiple of :data:`SB_QUIET_WINDOW` of the sample clock, so the result is identical
    for any block size. Per chunk: an engine holding exactly nothing skips its work
    (:func:`is_idle`, :func:`skip_idle`: exact zeros); else strings and resonators
    (:func:`render_strings`), the soundboard (Bank et al. §5) unless it is silent with
    zero input, and the output stage. Soundboard silence: once its input and output have
    stayed below -160 dB for two whole windows, its state is set to exactly zero (a
    decaying state would end in slow denormal numbers) and it is skipped until input
    arrives again (:data:`SB_QUIET_LEVEL`).
    """
    ei = 0
    pos = 0
    while pos < n:
        m, ne, ei = _chunk_events(pos, n, ei, gi, ev_off, ev_st, ev_d1, ev_d2, sc_off, sc_st,
                                  sc_d1, sc_d2)
        if ne == 0 and sb_ctl[SB_QUIET] >= 2 and is_idle(iv, noise, ring, ring2, ring4, drive,
                                                          drive_zi, gf):
            _skip_chunk(out, out32, pos, m, gi, out64)
            pos += m
            continue
        render_strings(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, kt_i, kt_f, kt_sos,
                       kt_res, vel_m_s, gi, gf, trace, trace_info, sc_off[:ne], sc_st[:ne],
                       sc_d1[:ne], sc_d2[:ne], m, drive, drive_sos, drive_zi, drive_lp, noise,
                       ps[0], drivep)
        _chunk_out(out, out32, pos, m, gi[G_T], gi, gf, taps, ring, mono, resbuf, mix2, mix4,
                   taps2, ring2, taps4, ring4, sb_state, sb_coeffs, sb_ctl, stereo,
                   out64, ps[0])
        pos += m
    _late_events(ev_off, ev_st, ev_d1, ev_d2, ei, iv, fv, nut, bridge, dsos, dstate, rcoef,
                 rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise)


@njit(**JIT)
def _late_events(ev_off, ev_st, ev_d1, ev_d2, ei, iv, fv, nut, bridge, dsos, dstate, rcoef,
                 rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise):
    """Events at offsets >= the block's length (should not happen): applied at its end."""
    for k in range(ei, ev_off.shape[0]):
        apply_event(ev_st[k], ev_d1[k], ev_d2[k], iv, fv, nut, bridge, dsos, dstate,
                    rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise)


@njit(**JIT)
def _longest_segment(sc_off, ne, m):
    """Start of the longest segment of a chunk of ``m`` samples whose events are at
    ``sc_off[:ne]`` (segments run from one event offset to the next)."""
    best0 = 0
    best = -1
    s0 = 0
    k = 0
    while s0 < m:
        while k < ne and sc_off[k] <= s0:
            k += 1
        s1 = sc_off[k] if k < ne else m
        if s1 - s0 > best:
            best = s1 - s0
            best0 = s0
        s0 = s1
    return best0


@njit(**JIT)
def _schedule(iv, seg_len, quiet, out_len, task_cost, task_thread):
    """Spread the tasks of a segment over two threads: the NPART voice parts and, when
    ``out_len`` > 0, the output half of the previous chunk (task NPART, always on thread 1,
    where the soundboard's state stays in cache). Costs: each task's measured cycles per
    sample (``task_cost[TC_MEAS:]``, kept by :func:`render_block_pipelined`) once every
    task has one, before that :func:`_part_cost` and :data:`OUTPUT_COST`. A part stays on
    the thread it last ran on (its strings' delay lines are in that core's cache) unless
    moving it to the other lowers the larger of the two loads by more than 3 % of the
    segment's work (with a tenth, Clair de lune ran ~5 % slower: the output half is about
    a fifth of the work and a part as much, so a move gains less than a tenth). Only which
    thread runs a part changes, never the sums (see :func:`render_strings`)."""
    measured = True
    for p in range(NPART + (1 if out_len > 0 else 0)):
        if task_cost[TC_MEAS + p] <= 0.0:
            measured = False
    total = 0.0
    for p in range(NPART):
        if measured:
            task_cost[p] = task_cost[TC_MEAS + p] * seg_len
        else:
            task_cost[p] = _part_cost(p, iv, seg_len, quiet)
        total += task_cost[p]
        if task_thread[p] != 0 and task_thread[p] != 1:
            task_thread[p] = p & 1
    load0 = 0.0
    load1 = 0.0
    if out_len > 0:
        per = task_cost[TC_MEAS + NPART] if measured else task_cost[TC_OUT]
        task_cost[NPART] = per * out_len
        task_thread[NPART] = 1
        load1 = task_cost[NPART]
        total += load1
    else:
        task_cost[NPART] = 0.0
        task_thread[NPART] = -1
    for p in range(NPART):
        if task_thread[p] == 0:
            load0 += task_cost[p]
        else:
            load1 += task_cost[p]
    for _ in range(NPART):
        best = -1
        best_max = max(load0, load1) - 0.03 * total
        for p in range(NPART):
            c = task_cost[p]
            if task_thread[p] == 0:
                m = max(load0 - c, load1 + c)
            else:
                m = max(load0 + c, load1 - c)
            if m < best_max:
                best_max = m
                best = p
        if best < 0:
            break
        c = task_cost[best]
        if task_thread[best] == 0:
            task_thread[best] = 1
            load0 -= c
            load1 += c
        else:
            task_thread[best] = 0
            load0 += c
            load1 -= c


@njit(**JIT)
def _measured(task_cost, task, cycles, length):
    """Fold a task's cycles over ``length`` samples into its measured cost per sample
    (the mean with the previous measure; segments under 32 samples are not counted).
    A measure over twice the previous one counts as twice it: a one-off stall (a page
    fault on fresh output memory zeroes 2 MiB at once, ~100x a chunk's work; the thread
    preempted) would otherwise move every part to the other thread for several segments,
    while a real rise in the work (more strings) still doubles the estimate per segment."""
    if length >= 32 and cycles > 0:
        new = cycles / length
        old = task_cost[TC_MEAS + task]
        if old <= 0.0:
            task_cost[TC_MEAS + task] = new
        else:
            task_cost[TC_MEAS + task] = 0.5 * (old + min(new, 2.0 * old))


@njit(**JIT_PIPELINE)
def render_block_pipelined(out, out32, n, ev_off, ev_st, ev_d1, ev_d2, sc_off, sc_st,
                           sc_d1, sc_d2,
                           iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                           kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, taps, ring,
                           trace, trace_info, mono, resbuf, mix2, mix4, taps2, ring2,
                           taps4, ring4, drive, drive_sos, drive_zi, drive_lp,
                           noise, sb_state, sb_coeffs, sb_ctl, stereo, out64, ps, drivep,
                           task_cost, task_thread):
    """:func:`render_block` on two threads, for offline rendering, bit-identical to it
    (tests/test_pipelined.py). Per segment of a chunk (between two events) the NPART voice
    parts of :func:`render_strings` run on either thread (``prange``), and in the longest
    segment of chunk k the output half of chunk k - 1 (:func:`_chunk_out`: interpolators,
    soundboard, output stage; it shares no state with the voices: it adds and zeroes the
    part sums of chunk k - 1, ``ps[1 - b]``, while chunk k writes ``ps[b]``; ``ps`` float64
    (2, 4, NPART, >= CHUNK)) runs as one more task; :func:`_schedule` balances the two
    threads by each task's measured cost (``task_cost`` float64 (TC_SIZE,), see
    :data:`TC_OUT`; ``task_thread`` int64 (NPART + 1,): scratch).

    The one decision that reads the output half's state, skipping an idle chunk, needs the
    soundboard silent for two windows (``sb_ctl``), and one chunk can raise that count by
    one at most: while it is 0 the chunk cannot be idle and the halves overlap; from 1 on
    the pending output half runs first, as in :func:`render_block`. A parallel region costs
    ~2 us with the OpenMP threading layer (numba's ``workqueue`` layer: ~100 us, too slow;
    the engine then keeps :func:`render_block`, see ``pipelined_available``).
    """
    ei = 0
    pos = 0
    b = 0                 # the set of part sums this chunk's strings write
    pend = False          # the output half of the previous chunk is still to run
    p_pos = 0
    p_m = 0
    p_end = 0
    while pos < n:
        m, ne, ei = _chunk_events(pos, n, ei, gi, ev_off, ev_st, ev_d1, ev_d2, sc_off, sc_st,
                                  sc_d1, sc_d2)
        if pend and sb_ctl[SB_QUIET] >= 1.0:
            _chunk_out(out, out32, p_pos, p_m, p_end, gi, gf, taps, ring, mono, resbuf, mix2,
                       mix4, taps2, ring2, taps4, ring4, sb_state, sb_coeffs,
                       sb_ctl, stereo, out64, ps[1 - b])
            pend = False
        if not pend and ne == 0 and sb_ctl[SB_QUIET] >= 2 and is_idle(
                iv, noise, ring, ring2, ring4, drive, drive_zi, gf):
            _skip_chunk(out, out32, pos, m, gi, out64)
            pos += m
            continue
        # the strings of this chunk (render_strings, its parts on two threads)
        t0 = gi[G_T]
        out_seg = _longest_segment(sc_off, ne, m) if pend else -1
        si = 0
        seg0 = 0
        while seg0 < m:
            seg1, si, quiet = _segment_events(seg0, m, si, t0, sc_off[:ne], sc_st[:ne],
                                              sc_d1[:ne], sc_d2[:ne], iv, fv, nut, bridge,
                                              dsos, dstate, rcoef, rstate, kt_i, kt_f, kt_sos,
                                              kt_res, vel_m_s, gi, gf, noise, trace,
                                              trace_info, drive)
            with_out = seg0 == out_seg
            _schedule(iv, seg1 - seg0, quiet, p_m if with_out else 0, task_cost, task_thread)
            for th in prange(2):
                for task in range(NPART + 1):
                    if task_thread[task] != th:
                        continue
                    c0 = cycle_counter()
                    if task < NPART:
                        _render_part(task, iv, fv, nut, bridge, dsos, dstate, rcoef, rstate,
                                     gi, gf, trace, trace_info, seg0, seg1, t0, quiet,
                                     ps[b, 0, task], ps[b, 1, task], ps[b, 2, task],
                                     ps[b, 3, task], drivep[task], drive, drive_lp)
                        if task == 0:
                            render_noise(noise, seg0, seg1, ps[b, 0, 0])
                    else:
                        _chunk_out(out, out32, p_pos, p_m, p_end, gi, gf, taps, ring, mono,
                                   resbuf, mix2, mix4, taps2, ring2, taps4, ring4,
                                   sb_state, sb_coeffs, sb_ctl, stereo, out64, ps[1 - b])
                    _measured(task_cost, task, cycle_counter() - c0,
                              seg1 - seg0 if task < NPART else p_m)
            seg0 = seg1
        _strings_end(m, t0, sc_off[:ne], sc_st[:ne], sc_d1[:ne], sc_d2[:ne], si, iv, fv, nut,
                     bridge, dsos, dstate, rcoef, rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s,
                     gi, gf, noise, drivep, drive, drive_sos, drive_zi, drive_lp)
        pend = True
        p_pos = pos
        p_m = m
        p_end = gi[G_T]
        b = 1 - b
        pos += m
    if pend:
        _chunk_out(out, out32, p_pos, p_m, p_end, gi, gf, taps, ring, mono, resbuf, mix2, mix4,
                   taps2, ring2, taps4, ring4, sb_state, sb_coeffs, sb_ctl, stereo,
                   out64, ps[1 - b])
    _late_events(ev_off, ev_st, ev_d1, ev_d2, ei, iv, fv, nut, bridge, dsos, dstate, rcoef,
                 rstate, kt_i, kt_f, kt_sos, kt_res, vel_m_s, gi, gf, noise)
