"""Plot the multirate soundboard against its modal target and benchmark its cost.

Usage: python scripts/plot_soundboard.py [--fs 44100] [--out soundboard.png]

Writes a PNG with (1) magnitude: target, multirate low band, full model (L), raw and
1/3-octave smoothed; (2) 1/3-octave deviation of the low band from the target; (3) impulse
responses; (4) energy decay curves in octave bands (target vs model at fdn_t60_s = 0.05 s
(the target's own T60 at 2.2 kHz) and at the default 0.35 s). Prints the max 1/3-octave
deviation below 2 kHz and the cost in ns per output sample.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pianosynth.design.soundboard import (SPLIT_HZ, design_soundboard,  # noqa: E402
                                          soundboard_target_ir)
from pianosynth.dsp.soundboard import make_soundboard_state, render_soundboard  # noqa: E402


def impulse_response(coeffs, n):
    x = np.zeros(n)
    x[0] = 1.0
    out = np.zeros((n, 2))
    render_soundboard(make_soundboard_state(coeffs), coeffs, x, out, n)
    return out


def third_octave_levels(h, fs, centers, f_max=None):
    """Band energy in dB of |H|^2 (FFT of h) per 1/3-octave band centred at ``centers``."""
    nfft = 1 << int(np.ceil(np.log2(len(h))))
    spec = np.abs(np.fft.rfft(h, nfft)) ** 2
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    out = []
    for fc in centers:
        hi = fc * 2 ** (1 / 6) if f_max is None else min(fc * 2 ** (1 / 6), f_max)
        m = (f >= fc * 2 ** (-1 / 6)) & (f < hi)
        out.append(10 * np.log10(np.mean(spec[m]) + 1e-300))
    return np.array(out)


def smooth_third_octave(f, mag2):
    """Power-average |H|^2 over +-1/6 octave around each frequency (log grid output)."""
    fl = np.geomspace(30, f[-1] / 1.1, 600)
    c = np.concatenate([[0.0], np.cumsum(mag2)])
    lo = np.searchsorted(f, fl * 2 ** (-1 / 6))
    hi = np.searchsorted(f, fl * 2 ** (1 / 6))
    hi = np.maximum(hi, lo + 1)
    return fl, 10 * np.log10((c[hi] - c[lo]) / (hi - lo) + 1e-300)


def edc_db(h):
    e = np.cumsum(h[::-1] ** 2)[::-1]
    return 10 * np.log10(e / e[0] + 1e-300)


def octave_band(h, fs, fc):
    from scipy import signal
    sos = signal.butter(4, [fc / np.sqrt(2), min(fc * np.sqrt(2), 0.49 * fs)], "bandpass",
                        fs=fs, output="sos")
    return signal.sosfilt(sos, h)


def benchmark(fs, block=256, runs=400):
    """ns per output sample: (min, median) over ``runs`` blocks of ``block`` samples.

    The minimum is the cost on an idle core; the median shows the load of the machine."""
    c = design_soundboard(fs)
    st = make_soundboard_state(c)
    x = np.random.default_rng(0).standard_normal(block * 16) * 0.1
    out = np.zeros((block, 2))
    render_soundboard(st, c, x[:block], out, block)  # compile / warm
    ts = np.empty(runs)
    for r in range(runs):
        s = (r % 16) * block
        t0 = time.perf_counter()
        render_soundboard(st, c, x[s:s + block], out, block)
        ts[r] = time.perf_counter() - t0
    return ts.min() / block * 1e9, np.median(ts) / block * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fs", type=int, default=44100)
    ap.add_argument("--out", default="soundboard.png")
    ap.add_argument("--length", type=float, default=3.0)
    args = ap.parse_args()
    fs = args.fs
    n = int(args.length * fs)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c_low = design_soundboard(fs, balance=-1.0)
    c_full = design_soundboard(fs)
    c_phys = design_soundboard(fs, fdn_t60_s=0.05)
    lat = int(c_full.latency[0])
    # compare with the target delayed by the latency (cutting the model's first samples
    # would cut the pre-ringing of the linear-phase filters and break the band split)
    h_t = np.concatenate([np.zeros(lat), soundboard_target_ir(fs, length_s=args.length)])
    n = h_t.shape[0]
    h_low = impulse_response(c_low, n)[:, 0]
    out_full = impulse_response(c_full, n)
    out_phys = impulse_response(c_phys, n)

    nfft = 1 << int(np.ceil(np.log2(n)))
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    spec = {k: np.abs(np.fft.rfft(v, nfft)) ** 2 for k, v in
            (("target", h_t), ("low band", h_low), ("model L (T60 0.35 s)", out_full[:, 0]),
             ("model L (T60 0.05 s)", out_phys[:, 0]))}

    centers = 1000 * 2 ** (np.arange(-12, 4) / 3)  # 63 Hz .. 2 kHz
    dev = third_octave_levels(h_low, fs, centers, SPLIT_HZ) - \
        third_octave_levels(h_t, fs, centers, SPLIT_HZ)
    # complex (phase) error below 2 kHz
    Ht = np.fft.rfft(h_t, nfft)
    Hl = np.fft.rfft(h_low, nfft)
    band = (f > 50) & (f < 2000)
    phase_err = np.sqrt(np.sum(np.abs(Hl[band] - Ht[band]) ** 2) / np.sum(np.abs(Ht[band]) ** 2))

    fig, ax = plt.subplots(4, 1, figsize=(11, 16))
    cols = {"target": "k", "low band": "C0", "model L (T60 0.35 s)": "C3",
            "model L (T60 0.05 s)": "C2"}
    for k, s2 in spec.items():
        if k in ("target", "low band"):
            ax[0].semilogx(f[1:], 10 * np.log10(s2[1:] + 1e-300), color=cols[k], lw=0.3,
                           alpha=0.35)
        fl, sm = smooth_third_octave(f, s2)
        ax[0].semilogx(fl, sm, color=cols[k], lw=1.8, label=k + " (1/3-oct)")
    ax[0].axvline(SPLIT_HZ, color="gray", ls=":")
    ax[0].set(xlim=(30, fs / 2), ylim=(-70, 25), xlabel="Hz", ylabel="dB",
              title=f"Soundboard magnitude, fs={fs} Hz "
                    f"(target delayed by the latency, {lat} samples)")
    ax[0].legend(loc="lower left")
    ax[0].grid(True, which="both", alpha=0.3)

    ax[1].semilogx(centers, dev, "o-")
    ax[1].axhline(1, color="r", ls="--")
    ax[1].axhline(-1, color="r", ls="--")
    ax[1].set(xlabel="1/3-octave centre, Hz", ylabel="low band - target, dB",
              title=f"1/3-octave deviation (max {np.max(np.abs(dev)):.3f} dB); "
                    f"complex rel. error 50 Hz-2 kHz {phase_err:.3g}", ylim=(-1.5, 1.5))
    ax[1].grid(True, which="both", alpha=0.3)

    t_ms = (np.arange(n) - lat) / fs * 1000
    m = (t_ms > -3) & (t_ms < 60)
    ax[2].plot(t_ms[m], h_t[m], "k", lw=0.6, label="target")
    ax[2].plot(t_ms[m], out_full[m, 0], "C3", lw=0.6, alpha=0.7, label="model L (0.35 s)")
    ax[2].plot(t_ms[m], h_low[m], "C0", lw=0.8, alpha=0.8, label="low band")
    ax[2].set(xlabel="ms (latency subtracted)", ylabel="h", title="Impulse responses")
    ax[2].legend()

    for i, fc in enumerate((250, 1000, 4000, 8000)):
        if fc * np.sqrt(2) > 0.49 * fs:
            continue
        ax[3].plot(t_ms, edc_db(octave_band(h_t, fs, fc)), color=f"C{i}", lw=2,
                   label=f"target {fc} Hz")
        ax[3].plot(t_ms, edc_db(octave_band(out_phys[:, 0], fs, fc)), color=f"C{i}", ls="--",
                   label=f"model 0.05 s {fc} Hz")
        ax[3].plot(t_ms, edc_db(octave_band(out_full[:, 0], fs, fc)), color=f"C{i}", ls=":",
                   label=f"model 0.35 s {fc} Hz")
    ax[3].set(xlim=(0, 800), ylim=(-70, 2), xlabel="ms", ylabel="dB",
              title="Energy decay curves (Schroeder) in octave bands")
    ax[3].legend(ncol=3, fontsize=7)
    ax[3].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)

    c_hi = design_soundboard(fs, balance=1.0)
    noise = np.random.default_rng(1).standard_normal(2 * fs)
    o_hi = np.zeros((noise.shape[0], 2))
    render_soundboard(make_soundboard_state(c_hi), c_hi, noise, o_hi, noise.shape[0])
    lr = np.corrcoef(o_hi[fs:, 0], o_hi[fs:, 1])[0, 1]
    print(f"fs={fs}  latency={lat} samples  sections={c_full.bank_a.shape[0]}  "
          f"dec/int taps={c_full.dec_table.size}/{c_full.int_table.size}")
    print(f"max 1/3-octave deviation 63 Hz-2 kHz: {np.max(np.abs(dev)):.3f} dB")
    print(f"complex relative error 50 Hz-2 kHz: {phase_err:.4f}")
    print(f"high-band L/R correlation (white noise in): {lr:.3f}")
    for fs_b in (44100, 48000, 96000):
        best, med = benchmark(fs_b)
        print(f"cost at {fs_b} Hz: {best:.1f} ns/sample (min over blocks of 256; "
              f"median {med:.1f} under the current machine load)")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
