"""Cost of the voice engine (not a test): ns per voice-sample in every quality mode, the
projected real-time load of 256 voices, the cost of silent-but-allocated voices, and the
engine's memory.

Usage: python scripts/bench_voices.py [--sample-rate 48000] [--seconds 2]

Voices: one per key is the engine's rule (a re-struck key reuses its string), so 256
simultaneous voices cannot come from a keyboard; to measure 256 the 88 keys' voice states
are copied into the remaining slots (the kernel does not care which key a voice plays).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pianosynth.dsp import voice as V
from pianosynth.engine import blockloop as B
from pianosynth.engine.core import QUALITY_MODES, Engine
from pianosynth.engine.events import make_events

BLOCK = 256


def start_voices(eng, n):
    keys = [int(k) for k in np.linspace(21, 108, min(n, 88)).round()]
    keys = list(dict.fromkeys(keys))
    ev = make_events([(0, 0x90, k, 100) for k in keys])     # held keys, no pedal:
    # full struck strings only (the pedal would add cheap sympathetic strings)
    eng.render_frames(BLOCK, ev, block_size=BLOCK)
    copy_voices(eng, n)
    eng.render_frames(BLOCK * 8, block_size=BLOCK)     # past the attacks


def copy_voices(eng, n):
    """Copy sounding voices' states into free slots until ``n`` voices sound."""
    live = np.nonzero(eng.iv[:, V.I_STATE] != V.FREE)[0]
    free = np.nonzero(eng.iv[:, V.I_STATE] == V.FREE)[0]
    if not len(live):
        return
    for j, v in enumerate(free[: max(0, n - len(live))]):
        src = live[j % len(live)]
        for a in (eng.iv, eng.fv, eng.nut, eng.bridge, eng.dsos, eng.dstate, eng.rcoef,
                  eng.rstate):
            a[v] = a[src]


def rss_mb():
    """Resident set size of this process now, MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cost(eng, seconds):
    out = np.zeros((BLOCK, 2))
    nblk = int(seconds * eng.sample_rate / BLOCK)
    t = time.process_time()
    for _ in range(nblk):
        eng.render(out)
    return (time.process_time() - t) / (nblk * BLOCK)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    fs = a.sample_rate
    print(f"fs = {fs} Hz, blocks of {BLOCK} frames, CPU time (one core)")
    for q in QUALITY_MODES:
        empty = Engine({"polyphony": 256}, sample_rate=fs, quality=q)
        empty.render_frames(BLOCK)
        cost(empty, 0.25)        # warm-up: the first process's first blocks load kernels
        base = cost(empty, a.seconds)
        row = [f"{q:6s}: engine alone {base * 1e9:6.1f} ns/sample"]
        for n in (64, 256):
            eng = Engine({"polyphony": 256}, sample_rate=fs, quality=q)
            start_voices(eng, n)
            nv = eng.active_voices
            c = cost(eng, a.seconds)
            row.append(f"{nv} voices {(c - base) / nv * 1e9:5.1f} ns/voice-sample, "
                       f"load {c * fs:.2f} of one core")
        print("; ".join(row))
    # silence: 64 allocated voices at -300 dB (freeing disabled) vs 64 sounding
    base0 = cost(Engine({"polyphony": 256}, sample_rate=fs), a.seconds)
    eng = Engine({"polyphony": 256}, sample_rate=fs)
    start_voices(eng, 64)
    sounding = cost(eng, a.seconds)
    eng.gf[B.GF_FREE_LEVEL] = 0.0
    for arr in (eng.nut, eng.bridge, eng.dstate, eng.rstate):
        arr *= 1e-300 / max(np.max(np.abs(arr)), 1e-300)
    eng.fv[:, V.F_LOSS_Y1] *= 1e-300
    silent = cost(eng, a.seconds)
    print(f"64 sounding voices {sounding * 1e9:.0f} ns/sample; 64 silent (denormal-range) "
          f"voices kept allocated (freeing off) {silent * 1e9:.0f} ns/sample: ratio "
          f"{silent / sounding:.2f} "
          + ("(no denormal slow-down)" if silent / sounding <= 1.15 else
             "(SLOWER than sounding: denormals, or noise from other load; run again)"))
    # the engine's rule: a voice below -100 dBFS is freed (within 64 samples), so 64 voices
    # gone silent cost what the engine alone costs
    eng = Engine({"polyphony": 256}, sample_rate=fs)
    start_voices(eng, 64)
    for arr in (eng.nut, eng.bridge, eng.dstate, eng.rstate):
        arr *= 1e-300 / max(np.max(np.abs(arr)), 1e-300)
    eng.fv[:, V.F_LOSS_Y1] *= 1e-300
    eng.fv[:, V.F_LEVEL] = 0.0
    eng.iv[:, V.I_HAMMER_ON] = 0
    eng.render_frames(BLOCK, block_size=BLOCK)          # the voices are freed here
    left = eng.active_voices
    ringing = cost(eng, 0.25)        # the soundboard still rings with what they played
    # the soundboard's tail is sound, not silence: let it end (below -160 dBFS for two
    # 4096-sample windows, blockloop.SB_QUIET_LEVEL), then measure what silence costs
    tail_s = 0.25
    while not eng.is_idle() and tail_s < 20.0:
        eng.render_frames(int(0.25 * fs), block_size=4096)
        tail_s += 0.25
    freed = cost(eng, a.seconds)
    print(f"64 voices gone silent, engine rule (freed below -100 dBFS): {left} left after "
          f"{BLOCK} samples; while the soundboard's tail rings ({tail_s:.2f} s to -160 dBFS) "
          f"{ringing * 1e9:.0f} ns/sample; after it {freed * 1e9:.0f} ns/sample: "
          f"{100 * (freed - base0) / sounding:.1f} % of 64 sounding voices above the engine "
          f"alone ({base0 * 1e9:.0f} ns/sample)")
    quiet = Engine(sample_rate=fs)
    quiet.render_frames(BLOCK, make_events([(0, 0x90, 60, 127), (10, 0x80, 60, 0)]))
    fresh = cost(Engine(sample_rate=fs), a.seconds)
    quiet.render_frames(int(120 * fs), block_size=4096)          # two minutes of silence
    after = cost(quiet, a.seconds)
    print(f"engine in silence: fresh {fresh * 1e9:.0f} ns/sample, after a note and 120 s "
          f"of silence {after * 1e9:.0f} ns/sample ({after / fresh:.2f}x)")
    # VmRSS of a fresh process (ru_maxrss would carry this process's peak across exec)
    code = ("import sys; sys.path.insert(0, %r); import bench_voices as b; "
            "from pianosynth.engine.core import Engine; r0 = b.rss_mb(); "
            "e = Engine({'polyphony': 256}, sample_rate=48000); b.start_voices(e, 256); "
            "print(r0, b.rss_mb(), e.active_voices)") % str(Path(__file__).parent)
    r0, r1, nv = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split()
    print(f"memory (fresh process): {float(r1):.0f} MB resident with a {nv}-voice engine "
          f"at 48 kHz; {float(r0):.0f} MB of it is Python + numpy/scipy/numba before the "
          f"engine exists")


if __name__ == "__main__":
    main()
