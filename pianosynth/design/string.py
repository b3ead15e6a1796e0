"""Digital waveguide string design: loss, dispersion and fine-tuning filters (Bank et al. §4).

The reflection filter of Fig. 3 is split as H_r(z) = -H_l(z) H_d(z) H_fd(z):

- :func:`design_loss_filter`: one-pole H_l (eq. 8) from two T60s via Bank's c1/c3 (eq. 9-10);
- :func:`design_dispersion_allpass`: allpass H_d from B by the Lang-Laakso / Rocchesso-Scalcon
  least-squares equation-error method (eq. 13-15), factored into second-order sections;
- :func:`thiran1`: first-order Thiran allpass H_fd for the fractional part of the loop delay,
  with the phase delay of the loss and dispersion filters at f1 included (eq. 13).

:func:`design_string` combines them into the delay lengths and coefficients of one key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..dsp.voice import MAX_LOSS_CUTS, MAX_LOSS_SECTIONS, MAX_PLACEMENT_NOTCHES

LN1000 = math.log(1000.0)
MAX_SECTIONS = 10  # dispersion allpass of order <= 20


# ---------------------------------------------------------------------------------------------
# Loss filter, eq. 8-10
# ---------------------------------------------------------------------------------------------
def design_loss_filter(loop_f0_hz: float, fs: float, t60_f0_s: float, t60_high_s: float,
                       f_high_hz: float, f1_hz: float | None = None) -> tuple[float, float]:
    """One-pole loss filter H_l(z) = g (1 + a1) / (1 + a1 z^-1) (eq. 8) from two T60s.

    Uses Bank's approximation (eq. 9-10): the decay rate of the partial at digital frequency
    theta is sigma = 1/tau = c1 + c3 theta^2, with c1 = f0 (1 - g) and
    c3 = -f0 a1 / (2 (a1 + 1)^2). c1 and c3 are solved from (f1, T60_f0) and
    (f_high, T60_high), clamped to c1 in (0, f0) and c3 >= 0, so that 0 < g < 1 and
    -1 < a1 <= 0: the loop is stable for any input, by construction.

    Parameters
    ----------
    loop_f0_hz : float
        fs / (total loop delay in samples) -- the f0 of eq. 10 (round trips per second), Hz.
    fs : float
        Rate of the string, Hz.
    t60_f0_s, t60_high_s : float
        T60 (s) of the partial at ``f1_hz`` (default ``loop_f0_hz``) and at ``f_high_hz``.

    Returns
    -------
    (g, a1) : floats of eq. 8.
    """
    f1 = loop_f0_hz if f1_hz is None else f1_hz
    tau1 = max(float(t60_f0_s), 1e-3) / LN1000
    tau2 = max(float(t60_high_s), 1e-3) / LN1000
    th1 = 2.0 * math.pi * f1 / fs
    th2 = 2.0 * math.pi * min(max(f_high_hz, f1 * 1.01), 0.49 * fs) / fs
    s1, s2 = 1.0 / tau1, 1.0 / tau2
    c3 = max((s2 - s1) / (th2 * th2 - th1 * th1), 0.0)
    c1 = s1 - c3 * th1 * th1
    c1 = min(max(c1, 1e-9 * loop_f0_hz), 0.999 * loop_f0_hz)
    g = 1.0 - c1 / loop_f0_hz
    if c3 <= 0.0:
        a1 = 0.0
    else:
        # 2 c3 a^2 + (4 c3 + f0) a + 2 c3 = 0, root in (-1, 0]
        bq = 4.0 * c3 + loop_f0_hz
        disc = bq * bq - 16.0 * c3 * c3
        a1 = (-bq + math.sqrt(disc)) / (4.0 * c3)
        a1 = min(max(a1, -0.999), 0.0)
    return g, a1


def loss_filter_response(g: float, a1: float, w: np.ndarray) -> np.ndarray:
    """Complex response of eq. 8 at digital frequencies ``w`` (rad/sample)."""
    z1 = np.exp(-1j * w)
    return g * (1.0 + a1) / (1.0 + a1 * z1)


def loop_group_delay(f0_hz, b, k, fs):
    """Group delay (samples) of a loop whose partials follow eq. 12, at partials ``k``:
    fs / (df_k/dk) = fs sqrt(1 + B k^2) / (f0 (1 + 2 B k^2))."""
    k = np.asarray(k, float)
    return fs * np.sqrt(1.0 + b * k * k) / (f0_hz * (1.0 + 2.0 * b * k * k))


def t60_of_loop(g: float, a1: float, loop_delay, w: np.ndarray, fs: float) -> np.ndarray:
    """T60 (s) of the waveguide partials at ``w`` from the exact loop magnitude per round trip.

    A mode's energy passes the loss filter once per loop group delay ``loop_delay`` (samples,
    scalar or per partial; see :func:`loop_group_delay`), so its amplitude falls by |H_l|
    every ``loop_delay / fs`` seconds: T60 = -3 ln 10 * D / (fs ln|H_l|).
    """
    mag = np.abs(loss_filter_response(g, a1, w))
    return -LN1000 * loop_delay / (fs * np.log(mag))


# ---------------------------------------------------------------------------------------------
# Higher-order loss: one-pole + peaking-cut correction (Bank et al. §4.1, eq. 7 and 11)
# ---------------------------------------------------------------------------------------------
# MAX_LOSS_CUTS (imported above): most correction biquads after the one-pole
# (``loss_order`` = 1 + sections); MAX_LOSS_SECTIONS = those plus MAX_PLACEMENT_NOTCHES, the
# voice kernel's state layout, defined in that kernel file so the kernels' cache follows a
# change


def peaking_cut_biquad(fc_hz, q, gain, fs: float) -> np.ndarray:
    """Peaking-cut biquad (b0, b1, b2, a1, a2), a0 = 1 (RBJ audio-EQ cookbook "peakingEQ").

    |H| = 1 at DC and Nyquist and falls monotonically to ``gain`` at ``fc_hz``: with
    0 < gain <= 1, |H(e^jw)| <= 1 at every frequency, and the poles lie inside the unit
    circle for q > 0 and 0 < fc < fs/2 (stable, minimum phase). ``fc_hz``, ``q`` and
    ``gain`` may be arrays (m,): then one row per cut, shape (m, 5). A gain above 1 gives the
    same shape as a boost (peaking EQ; stable and minimum phase likewise).
    """
    a = np.sqrt(np.asarray(gain, float))
    w0 = 2.0 * np.pi * np.asarray(fc_hz, float) / fs
    alpha = np.sin(w0) / (2.0 * np.asarray(q, float))
    c = np.cos(w0)
    a0 = 1.0 + alpha / a
    return np.stack([(1.0 + alpha * a) / a0, -2.0 * c / a0, (1.0 - alpha * a) / a0,
                     -2.0 * c / a0, (1.0 - alpha / a) / a0], axis=-1)


def each_biquad_response(lsos, w: np.ndarray) -> np.ndarray:
    """Complex responses (m, n) of each biquad row (b0, b1, b2, a1, a2) of ``lsos`` at ``w``."""
    z1 = np.exp(-1j * np.asarray(w, float))
    b0, b1, b2, a1, a2 = (np.reshape(lsos, (-1, 5))[:, j:j + 1] for j in range(5))
    return (b0 + b1 * z1 + b2 * z1 * z1) / (1.0 + a1 * z1 + a2 * z1 * z1)


def biquads_response(lsos, w: np.ndarray) -> np.ndarray:
    """Complex response of a cascade of biquads (rows b0, b1, b2, a1, a2) at ``w``."""
    return np.prod(each_biquad_response(lsos, w), axis=0)


#: the partial level filters' bandwidth: this fraction of the distance to the nearest other
#: partial (their skirts then reach the neighbours at a fraction of a dB per dB of gain;
#: a partial narrower than the filter by far keeps its decay: a partial of T60 0.1 s is
#: 22 Hz wide, the filters on A0 about 14 Hz, on C5 260 Hz)
PARTIAL_EQ_WIDTH = 0.5
#: cuts or boosts below this are left out (dB)
PARTIAL_EQ_MIN_DB = 0.05
#: how far a section's gain may go beyond the gains asked (dB)
PARTIAL_EQ_SLACK_DB = 12.0


def design_partial_eq(partials_hz, gain_db, fs: float, iterations: int = 8) -> np.ndarray:
    """Peaking filters that set the level of each partial of a string's output.

    The levels of the recorded partials differ from the hammer-excited string's by what
    lies between the string and the microphone: the bridge and soundboard admittance and the
    radiation (Bank et al. 2003 §5: the soundboard's response is what the model's body filter
    approximates; here a per-key correction a fit reads from one recording). One RBJ peaking
    section per partial with a gain, centred on it, bandwidth PARTIAL_EQ_WIDTH times the
    distance to the nearest other partial; the sections' gains are solved (fixed-point, in dB)
    so the cascade's magnitude at each of those partials is the asked gain, their skirts
    included. Partials without a gain get no section.

    Parameters
    ----------
    partials_hz : array (n,)
        The string's partial frequencies, Hz, index k - 1.
    gain_db : array (<= n,)
        Level of each partial over the model's, dB (nan or beyond the array: none).
    fs : float
        The string's rate, Hz; partials at or above 0.45 fs get none.
    iterations : int
        Fixed-point passes of the gain solve.

    Returns
    -------
    ndarray (m, 5) float64: biquads (b0, b1, b2, a1, a2), a0 = 1, m <= n; stable and minimum
    phase (RBJ peaking, q > 0); each section's gain within PARTIAL_EQ_SLACK_DB of the range
    of the gains asked (and 0 dB).
    """
    f = np.asarray(partials_hz, float)
    g = np.full(f.size, np.nan)
    gd = np.asarray(gain_db, float)[:f.size]
    g[:gd.size] = gd
    ok = np.isfinite(f) & (f > 0.0) & (f < 0.45 * fs)
    use = ok & np.isfinite(g) & (np.abs(np.nan_to_num(g)) >= PARTIAL_EQ_MIN_DB)
    if not use.any():
        return np.zeros((0, 5))
    # distance to the nearest other partial (the first one's: to DC, its own frequency)
    others = np.concatenate([[0.0], np.sort(f[ok])])
    fu, target = f[use], g[use]
    d = np.abs(others[None, :] - fu[:, None])
    gap = np.where(d > 1e-9 * fu[:, None], d, np.inf).min(axis=1)
    q = fu / (PARTIAL_EQ_WIDTH * gap)
    w = 2.0 * np.pi * fu / fs
    # a section may go PARTIAL_EQ_SLACK_DB beyond the gains asked, to undo its neighbours'
    # skirts (a cut of 20 dB next to a boost of 10 takes some 2.7 dB off the boost)
    lo = min(float(target.min()), 0.0) - PARTIAL_EQ_SLACK_DB
    hi = max(float(target.max()), 0.0) + PARTIAL_EQ_SLACK_DB
    x = target.copy()
    for _ in range(iterations):
        resp = 20.0 * np.log10(np.abs(biquads_response(
            peaking_cut_biquad(fu, q, 10.0 ** (x / 20.0), fs), w)))
        x = np.clip(x + (target - resp), lo, hi)
    return peaking_cut_biquad(fu, q, 10.0 ** (x / 20.0), fs)


def partial_eq_response(sos, w: np.ndarray) -> np.ndarray:
    """Complex response of :func:`design_partial_eq`'s cascade at ``w`` (rad/sample);
    ones when it has no section."""
    return biquads_response(sos, w) if len(sos) else np.ones(np.shape(w), complex)


def loss_response(g: float, a1: float, lsos, w: np.ndarray) -> np.ndarray:
    """Complex response of the whole loss filter: one-pole (eq. 8) times the correction."""
    h = loss_filter_response(g, a1, np.asarray(w, float))
    if lsos is not None and len(lsos):
        h = h * biquads_response(lsos, w)
    return h


def design_loss_correction(w: np.ndarray, loss_np: np.ndarray, g: float, a1: float,
                           n_sections: int, fs: float, f1_hz: float):
    """One-pole lower envelope + peaking cuts fitted to per-partial losses per round trip.

    Parameters
    ----------
    w : array (m,)
        Digital frequencies of the partials (rad/sample at ``fs``).
    loss_np : array (m,)
        Loss per round trip the partials need, nepers: -ln g_k with g_k = exp(-D_k / (fs
        tau_k)) (eq. 7; D_k the loop group delay in samples, tau_k = T60_k / ln 1000).
    g, a1 : float
        A first one-pole (eq. 8), e.g. from eq. 9-10; lowered where it loses more than a
        partial needs.
    n_sections : int
        Correction biquads (1..MAX_LOSS_CUTS).

    Returns
    -------
    (g, a1, lsos) : the one-pole and (n_sections, 5) peaking cuts (b0, b1, b2, a1, a2).

    Notes
    -----
    Stable with |H_l| < 1 at every frequency by construction: 0 < g < 1, -1 < a1 <= 0 and
    every correction is a peaking cut (gain <= 1, |H| <= 1 everywhere). So the one-pole is
    first made a lower envelope of the needed losses (it may never lose more than a
    partial needs: a cut can only add loss), then the cuts (centre, Q, depth) are fitted by
    bounded least squares to the relative decay-time error, the Bank-Valimaki weighting of
    eq. 11 (w_k = 1 / (g_k - 1)^4 on |H| - g_k, i.e. the error in tau_k) divided by tau_k^2.
    """
    from scipy.optimize import least_squares

    w = np.asarray(w, float)
    need = np.maximum(np.asarray(loss_np, float), 1e-12)
    # one-pole lower envelope: scale its loss (-ln|H|) down until it is below every need
    l1 = -np.log(np.abs(loss_filter_response(g, a1, w)))
    scale = min(1.0, float(np.min(need / np.maximum(l1, 1e-15))))
    if scale < 1.0:
        c1 = (1.0 - g) * scale          # eq. 10 with f0 = 1: c1 and c3 scale together
        c3 = -a1 / (2.0 * (a1 + 1.0) ** 2) * scale
        g = 1.0 - c1
        if c3 > 0.0:
            bq = 4.0 * c3 + 1.0
            a1 = (-bq + math.sqrt(bq * bq - 16.0 * c3 * c3)) / (4.0 * c3)
        else:
            a1 = 0.0
        l1 = -np.log(np.abs(loss_filter_response(g, a1, w)))
        over = float(np.max(l1 / need))
        if over > 1.0:                  # eq. 9 is an approximation: lower g once more
            g = 1.0 - (1.0 - g) / over
            l1 = -np.log(np.abs(loss_filter_response(g, a1, w)))
            if np.any(l1 > need):
                g = 1.0 - (1.0 - g) * float(np.min(need / l1))
                l1 = -np.log(np.abs(loss_filter_response(g, a1, w)))
    extra = np.maximum(need - l1, 0.0)  # nepers per round trip the cuts must add
    n = int(n_sections)
    if n <= 0 or not np.any(extra > 1e-3 * need):
        return g, a1, np.zeros((0, 5))
    f = w * fs / (2.0 * np.pi)
    f_lo, f_hi = max(0.5 * f1_hz, 5.0), 0.45 * fs
    x0, lo, hi = [], [], []
    # start: cuts centred on the n largest relative excess regions
    order = np.argsort(-(extra / need))
    centres = []
    for j in order:
        if all(abs(math.log(f[j] / c)) > 0.4 for c in centres):
            centres.append(float(f[j]))
        if len(centres) == n:
            break
    while len(centres) < n:
        centres.append(float(np.exp(np.mean(np.log(f)))) * (1.3 ** len(centres)))
    for c in centres:
        depth = float(np.interp(c, f, extra)) if f.size > 1 else float(extra[0])
        x0 += [math.log(min(max(c, f_lo * 1.01), f_hi * 0.99)), math.log(1.0),
               math.log(max(depth, 1e-9))]
        lo += [math.log(f_lo), math.log(0.1), math.log(1e-12)]
        hi += [math.log(f_hi), math.log(30.0), math.log(2.0)]

    def sections(q):
        return np.array([peaking_cut_biquad(math.exp(q[3 * i]), math.exp(q[3 * i + 1]),
                                            math.exp(-math.exp(q[3 * i + 2])), fs)
                         for i in range(n)])

    def resid(q):
        lt = l1 - np.log(np.abs(biquads_response(sections(q), w)))
        return lt / need - 1.0          # ~ relative error of tau_k (eq. 11 / tau_k^2)

    x0 = np.clip(x0, np.add(lo, 1e-9), np.subtract(hi, 1e-9))
    r = least_squares(resid, x0, bounds=(lo, hi), x_scale=1.0, max_nfev=200 * n)
    lsos = sections(r.x)
    if float(np.sum(r.fun ** 2)) >= float(np.sum((l1 / need - 1.0) ** 2)):
        return g, a1, np.zeros((0, 5))     # the cuts do not help
    check_loss_filter(g, a1, lsos, fs)
    return g, a1, lsos


def check_loss_filter(g: float, a1: float, lsos, fs: float) -> None:
    """Raise ValueError unless the loss filter is stable with |H| < 1 on a dense grid (the
    design guarantees both; this checks the guarantee)."""
    if not (0.0 < g < 1.0 and -1.0 < a1 <= 0.0):
        raise ValueError(f"loss one-pole g = {g}, a1 = {a1} outside 0 < g < 1, -1 < a1 <= 0")
    for b0, b1, b2, p1, p2 in np.reshape(lsos, (-1, 5)):
        if not (abs(p2) < 1.0 and abs(p1) < 1.0 + p2):
            raise ValueError("loss correction section with a pole on or outside |z| = 1")
    wg = np.linspace(0.0, math.pi, 4097)
    if np.max(np.abs(loss_response(g, a1, lsos, wg))) >= 1.0:
        raise ValueError("loss filter magnitude reaches 1")


# ---------------------------------------------------------------------------------------------
# Fractional delay
# ---------------------------------------------------------------------------------------------
def thiran1(delay: float) -> float:
    """First-order Thiran allpass H(z) = (eta + z^-1) / (1 + eta z^-1) for ``delay`` samples.

    eta = (1 - d) / (1 + d); phase delay ``d`` at DC, maximally flat. Stable for d > 0; we use
    d in [0.5, 1.5) where |eta| <= 1/3 (Laakso et al. 1996; Jaffe & Smith 1983).
    """
    return (1.0 - delay) / (1.0 + delay)


def allpass1_phase_delay(eta: float, w: np.ndarray) -> np.ndarray:
    return (w + 2.0 * np.angle(1.0 + eta * np.exp(-1j * w))) / w


#: largest |eta| :func:`allpass1_for_phase_delay` returns (pole radius; a Thiran delay in
#: 0.5..1.5 samples has |eta| <= 1/3)
ETA_MAX = 0.6


def allpass1_for_phase_delay(delay: float, w: float) -> float | None:
    """Coefficient eta of H(z) = (eta + z^-1) / (1 + eta z^-1) whose phase delay at ``w``
    (rad/sample, 0 < w < pi) is ``delay`` samples, with |eta| <= ETA_MAX; None when no
    such eta exists. The phase delay falls monotonically as eta rises, so the root is
    bracketed by the ends."""
    from scipy.optimize import brentq

    def f(eta):
        return float(allpass1_phase_delay(eta, np.array([w]))[0]) - delay
    lo, hi = f(-ETA_MAX), f(ETA_MAX)
    if lo * hi > 0.0:
        return None
    return float(brentq(f, -ETA_MAX, ETA_MAX, xtol=1e-14))


# ---------------------------------------------------------------------------------------------
# Dispersion, eq. 12-15
# ---------------------------------------------------------------------------------------------
def each_section_phase(sos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unwrapped phases (m, n) of each allpass biquad with denominator 1 + c1 z^-1 + c2 z^-2
    (rows of ``sos`` = (c1, c2)) at ``w``."""
    # H = z^-2 D(z^-1)/D(z): phase = -2w - 2 arg D(e^jw); arg D of a minimum-phase
    # second-order D stays inside (-pi, pi), so no unwrapping is needed (the partials are
    # sampled too sparsely for np.unwrap).
    w = np.asarray(w, float)
    z1 = np.exp(-1j * w)
    sos = np.reshape(sos, (-1, 2))
    c1, c2 = sos[:, 0:1], sos[:, 1:2]
    return -2.0 * w - 2.0 * np.angle(1.0 + c1 * z1 + c2 * z1 * z1)


def sos_allpass_phase(sos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unwrapped phase (rad) of a cascade of allpass biquads with denominators
    1 + c1 z^-1 + c2 z^-2 (rows of ``sos`` = (c1, c2)) at ``w``."""
    return each_section_phase(sos, w).sum(axis=0)


def _lsee_allpass(w: np.ndarray, d_target: np.ndarray, order: int, weights: np.ndarray):
    """Lang-Laakso least-squares equation-error allpass (Bank et al. eq. 14-15).

    Returns denominator coefficients a_1..a_n or None when the result is unstable.
    """
    phi = -w * d_target
    beta = -0.5 * (phi + order * w)
    j = np.arange(1, order + 1)
    m = np.sin(beta[:, None] + w[:, None] * j[None, :]) * weights[:, None]
    rhs = -np.sin(beta) * weights
    a, *_ = np.linalg.lstsq(m, rhs, rcond=None)
    roots = np.roots(np.concatenate(([1.0], a)))
    if np.any(np.abs(roots) >= 0.9995):
        return None
    return a, roots


def _roots_to_sos(roots: np.ndarray) -> np.ndarray:
    """Pair poles into real biquad denominators (c1, c2)."""
    roots = list(roots)
    cplx = [r for r in roots if abs(r.imag) > 1e-12 and r.imag > 0]
    real = sorted([r.real for r in roots if abs(r.imag) <= 1e-12])
    sos = []
    for r in cplx:
        sos.append((-2.0 * r.real, abs(r) ** 2))
    for i in range(0, len(real) - 1, 2):
        sos.append((-(real[i] + real[i + 1]), real[i] * real[i + 1]))
    if len(real) % 2:
        # a first-order section z^-1-delayed into a biquad: den 1 + c1 z^-1, num c1 z^-1 + z^-2
        sos.append((-real[-1], 0.0))
    return np.array(sos, dtype=float).reshape(-1, 2)


def dispersion_band_hz(f0_hz: float, fs: float) -> float:
    """Upper edge of the perceptually relevant inharmonicity band for a string, Hz.

    Rocchesso & Scalcon (1999) found the band of audible inharmonicity to grow about linearly
    with log pitch; partials above it only add brightness and may be harmonic (§4.2). We use
    1.5 kHz at A0 rising to 6 kHz at C6 and above, and at most 0.45 fs.
    """
    x = np.clip((math.log2(f0_hz) - math.log2(27.5)) / (math.log2(1046.5) - math.log2(27.5)), 0, 1)
    return min(1500.0 * 4.0 ** x, 0.45 * fs)


def _design_dispersion(f0_hz, b, fs, g, a1, n_band, order, thetas, lsos=None, fk=None,
                       reweight=0):
    """Best LSEE allpass over a grid of the top-of-band phase; returns (err_cents, sos, c).

    ``fk``: target frequencies of partials 1..n_band (Hz; default eq. 12 from f0, B), e.g.
    measured ones. ``reweight``: passes of iteratively reweighted least squares (weights
    grown where the cent error is largest, towards the minimax design)."""
    k = np.arange(1, n_band + 1, dtype=float)
    if fk is None:
        fk = k * f0_hz * np.sqrt(1.0 + b * k * k)
        dfk_top = f0_hz * (1.0 + 2.0 * b * n_band * n_band) / math.sqrt(1.0 + b * n_band ** 2)
    else:
        fk = np.asarray(fk, float)[:n_band]
        dfk_top = (fk[-1] - fk[-2]) if n_band >= 2 else fk[-1]
    w = 2.0 * np.pi * fk / fs
    d_req = k * fs / fk
    d_loss = -np.angle(loss_response(g, a1, lsos, w)) / w
    dg_top = fs / dfk_top
    w0 = 1.0 / np.sqrt(k) if fk is None or reweight == 0 else 1.0 / k
    best = (np.inf, None, 0.0)
    for th in thetas:
        # flat part C of the loop delay chosen so the allpass phase at the band top is
        # th * order * pi; C may not exceed the loop group delay there (allpass tau_g > 0)
        c = d_req[-1] - d_loss[-1] - th * order * math.pi / w[-1]
        if c > dg_top or c < 1.0:
            continue
        weights = w0.copy()
        for _ in range(1 + int(reweight)):
            res = _lsee_allpass(w, d_req - d_loss - c, order, weights)
            if res is None:
                break
            sos = _roots_to_sos(res[1])
            d_disp = -sos_allpass_phase(sos, w) / w
            e = np.abs(1200.0 * np.log2(d_req / (d_disp + d_loss + c)))
            err = float(np.max(e))
            if err < best[0]:
                best = (err, sos, c)
            weights = weights * (1.0 + e / max(err, 1e-12))
    return best


def choose_dispersion_measured(fk_target, fs, g, a1, max_order=20, tol_cents=0.2,
                               lsos=None):
    """Allpass placing given partial frequencies (e.g. measured ones) directly.

    The loop's phase delay must be k fs / f_k at each target partial f_k (k = 1..n): the
    LSEE design of eq. 14-15 is made to that list instead of eq. 12 (Bank et al. §4.2),
    with weights 1/k (equal weight per cent) and a few passes of reweighting towards the
    minimax error. The smallest order (even, <= ``max_order``) within ``tol_cents`` is
    kept, else the order with the smallest largest error. Returns (n_band, sos, err_cents)."""
    fk = np.asarray(fk_target, float)
    n = int(fk.size)
    if n < 2:
        return 0, np.zeros((0, 2)), 0.0
    coarse = np.linspace(0.05, 0.98, 24)
    best = (np.inf, np.zeros((0, 2)))
    tried = []
    for order in range(2, int(max_order) + 1, 2):
        err, sos, _ = _design_dispersion(0.0, 0.0, fs, g, a1, n, order, coarse, lsos, fk=fk,
                                         reweight=3)
        if sos is not None and np.isfinite(err):
            tried.append((err, order, sos))
        if sos is not None and err < best[0] - 0.02:
            best = (err, sos)
        if best[0] <= tol_cents:
            break
    if best[0] > tol_cents:
        # LSEE minimises an equation error; refine the three best designs on the partials'
        # own cent errors (the loop must meet k fs / f_k in phase delay), stable by
        # construction
        for err, order, sos in sorted(tried, key=lambda t: (t[0], t[1]))[:3]:
            e2, s2 = _refine_allpass(fk, fs, g, a1, lsos, sos)
            if e2 < best[0] - 0.02:
                best = (e2, s2)
            if best[0] <= tol_cents:
                break
    if best[1] is None or not np.isfinite(best[0]):
        return 0, np.zeros((0, 2)), float("inf")
    return n, best[1], float(best[0])


def _sos_to_reflection(sos, r_max):
    """Allpass sections (c1, c2) as unbounded parameters: reflection coefficients
    k2 = c2, k1 = c1 / (1 + k2), clipped inside +-``r_max`` and mapped by artanh(k / r_max);
    :func:`_reflection_to_sos` inverts it, so any parameters give stable sections."""
    sos = np.asarray(sos, float).reshape(-1, 2)
    k2 = np.clip(sos[:, 1], -0.999 * r_max, 0.999 * r_max)
    k1 = np.clip(sos[:, 0] / (1.0 + k2), -0.999 * r_max, 0.999 * r_max)
    return np.column_stack([np.arctanh(k1 / r_max), np.arctanh(k2 / r_max)]).ravel()


def _reflection_to_sos(q, r_max):
    """Sections (n, 2) from the parameters of :func:`_sos_to_reflection`."""
    kk = r_max * np.tanh(np.asarray(q, float).reshape(-1, 2))
    return np.column_stack([kk[:, 0] * (1.0 + kk[:, 1]), kk[:, 1]])


def _refine_allpass(fk, fs, g, a1, lsos, sos, r_max=0.9995):
    """Least-squares refinement of an allpass cascade so the loop's phase delay meets
    k fs / f_k at the target partials (residuals in cents, with the flat delay free).

    Each section's denominator 1 + c1 z^-1 + c2 z^-2 is held as reflection coefficients
    (c2 = k2, c1 = k1 (1 + k2), |k1|, |k2| < ``r_max``): every iterate is stable. Returns
    (largest |cents|, sos)."""
    from scipy.optimize import least_squares

    fk = np.asarray(fk, float)
    k = np.arange(1, fk.size + 1, dtype=float)
    w = 2.0 * np.pi * fk / fs
    d_req = k * fs / fk
    d_loss = -np.angle(loss_response(g, a1, lsos, w)) / w
    sos = np.asarray(sos, float).reshape(-1, 2)

    def unpack(q):
        return _reflection_to_sos(q[:-1], r_max), q[-1]

    def resid(q):
        sec, c = unpack(q)
        d = -sos_allpass_phase(sec, w) / w + d_loss + c
        return 1200.0 * np.log2(d_req / np.maximum(d, 1e-9))

    d0 = -sos_allpass_phase(sos, w) / w + d_loss
    c0 = float(np.mean(d_req - d0))
    q0 = np.concatenate([_sos_to_reflection(sos, r_max), [c0]])
    best = (float("inf"), sos)
    wt = np.ones_like(w)
    for _ in range(4):          # reweighted towards the smallest largest error
        try:
            r = least_squares(lambda q: wt * resid(q), q0, method="lm",
                              max_nfev=200 * q0.size)
        except (ValueError, np.linalg.LinAlgError):
            break
        sec, c = unpack(r.x)
        e = np.abs(resid(r.x))
        if not np.all(np.isfinite(e)) or c < 2.0:
            break
        if float(np.max(e)) < best[0]:
            best = (float(np.max(e)), sec)
        q0 = r.x
        wt = wt * (1.0 + 2.0 * e / max(float(np.max(e)), 1e-12))
    return best


def _refine_loop(fk, fs, n_int, eta, sos, g, a1, lsos, r_max=0.9995):
    """Allpass sections and fine-tuning allpass refined together, the integer delay
    ``n_int`` fixed, so the whole loop's phase delay (:func:`loop_phase_delay`) meets
    k fs / f_k at the target partials ``fk`` (least squares in cents; Bank et al. §4.2,
    eq. 13 with H_fd inside the fit). Sections held as reflection coefficients and
    |eta| < 0.9: every iterate is stable. Returns (sos, eta), the inputs when not better."""
    from scipy.optimize import least_squares

    fk = np.asarray(fk, float)
    sos = np.asarray(sos, float).reshape(-1, 2)
    if fk.size < 2 or not len(sos):
        return sos, eta
    k = np.arange(1, fk.size + 1, dtype=float)
    w = 2.0 * np.pi * fk / fs
    d_req = k * fs / fk
    d_fix = n_int - np.angle(loss_response(g, a1, lsos, w)) / w

    def unpack(q):
        return _reflection_to_sos(q[:-1], r_max), 0.9 * math.tanh(q[-1])

    def resid(q):
        sec, e = unpack(q)
        d = d_fix + allpass1_phase_delay(e, w) - sos_allpass_phase(sec, w) / w
        return 1200.0 * np.log2(d_req / np.maximum(d, 1e-9))

    q0 = np.concatenate([_sos_to_reflection(sos, r_max),
                         [math.atanh(float(np.clip(eta / 0.9, -0.999, 0.999)))]])
    e0 = float(np.max(np.abs(resid(q0))))
    if not np.isfinite(e0) or e0 < 0.05:
        return sos, eta
    try:
        r = least_squares(resid, q0, method="lm" if fk.size >= q0.size else "trf",
                          max_nfev=100 * q0.size)
    except (ValueError, np.linalg.LinAlgError):
        return sos, eta
    e1 = np.abs(resid(r.x))
    if not np.all(np.isfinite(e1)) or float(np.max(e1)) >= e0:
        return sos, eta
    sec, e = unpack(r.x)
    return sec, float(e)


#: placement notches: depth at the centre (|H|), and the part of each gap between two
#: partials their centres may take (0.5 -+ NOTCH_SPAN of the gap)
NOTCH_GAIN = 0.1
NOTCH_SPAN = 0.25
#: a fitted string gets placement notches only when the allpass leaves a partial this far off
NOTCH_TOL_CENTS = 0.25


def _notch_sections(fk, fs, q_bw, q_pos):
    """Peaking cuts (n - 1, 5) between the partials ``fk`` (Hz): gap g's centre at
    0.5 + NOTCH_SPAN tanh(q_pos[g]) of the gap, bandwidth exp(q_bw[g]) times the gap."""
    gap = np.diff(fk)
    fc = fk[:-1] + gap * (0.5 + NOTCH_SPAN * np.tanh(q_pos))
    return peaking_cut_biquad(fc, fc / (gap * np.exp(q_bw)), NOTCH_GAIN, fs)


def design_placement_notches(fk, fs, n_int, eta, sos, g, a1, lsos, t60_weight=0.02,
                             tol_cents=0.0, r_max=0.9995):
    """Narrow peaking cuts between the partials, refined with the dispersion allpass and the
    Thiran, so that the loop's partials meet target frequencies that zigzag from partial to
    partial (a recording's measured ones), which no allpass can follow.

    An allpass's group delay is positive and each second-order section adds 2 pi of phase:
    a feature narrow enough to move one partial against its neighbours (some 0.05 rad at
    partial 9 of A0 for 1.6 cents) would add a whole extra mode between them. A minimum-phase
    cut adds no net phase: a cut of depth ``NOTCH_GAIN`` and bandwidth b at distance d
    advances the phase above it and delays it below by about b / 2d, at a loss of only
    (b / 2d)^2 / 2 per round trip. So one cut per gap pushes its two partials apart, and the
    allpass takes up the smooth part. This is what the soundboard's modes do to a real
    string through the bridge's admittance (Bank et al. §5; the partials of a recorded A0
    sit up to 2 cents either side of any smooth curve). Each cut also brings a weak,
    quickly damped mode of the loop near its centre: the partial beats slightly, as
    recorded partials do.

    Parameters
    ----------
    fk : array (n,)
        Target partial frequencies (Hz), k = 1..n, increasing.
    fs : float
        String rate (Hz).
    n_int, eta, sos, g, a1, lsos
        The loop as designed without cuts: integer delay, Thiran coefficient, allpass
        sections (m, 2), one-pole loss (eq. 8) and its correction biquads (j, 5).
    t60_weight : float
        Weight of the cuts' loss at the partials (per % of T60) against the cents.
    tol_cents : float
        No cuts when the loop without them is already within this (largest |cents|).

    Returns
    -------
    (notches, sos, eta, err_cents): the cuts (n - 1, 5), the refined allpass and Thiran, and
    the largest |cent error| at the targets; ``notches`` is empty when the loop without them
    is within ``tol_cents`` or when they do not gain 0.1 cent.

    Notes
    -----
    Least squares in cents (and the cuts' T60 loss), with each parameter's Jacobian column
    from its own section: cuts and allpass sections add their phases, so one perturbation of
    every cut (or section) at once gives all their columns.
    """
    from scipy.optimize import least_squares

    fk = np.asarray(fk, float)
    sos = np.asarray(sos, float).reshape(-1, 2)
    lsos = np.asarray(lsos, float).reshape(-1, 5)
    n = fk.size
    empty = np.zeros((0, 5))
    if n < 3 or not len(sos):
        return empty, sos, eta, float("nan")
    k = np.arange(1, n + 1, dtype=float)
    w = 2.0 * np.pi * fk / fs
    d_req = k * fs / fk
    ng, ns = n - 1, len(sos)
    lh0 = np.log(np.abs(loss_response(g, a1, lsos, w)))
    d_fix = n_int - np.angle(loss_response(g, a1, lsos, w)) / w
    q_bw0 = math.log(0.002)
    c_ln2 = 1200.0 / math.log(2.0)
    i_pos, i_sec, i_eta = ng, 2 * ng, 2 * ng + 2 * ns

    def parts(q):
        hn = each_biquad_response(_notch_sections(fk, fs, q[:ng], q[i_pos:i_sec]), w)
        sec = _reflection_to_sos(q[i_sec:i_eta], r_max)
        e = 0.9 * math.tanh(q[i_eta])
        return hn, sec, e

    def delay(hn, sec, e):
        return (d_fix + allpass1_phase_delay(e, w)
                - sos_allpass_phase(sec, w) / w
                - np.angle(hn).sum(axis=0) / w)

    def resid(q):
        hn, sec, e = parts(q)
        d = delay(hn, sec, e)
        lhn = np.log(np.abs(hn)).sum(axis=0)
        return np.concatenate([c_ln2 * np.log(d_req / np.maximum(d, 1e-9)),
                               t60_weight * 100.0 * lhn / lh0, 0.02 * (q[:ng] - q_bw0)])

    def jac(q):
        h = 1e-6
        hn, sec, e = parts(q)
        d = delay(hn, sec, e)
        dc = -c_ln2 / d                       # d(cents) / d(delay)
        jm = np.zeros((2 * n + ng, q.size))
        for lo, hi in ((0, ng), (i_pos, i_sec)):          # the cuts' bandwidths, centres
            q2 = q.copy()
            q2[lo:hi] += h
            hn2 = each_biquad_response(_notch_sections(fk, fs, q2[:ng], q2[i_pos:i_sec]), w)
            dph = np.angle(hn2 / hn) / h                    # (ng, n)
            dlm = (np.log(np.abs(hn2)) - np.log(np.abs(hn))) / h
            jm[:n, lo:hi] = (dc * (-dph / w)).T
            jm[n:2 * n, lo:hi] = (t60_weight * 100.0 * dlm / lh0).T
        jm[2 * n + np.arange(ng), np.arange(ng)] = 0.02
        ph = each_section_phase(sec, w)
        qs = q[i_sec:i_eta].reshape(-1, 2)
        for j in range(2):                                  # each section's two parameters
            q2 = qs.copy()
            q2[:, j] += h
            dph = (each_section_phase(_reflection_to_sos(q2.ravel(), r_max), w) - ph) / h
            jm[:n, i_sec + j:i_eta:2] = (dc * (-dph / w)).T
        e2 = 0.9 * math.tanh(q[i_eta] + h)
        jm[:n, i_eta] = dc * (allpass1_phase_delay(e2, w) - allpass1_phase_delay(e, w)) / h
        return jm

    d_plain = d_fix + allpass1_phase_delay(eta, w) - sos_allpass_phase(sos, w) / w
    e_plain = float(np.max(np.abs(c_ln2 * np.log(d_req / d_plain))))
    if e_plain <= tol_cents:
        return empty, sos, eta, e_plain
    q0 = np.concatenate([np.full(ng, q_bw0), np.zeros(ng), _sos_to_reflection(sos, r_max),
                         [math.atanh(float(np.clip(eta / 0.9, -0.999, 0.999)))]])
    e0 = float(np.max(np.abs(resid(q0)[:n])))
    try:
        r = least_squares(resid, q0, jac=jac, method="trf", max_nfev=400)
    except (ValueError, np.linalg.LinAlgError):
        return empty, sos, eta, e0
    c = resid(r.x)[:n]
    e1 = float(np.max(np.abs(c))) if np.all(np.isfinite(c)) else float("inf")
    if not e1 < e0 - 0.1:
        return empty, sos, eta, e0
    _, sec, e = parts(r.x)
    return _notch_sections(fk, fs, r.x[:ng], r.x[i_pos:i_sec]), sec, float(e), e1

def choose_dispersion(f0_hz, b, fs, g, a1, max_order=16, tol_cents=1.0, lsos=None,
                      min_partials=0):
    """Smallest allpass order covering the perceptual band within ``tol_cents``; when even
    ``max_order`` cannot, the widest band it can cover. Returns (n_band, sos).

    ``min_partials`` widens the band to cover at least that many partials (a fitted key:
    partials 1-20 on eq. 12), up to 0.45 fs. ``lsos``: the loss correction biquads, whose
    phase the allpass compensates like the one-pole's."""
    if b <= 0.0:
        return 0, np.zeros((0, 2))
    k = np.arange(1, 400, dtype=float)
    fk = k * f0_hz * np.sqrt(1.0 + b * k * k)
    f_band = dispersion_band_hz(f0_hz, fs)
    if min_partials > 0:
        f_band = min(max(f_band, 1.0001 * fk[int(min_partials) - 1]), 0.45 * fs)
    l_cap = int(np.count_nonzero(fk <= f_band))
    if l_cap < 2:
        return 0, np.zeros((0, 2))
    coarse = np.linspace(0.05, 0.98, 24)
    for order in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20):
        if order > max_order:
            break
        err, sos, _ = _design_dispersion(f0_hz, b, fs, g, a1, l_cap, order, coarse, lsos)
        if err <= tol_cents:
            return l_cap, sos
    lo, hi, found = 2, l_cap, None
    while lo <= hi:
        mid = (lo + hi) // 2
        err, sos, _ = _design_dispersion(f0_hz, b, fs, g, a1, mid, max_order, coarse, lsos)
        if err <= tol_cents:
            found = (mid, sos)
            lo = mid + 1
        else:
            hi = mid - 1
    return found if found is not None else (0, np.zeros((0, 2)))


@dataclass
class StringDesign:
    """Coefficients of one key's waveguide (Bank et al. Fig. 3, eq. 8-15).

    nut_delay, bridge_delay : int, lengths of the two delay lines (samples).
    loss_g, loss_a1 : one-pole loss filter (eq. 8). damped_g, damped_a1 : its damped design.
    disp_sos : (n_sections, 2) float64, allpass biquad denominators (c1, c2).
    thiran_eta : first-order Thiran coefficient. loop_delay : total phase delay at f1 (samples).
    n_band : partials inside the dispersion design band. partials_hz : predicted partial
    frequencies of the loop (k = 1..n_band), Hz.
    loss_sos : (n, 5) float64, peaking-cut correction biquads (b0, b1, b2, a1, a2) after the
    one-pole (higher-order loss filter, §4.1); n = 0 for the one-pole alone.
    """

    nut_delay: int
    bridge_delay: int
    loss_g: float
    loss_a1: float
    damped_g: float
    damped_a1: float
    disp_sos: np.ndarray
    thiran_eta: float
    loop_delay: float
    n_band: int
    partials_hz: np.ndarray
    loss_sos: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    def t60_s(self, w, fs: float, loop_delay) -> np.ndarray:
        """T60 (s) of partials at ``w`` given the loop group delay ``loop_delay`` (samples),
        from the whole loss filter (one-pole and correction)."""
        mag = np.abs(loss_response(self.loss_g, self.loss_a1, self.loss_sos, w))
        return -LN1000 * np.asarray(loop_delay, float) / (fs * np.log(mag))


def loop_phase_delay(w, n_int, eta, sos, g, a1, lsos=None):
    """Total phase delay (samples) of the loop at ``w``: integer + Thiran + dispersion + loss
    (one-pole and, when given, the correction biquads ``lsos``)."""
    w = np.atleast_1d(np.asarray(w, float))
    d = n_int + allpass1_phase_delay(eta, w)
    if len(sos):
        d = d - sos_allpass_phase(sos, w) / w
    d = d - np.angle(loss_response(g, a1, lsos, w)) / w
    return d


def loop_partials_hz(fs, n_int, eta, sos, g, a1, n, f_guess, lsos=None):
    """Resonance frequencies of the loop: solve w D(w) = 2 pi k for k = 1..n (Newton)."""
    out = np.empty(n)
    for i in range(n):
        k = i + 1
        w = 2.0 * np.pi * f_guess[i] / fs
        for _ in range(30):
            d = loop_phase_delay(w, n_int, eta, sos, g, a1, lsos)[0]
            f = w * d - 2.0 * np.pi * k
            h = 1e-6
            d2 = loop_phase_delay(w + h, n_int, eta, sos, g, a1, lsos)[0]
            fp = ((w + h) * d2 - w * d) / h
            step = f / fp
            w -= step
            if abs(step) < 1e-13:
                break
        out[i] = w * fs / (2.0 * np.pi)
    return out


def _allpass_group_delay(sos, w):
    """Group delay (samples) of the dispersion allpass at ``w`` (central differences)."""
    if not len(sos):
        return np.zeros_like(w)
    h = 1e-6
    return -(sos_allpass_phase(sos, w + h) - sos_allpass_phase(sos, w - h)) / (2.0 * h)


def _partial_targets(f0_hz, b, fs, cents):
    """Target frequencies of partials 1..n: eq. 12 moved by ``cents`` (nan or 0: on eq. 12),
    up to the last one given and below 0.45 fs; None when no target is given."""
    c = np.array(cents, float)
    if c.size == 0 or not np.any(np.isfinite(c) & (c != 0.0)):
        return None
    n = int(np.flatnonzero(np.isfinite(c) & (c != 0.0))[-1]) + 1
    k = np.arange(1, n + 1, dtype=float)
    f = k * f0_hz * np.sqrt(1.0 + b * k * k) * 2.0 ** (np.nan_to_num(c[:n]) / 1200.0)
    f = f[f < 0.45 * fs]
    if f.size < 2 or np.any(np.diff(f) <= 0.0):
        return None
    return f


@lru_cache(maxsize=4096)
def _design_string_cached(f0_hz, b, fs, t60_f0_s, t60_high_s, t60_high_hz, damped_t60_s,
                          damped_t60_high_s, strike_position, max_order, t60_partials=(),
                          loss_order=1, band_partials=0, partial_targets=()):
    f1 = f0_hz * math.sqrt(1.0 + b)
    targets = _partial_targets(f0_hz, b, fs, partial_targets)
    if targets is not None:
        f1 = float(targets[0])
    d1 = fs / f1                                   # loop phase delay needed at f1
    g, a1 = design_loss_filter(f1, fs, t60_f0_s, t60_high_s, t60_high_hz)
    gd, a1d = design_loss_filter(f1, fs, damped_t60_s, damped_t60_high_s, t60_high_hz)
    if band_partials > 0:
        max_order = max(max_order, 2 * MAX_SECTIONS)
    def dispersion(g, a1, lsos=None):
        if targets is not None:
            return choose_dispersion_measured(targets, fs, g, a1, max_order=2 * MAX_SECTIONS,
                                              lsos=lsos)[:2]
        return choose_dispersion(f0_hz, b, fs, g, a1, max_order=max_order, lsos=lsos,
                                 min_partials=band_partials)

    n_band, sos = dispersion(g, a1)
    lsos = np.zeros((0, 5))
    t60p = np.array(t60_partials, float)
    if loss_order > 1 and np.isfinite(t60p).sum() >= 2:
        # higher-order loss (§4.1): per-partial T60s -> losses per round trip over the real
        # loop group delay (eq. 7), a one-pole lower envelope plus peaking cuts (eq. 11)
        kk = np.arange(1, t60p.size + 1, dtype=float)
        fk = kk * f0_hz * np.sqrt(1.0 + b * kk * kk)
        if targets is not None:
            m = min(fk.size, targets.size)
            fk[:m] = targets[:m]
        ok = np.isfinite(t60p) & (t60p > 0) & (fk < 0.45 * fs)
        w = 2.0 * np.pi * fk[ok] / fs
        w1 = np.array([2.0 * np.pi * f1 / fs])
        pd_disp1 = (-sos_allpass_phase(sos, w1) / w1)[0] if len(sos) else 0.0
        dk = d1 - pd_disp1 + _allpass_group_delay(sos, w)
        need = dk * LN1000 / (fs * t60p[ok])
        # a first one-pole from the list itself: eq. 9 regression, relative weights
        th2 = w * w
        a = np.column_stack([np.ones_like(th2), th2]) / need[:, None]
        (c1, c3), *_ = np.linalg.lstsq(a, np.ones_like(need), rcond=None)
        c1 = min(max(c1, 1e-6 * float(need.min())), 0.999)
        c3 = max(c3, 0.0)
        g0 = 1.0 - c1
        a10 = 0.0
        if c3 > 0.0:
            bq = 4.0 * c3 + 1.0
            a10 = (-bq + math.sqrt(bq * bq - 16.0 * c3 * c3)) / (4.0 * c3)
        g, a1, lsos = design_loss_correction(w, need, g0, max(a10, -0.999), loss_order - 1,
                                             fs, f1)
        if len(lsos):
            n_band, sos = dispersion(g, a1, lsos)
    eta = 0.0
    # fine tuning: integer + Thiran for what remains at f1 (eq. 13 with H_fd separate)
    w1 = np.array([2.0 * np.pi * f1 / fs])
    d_disp1 = (-sos_allpass_phase(sos, w1) / w1)[0] if len(sos) else 0.0
    d_loss1 = (-np.angle(loss_response(g, a1, lsos, w1)) / w1)[0]
    rem = d1 - d_disp1 - d_loss1
    n_int = int(math.floor(rem - 0.5))
    for _ in range(4):  # the Thiran's own phase delay at f1 differs slightly from d at DC
        eta = thiran1(rem - n_int)
        err = d1 - (n_int + allpass1_phase_delay(eta, w1)[0] + d_disp1 + d_loss1)
        rem += err
    eta = thiran1(rem - n_int)
    err = d1 - (n_int + allpass1_phase_delay(eta, w1)[0] + d_disp1 + d_loss1)
    if abs(err) > 1e-6:
        # a loop of a few samples (f1 high in the string's band, a sympathetic string at
        # fs/8): the allpass's phase delay at f1 is far from its delay at DC and the fixed
        # point above does not settle (it left such strings up to 4 semitones off); solve
        # for the coefficient at f1 itself, with the integer delay as set or one off
        for n_try in (n_int, n_int - 1, n_int + 1):
            e = allpass1_for_phase_delay(d1 - d_disp1 - d_loss1 - n_try, float(w1[0]))
            if e is not None and n_try >= 2:
                n_int, eta = n_try, e
                break
    if n_int < 2:
        raise ValueError(f"f1 = {f1:.1f} Hz: the loop of {d1:.2f} samples at fs = {fs:.0f} Hz "
                         "is too short for the filters' delays")
    if targets is not None and len(sos):
        # the Thiran's phase delay is flat only near DC: in a short treble loop it moves the
        # upper partials by tens of cents (C8 at 48 kHz, partial 3 at w = 1.8: 25 cents), so
        # allpass and Thiran are refined together on the measured targets
        sos, eta = _refine_loop(targets[:max(n_band, 1)], fs, n_int, eta, sos, g, a1, lsos)
        # what the allpass cannot follow (partials zigzagging about any smooth curve, as a
        # recorded bass string's do): narrow cuts between the partials
        tb = targets[:max(n_band, 1)][:MAX_PLACEMENT_NOTCHES + 1]
        tb = tb[:MAX_LOSS_SECTIONS - len(lsos) + 1]
        notch, sos2, eta2, _ = design_placement_notches(tb, fs, n_int, eta, sos, g, a1, lsos,
                                                        tol_cents=NOTCH_TOL_CENTS)
        if len(notch):
            sos, eta = sos2, eta2
            lsos = np.vstack([np.reshape(lsos, (-1, 5)), notch])
    # the strike point divides the *whole* loop (Fig. 3): the nut line is the fraction beta
    # of the loop's phase delay at f1, filters included, so that partial k gets the comb
    # 1 - e^{-j 2 pi k beta} of a string struck at beta whatever share of the loop the
    # dispersion allpass takes (it sits at the bridge end; beta * n_int put partial 8's notch
    # of beta = 1/8 at partial 10 on C3 with 4 sections and at 12.5 with 9)
    nut = int(min(max(round(strike_position * d1), 1), n_int - 1))
    bridge = max(1, n_int - nut)
    n_out = max(n_band, 1)
    kk = np.arange(1, n_out + 1, dtype=float)
    guess = kk * f0_hz * np.sqrt(1.0 + b * kk * kk)
    if targets is not None:
        guess[:min(n_out, targets.size)] = targets[:n_out]
    partials = loop_partials_hz(fs, nut + bridge, eta, sos, g, a1, n_out, guess, lsos)
    return StringDesign(nut, bridge, g, a1, gd, a1d, np.ascontiguousarray(sos), eta,
                        d1, n_band, partials, np.ascontiguousarray(lsos, dtype=np.float64))


def design_string(f0_hz: float, b: float, fs: float, t60_f0_s: float, t60_high_s: float,
                  t60_high_hz: float, damped_t60_s: float, damped_t60_high_s: float,
                  strike_position: float = 0.11, max_order: int = 16,
                  t60_partials_s=None, loss_order: int = 1,
                  band_partials: int = 0, partial_cents=None,
                  min_loop: float = 4.0) -> StringDesign:
    """Design one key's waveguide string.

    Parameters
    ----------
    f0_hz : float
        f0 of eq. 12 (f_k = k f0 sqrt(1 + B k^2)), Hz, so partial 1 is at f0 sqrt(1 + B).
    b : float
        Inharmonicity coefficient B (eq. 12), >= 0.
    fs : float
        String sampling rate, Hz.
    t60_f0_s, t60_high_s, t60_high_hz : float
        Undamped T60 at partial 1 and at ``t60_high_hz`` (loss filter, eq. 8-10).
    damped_t60_s, damped_t60_high_s : float
        The same for the damped string (damper felt down).
    strike_position : float
        Hammer position as a fraction of the string length, from the agraffe (nut) end.
    max_order : int
        Largest dispersion allpass order (even).
    t60_partials_s : sequence of float, optional
        Measured T60 (s) of partials k = 1, 2 ... (nan: not given). With ``loss_order`` > 1
        the loss filter is a one-pole plus ``loss_order - 1`` peaking cuts fitted to them
        (:func:`design_loss_correction`); the damped design stays the one-pole.
    loss_order : int
        1 (the one-pole of eq. 8-10) .. 1 + MAX_LOSS_CUTS.
    band_partials : int
        When > 0, the dispersion design band covers at least this many partials (order up
        to 2 MAX_SECTIONS).
    partial_cents : sequence of float, optional
        Offsets (cents) of partials k = 1, 2 ... from eq. 12 (nan or 0: on it), e.g. the
        deviations of a recording's measured partials. When any is given, the dispersion
        allpass (order up to 2 MAX_SECTIONS) is designed to place partials 1..n (n the last
        one given) at those frequencies directly (:func:`choose_dispersion_measured`), and
        partial 1's target sets the fine tuning.
    min_loop : float
        Shortest loop allowed, fs / f1 in samples (>= 2.6): a delay line of at least one
        sample each side of the strike point and the Thiran's 0.5..1.5 samples. An unstruck
        sympathetic string may go that short; a struck one needs room for the hammer.

    Returns
    -------
    StringDesign

    Raises
    ------
    ValueError
        When f1 is above 0.45 fs or the loop would be shorter than ``min_loop`` samples
        (or too short for the two delay lines and the Thiran once the filters' delays are
        taken off).
    """
    f1 = f0_hz * math.sqrt(1.0 + b)
    if not (0 < f1 < 0.45 * fs) or fs / f1 < max(min_loop, 2.6):
        raise ValueError(f"f1 = {f1:.1f} Hz cannot be played at fs = {fs:.0f} Hz")
    return _design_string_cached(float(f0_hz), float(b), float(fs), float(t60_f0_s),
                                 float(t60_high_s), float(t60_high_hz), float(damped_t60_s),
                                 float(damped_t60_high_s), float(strike_position), int(max_order),
                                 tuple(float(t) if np.isfinite(t) else 0.0 for t in
                                       (t60_partials_s if t60_partials_s is not None else ())),
                                 int(min(max(loss_order, 1), 1 + MAX_LOSS_CUTS)),
                                 int(band_partials),
                                 tuple(float(c) if np.isfinite(c) else 0.0 for c in
                                       (partial_cents if partial_cents is not None else ())))
