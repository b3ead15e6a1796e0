"""Render C2, C4, C6 and put their spectrograms next to the Yamaha C3 recordings; plot the
hammer force pulses (cf. Bank et al. Fig. 2) and the decay of partial 1.

Usage: python scripts/plot_notes.py [OUTDIR]   (default: plots/)
"""
import sys
from pathlib import Path

import numpy as np

from pianosynth import analysis as A
from pianosynth import plots
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

ROOT = Path(__file__).resolve().parents[1]
REC = ROOT.parent / "shared" / "data" / "recordings" / "headroom_yamahaC3"


def main(outdir="plots"):
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    fs = 44100
    eng = Engine(sample_rate=fs)
    forces = []
    for key, name, fmax in [(36, "C2", 4000), (60, "C4", 6000), (84, "C6", 10000)]:
        eng.reset()
        y = eng.render_frames(int(5 * fs), make_events([(0, 0x90, key, 96)]))
        forces.append((name, eng.hammer_force_trace()))
        sig = [(f"pianosynth {name} vel 96", y, fs)]
        rec = REC / f"L3_close_{key}.flac"
        if rec.exists():
            x, rfs = A.load_audio(rec)
            sig.insert(0, (f"Yamaha C3 {name} (L3)", x, rfs))
        p = plots.spectrogram_png(sig, out / f"spectrogram_{name}.png", fmax_hz=fmax, dur_s=4.0)
        print("wrote", p)
    t = [np.arange(len(f)) / fs for _, f in forces]
    p = plots.force_png(t, [f for _, f in forces], out / "hammer_force.png",
                        labels=[n for n, _ in forces], title="Hammer force, velocity 96")
    print("wrote", p)


if __name__ == "__main__":
    main(*sys.argv[1:])
