"""Realism report: the default preset against the Yamaha C3 recordings.

Renders every recorded key (21, 24, 36, 48, 60, 72, 84, 96, 108) at the velocities of the
three recorded dynamics (L1, L3, L5; chosen by matching levels, see ``--match-velocities``),
measures the recording and the render with the same functions
(:func:`pianosynth.fit.realism_measures`), and writes ``docs/realism/README.md`` (tables,
bands, pass/fail) and PNG plots (B, stretch and EDT against key, attack centroid and level
soft -> loud, spectrograms side by side).

Usage::

    python scripts/realism_report.py [--out docs/realism] [--match-velocities] [--no-plots]

``--match-velocities`` searches, for each layer, the MIDI velocity whose RMS level (first
500 ms) averaged over the recorded keys equals the recordings' (bisection on 0.6 s renders)
and prints it; the report then uses those instead of ``pianosynth.fit.LAYER_VELOCITY``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pianosynth import analysis as A
from pianosynth import fit as F
from pianosynth.design.keyboard import design_keyboard

ROOT = Path(__file__).resolve().parents[1]
FS = 44100
MAX_RENDER_S = 35.0

#: bands of the issue "Sound like a real grand" (model vs recording, same analysis)
B_TOL = 0.25              # |B_model / B_rec - 1|
STRETCH_TOL_CENTS = 6.0   # below C7 (key < 96)
EDT_FACTOR = 1.5          # EDT within x1.5
TWO_STAGE_MIN = 5.0       # C4: late / early T60 of partial 1
CENTROID_RATIO = (1.5, 2.7)   # or within +-20 % of the recording's (C7: 1.29, below 1.5)
LEVEL_RANGE_DB = (12.0, 25.0)
#: a recording that decays less than this into its background noise gives no EDT (the
#: Schroeder curve of the noise dominates): the band is not applied there (C8 L1 decays
#: 21 dB into a noise plateau; the next lowest, C2 L1, 23.5 dB).
MIN_EDT_RANGE_DB = 22.0


def render(key, velocity, n, fs=FS, settings=None, keys=None):
    return F.render_note(settings or {}, keys or {}, key, velocity, n, fs)


def load(layer, key):
    x, fs = A.load_audio(F.recording_path(layer, key))
    return x, fs


def decay_range_db(x, fs):
    """How far the recording decays: loudest 50 ms block over the median of the second half
    of the file, dB (a note that sinks into the background noise within a few dB shows the
    noise's Schroeder curve, not its own)."""
    m = int(0.05 * fs)
    nb = x.size // m
    lev = 10.0 * np.log10(np.mean(x[:nb * m].reshape(nb, m) ** 2, axis=1) + 1e-20)
    return float(lev.max() - np.median(lev[nb // 2:]))


def match_velocities(rec_levels, settings=None, keys=None):
    """Per layer, the velocity whose mean level over the keys matches the recordings'."""
    n = int(0.6 * FS)
    cache = {}

    def mean_level(v):
        if v not in cache:
            cache[v] = float(np.mean([A.level_db(render(k, v, n, settings=settings, keys=keys),
                                                 FS) for k in F.REALISM_KEYS]))
        return cache[v]

    out = {}
    for layer in F.LAYERS:
        target = float(np.mean([rec_levels[(layer, k)] for k in F.REALISM_KEYS]))
        lo, hi = 1, 127
        if mean_level(hi) <= target:
            out[layer] = hi
            continue
        if mean_level(lo) >= target:
            out[layer] = lo
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if mean_level(mid) < target:
                lo = mid
            else:
                hi = mid
        out[layer] = lo if abs(mean_level(lo) - target) < abs(mean_level(hi) - target) else hi
        print(f"  {layer}: velocity {out[layer]} -> {mean_level(out[layer]):.1f} dBFS "
              f"(recordings {target:.1f} dBFS)")
    return out


def measure_all(velocities, settings=None, keys=None, log=print):
    """Recording and render measures for every (layer, key)."""
    rec, mod, sigs = {}, {}, {}
    kp = design_keyboard(settings, keys)
    for key in F.REALISM_KEYS:
        for layer in F.LAYERS:
            x, fs = load(layer, key)
            assert fs == FS
            n0 = A.detect_onset(x, fs)
            n = int(min((x.size - n0) / fs, MAX_RENDER_S) * fs)
            y = render(key, velocities[layer], n, settings=settings, keys=keys)
            r = F.realism_measures(x, fs, key)
            r["decay_range_db"] = decay_range_db(x, fs)
            m = F.realism_measures(y, FS, key, f1_guess_hz=kp.f1_hz[key - 21])
            rec[(layer, key)], mod[(layer, key)] = r, m
            sigs[(layer, key)] = (x[n0:], y)
            log(f"{layer} {key:3d}: B {r['B']:.2e}/{m['B']:.2e} stretch "
                f"{r['stretch_cents']:+5.1f}/{m['stretch_cents']:+5.1f} EDT {r['edt_s']:6.2f}/"
                f"{m['edt_s']:6.2f} level {r['level_db']:6.1f}/{m['level_db']:6.1f} centroid "
                f"{r['centroid_hz']:5.0f}/{m['centroid_hz']:5.0f} two-stage "
                f"{r['late_t60_s'] / r['early_t60_s']:5.1f}/"
                f"{m['late_t60_s'] / m['early_t60_s']:5.1f}")
    return rec, mod, sigs


def evaluate(rec, mod):
    """Band checks -> list of (what, key, layer, recording, model, ok or None (not applied))."""
    rows = []
    for key in F.REALISM_KEYS:
        for layer in F.LAYERS:
            r, m = rec[(layer, key)], mod[(layer, key)]
            b_ok = None if not np.isfinite(r["B"]) else \
                bool(np.isfinite(m["B"]) and abs(m["B"] / r["B"] - 1.0) <= B_TOL)
            rows.append(("B", key, layer, r["B"], m["B"], b_ok))
            st_ok = None if (key >= 96 or not r["partial1_found"]) else \
                bool(abs(m["stretch_cents"] - r["stretch_cents"]) <= STRETCH_TOL_CENTS)
            rows.append(("stretch", key, layer, r["stretch_cents"], m["stretch_cents"], st_ok))
            edt_ok = None if r["decay_range_db"] < MIN_EDT_RANGE_DB else \
                bool(1.0 / EDT_FACTOR <= m["edt_s"] / r["edt_s"] <= EDT_FACTOR)
            rows.append(("EDT", key, layer, r["edt_s"], m["edt_s"], edt_ok))
        cr = [mod[("L5", key)]["centroid_hz"] / mod[("L1", key)]["centroid_hz"],
              rec[("L5", key)]["centroid_hz"] / rec[("L1", key)]["centroid_hz"]]
        lr = [mod[("L5", key)]["level_db"] - mod[("L1", key)]["level_db"],
              rec[("L5", key)]["level_db"] - rec[("L1", key)]["level_db"]]
        lo, hi = min(CENTROID_RATIO[0], 0.8 * cr[1]), max(CENTROID_RATIO[1], 1.2 * cr[1])
        rows.append(("centroid ratio", key, "L1->L5", cr[1], cr[0], bool(lo <= cr[0] <= hi)))
        rows.append(("level range", key, "L1->L5", lr[1], lr[0],
                     bool(LEVEL_RANGE_DB[0] <= lr[0] <= LEVEL_RANGE_DB[1])))
    for layer in F.LAYERS:
        r, m = rec[(layer, 60)], mod[(layer, 60)]
        rows.append(("two-stage", 60, layer, r["late_t60_s"] / r["early_t60_s"],
                     m["late_t60_s"] / m["early_t60_s"],
                     bool(m["late_t60_s"] / m["early_t60_s"] >= TWO_STAGE_MIN)))
    return rows


# ------------------------------------------------------------------------------- plots
def _fig(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_curves(rec, mod, out: Path, velocities):
    kp = design_keyboard()
    keys = np.array(F.REALISM_KEYS)
    marks = {"L1": "v", "L3": "o", "L5": "^"}
    paths = []
    for what, ylabel, fname, design, logy in (
            ("B", "inharmonicity B", "B_vs_key.png", kp.inharmonicity_b, True),
            ("stretch_cents", "partial 1 vs 12-TET (cents)", "stretch_vs_key.png",
             1200 * np.log2(kp.f1_hz / F.equal_tempered_hz(kp.keys)), False),
            ("edt_s", "early decay time EDT (s)", "edt_vs_key.png", None, True)):
        fig = _fig(7.5, 4.2)
        ax = fig.subplots()
        if design is not None:
            ax.plot(kp.keys, design, "-", color="0.6", lw=1, label="default preset (design)")
        for layer in F.LAYERS:
            ax.plot(keys, [rec[(layer, k)][what] for k in keys], marks[layer], color="C0",
                    mfc="C0", label=f"Yamaha C3 {layer}")
            ax.plot(keys, [mod[(layer, k)][what] for k in keys], marks[layer], color="C3",
                    mfc="none", label=f"model vel {velocities[layer]}")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("MIDI key")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"{ylabel}: recording (filled) vs model (open), same analysis")
        fig.savefig(out / fname)
        paths.append(out / fname)
    # soft -> loud: centroid and level per key
    fig = _fig(9.0, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    for layer in F.LAYERS:
        ax1.plot(keys, [rec[(layer, k)]["centroid_hz"] for k in keys], marks[layer] + "-",
                 color="C0", lw=0.6, label=f"rec {layer}")
        ax1.plot(keys, [mod[(layer, k)]["centroid_hz"] for k in keys], marks[layer] + "--",
                 color="C3", mfc="none", lw=0.6, label=f"model {velocities[layer]}")
        ax2.plot(keys, [rec[(layer, k)]["level_db"] for k in keys], marks[layer] + "-",
                 color="C0", lw=0.6, label=f"rec {layer}")
        ax2.plot(keys, [mod[(layer, k)]["level_db"] for k in keys], marks[layer] + "--",
                 color="C3", mfc="none", lw=0.6, label=f"model {velocities[layer]}")
    ax1.set_yscale("log")
    ax1.set_ylabel("attack centroid, first 100 ms (Hz)")
    ax2.set_ylabel("RMS level, first 500 ms (dBFS)")
    for ax in (ax1, ax2):
        ax.set_xlabel("MIDI key")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Soft to loud: recording (blue) vs model (red)")
    fig.savefig(out / "centroid_level_vs_key.png")
    paths.append(out / "centroid_level_vs_key.png")
    return paths


def plot_spectrograms(sigs, out: Path, velocities, keys=(36, 60, 84), layer="L3"):
    from pianosynth import plots

    paths = []
    for key in keys:
        x, y = sigs[(layer, key)]
        fmax = min(20000.0, max(4000.0, 12 * F.equal_tempered_hz(key)))
        p = plots.spectrogram_png([(f"Yamaha C3 {F.key_name(key)} {layer}", x, FS),
                                   (f"model {F.key_name(key)} vel {velocities[layer]}", y, FS)],
                                  out / f"spectrogram_{F.key_name(key)}.png", fmax_hz=fmax,
                                  dur_s=4.0, nfft=4096, dyn_range_db=80.0)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------ markdown
def _fmt(what, v):
    if not np.isfinite(v):
        return "n/a"
    if what == "B":
        return f"{v:.2e}"
    if what in ("stretch",):
        return f"{v:+.1f}"
    if what in ("level range",):
        return f"{v:.1f}"
    return f"{v:.2f}"


def markdown(rows, velocities, rec, mod) -> str:
    mark = {True: "ok", False: "**out**", None: "-"}
    lines = ["# Realism: default preset vs Yamaha C3 recordings", "",
             "Generated by `python scripts/realism_report.py`. Recordings: Headroom Piano, "
             "Yamaha C3, close microphones (Bengt Nilsson, CC BY 4.0), keys "
             + ", ".join(str(k) for k in F.REALISM_KEYS) + ", dynamics L1/L3/L5. Each note is "
             "rendered with the default preset at "
             + ", ".join(f"{layer} = velocity {v}" for layer, v in velocities.items())
             + " (velocities chosen so the mean RMS level of the first 500 ms over these keys "
             "matches each layer's) for as long as the recording lasts, and both are measured "
             "with the same functions (`pianosynth.fit.realism_measures`, built on "
             "`pianosynth.analysis`).", "",
             "Bands: B within +-25 %; partial 1 within +-6 cents of the recording below C7; "
             f"EDT within x{EDT_FACTOR} (not applied where the recording decays less than "
             f"{MIN_EDT_RANGE_DB:.0f} dB into its background noise: its Schroeder curve is then "
             "the noise's); C4 late/early T60 of partial 1 >= 5; soft -> loud (L1 -> L5) "
             "attack-centroid ratio 1.5-2.7 (or within +-20 % of the recording's where that lies "
             "outside, as at C7: 1.29) and level range 12-25 dB.", ""]
    n_ok = sum(1 for r in rows if r[5] is True)
    n_all = sum(1 for r in rows if r[5] is not None)
    lines += [f"**{n_ok} of {n_all} checks inside their band.**", ""]
    lines += ["| key | layer | B rec | B model | stretch rec | stretch model | EDT rec (s) | "
              "EDT model (s) | level rec | level model | centroid rec | centroid model |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r[0], r[1], r[2]): r for r in rows}
    for key in F.REALISM_KEYS:
        for layer in F.LAYERS:
            rb, rs, re_ = by[("B", key, layer)], by[("stretch", key, layer)], \
                by[("EDT", key, layer)]
            r, m = rec[(layer, key)], mod[(layer, key)]
            lines.append(
                f"| {key} {F.key_name(key)} | {layer} | {_fmt('B', rb[3])} | {_fmt('B', rb[4])} "
                f"{mark[rb[5]]} | {_fmt('stretch', rs[3])} | {_fmt('stretch', rs[4])} "
                f"{mark[rs[5]]} | {_fmt('EDT', re_[3])} | {_fmt('EDT', re_[4])} "
                f"{mark[re_[5]]} | {r['level_db']:.1f} | {m['level_db']:.1f} | "
                f"{r['centroid_hz']:.0f} | {m['centroid_hz']:.0f} |")
    lines += ["", "Soft to loud (L1 -> L5):", "",
              "| key | centroid ratio rec | centroid ratio model | level range rec (dB) | "
              "level range model (dB) |", "|---|---|---|---|---|"]
    for key in F.REALISM_KEYS:
        c, lvl = by[("centroid ratio", key, "L1->L5")], by[("level range", key, "L1->L5")]
        lines.append(f"| {key} {F.key_name(key)} | {c[3]:.2f} | {c[4]:.2f} {mark[c[5]]} | "
                     f"{lvl[3]:.1f} | {lvl[4]:.1f} {mark[lvl[5]]} |")
    lines += ["", "Two-stage decay at C4 (late / early T60 of partial 1):", "",
              "| layer | recording | model |", "|---|---|---|"]
    for layer in F.LAYERS:
        t = by[("two-stage", 60, layer)]
        lines.append(f"| {layer} | {t[3]:.1f} | {t[4]:.1f} {mark[t[5]]} |")
    lines += ["", "Plots: `B_vs_key.png`, `stretch_vs_key.png`, `edt_vs_key.png`, "
              "`centroid_level_vs_key.png`, `spectrogram_*.png` (recording left, model right).",
              "", "Known differences the bands do not cover: the model's bass is darker than "
              "the recording at mezzo and forte (attack centroid at C2 about half the "
              "recording's; the soft-to-loud ratio is inside the band but below the "
              "recording's 2.5-2.8), and its upper partials decay faster than the recorded "
              "ones in the middle register (the one-pole loss filter follows the prompt decay "
              "of partials 1-2, and its T60 can only fall with frequency). At C7 and C8 fewer "
              "than three partials lie inside the dispersion band, so B is not compared there.",
              "", "`fit_all.md`: `pianosynth fit` on all 27 recordings "
              "(`python scripts/fit_all.py`)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "realism"))
    ap.add_argument("--match-velocities", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    velocities = dict(F.LAYER_VELOCITY)
    if args.match_velocities:
        lev = {}
        for key in F.REALISM_KEYS:
            for layer in F.LAYERS:
                x, fs = load(layer, key)
                lev[(layer, key)] = A.level_db(x, fs)
        velocities = match_velocities(lev)
        print("velocities:", velocities)
    rec, mod, sigs = measure_all(velocities)
    rows = evaluate(rec, mod)
    bad = [r for r in rows if r[5] is False]
    for r in bad:
        print(f"  out of band: {r[0]} key {r[1]} {r[2]}: recording {r[3]:.4g}, model {r[4]:.4g}")
    (out / "README.md").write_text(markdown(rows, velocities, rec, mod))
    if not args.no_plots:
        for p in plot_curves(rec, mod, out, velocities) + plot_spectrograms(sigs, out, velocities):
            print("wrote", p)
    print(f"{len(rows) - len(bad)} of {len(rows)} inside (or not applied); "
          f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
