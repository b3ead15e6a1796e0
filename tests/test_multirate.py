"""Decimator / interpolator: design specs, kernels vs naive numpy, block-size invariance."""
import numpy as np
import pytest
from scipy import signal

from pianosynth.design.multirate import (decimator_table, design_decimator,
                                         design_interpolator, fir_latency, fir_spec_check,
                                         interpolator_table)
from pianosynth.dsp.multirate import (decim_outputs_produced, decimate_tick,
                                      interp_inputs_needed, interpolate_tick,
                                      make_decimator_state, make_interpolator_state,
                                      render_decimate, render_interpolate, reset_decimator,
                                      reset_interpolator)

FACTOR = 8
PASS = 2200.0


def _filters(fs, ripple_db=0.1, stopband_db=70.0):
    stop = fs / FACTOR - PASS
    h = design_decimator(fs, FACTOR, PASS, stop, ripple_db, stopband_db)
    g = design_interpolator(fs, FACTOR, PASS, stop, ripple_db, stopband_db)
    return h, g, stop


# ---------------------------------------------------------------- naive references
def naive_decimate(x, h, factor):
    """y[m] = sum_k h[k] x[m*factor - k]."""
    return np.convolve(x, h)[: len(x)][::factor]


def naive_interpolate(u, g, factor, n_out):
    """z[n] = sum_m u[m] g[n - m*factor] (zero stuffing, then the FIR)."""
    up = np.zeros(len(u) * factor)
    up[::factor] = u
    return np.convolve(up, g)[:n_out]


# ---------------------------------------------------------------- design
@pytest.mark.parametrize("fs", [44100, 48000, 96000])
@pytest.mark.parametrize("ripple_db,stopband_db", [(0.1, 70.0), (0.02, 70.0), (0.5, 50.0)])
def test_specs_met(fs, ripple_db, stopband_db):
    h, g, stop = _filters(fs, ripple_db, stopband_db)
    for taps, gain in ((h, 1.0), (g, float(FACTOR))):
        rip, att = fir_spec_check(taps, fs, PASS, stop, gain=gain, n_grid=1 << 16)
        assert rip <= ripple_db + 1e-9
        assert att >= stopband_db - 1e-9
        assert taps.shape[0] % 2 == 1
        np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)  # linear phase
    assert np.sum(h) == pytest.approx(1.0, abs=1e-12)
    assert np.sum(g) == pytest.approx(FACTOR, abs=1e-12)


def test_design_rejects_bad_bands():
    with pytest.raises(ValueError):
        design_decimator(44100, 8, 3000, 2000)
    with pytest.raises(ValueError):
        design_interpolator(44100, 1, 2000, 3000)


def test_tables_are_the_prototypes():
    h, g, _ = _filters(48000)
    td = decimator_table(h, FACTOR)
    ti = interpolator_table(g, FACTOR)
    nd = h.shape[0]
    np.testing.assert_array_equal(td.ravel()[::-1][:nd], h)
    assert td.shape[0] == FACTOR and ti.shape[0] == FACTOR
    j = ti.shape[1]
    for r in range(FACTOR):
        branch = g[r::FACTOR]
        np.testing.assert_array_equal(ti[r, ::-1][: branch.shape[0]], branch)
        # each branch passes DC with unit gain (no DC ripple at phase r)
        assert np.sum(ti[r]) == pytest.approx(1.0, abs=3e-3)
    assert j == -(-g.shape[0] // FACTOR)


# ---------------------------------------------------------------- kernels vs naive
@pytest.mark.parametrize("fs", [44100, 96000])
def test_decimator_matches_naive(fs):
    h, _, _ = _filters(fs)
    table = decimator_table(h, FACTOR)
    x = np.random.default_rng(1).standard_normal(3001)
    st = make_decimator_state(table)
    y = np.zeros(400)
    k = render_decimate(st, table, x, y, x.shape[0])
    ref = naive_decimate(x, h, FACTOR)
    assert k == ref.shape[0]
    np.testing.assert_allclose(y[:k], ref, rtol=0, atol=1e-9)
    # the per-sample helper gives the same numbers
    st2 = make_decimator_state(table)
    ys = [v for ready, v in (decimate_tick(st2.hist, st2.idx, table, xi) for xi in x) if ready]
    np.testing.assert_allclose(ys, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("fs", [44100, 96000])
def test_interpolator_matches_naive(fs):
    _, g, _ = _filters(fs)
    table = interpolator_table(g, FACTOR)
    u = np.random.default_rng(2).standard_normal(300)
    n_out = 300 * FACTOR - 5
    st = make_interpolator_state(table)
    out = np.zeros(n_out)
    k = render_interpolate(st, table, u, out, n_out)
    assert k == -(-n_out // FACTOR)
    np.testing.assert_allclose(out, naive_interpolate(u, g, FACTOR, n_out), rtol=0, atol=1e-9)
    st2 = make_interpolator_state(table)
    zs, m = [], 0
    for i in range(n_out):
        zs.append(interpolate_tick(st2.hist, st2.idx, table, u[m] if i % FACTOR == 0 else 0.0))
        m += i % FACTOR == 0
    np.testing.assert_allclose(zs, out, rtol=0, atol=1e-9)


@pytest.mark.parametrize("block", [1, 64, 65, 512])
def test_block_size_invariance(block):
    h, g, _ = _filters(44100)
    td, ti = decimator_table(h, FACTOR), interpolator_table(g, FACTOR)
    x = np.random.default_rng(3).standard_normal(4000)
    # whole signal in one call
    sd, si = make_decimator_state(td), make_interpolator_state(ti)
    y_all = np.zeros(600)
    ky = render_decimate(sd, td, x, y_all, x.shape[0])
    z_all = np.zeros(x.shape[0])
    render_interpolate(si, ti, y_all, z_all, x.shape[0])
    # block by block, sizes from the helpers
    sd, si = make_decimator_state(td), make_interpolator_state(ti)
    y = np.zeros(600)
    z = np.zeros(x.shape[0])
    ny = nu = 0
    for s in range(0, x.shape[0], block):
        n = min(block, x.shape[0] - s)
        want = decim_outputs_produced(sd, td, n)
        got = render_decimate(sd, td, x[s:s + n], y[ny:], n)
        assert got == want
        ny += got
        need = interp_inputs_needed(si, ti, n)
        assert nu + need <= ny  # the decimator always runs ahead of the interpolator
        used = render_interpolate(si, ti, y[nu:], z[s:s + n], n)
        assert used == need
        nu += used
    assert ny == ky
    np.testing.assert_array_equal(y[:ny], y_all[:ky])
    np.testing.assert_array_equal(z, z_all)


def test_sum_of_sources_one_interpolator():
    """Engine pattern: many low-rate sources summed, then ONE interpolator == sum of
    individually interpolated sources (linearity, same phase)."""
    _, g, _ = _filters(48000)
    ti = interpolator_table(g, FACTOR)
    rng = np.random.default_rng(4)
    srcs = rng.standard_normal((5, 200))
    n_out = 200 * FACTOR
    out = np.zeros(n_out)
    render_interpolate(make_interpolator_state(ti), ti, srcs.sum(0), out, n_out)
    ref = sum(naive_interpolate(s, g, FACTOR, n_out) for s in srcs)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("fs", [44100, 48000, 96000])
def test_latency_of_the_chain(fs):
    """decimate -> interpolate delays an in-band sinusoid by exactly the reported latency."""
    h, g, _ = _filters(fs)
    td, ti = decimator_table(h, FACTOR), interpolator_table(g, FACTOR)
    lat = fir_latency(h) + fir_latency(g)
    n = 8000
    t = np.arange(n)
    x = np.sin(2 * np.pi * 1234.5 / fs * t)
    y = np.zeros(n // FACTOR + 1)
    k = render_decimate(make_decimator_state(td), td, x, y, n)
    z = np.zeros(n)
    render_interpolate(make_interpolator_state(ti), ti, y[:k], z, n)
    # both filters are linear phase: the only effects are the passband gain and the delay
    gain = abs(signal.freqz(h, worN=[1234.5], fs=fs)[1][0]
               * signal.freqz(g, worN=[1234.5], fs=fs)[1][0]) / FACTOR
    ref = gain * np.sin(2 * np.pi * 1234.5 / fs * (t - lat))
    seg = slice(2 * lat + 10, n - 10)
    assert np.max(np.abs(z[seg] - ref[seg])) < 1e-3  # images / aliases at -70 dB


def test_reset():
    h, g, _ = _filters(44100)
    td, ti = decimator_table(h, FACTOR), interpolator_table(g, FACTOR)
    x = np.random.default_rng(5).standard_normal(333)
    sd = make_decimator_state(td)
    y1 = np.zeros(50)
    render_decimate(sd, td, x, y1, 333)
    reset_decimator(sd)
    y2 = np.zeros(50)
    render_decimate(sd, td, x, y2, 333)
    np.testing.assert_array_equal(y1, y2)
    si = make_interpolator_state(ti)
    z1 = np.zeros(333)
    render_interpolate(si, ti, x, z1, 333)
    reset_interpolator(si)
    z2 = np.zeros(333)
    render_interpolate(si, ti, x, z2, 333)
    np.testing.assert_array_equal(z1, z2)


def test_helper_counts():
    """interp_inputs_needed / decim_outputs_produced count phase-0 samples correctly."""
    _, g, _ = _filters(44100)
    ti = interpolator_table(g, FACTOR)
    st = make_interpolator_state(ti)
    for phase in range(FACTOR):
        for n in range(0, 30):
            st.idx[0] = phase
            brute = sum((phase + i) % FACTOR == 0 for i in range(n))
            assert interp_inputs_needed(st, ti, n) == brute
    h, _, _ = _filters(44100)
    td = decimator_table(h, FACTOR)
    sd = make_decimator_state(td)
    sd.idx[0] = 3
    assert decim_outputs_produced(sd, td, 5) == 0   # phases 3..7
    assert decim_outputs_produced(sd, td, 6) == 1   # phases 3..7, 0
    assert decim_outputs_produced(sd, td, 14) == 2  # ... 0 and 0 again


def test_anti_alias_in_practice():
    """A tone just above the stopband edge is attenuated >= 70 dB by decimate+interpolate."""
    fs = 44100
    h, g, stop = _filters(fs)
    td, ti = decimator_table(h, FACTOR), interpolator_table(g, FACTOR)
    n = 16000
    x = np.sin(2 * np.pi * (stop + 50) / fs * np.arange(n))
    y = np.zeros(n // FACTOR + 1)
    k = render_decimate(make_decimator_state(td), td, x, y, n)
    z = np.zeros(n)
    render_interpolate(make_interpolator_state(ti), ti, y[:k], z, n)
    assert np.max(np.abs(z[1000:])) < 10 ** (-70 / 20) * 1.05
    _, hz = signal.freqz(h, worN=[stop + 50], fs=fs)
    assert abs(hz[0]) < 10 ** (-70 / 20)
