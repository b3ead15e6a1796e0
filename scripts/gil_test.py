#!/usr/bin/env python
"""Does a busy Python thread in the same process harm the audio callback? (the GIL question)

The control panel runs Python in the same program as the audio callback. The callback needs
the GIL to start (cffi enters Python) and again after every ``nogil`` kernel returns; a
thread running pure Python keeps the GIL for up to ``sys.getswitchinterval()`` (5 ms by
default) before it must hand it over, i.e. about one 256-frame block at 48 kHz.

This script measures, on a JACK server (dummy backend; started here if none runs), at the
server's period (256 frames by default), for a few seconds each and in a fresh process each:

callbacks
    ``empty`` (fills zeros), ``engine`` (the real :class:`Engine`, pedal down, a new note
    every 100 ms: up to 32 voices ringing), ``nogil50`` (a numba ``nogil`` kernel busy for
    half of each block: what a heavier engine would look like to the GIL).
scenarios
    ``idle`` (nothing else), ``thread-5ms`` (a pure-Python busy thread, default switch
    interval), ``thread-1ms`` (the same with ``sys.setswitchinterval(0.001)``), ``process``
    (the busy loop in another process: the engine-in-its-own-process design, where only
    CPU contention is left), ``process-nice`` (that process at nice 10: an OS priority,
    which a thread cannot get against the GIL).

Printed per run: callbacks, underflows (JACK xruns, which every client sees), callbacks
that started more than 2 ms late, the 99th percentile of the start lateness, the longest
callback. Compare each row with the ``idle`` row of the same callback: the machine's own
noise comes in bursts, so the script runs the matrix ``--repeats`` times, interleaved.

Usage::

    python scripts/gil_test.py [--seconds 8] [--repeats 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALLBACKS = ("empty", "engine", "nogil50")
SCENARIOS = ("idle", "thread-5ms", "thread-1ms", "process")
#: also available: "process-nice" (the busy process at nice 10: what an OS priority buys)


# ------------------------------------------------------------------------------ child side
def _busy_python(stop: threading.Event | None = None) -> None:
    """Pure-Python work (a GUI redrawing, a plot computing) that never blocks."""
    x = 0
    while stop is None or not stop.is_set():
        for i in range(2000):
            x = (x + i * i) % 1000003


def _make_nogil_kernel(fraction: float, block_s: float):
    import numba
    import numpy as np

    @numba.njit(nogil=True, cache=False)
    def spin(n, out):
        acc = 0.0
        for i in range(n):
            acc += np.sin(i * 1e-3)
        out[0] = acc

    out = np.zeros(1)
    spin(1000, out)
    t = time.perf_counter()
    spin(200000, out)
    per_iter = (time.perf_counter() - t) / 200000
    n = max(1, int(fraction * block_s / per_iter))
    return lambda: spin(n, out)


def child(args) -> dict:
    import numpy as np
    sys.path.insert(0, str(REPO))
    from pianosynth.io.audio_out import BlockClock, import_sounddevice
    sd = import_sounddevice()
    if args.switch:
        sys.setswitchinterval(args.switch)
    info = sd.query_devices(kind="output")
    fs = int(info["default_samplerate"])
    block_s_guess = 256 / fs
    n_max = 20000
    late = np.zeros(n_max)
    dur = np.zeros(n_max)
    state = dict(n=0, under=0, frames=0)
    clock = BlockClock(fs)

    render = None
    if args.callback == "engine":
        from pianosynth.engine.core import Engine
        from pianosynth.engine.events import EVENT_DTYPE, NO_EVENTS
        engine = Engine(None, fs)
        keys = list(range(48, 80))
        notes = [np.array([(0, 0x90, k, 90)], EVENT_DTYPE) for k in keys]
        pedal = np.array([(0, 0xB0, 64, 127)], EVENT_DTYPE)
        scratch = np.zeros((256, 2), np.float32)
        engine.render(scratch, pedal)
        every = int(0.1 * fs)
        nxt = [every, 0]

        def render(out, frames, frame0):
            ev = NO_EVENTS
            if frame0 >= nxt[0]:
                ev = notes[nxt[1] % len(notes)]
                nxt[0] += every
                nxt[1] += 1
            engine.render(out, ev)
    elif args.callback == "nogil50":
        spin = _make_nogil_kernel(0.5, block_s_guess)

        def render(out, frames, frame0):
            spin()
            out.fill(0)

    def callback(out, frames, t_info, status):
        t0 = time.perf_counter()
        i = state["n"]
        if status.output_underflow:
            state["under"] += 1
            clock.reset()
        frame0 = state["frames"]
        due = clock.update(t0, frame0)
        if render is None:
            out.fill(0)
        else:
            render(out, frames, frame0)
        state["frames"] = frame0 + frames
        if i < n_max:
            late[i] = t0 - due
            dur[i] = time.perf_counter() - t0
        state["n"] = i + 1

    stop = threading.Event()
    busy = None
    if args.busy:
        busy = threading.Thread(target=_busy_python, args=(stop,), daemon=True)
    with sd.OutputStream(samplerate=fs, blocksize=0, channels=2, dtype="float32",
                         callback=callback):
        time.sleep(0.5)                       # settle; count from here
        n0, u0 = state["n"], state["under"]
        if busy is not None:
            busy.start()
        time.sleep(args.seconds)
        n1, u1 = state["n"], state["under"]
        stop.set()
    sd._terminate()
    sel = slice(n0, min(n1, n_max))
    lat = late[sel] * 1e3
    return dict(callbacks=n1 - n0, underflows=u1 - u0,
                late_2ms=int(np.sum(lat > 2.0)),
                late_p99_ms=round(float(np.percentile(lat, 99)), 2) if len(lat) else 0.0,
                max_callback_ms=round(float(np.max(dur[sel]) * 1e3), 2) if len(lat) else 0.0)


# ------------------------------------------------------------------------------ parent side
def run_one(callback: str, scenario: str, seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--child", "--callback", callback, "--seconds",
           str(seconds)]
    if scenario.startswith("thread"):
        cmd += ["--busy"]
    if scenario == "thread-1ms":
        cmd += ["--switch", "0.001"]
    hog = None
    if scenario in ("process", "process-nice"):
        nice = 10 if scenario == "process-nice" else 0
        hog = subprocess.Popen([sys.executable, "-c",
                                "import os, sys; os.nice(%d); sys.path.insert(0, %r); "
                                "from gil_test import _busy_python; _busy_python()"
                                % (nice, str(Path(__file__).parent))])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        if hog is not None:
            hog.terminate()
            hog.wait()
    if r.returncode != 0:
        raise RuntimeError(f"{callback}/{scenario} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--callbacks", default=",".join(CALLBACKS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--period", type=int, default=256)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--callback", default="empty", help=argparse.SUPPRESS)
    p.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--switch", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    sys.path.insert(0, str(REPO / "tests"))
    from jack_helpers import JackServer, jack_missing_reason, jack_running
    server = None
    if not jack_running():
        why = jack_missing_reason()
        if why:
            print(f"gil_test: needs a JACK server: {why}", file=sys.stderr)
            return 2
        server = JackServer(48000, args.period).start()
        print(f"started jackd -d dummy -r 48000 -p {args.period}")
    rows = []
    try:
        for rep in range(args.repeats):
            for cb in args.callbacks.split(","):
                for sc in args.scenarios.split(","):
                    r = run_one(cb, sc, args.seconds)
                    r.update(callback=cb, scenario=sc, repeat=rep)
                    rows.append(r)
                    print(f"{cb:8s} {sc:11s} rep {rep}: {r['callbacks']:5d} callbacks "
                          f"{r['underflows']:4d} underflows {r['late_2ms']:4d} late>2ms "
                          f"p99 late {r['late_p99_ms']:6.2f} ms, "
                          f"longest {r['max_callback_ms']:6.2f} ms",
                          flush=True)
    finally:
        if server is not None:
            server.stop()
    print("\nsums over repeats (underflows / callbacks, late>2ms):")
    for cb in args.callbacks.split(","):
        for sc in args.scenarios.split(","):
            sel = [r for r in rows if r["callback"] == cb and r["scenario"] == sc]
            print(f"  {cb:8s} {sc:11s} {sum(r['underflows'] for r in sel):4d} / "
                  f"{sum(r['callbacks'] for r in sel):6d}   late>2ms "
                  f"{sum(r['late_2ms'] for r in sel):5d}   worst p99 late "
                  f"{max(r['late_p99_ms'] for r in sel):6.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
