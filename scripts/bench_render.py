"""Offline render speed against FluidSynth (not a test): seconds of audio per second of CPU
for a real piece in every quality mode, FluidSynth rendering the same file with a GM piano
in the same run (Debian packages fluidsynth and fluid-soundfont-gm, installed when missing),
and the cost of one voice in ns per sample.

Usage: python scripts/bench_render.py [MIDI] [--sample-rate HZ] [--no-fluidsynth] [--runs N]

The machine is shared: each round renders with FluidSynth and every mode in turn, and the
fastest of each counts (medians are printed too). Both sides are render time only: our
start-up (engine, kernels) is outside the timing, and FluidSynth's (SoundFont loading,
measured on a one-note file) is taken off its time.
"""
import argparse
import os
import resource
import shutil
import subprocess
import tempfile
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


SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def ensure_fluidsynth() -> bool:
    if shutil.which("fluidsynth") and os.path.exists(SF2):
        return True
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "fluidsynth",
           "fluid-soundfont-gm"]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return False
        cmd = ["sudo"] + cmd
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return bool(shutil.which("fluidsynth")) and os.path.exists(SF2)


def fluidsynth_seconds(midi, fs):
    """CPU seconds (user + sys of the child) FluidSynth takes to render ``midi``."""
    with tempfile.TemporaryDirectory() as d:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w = time.perf_counter()
        subprocess.run(["fluidsynth", "-ni", "-q", "-F", os.path.join(d, "fs.wav"), "-r",
                        str(fs), SF2, midi], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - w
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        import soundfile
        dur = soundfile.info(os.path.join(d, "fs.wav")).duration
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, dur


def fluidsynth_startup_seconds(fs):
    """CPU seconds FluidSynth takes for a one-note file (start-up, SoundFont loading): our
    figures leave out our start-up (engine, kernels), so this is taken off its time too."""
    import mido
    with tempfile.TemporaryDirectory() as d:
        mid = mido.MidiFile()
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.Message("note_on", note=60, velocity=64, time=0))
        tr.append(mido.Message("note_off", note=60, velocity=0, time=1))
        path = os.path.join(d, "one.mid")
        mid.save(path)
        cpu, _wall, _dur = fluidsynth_seconds(path, fs)
    return cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("midi", nargs="?", default=str(DEFAULT_MIDI))
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--no-fluidsynth", action="store_true")
    ap.add_argument("--runs", type=int, default=3,
                    help="rounds; each renders with FluidSynth and every mode once, in turn, "
                         "and the fastest of each counts (other load on the machine only "
                         "ever adds time; alternating spreads it over all)")
    a = ap.parse_args()
    fs = a.sample_rate
    runs = max(1, a.runs)
    ev = midi_file.read_midi_file(a.midi)
    print(f"piece: {Path(a.midi).name} at {fs} Hz, {runs} rounds (fastest of each counts)")
    use_fluid = not a.no_fluidsynth and ensure_fluidsynth()
    if not a.no_fluidsynth and not use_fluid:
        print("FluidSynth not available (needs apt: fluidsynth fluid-soundfont-gm)")
    modes = ("high", "normal", "eco")
    engines = {}
    for q in modes:
        eng = Engine(sample_rate=fs, quality=q)
        eng.render_frames(64)                         # compile/load kernels first
        engines[q] = eng
    cpu = {k: [] for k in ("fluid",) + modes}
    dur = {}
    for _ in range(runs):
        if use_fluid:
            fcpu, _fwall, dur["fluid"] = fluidsynth_seconds(a.midi, fs)
            cpu["fluid"].append(fcpu)
            cpu.setdefault("fluid_start", []).append(fluidsynth_startup_seconds(fs))
        for q in modes:
            eng = engines[q]
            eng.reset()
            t0 = time.process_time()
            y = render.render_midi(ev, eng, fs, tail="auto")
            cpu[q].append(time.process_time() - t0)
            dur[q] = len(y) / fs

    def stats(k):
        c = sorted(cpu[k])
        return c[0], c[len(c) // 2]
    fluid = None
    if use_fluid:
        lo, med = stats("fluid")
        fluid = dur["fluid"] / lo
        start = min(cpu["fluid_start"])
        fluid = dur["fluid"] / max(lo - start, 1e-3)
        print(f"FluidSynth (FluidR3 GM piano): {dur['fluid']:.1f} s of audio, cpu {lo:.2f} s "
              f"(median {med:.2f}) of which start-up {start:.2f} s (one-note file), so "
              f"{fluid:.1f} s of audio per CPU s rendering")
    for q in modes:
        lo, med = stats(q)
        speed = dur[q] / lo
        ratio = ""
        if fluid:
            fmed = dur["fluid"] / max(stats("fluid")[1] - min(cpu["fluid_start"]), 1e-3)
            ratio = (f"; ratio to FluidSynth {speed / fluid:.2f} "
                     f"(medians: {dur[q] / med / fmed:.2f})")
        print(f"pianosynth {q:6s}: {dur[q]:.1f} s of audio, cpu {lo:.2f} s (median {med:.2f}) "
              f"-> {speed:.1f} s of audio per CPU s{ratio}")
    ns, base, nv = per_voice_ns(fs)
    print(f"per voice: {ns:.1f} ns per voice-sample ({nv} voices held); "
          f"engine with no voices (soundboard, output): {base:.1f} ns per sample")


if __name__ == "__main__":
    main()
