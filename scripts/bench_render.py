"""Offline render speed: seconds of audio per second of CPU for a real piece, and the cost
of one voice in ns per sample.

Usage: python scripts/bench_render.py [MIDI] [--sample-rate HZ]
"""
import argparse
import time
from pathlib import Path

import numpy as np

from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events
from pianosynth.io import midi_file, render

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIDI = ROOT.parent / "shared" / "data" / "midi" / "deb_clai.mid"


def per_voice_ns(fs, n_voices=32, seconds=4.0):
    """ns per voice-sample with ``n_voices`` held notes (soundboard amortised)."""
    eng = Engine({"polyphony": n_voices}, sample_rate=fs)
    keys = np.linspace(30, 100, n_voices).astype(int)
    keys = np.unique(keys)
    ev = make_events([(0, 0x90, int(k), 100) for k in keys] + [(0, 0xB0, 64, 127)])
    n = int(seconds * fs)
    eng.render_frames(512, ev)                       # warm up, start the voices
    out = np.zeros((512, 2))
    t = time.process_time()
    for _ in range(n // 512):
        eng.render(out)
    dt = time.process_time() - t
    voices = eng.active_voices
    eng0 = Engine(sample_rate=fs)
    t = time.process_time()
    for _ in range(n // 512):
        eng0.render(out)
    dt0 = time.process_time() - t
    return (dt - dt0) / (voices * (n // 512) * 512) * 1e9, dt0 / ((n // 512) * 512) * 1e9, voices


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("midi", nargs="?", default=str(DEFAULT_MIDI))
    ap.add_argument("--sample-rate", type=int, default=48000)
    a = ap.parse_args()
    fs = a.sample_rate
    ev = midi_file.read_midi_file(a.midi)
    eng = Engine(sample_rate=fs)
    eng.render_frames(64)                             # compile/load kernels first
    eng.reset()
    t0 = time.process_time()
    w0 = time.perf_counter()
    y = render.render_midi(ev, eng, fs, tail="auto")
    cpu = time.process_time() - t0
    wall = time.perf_counter() - w0
    dur = len(y) / fs
    print(f"piece: {Path(a.midi).name}  audio {dur:.1f} s at {fs} Hz")
    print(f"render: cpu {cpu:.1f} s, wall {wall:.1f} s -> {dur / cpu:.2f} s of audio per CPU s "
          f"({dur / wall:.2f}x real time wall)")
    ns, base, nv = per_voice_ns(fs)
    print(f"per voice: {ns:.1f} ns per voice-sample ({nv} voices held); "
          f"engine with no voices (soundboard, output): {base:.1f} ns per sample")


if __name__ == "__main__":
    main()
