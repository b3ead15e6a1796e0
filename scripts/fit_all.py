"""Fit every Yamaha C3 recording (27 notes) and tabulate the errors before and after.

For each recording ``L<n>_close_<key>.flac``: :func:`pianosynth.fit.fit_note` from the default
preset, then one Markdown row: velocity chosen, partials (max |cents| inside the dispersion
band and over partials 1-20), T60 (median |%| and the share within 20 % over partials with
>= 20 dB of recorded decay), STFT distance default -> fitted, EDT ratio default -> fitted.

Usage::

    python scripts/fit_all.py [--out docs/realism/fit_all.md] [--refine] [--match-t60]
                              [--presets DIR] [--names L3_close_60 ...] [--jobs 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pianosynth import fit as F

ROOT = Path(__file__).resolve().parents[1]


def row(name, r):
    n = min(r.after.cents.size, r.before.cents.size)
    inside = (np.arange(1, n + 1) <= r.n_band) & np.isfinite(r.after.cents[:n]) \
        & np.isfinite(r.before.cents[:n])
    c20 = r.after.cents[:20]
    c20 = c20[np.isfinite(c20)]
    cb = r.before.cents[:n][inside]
    ca = r.after.cents[:n][inside]
    t_b = r.before.t60_pct[np.isfinite(r.before.t60_pct)]
    t_a = r.after.t60_pct[np.isfinite(r.after.t60_pct)]

    def mx(v):
        return f"{np.max(np.abs(v)):.2f}" if v.size else "n/a"

    def t60(v):
        return (f"{np.median(np.abs(v)):.0f} % ({np.mean(np.abs(v) <= 20) * 100:.0f} %)"
                if v.size else "n/a")

    m = r.t60_match
    if m is not None:
        t_m = m.t60_pct[np.isfinite(m.t60_pct)]
        alt = f"{t60(t_m)}, {m.stft:.3f}, x{m.edt_ratio:.2f}"
    else:
        alt = "n/a"
    return (f"| {name} | {r.velocity_before or r.velocity} -> {r.velocity} | "
            f"{int(inside.sum())} | {mx(cb)} -> {mx(ca)} | "
            f"{mx(c20)} ({c20.size}) | {t60(t_b)} -> {t60(t_a)} | {r.before.stft:.3f} -> "
            f"{r.after.stft:.3f} | {r.before.edt_ratio:.2f} -> {r.after.edt_ratio:.2f} | "
            f"{r.before.level_db:+.1f} -> {r.after.level_db:+.1f} | "
            f"{r.before.centroid_ratio:.2f} -> {r.after.centroid_ratio:.2f} | {alt} |")


def all_within(e):
    """True when every counted T60 of ``e`` (an Errors) is within the tolerance."""
    t = e.t60_pct[np.isfinite(e.t60_pct)]
    return bool(np.all(np.abs(t) <= F.T60_TOL_PCT))


def plot_decays(name, r, xm, fs, path, n_max=12):
    """Recorded (black) and fitted (red) envelopes of the partials whose T60 counts (>= 20 dB
    of recorded decay), with the fit span (blue) and the recording's noise floor (grey), as
    :func:`pianosynth.fit.compare` reads them; the T60 stage's render (green) when not kept."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pianosynth import analysis as A

    rec = r.recording
    f = rec.decay_freqs_hz
    idx = np.flatnonzero(np.nan_to_num(rec.decay_range_db, nan=0.0) >= F.MIN_RANGE_DB)[:n_max]
    if not idx.size:
        return
    t, er = A.partial_envelopes(xm, fs, f)
    ya = r.render_after
    ty, ey = A.partial_envelopes(ya, fs, f)
    n0y = A.detect_onset(ya, fs)
    cols = 3
    rows = (idx.size + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    for a, j in zip(axs.flat, idx):
        t0 = rec.onset / fs
        a.plot(t - t0, er[j], "k", lw=0.7, label="recording")
        a.plot(ty - n0y / fs, ey[j], "r", lw=0.7, label="fitted")
        a.axhline(rec.floor_db[j], color="gray", ls=":")
        for tv in (rec.t_peak_s[j], rec.t_end_s[j]):
            a.axvline(tv - t0, color="b", ls=":")
        a.set_title(f"{name} partial {j + 1} ({f[j]:.0f} Hz): T60 rec {r.after.t60_rec_s[j]:.2f} s, "
                    f"fit {r.after.t60_ren_s[j]:.2f} s, range {rec.decay_range_db[j]:.0f} dB",
                    fontsize=8)
        top = float(np.nanmax(er[j]))
        a.set_ylim(top - 90, top + 5)
        a.set_xlim(-0.2, rec.t_end_s[j] - t0 + 1.0)
        a.set_xlabel("s")
        a.set_ylabel("dB")
    axs.flat[0].legend(fontsize=8)
    for a in list(axs.flat)[idx.size:]:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def fit_one(job):
    """Fit one recording: (its Markdown row, its counts for the summary; None on error)."""
    name, refine, loss_order, match_t60, plot_dir, preset_dir, second_modes = job
    layer, _, key = name.split("_")
    key = int(key)
    data, fs = F.load_recording(F.recording_path(layer, key))
    try:
        r = F.fit_note(data, fs, key, refine=refine, loss_order=loss_order,
                       match_t60=match_t60, second_modes=second_modes)
    except Exception as e:  # noqa: BLE001 -- tabulate and go on
        return f"| {name} | error: {e} |", None
    c20 = r.after.cents[:20]
    c20 = c20[np.isfinite(c20)]
    t_a = r.after.t60_pct[np.isfinite(r.after.t60_pct)]
    alt = r.t60_match is not None and all_within(r.t60_match)
    counts = dict(better=bool(r.after.stft < r.before.stft),
                  cents=bool(c20.size) and float(np.max(np.abs(c20))) < 1.0,
                  t60=bool(np.all(np.abs(t_a) <= F.T60_TOL_PCT)), alt=alt,
                  alt_stft=alt and bool(r.t60_match.stft < r.before.stft))
    if plot_dir:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        plot_decays(name, r, F.A.to_mono(data), fs, Path(plot_dir) / f"decays_{name}.png")
    if preset_dir:
        from pianosynth.presets import Preset, save_preset
        d = Path(preset_dir)
        d.mkdir(parents=True, exist_ok=True)
        save_preset(Preset(name=name, keys={key: r.overrides}), d / f"{name}.toml")
        (d / f"{name}.log").write_text("\n".join(r.log) + "\n")
    return row(name, r), counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "realism" / "fit_all.md"))
    ap.add_argument("--refine", action="store_true")
    ap.add_argument("--loss-order", type=int, default=1,
                    help="loss filter order (1 one-pole; 2-5 with peaking cuts, eq. 11)")
    ap.add_argument("--match-t60", action="store_true",
                    help="keep the per-partial T60 stage's fit whatever its STFT distance")
    ap.add_argument("--plot-decays", default=None, metavar="DIR",
                    help="write recorded vs fitted partial envelopes (PNG) per file here")
    ap.add_argument("--presets", default=None,
                    help="also save each fitted preset (and the fit's log) here")
    ap.add_argument("--names", nargs="*", default=None,
                    help="only these recordings (e.g. L3_close_24); rows printed, table kept")
    ap.add_argument("--second-modes", choices=F.SECOND_MODES, default="both",
                    help="second modes of the T60 stage (pianosynth fit --second-modes); "
                         "default both")
    ap.add_argument("--jobs", type=int, default=1,
                    help="fit this many recordings at once, one process each (default 1)")
    args = ap.parse_args(argv)
    lines = ["# `pianosynth fit` on the 27 Yamaha C3 recordings", "",
             "Generated by `python scripts/fit_all.py`" + (" --refine" if args.refine else "")
             + (" --match-t60" if args.match_t60 else "")
             + f" --second-modes {args.second_modes} --jobs {args.jobs}"
             + f" (--loss-order {args.loss_order}" + (
                 f"; the fitted strings' dispersion band covers partials 1-{F.BAND_PARTIALS})"
                 if F.BAND_PARTIALS else ")")
             + ". Each note fitted from the default preset; errors of the default preset's "
             "render -> the fitted render, both measured like the recording "
             "(`pianosynth.fit.compare`). Columns: velocity of the default preset's render "
             "(the one matching the recording's level) -> velocity the fit chose "
             "(attack brightness with the fitted felt stiffness); partials inside the fitted string's dispersion allpass design band "
             "found in both renders and the recording; max |cents| there (default -> fitted); "
             "max |cents| over partials 1-20 found in both (count); T60 error: median |%| "
             "(share within 20 %) over partials with >= 20 dB of recorded decay; "
             "multi-resolution STFT distance over the first 3 s; EDT render/recording; level "
             "(dB, first 500 ms); attack centroid render/recording; last column: the per-partial T60 stage "
             "(`fit_partial_t60`: " + {
                 "shared": "the key's shared second modes, loss order 5",
                 "own": "each resonator partial's own second mode from the recording's "
                        f"two-mode fit, loss order {F.T60_LOSS_ORDER}; where partials have "
                        "a prompt reading, those too, with own modes up to fs/4",
                 "both": "the key's shared second modes at loss order 5 and each resonator "
                         "partial's own from the recording's two-mode fit at loss order "
                         f"{F.T60_LOSS_ORDER} (and, where partials have a prompt reading, "
                         "those, with own modes up to fs/4), the best kept (T60 score, then "
                         "STFT)"}[
                 args.second_modes]
             + ", kept only when every T60 is within "
             f"{F.T60_TOL_PCT:g} % and its STFT distance below the default's, or when closer "
             "on both counts): T60 error, STFT distance, EDT ratio.", "",
             "| recording | vel | band | cents in band | cents 1-20 | T60 | STFT | EDT x | "
             "level dB | centroid x | T60 stage: T60, STFT, EDT |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    t0 = time.time()
    names = [f"{layer}_close_{key}" for key in F.REALISM_KEYS for layer in F.LAYERS]
    if args.names is not None:
        names = [n for n in names if n in args.names]
    jobs = [(n, args.refine, args.loss_order, args.match_t60, args.plot_decays, args.presets,
             args.second_modes) for n in names]
    if args.jobs > 1:
        # the fits are independent: one process each (spawned: numba loads its cache anew)
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            results = []
            for res in pool.imap(fit_one, jobs):
                print(res[0], flush=True)
                results.append(res)
    else:
        results = []
        for job in jobs:
            results.append(fit_one(job))
            print(results[-1][0], flush=True)
    n_better = n_cents = n_t60 = n_alt = n_alt_stft = 0
    for text, c in results:
        lines.append(text)
        if c is None:
            continue
        n_better += c["better"]
        n_cents += c["cents"]
        n_t60 += c["t60"]
        n_alt += c["alt"]
        n_alt_stft += c["alt_stft"]
    lines += ["", f"Partials 1-20 (found in both) within 1 cent on {n_cents} of 27 recordings; "
              f"every T60 (>= 20 dB of decay) within 20 % on {n_t60} of 27; STFT distance "
              f"lower than the default's on {n_better} of 27. The T60 stage alone: every T60 "
              f"within {F.T60_TOL_PCT:g} % on {n_alt} of 27, {n_alt_stft} of them with an STFT "
              f"distance below the default's; {time.time() - t0:.0f} s."]
    if args.names is not None:
        print("\n".join(lines[-1:]))
        return 0
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
