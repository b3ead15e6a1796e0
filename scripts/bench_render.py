"""Offline render speed against FluidSynth (not a test): seconds of audio per second for a
real piece in every quality mode, FluidSynth rendering the same file with a GM piano in the
same run (Debian packages fluidsynth and fluid-soundfont-gm, installed when missing), and
the cost of one voice in ns per sample.

Usage: python scripts/bench_render.py [MIDI] [--sample-rate HZ] [--no-fluidsynth] [--runs N]

Two comparisons, each printed as a ratio (> 1: pianosynth is faster):

- one core each: CPU time of pianosynth on one thread against FluidSynth's default (one
  thread): the cost of the model;
- wall clock: pianosynth's default offline render (two threads, pipelined, where
  available) against FluidSynth's default: how long a user waits. (FluidSynth's own
  ``-o synth.cpu-cores=N`` is run once and printed: on this piece it is ~4x slower.)

The machine is shared and its speed drifts over seconds (the same render takes 0.66 or
1.05 s here, in phases): each round runs FluidSynth and, right after it, each mode, and
the ratios are the median over the rounds of these neighbours' ratios ("paired"), with
fastest-against-fastest beside them. Both sides are render time only: our start-up
(engine, kernels) is outside the timing, and FluidSynth's (SoundFont loading, measured on
a one-note file) is taken off its time.
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
    ap.add_argument("--runs", type=int, default=5,
                    help="rounds; in each, every mode renders right after a FluidSynth run "
                         "(one thread, then the default two)")
    a = ap.parse_args()
    fs = a.sample_rate
    runs = max(1, a.runs)
    ev = midi_file.read_midi_file(a.midi)
    print(f"piece: {Path(a.midi).name} at {fs} Hz, {runs} rounds")
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
    dur = {}
    if use_fluid and cores > 1:
        # FluidSynth's own threads, once: on this piece they cost far more than they give
        fcpu, fwall, fd = fluidsynth_seconds(a.midi, fs, cores)
        scpu, swall = fluidsynth_startup_seconds(fs, cores)
        print(f"FluidSynth with synth.cpu-cores={cores} (once): CPU {fcpu - scpu:.2f} s, "
              f"wall {fwall - swall:.2f} s for {fd:.1f} s of audio (start-up taken off); "
              f"the comparisons below use its default, one thread")
    # rows[q] = list of (fluid cpu, fluid wall, ours one-thread cpu, ours default wall)
    rows = {q: [] for q in modes}
    for _ in range(runs):
        for q in modes:
            fcpu = fwall = float("nan")
            if use_fluid:
                fc, fw, dur["fluid"] = fluidsynth_seconds(a.midi, fs, 1)
                sc, sw = fluidsynth_startup_seconds(fs, 1)
                fcpu, fwall = max(fc - sc, 1e-3), max(fw - sw, 1e-3)
            eng = engines[q]
            got = []
            for pipe in ((False, True) if threads == 2 else (False,)):
                eng.reset()
                c0, w0 = time.process_time(), time.perf_counter()
                y = render.render_midi(ev, eng, fs, tail="auto", pipelined=pipe)
                got.append((time.process_time() - c0, time.perf_counter() - w0))
                dur[q] = len(y) / fs
            rows[q].append((fcpu, fwall, got[0][0], got[-1][1]))

    def med(x):
        x = sorted(x)
        return x[len(x) // 2]
    if use_fluid:
        f = np.array([r[:2] for q in modes for r in rows[q]])
        print(f"FluidSynth (FluidR3 GM piano, default: one thread): {dur['fluid']:.1f} s of "
              f"audio; CPU fastest {f[:, 0].min():.2f} s (median {med(f[:, 0]):.2f}), wall "
              f"fastest {f[:, 1].min():.2f} s (median {med(f[:, 1]):.2f}), start-up taken off")
    print("ratios > 1: pianosynth faster. 'paired' = median over the rounds of FluidSynth's "
          "time / ours in the run right after it (the machine's load drifts over seconds: "
          "neighbours see the same); 'fastest' = fastest against fastest")
    for q in modes:
        r = np.array(rows[q])
        d = dur[q]
        line = (f"pianosynth {q:6s}: {d:.1f} s of audio\n"
                f"    one thread: CPU fastest {r[:, 2].min():.2f} s (median {med(r[:, 2]):.2f})"
                f" -> {d / r[:, 2].min():.1f} s of audio per CPU s")
        if use_fluid:
            fd = dur["fluid"]
            paired = med((r[:, 0] / fd) / (r[:, 2] / d))
            fastest = (r[:, 0].min() / fd) / (r[:, 2].min() / d)
            line += f"; vs FluidSynth, one core each: paired {paired:.2f}, fastest {fastest:.2f}"
        line += (f"\n    default ({threads} thread{'s' if threads > 1 else ''}): wall fastest "
                 f"{r[:, 3].min():.2f} s (median {med(r[:, 3]):.2f}) -> "
                 f"{d / r[:, 3].min():.1f} s of audio per second")
        if use_fluid:
            paired = med((r[:, 1] / fd) / (r[:, 3] / d))
            fastest = (r[:, 1].min() / fd) / (r[:, 3].min() / d)
            line += f"; vs FluidSynth, wall clock: paired {paired:.2f}, fastest {fastest:.2f}"
        print(line)
    ns, base, nv = per_voice_ns(fs)
    print(f"per voice: {ns:.1f} ns per voice-sample ({nv} voices held); "
          f"engine with no voices (soundboard, output): {base:.1f} ns per sample")


if __name__ == "__main__":
    main()
