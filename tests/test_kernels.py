"""Kernels against slow, obviously correct references; block-size invariance; extremes."""

import numpy as np
import pytest

from pianosynth.dsp import voice as V
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

from conftest import get_engine


def naive_voice(eng, key, velocity, n):
    """Plain-Python digital waveguide of Fig. 3 for one key: two delay lines as Python lists,
    the reflection filter chain written out, the multirate hammer of §3.2 with the delay-free
    loop solved by bisection, and the resonators of eq. 16 at fs/8. Returns the string
    output and the resonator output (zero-stuffed), before interpolation and soundboard."""
    kt = eng.keys
    fs = eng.sample_rate
    nl = int(kt.kt_i[key, 0]); bl = int(kt.kt_i[key, 1]); nsec = int(kt.kt_i[key, 2])
    nres = int(kt.kt_i[key, 3])
    g, a1, _, _, eta, m, kk, p, twoz, gain, _, knock = kt.kt_f[key, :12]
    sos = kt.kt_sos[key, :nsec]
    nlc = int(kt.kt_i[key, 8])          # loss correction biquads (b0, b1, b2, a1, a2)
    lc = kt.kt_f[key, 12:12 + 5 * nlc].reshape(-1, 5)
    lcs = [[0.0, 0.0, 0.0, 0.0] for _ in range(nlc)]     # x1, x2, y1, y2 (direct form I)
    rc = kt.kt_res[key, :nres]
    nut = [0.0] * nl
    brg = [0.0] * bl
    ly = 0.0
    ap = [[0.0, 0.0, 0.0, 0.0] for _ in range(nsec)]
    tx = ty = 0.0
    yh = ys = 0.0
    vh = kt.vel_m_s[velocity]
    uprev = 0.0
    rs = [[0.0, 0.0, 0.0] for _ in range(nres)]
    out = np.zeros(n)
    res = np.zeros(n)
    h = 0.5 / fs
    window = V.HAMMER_WINDOW_S * fs
    for t in range(n):
        u_nb = -nut[0]
        x = brg[0]
        ly = g * (1 + a1) * x - a1 * ly
        y = ly
        for s in range(nlc):
            b0, b1, b2, p1, p2 = lc[s]
            o = b0 * y + b1 * lcs[s][0] + b2 * lcs[s][1] - p1 * lcs[s][2] - p2 * lcs[s][3]
            lcs[s] = [y, lcs[s][0], o, lcs[s][2]]
            y = o
        for s in range(nsec):
            c1, c2 = sos[s]
            o = c2 * y + c1 * ap[s][0] + ap[s][1] - c1 * ap[s][2] - c2 * ap[s][3]
            ap[s] = [y, ap[s][0], o, ap[s][2]]
            y = o
        th = eta * y + tx - eta * ty
        tx, ty = y, th
        u_bn = -th
        f = 0.0
        if t + 1 <= window + 1 and t < window:
            u_in = u_nb + u_bn
            fs2 = 0.0
            for sub in range(2):
                u = uprev + (sub + 1) * 0.5 * (u_in - uprev)
                plin = yh + vh * h - ys - u * h
                c = h * h / m + h / twoz
                lo, hi = 0.0, max(plin / c, 0.0)
                for _ in range(200):           # bisection on F - K (plin - c F)^p = 0
                    mid = 0.5 * (lo + hi)
                    d = plin - c * mid
                    if mid - (kk * d ** p if d > 0 else 0.0) > 0:
                        hi = mid
                    else:
                        lo = mid
                ff = 0.5 * (lo + hi)
                vh -= ff / m * h
                yh += vh * h
                ys += (u + ff / twoz) * h
                fs2 += ff
            uprev = u_in
            f = 0.5 * fs2
        w = f / twoz
        nut = nut[1:] + [u_bn + w]
        brg = brg[1:] + [u_nb + w]
        out[t] = brg[bl - 1 - bl // 2] * gain * twoz + knock * f   # string + hammer knock
        if t % 8 == 0:
            acc = 0.0
            for r in range(nres):
                b0, b1, ra1, ra2 = rc[r]
                yr = b0 * f + b1 * rs[r][2] - ra1 * rs[r][0] - ra2 * rs[r][1]
                rs[r] = [yr, rs[r][0], f]
                acc += yr
            res[t] = acc * gain
    return out, res


@pytest.mark.parametrize("key,loss", [(84, False), (96, False), (84, True)])
def test_voice_kernel_equals_naive_reference(key, loss):
    """The kernel against the plain-Python waveguide; ``loss``: a higher-order loss filter
    (one-pole + 3 peaking cuts from a T60 list, Bank et al. §4.1)."""
    if loss:
        t60 = {f"t60_k{k:02d}_s": t for k, t in enumerate([0.6, 0.7, 1.5, 1.4, 1.0], 1)}
        eng = Engine(None, 44100, {key: {"loss_order": 4, **t60}}, max_voices=4)
        assert eng.keys.kt_i[key, 8] > 0
    else:
        eng = get_engine(44100)
    n = 3000
    ref_out, ref_res = naive_voice(eng, key, 100, n)
    eng.reset()
    mono = np.zeros(n)
    resbuf = np.zeros(n)
    from pianosynth.engine import blockloop as B
    B.note_on(key, 100, eng.iv, eng.fv, eng.nut, eng.bridge, eng.dsos, eng.dstate, eng.rcoef,
              eng.rstate, eng.keys.kt_i, eng.keys.kt_f, eng.keys.kt_sos, eng.keys.kt_res,
              eng.keys.vel_m_s, eng.gi, eng.gf)
    v = int(np.nonzero(eng.iv[:, V.I_STATE] != V.FREE)[0][0])
    V.render_voice(eng.iv, eng.fv, eng.nut, eng.bridge, eng.dsos, eng.dstate, eng.rcoef,
                   eng.rstate, v, 0, n, 0, mono, resbuf, 44100.0, 0, eng.gf[1], eng.gf[2],
                   0.0, 8, eng.trace, eng.trace_info, -1, np.zeros(2048), np.zeros(2048), 512,
                   0.0)
    scale = np.max(np.abs(ref_out))
    assert scale > 0
    assert np.max(np.abs(mono - ref_out)) <= 1e-9 * max(scale, 1.0)
    assert np.max(np.abs(resbuf - ref_res)) <= 1e-9 * max(scale, 1.0)


def _phrase(fs):
    return make_events([
        (10, 0x90, 60, 90), (300, 0x90, 64, 70), (301, 0xB0, 64, 127), (2000, 0x80, 60, 0),
        (2500, 0x90, 60, 110),                       # re-strike while sounding
        (4000, 0x80, 64, 0), (5000, 0xB0, 64, 0), (5200, 0x90, 36, 127), (5200, 0x90, 100, 40),
        (7000, 0x80, 36, 0), (7100, 0x80, 60, 0)])


def test_identical_output_for_any_block_size():
    fs = 44100
    n = 9000
    outs = []
    for bs in (1, 64, 65, 512):
        eng = get_engine(fs)
        outs.append(eng.render_frames(n, _phrase(fs), block_size=bs))
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    assert np.max(np.abs(outs[0])) > 1e-3


@pytest.mark.parametrize("name,value", [
    ("felt_stiffness_scale", 0.1), ("felt_stiffness_scale", 10.0), ("hammer_mass_scale", 0.25),
    ("hammer_mass_scale", 4.0), ("inharmonicity_scale", 0.0), ("inharmonicity_scale", 4.0),
    ("t60_scale", 0.05), ("t60_scale", 4.0), ("strike_position", 0.05), ("strike_position", 0.5),
    ("velocity_max_m_s", 10.0), ("unison_detune_cents", 10.0), ("resonator_count", 0),
    ("damper_t60_s", 0.05), ("soundboard_t60_s", 3.0), ("soundboard_level_db", 12.0),
    ("master_gain_db", 12.0), ("polyphony", 1)])
def test_extremes_give_finite_bounded_output(name, value):
    eng = Engine({name: value}, sample_rate=44100, max_voices=12)
    ev = make_events([(0, 0x90, 21, 127), (0, 0x90, 60, 127), (0, 0x90, 108, 127),
                      (100, 0xB0, 64, 127), (3000, 0x80, 60, 0)])
    y = eng.render_frames(6000, ev)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize("quality,key,free_ratio", [
    ("high", 45, 0.0), ("high", 48, 0.0), ("high", 60, 0.0), ("high", 100, 0.0),
    ("normal", 42, 0.0), ("normal", 60, 0.0), ("eco", 40, 0.0), ("high", 60, 0.9)])
def test_struck_fast_path_equals_general_loop(quality, key, free_ratio):
    """render_struck_voice (the tight loop for a string in free vibration) gives what
    render_voice gives, bit for bit: output, resonator output, drive, every state, and the
    sample it frees the voice at (``free_ratio`` > 0: the free level that fraction of the
    voice's level, so a 64-sample check inside the render frees it). Run from an odd
    offset so its spans start off the checks."""
    from pianosynth.engine import blockloop as B
    eng = Engine({"sympathetic_coupling": 0.0}, 48000, quality=quality, max_voices=4)
    eng.render_frames(9601, make_events([(0, 0x90, key, 100)]))    # the hammer has left
    v = int(np.nonzero(eng.iv[:, V.I_STATE] != V.FREE)[0][0])
    assert V.struck_fast_path(eng.iv, eng.fv, v)
    assert eng.iv[v, V.I_N_SEC] >= 1
    t0 = int(eng.gi[B.G_T])
    n = 6000
    free_level = free_ratio * eng.fv[v, V.F_LEVEL]
    runs = []
    for fast in (False, True):
        arrays = [a.copy() for a in (eng.iv, eng.fv, eng.nut, eng.bridge, eng.dsos, eng.dstate,
                                     eng.rcoef, eng.rstate)]
        iv, fv, nut, bridge, dsos, dstate, rcoef, rstate = arrays
        mix = np.zeros(n + 7)
        res = np.zeros(n + 7)
        drive = np.zeros(8192)
        rel = eng.gf[B.GF_LEVEL_RELEASE]
        if fast:
            V.render_struck_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, 7,
                                  n + 7, t0, mix, res, rel, free_level, 8, drive)
        else:
            V.render_voice(iv, fv, nut, bridge, dsos, dstate, rcoef, rstate, v, 7, n + 7, t0,
                           mix, res, 48000.0, 0, eng.gf[B.GF_DAMP_ALPHA], rel, free_level, 8,
                           eng.trace, eng.trace_info, -1, drive, drive, 512, 0.0)
        runs.append(arrays + [mix, res, drive])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    assert np.max(np.abs(runs[1][-3])) > 1e-4
    freed = runs[1][0][v, V.I_STATE] == V.FREE
    assert freed == (free_ratio > 0)
    if freed:                   # at a check inside the render, not at its first sample
        assert 64 < np.flatnonzero(runs[1][-3])[-1] < n - 64


@pytest.mark.parametrize("quality,key,free_ratio,drive_on", [
    ("high", 40, 0.0, True), ("high", 90, 0.0, True), ("high", 105, 0.0, True),
    ("normal", 60, 0.0, True), ("high", 60, 0.9, True), ("high", 60, 2.0, False)])
def test_symp_steady_equals_general_loop(quality, key, free_ratio, drive_on):
    """render_symp_steady (a sympathetic string with its damper at rest) gives what
    render_symp_voice gives, bit for bit, driven by noise through the bridge or not:
    output, every state, the free check (``free_ratio`` 0.9 with the sustain pedal up: the
    damped string is freed) and the dormant check (no drive and silent: zeroed, dormant)."""
    from pianosynth.engine import blockloop as B
    eng = Engine(None, 48000, quality=quality, max_voices=96)
    ev = [(0, 0xB0, 64, 127), (0, 0x90, key - 12 if key > 40 else key + 12, 100)]
    eng.render_frames(9601, make_events(ev))
    sv = [v for v in range(eng.iv.shape[0]) if eng.iv[v, V.I_KEY] == key
          and eng.iv[v, V.I_STATE] != V.FREE and eng.iv[v, V.I_SYMP] != 0]
    assert len(sv) == 1
    v = sv[0]
    if free_ratio == 0.9:       # the pedal released: the damper lands, then rests
        eng.fv[v, V.F_DAMP] = eng.fv[v, V.F_DAMP_TARGET] = 1.0
    assert V.symp_steady(eng.fv, v)
    t0 = int(eng.gi[B.G_T])
    n = 6000
    free_level = free_ratio * eng.fv[v, V.F_LEVEL]
    drive = np.random.default_rng(1).standard_normal(8192) * 1e-3 * drive_on
    runs = []
    for steady in (False, True):
        arrays = [a.copy() for a in (eng.iv, eng.fv, eng.nut, eng.bridge, eng.dsos, eng.dstate)]
        iv, fv, nut, bridge, dsos, dstate = arrays
        mix = np.zeros(n + 3)
        rel = eng.gf[B.GF_LEVEL_RELEASE]
        if steady:
            V.render_symp_steady(iv, fv, nut, bridge, dsos, dstate, v, 3, n + 3, t0, mix, rel,
                                 free_level, drive, 512, 0.05)
        else:
            V.render_symp_voice(iv, fv, nut, bridge, dsos, dstate, v, 3, n + 3, t0, mix, 48000.0,
                                eng.gf[B.GF_DAMP_ALPHA], rel, free_level, drive, 512, 0.05)
        runs.append(arrays + [mix])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    iv = runs[1][0]
    assert iv[v, V.I_STATE] == (V.FREE if free_ratio == 0.9 else V.SUSTAINED)
    assert iv[v, V.I_DORMANT] == (1 if free_ratio == 2.0 else 0)
