"""Soundboard (Bank et al. 2003 §5, Fig. 6): kernel vs a naive numpy/scipy model, block-size
invariance, low band vs the modal target in 1/3 octaves, FDN stability and T60, extremes."""
import warnings

import numpy as np
import pytest
from scipy import signal
from scipy.linalg import hadamard

from pianosynth.design.soundboard import (SPLIT_HZ, design_soundboard, modal_density,
                                          soundboard_latency, soundboard_modes,
                                          soundboard_target_ir)
from pianosynth.dsp.soundboard import (make_soundboard_state, render_soundboard,
                                       reset_soundboard)

RATES = [44100, 48000, 96000]


def render(coeffs, x, block=None, state=None):
    st = make_soundboard_state(coeffs) if state is None else state
    out = np.zeros((x.shape[0], 2))
    if block is None:
        render_soundboard(st, coeffs, x, out, x.shape[0])
    else:
        tmp = np.zeros((block, 2))
        for s in range(0, x.shape[0], block):
            n = min(block, x.shape[0] - s)
            render_soundboard(st, coeffs, x[s:s + n], tmp, n)
            out[s:s + n] = tmp[:n]
    return out


# ---------------------------------------------------------------- naive reference
def prototypes(c):
    """FIR prototypes back from the kernel tables (decimator reversed, interpolator polyphase)."""
    h = c.dec_table.ravel()[::-1].copy()
    m, j = c.int_table.shape
    g = np.zeros(m * j)
    for r in range(m):
        g[r::m] = c.int_table[r, ::-1]
    return h, g


def naive_soundboard(c, x):
    """The block diagram written out with np.convolve / lfilter and a plain FDN loop."""
    n = x.shape[0]
    m = c.dec_table.shape[0]
    h, g = prototypes(c)
    # low band
    y = np.convolve(x, h)[:n][::m]                       # y[k] = (h*x)[k m]
    u = signal.lfilter(c.fir_rev[::-1], [1.0], y)
    for (a1, a2), (b0, b1) in zip(c.bank_a, c.bank_b):
        u += signal.lfilter([b0, b1], [1.0, a1, a2], y)

    def up(v):
        z = np.zeros(v.shape[0] * m)
        z[::m] = v
        return np.convolve(z, g)[:n]

    low, lpx = up(u), up(y)
    # high band input: x delayed by the latency minus the lowpassed x; tone filter
    d = int(c.latency[0])
    xd = np.concatenate([np.zeros(d), x])[:n]
    k, q, p = c.tone
    t = signal.lfilter([k, -k * q], [1.0, -p], xd - lpx)
    # FDN: orthonormal Hadamard, one-pole absorption with DC gain g0 per line
    nl = c.fdn_in.shape[0]
    lens = np.diff(c.fdn_off)
    hmat = hadamard(nl) / np.sqrt(nl)
    b_abs = c.fdn_b * np.sqrt(nl)                         # g0 (1 - p)
    w = np.zeros((nl, n))
    a = np.zeros(nl)
    yl = np.zeros(n)
    yr = np.zeros(n)
    for i in range(n):
        s = np.array([w[l, i - lens[l]] if i >= lens[l] else 0.0 for l in range(nl)])
        a = b_abs * s + c.fdn_p * a
        w[:, i] = hmat @ a + c.fdn_in * t[i]
        tap = np.array([w[l, i - c.fdn_tap[l]] if i >= c.fdn_tap[l] else 0.0
                        for l in range(nl)])
        yl[i] = c.fdn_out[0] @ w[:, i] + c.fdn_tap_out[0] @ tap
        yr[i] = c.fdn_out[1] @ w[:, i] + c.fdn_tap_out[1] @ tap
    gl, gh = c.gains
    return np.c_[gl * low + gh * yl, gl * low + gh * yr]


@pytest.mark.parametrize("fs,kw", [(44100, {}), (48000, dict(balance=0.4, level_db=-6.0)),
                                   (96000, dict(fdn_t60_s=2.0, balance=-0.3))])
def test_kernel_matches_naive(fs, kw):
    c = design_soundboard(fs, **kw)
    x = np.random.default_rng(7).standard_normal(2500)
    x[:10] = 0.0
    x[10] = 5.0
    ref = naive_soundboard(c, x)
    out = render(c, x)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


# ---------------------------------------------------------------- streaming properties
@pytest.mark.parametrize("fs", [44100, 96000])
def test_block_size_invariance(fs):
    c = design_soundboard(fs)
    x = np.random.default_rng(8).standard_normal(3000)
    ref = render(c, x)
    for block in (1, 64, 65, 512):
        np.testing.assert_array_equal(render(c, x, block=block), ref)


def test_reset_and_zero_input():
    c = design_soundboard(44100)
    x = np.random.default_rng(9).standard_normal(1000)
    st = make_soundboard_state(c)
    a = render(c, x, state=st)
    reset_soundboard(st)
    b = render(c, x, state=st)
    np.testing.assert_array_equal(a, b)
    reset_soundboard(st)
    assert np.all(render(c, np.zeros(3000), state=st) == 0.0)


def test_redesign_keeps_state_and_smooths_gain():
    """Level/T60/balance changes keep every array shape (the engine copies the state over)
    and the gains glide (10 ms lag) instead of jumping."""
    fs = 48000
    c0 = design_soundboard(fs)
    c1 = design_soundboard(fs, level_db=-20.0, fdn_t60_s=1.0, balance=0.5)
    for a, b in zip(make_soundboard_state(c0), make_soundboard_state(c1)):
        assert a.shape == b.shape and a.dtype == b.dtype
    st = make_soundboard_state(c0)
    render(c0, np.random.default_rng(1).standard_normal(2000), state=st)
    g_before = st.gain.copy()
    render(c1, np.zeros(1), state=st)
    step = np.abs(st.gain - g_before)
    assert np.all(step <= np.abs(c1.gains - g_before) * c1.smooth[0] * 1.0001)
    render(c1, np.zeros(int(0.2 * fs)), state=st)
    np.testing.assert_allclose(st.gain, c1.gains, rtol=1e-6)


# ---------------------------------------------------------------- target and low band
def test_target_board_statistics():
    f, a, tau = soundboard_modes(44100, seed=1)
    assert 55 <= f.min() <= 130 and f.max() <= 10000
    assert np.all(np.diff(f) > 0)
    for lo, hi, dens in ((300, 600, (0.01, 0.02)), (1500, 2500, (0.03, 0.05)),
                         (4000, 8000, (0.045, 0.055))):
        n = np.count_nonzero((f >= lo) & (f < hi))
        assert dens[0] * (hi - lo) * 0.8 <= n <= dens[1] * (hi - lo) * 1.2
    np.testing.assert_allclose(tau, 1 / (np.pi * f * 0.02))
    assert modal_density(100) == 0.01 and modal_density(5000) == 0.05
    # reproducible, and the same board at every rate (amplitudes scale as 1/fs)
    f2, a2, _ = soundboard_modes(96000, seed=1)
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_allclose(a * 44100, a2 * 96000)
    assert not np.array_equal(soundboard_modes(44100, seed=2)[0], f)


def third_octave_db(h, fs, centers, f_max):
    nfft = 1 << int(np.ceil(np.log2(h.shape[0])))
    s = np.abs(np.fft.rfft(h, nfft)) ** 2
    f = np.fft.rfftfreq(nfft, 1 / fs)
    return np.array([10 * np.log10(np.mean(s[(f >= fc * 2 ** (-1 / 6))
                                             & (f < min(fc * 2 ** (1 / 6), f_max))]))
                     for fc in centers])


@pytest.mark.parametrize("fs", RATES)
def test_low_band_matches_target(fs):
    """|H| of the multirate low band within 1 dB of the full-rate target in every 1/3 octave
    from 63 Hz to 2 kHz, and amplitude AND phase close (complex error, latency removed)."""
    c = design_soundboard(fs, balance=-1.0)
    lat = soundboard_latency(c)
    ht = np.concatenate([np.zeros(lat), soundboard_target_ir(fs, length_s=1.5)])
    x = np.zeros(ht.shape[0])
    x[0] = 1.0
    hl = render(c, x)
    np.testing.assert_array_equal(hl[:, 0], hl[:, 1])
    centers = 1000 * 2 ** (np.arange(-12, 4) / 3)  # 63 Hz .. 2 kHz
    dev = third_octave_db(hl[:, 0], fs, centers, SPLIT_HZ) - \
        third_octave_db(ht, fs, centers, SPLIT_HZ)
    assert np.max(np.abs(dev)) < 1.0, dev
    nfft = 1 << 18
    f = np.fft.rfftfreq(nfft, 1 / fs)
    band = (f > 50) & (f < 2000)
    Hl = np.fft.rfft(hl[:, 0], nfft)[band]
    Ht = np.fft.rfft(ht, nfft)[band]
    assert np.sum(np.abs(Hl - Ht) ** 2) / np.sum(np.abs(Ht) ** 2) < 0.05 ** 2


@pytest.mark.parametrize("fs", [44100, 96000])
def test_bands_are_complementary_and_aligned(fs):
    """Below the split the high band carries < -45 dB; the latency equals the filters'."""
    c = design_soundboard(fs, balance=1.0)
    h, g = prototypes(c)
    nh = np.max(np.nonzero(h)) + 1
    ng = np.max(np.nonzero(g)) + 1
    assert soundboard_latency(c) == (nh - 1) // 2 + (ng - 1) // 2
    rng = np.random.default_rng(3)
    t = np.arange(int(0.6 * fs)) / fs
    fade = np.minimum(t / 0.1, 1.0)
    fade = 0.5 - 0.5 * np.cos(np.pi * fade)  # slow onset: no broadband click
    x_low = fade * sum(np.sin(2 * np.pi * f0 * t + ph) for f0, ph in
                       zip(rng.uniform(60, 1800, 12), rng.uniform(0, 6.3, 12)))
    out = render(c, x_low)
    seg = slice(int(0.45 * fs), None)
    ratio = np.sum(out[seg] ** 2) / np.sum(x_low[seg] ** 2)
    assert 10 * np.log10(ratio) < -45


# ---------------------------------------------------------------- high band (FDN)
def edc_t60(h, fs, fc):
    sos = signal.butter(3, [fc * 2 ** (-1 / 6), fc * 2 ** (1 / 6)], "bandpass", fs=fs,
                        output="sos")
    e = np.cumsum(signal.sosfilt(sos, h)[::-1] ** 2)[::-1]
    d = 10 * np.log10(e / e[0])
    return 2.0 * (np.argmax(d < -35) - np.argmax(d < -5)) / fs


def designed_t60(c, fs, f):
    """T60 of the mixing FDN at f: total attenuation over the total delay length."""
    lens = np.diff(c.fdn_off)
    hmag = np.abs(c.fdn_b * np.sqrt(lens.shape[0]) / (1 - c.fdn_p * np.exp(-2j * np.pi * f / fs)))
    return 60.0 * lens.sum() / (fs * np.sum(-20 * np.log10(hmag)))


@pytest.mark.parametrize("t60", [0.35, 1.0])
def test_fdn_t60(t60):
    fs = 44100
    c = design_soundboard(fs, balance=1.0, fdn_t60_s=t60)
    # every line: exactly t60 at the split
    lens = np.diff(c.fdn_off)
    hmag = np.abs(c.fdn_b * np.sqrt(8) / (1 - c.fdn_p * np.exp(-2j * np.pi * SPLIT_HZ / fs)))
    np.testing.assert_allclose(-3 * lens / (fs * np.log10(hmag)), t60, rtol=1e-6)
    x = np.zeros(int(1.5 * t60 * fs) + fs // 4)
    x[0] = 1.0
    out = render(c, x)
    for fc in (2800, 4000):
        for ch in (0, 1):
            assert edc_t60(out[:, ch], fs, fc) == pytest.approx(designed_t60(c, fs, fc), rel=0.2)


@pytest.mark.parametrize("fs", RATES)
def test_high_band_level_and_decorrelation(fs):
    """At fdn_t60_s = 0.05 s (the target's own T60 at 2.2 kHz) the FDN's octave-band energy
    is close to the target's; the two channels are decorrelated."""
    c = design_soundboard(fs, balance=1.0, fdn_t60_s=0.05)
    n = fs // 2
    x = np.zeros(n)
    x[0] = 1.0
    out = render(c, x)
    ht = soundboard_target_ir(fs, length_s=0.5)
    nfft = 1 << 17
    f = np.fft.rfftfreq(nfft, 1 / fs)
    for fc in (4000, 5657):
        m = (f > fc / np.sqrt(2)) & (f < fc * np.sqrt(2))
        e_t = np.mean(np.abs(np.fft.rfft(ht, nfft)[m]) ** 2)
        for ch in (0, 1):
            e_m = np.mean(np.abs(np.fft.rfft(out[:, ch], nfft)[m]) ** 2)
            assert abs(10 * np.log10(e_m / e_t)) < 3.0
    noise = np.random.default_rng(2).standard_normal(fs)
    o = render(c, noise)
    assert abs(np.corrcoef(o[fs // 4:, 0], o[fs // 4:, 1])[0, 1]) < 0.3


def test_fdn_loop_gain_below_one_for_any_setting():
    """Orthogonal feedback times one-pole absorptions: spectral norm of the loop < 1."""
    h8 = hadamard(8) / np.sqrt(8)
    for fs in RATES:
        for t60 in (0.01, 0.05, 0.35, 3.0, 10.0):
            c = design_soundboard(fs, fdn_t60_s=t60)
            assert np.all(np.abs(c.fdn_p) < 1)
            w = np.linspace(0, np.pi, 257)
            gains = np.abs(c.fdn_b[None, :] * np.sqrt(8)
                           / (1 - c.fdn_p[None, :] * np.exp(-1j * w)[:, None]))
            assert gains.max() < 1.0
            for row in gains[::32]:
                assert np.linalg.norm(h8 @ np.diag(row), 2) < 1.0


@pytest.mark.parametrize("t60", [0.01, 10.0])
@pytest.mark.parametrize("level_db", [-120.0, 0.0, 40.0])
@pytest.mark.parametrize("balance", [-1.0, 0.0, 1.0])
def test_extremes_finite_and_decaying(t60, level_db, balance):
    fs = 44100
    c = design_soundboard(fs, level_db=level_db, fdn_t60_s=t60, balance=balance)
    rng = np.random.default_rng(4)
    drive = int(0.1 * fs)
    for x_in in (np.zeros(drive), np.full(drive, 1e5), np.full(drive, -1e5),
                 1e5 * rng.standard_normal(drive)):
        x = np.concatenate([x_in, np.zeros(int(1.2 * fs))])
        out = render(c, x)
        assert np.all(np.isfinite(out))
        if not np.any(x_in):
            assert np.all(out == 0.0)
            continue
        # energy after the input stops decays: each 0.3 s window below the previous one
        e = [np.sum(out[s:s + int(0.3 * fs)] ** 2)
             for s in range(drive + int(0.05 * fs), x.shape[0] - int(0.3 * fs), int(0.3 * fs))]
        if e[0] > 0:
            assert all(b < a for a, b in zip(e, e[1:])), e


def test_parameter_clamps_and_errors():
    with pytest.warns(UserWarning):
        c = design_soundboard(44100, fdn_t60_s=100.0)
    np.testing.assert_array_equal(c.fdn_p, design_soundboard(44100, fdn_t60_s=10.0).fdn_p)
    with pytest.warns(UserWarning):
        design_soundboard(44100, fdn_t60_s=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        design_soundboard(44100, fdn_t60_s=0.01)
        design_soundboard(44100, fdn_t60_s=10.0)
    np.testing.assert_array_equal(design_soundboard(44100, balance=5).gains, [0.0, 1.0])
    np.testing.assert_allclose(design_soundboard(44100, level_db=-6, balance=-0.5).gains,
                               10 ** (-6 / 20) * np.array([1.0, 0.5]))
    for bad in (dict(level_db=np.nan), dict(fdn_t60_s=np.inf), dict(balance=np.nan)):
        with pytest.raises(ValueError):
            design_soundboard(44100, **bad)
    with pytest.raises(ValueError):
        design_soundboard(8000)


@pytest.mark.parametrize("fs", [44100, 48000])
def test_low_band_images_are_85_dB_down(fs):
    """A steady tone in the low band (C6's partial 1, 1055 Hz) comes out with its images at
    fs/8 -+ f (the decimation by 8 and the interpolation back, §5) at least 85 dB below it. At
    70 dB of stopband the image at fs/8 + f sat above a recorded C6's partial 6 (60 dB below
    partial 1) and the fit read it as that partial."""
    c = design_soundboard(fs, balance=-1.0)
    f0 = 1055.0
    t = np.arange(int(1.5 * fs)) / fs
    out = render(c, np.sin(2 * np.pi * f0 * t))[int(0.5 * fs):, 0]
    spec = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    f = np.fft.rfftfreq(out.size, 1 / fs)

    def peak_db(fc):
        return 20 * np.log10(spec[np.abs(f - fc) < 5.0].max())

    tone = peak_db(f0)
    for img in (fs / 8 - f0, fs / 8 + f0, fs / 4 - f0, fs / 4 + f0):
        assert peak_db(img) < tone - 85.0, (img, peak_db(img) - tone)
