"""Offline render speed against FluidSynth (not a test): seconds of audio per second for a
real piece in every quality mode, FluidSynth rendering the same file with a GM piano in the
same run (Debian packages fluidsynth and fluid-soundfont-gm, installed when missing), and
the cost of one voice in ns per sample.

Usage: python scripts/bench_render.py [MIDI] [--sample-rate HZ] [--no-fluidsynth] [--runs N]

Two comparisons, each printed as a ratio (> 1: pianosynth is faster):

- one core each: CPU time of pianosynth on one thread against FluidSynth's default (one
  thread): the cost of the model;
- wall clock, both using this machine's cores: pianosynth's default offline render (two
  threads, pipelined, where available) against the faster of FluidSynth's default and
  ``-o synth.cpu-cores=N``: how long a user waits.

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

from pianosynth.engine.core import Engine, pipelined_available
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


def fluidsynth_seconds(midi, fs, cores=1):
    """(CPU s (user + sys of the child), wall s, audio s) FluidSynth takes to render
    ``midi`` with ``cores`` rendering threads."""
    with tempfile.TemporaryDirectory() as d:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w = time.perf_counter()
        subprocess.run(["fluidsynth", "-ni", "-q", "-o", f"synth.cpu-cores={cores}", "-F",
                        os.path.join(d, "fs.wav"), "-r", str(fs), SF2, midi], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - w
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        import soundfile
        dur = soundfile.info(os.path.join(d, "fs.wav")).duration
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, dur


def fluidsynth_startup_seconds(fs, cores=1):
    """(CPU s, wall s) FluidSynth takes for a one-note file (start-up, SoundFont loading):
    our figures leave out our start-up (engine, kernels), so this is taken off its time."""
    import mido
    with tempfile.TemporaryDirectory() as d:
        mid = mido.MidiFile()
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.Message("note_on", note=60, velocity=64, time=0))
        tr.append(mido.Message("note_off", note=60, velocity=0, time=1))
        path = os.path.join(d, "one.mid")
        mid.save(path)
        cpu, wall, _dur = fluidsynth_seconds(path, fs, cores)
    return cpu, wall


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
    threads = 2 if pipelined_available() else 1
    cores = os.cpu_count() or 1
    engines = {}
    for q in modes:
        eng = Engine(sample_rate=fs, quality=q)
        eng.render_frames(64)                         # compile/load kernels first
        if threads == 2:
            eng.reset()
            eng.render(np.zeros((64, 2)), pipelined=True)
        engines[q] = eng
    print(f"pianosynth offline default: {threads} thread(s); {cores} CPUs")
    t = {}                                            # name -> list of seconds
    dur = {}

    def add(name, sec):
        t.setdefault(name, []).append(sec)
    fluid_cores = sorted({1, cores}) if cores > 1 else [1]
    for _ in range(runs):
        if use_fluid:
            for c in fluid_cores:
                fcpu, fwall, dur["fluid"] = fluidsynth_seconds(a.midi, fs, c)
                scpu, swall = fluidsynth_startup_seconds(fs, c)
                add(f"fluid{c}_cpu", fcpu - scpu)
                add(f"fluid{c}_wall", fwall - swall)
        for q in modes:
            eng = engines[q]
            for pipe in ((False, True) if threads == 2 else (False,)):
                eng.reset()
                c0, w0 = time.process_time(), time.perf_counter()
                y = render.render_midi(ev, eng, fs, tail="auto", pipelined=pipe)
                c1, w1 = time.process_time(), time.perf_counter()
                dur[q] = len(y) / fs
                tag = "pipe" if pipe else "one"
                add(f"{q}_{tag}_cpu", c1 - c0)
                add(f"{q}_{tag}_wall", w1 - w0)

    def lo(name):
        return min(max(x, 1e-3) for x in t[name])

    def med(name):
        c = sorted(max(x, 1e-3) for x in t[name])
        return c[len(c) // 2]
    if use_fluid:
        fd = dur["fluid"]
        for c in fluid_cores:
            print(f"FluidSynth (FluidR3 GM piano, synth.cpu-cores={c}): {fd:.1f} s of audio; "
                  f"CPU {lo(f'fluid{c}_cpu'):.2f} s (median {med(f'fluid{c}_cpu'):.2f}), wall "
                  f"{lo(f'fluid{c}_wall'):.2f} s (median {med(f'fluid{c}_wall'):.2f}), "
                  f"start-up taken off")
        f_cpu = fd / lo("fluid1_cpu")
        f_cpu_med = fd / med("fluid1_cpu")
        best = min(fluid_cores, key=lambda c: lo(f"fluid{c}_wall"))
        f_wall = fd / lo(f"fluid{best}_wall")
        f_wall_med = fd / min(med(f"fluid{c}_wall") for c in fluid_cores)
    for q in modes:
        d = dur[q]
        one = d / lo(f"{q}_one_cpu")
        line = (f"pianosynth {q:6s}: {d:.1f} s of audio; one thread: CPU {lo(f'{q}_one_cpu'):.2f}"
                f" s -> {one:.1f} s of audio per CPU s")
        if use_fluid:
            line += (f", ratio to FluidSynth (one core each) {one / f_cpu:.2f} "
                     f"(medians {d / med(f'{q}_one_cpu') / f_cpu_med:.2f})")
        tag = "pipe" if threads == 2 else "one"
        wall = d / lo(f"{q}_{tag}_wall")
        line += (f"\n    default ({threads} thread{'s' if threads > 1 else ''}): wall "
                 f"{lo(f'{q}_{tag}_wall'):.2f} s (CPU {lo(f'{q}_{tag}_cpu'):.2f} s) -> "
                 f"{wall:.1f} s of audio per second")
        if use_fluid:
            line += (f", ratio to FluidSynth's faster (wall clock) {wall / f_wall:.2f} "
                     f"(medians {d / med(f'{q}_{tag}_wall') / f_wall_med:.2f})")
        print(line)
    ns, base, nv = per_voice_ns(fs)
    print(f"per voice: {ns:.1f} ns per voice-sample ({nv} voices held); "
          f"engine with no voices (soundboard, output): {base:.1f} ns per sample")


if __name__ == "__main__":
    main()
