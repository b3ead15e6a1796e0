#!/usr/bin/env python
"""How many voices does the live engine hold, and at what CPU load? (not a test)

For each JACK period (128 and 256 frames at 48 kHz by default; a dummy JACK server is
started for each unless one already runs, in which case only its period is measured) a
child process opens the audio stream with whatever :class:`pianosynth.engine.core.Engine`
is installed (polyphony raised to its maximum), holds the sustain pedal and brings the
number of held keys up in steps (8, 16, 32, 48, 64, 88), re-striking them every second so
they keep sounding. Each step is measured for ``--seconds``:

- ``voices``: the engine's ``active_voices``, mean over the step;
- ``underflows``: JACK xruns during the step (every client sees all of them), next to an
  ``idle`` step with no voices measured first: the machine's own noise;
- ``cpu_load``: PortAudio's ``stream.cpu_load`` (mean of samples every 0.1 s);
- ``render``: time in the callback / block duration, mean and max.

The "most voices without underflows" is the largest step whose underflows do not exceed
the idle step's + 1 and whose longest callback stays under one block; steps stop at the
first step past that. Also printed: the offline render time per block at 32 and 64 voices
(the CPU cost alone, no scheduling noise).

Usage::

    python scripts/bench_live.py [--periods 128,256] [--seconds 4] [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = (8, 16, 32, 48, 64, 88)


def _key_order() -> list[int]:
    """88 keys in an order that spreads any prefix over the keyboard (bit-reversal)."""
    keys = list(range(21, 109))
    order, seen = [], set()
    n = 128
    for i in range(n):
        j = int(f"{i:07b}"[::-1], 2)
        if j < 88 and j not in seen:
            seen.add(j)
            order.append(keys[j])
    return order


def child(args) -> dict:
    import numpy as np
    sys.path.insert(0, str(REPO))
    from pianosynth.engine.core import Engine
    from pianosynth.engine.events import EVENT_DTYPE, NO_EVENTS
    from pianosynth.io.audio_out import import_sounddevice
    sd = import_sounddevice()
    fs = int(sd.query_devices(kind="output")["default_samplerate"])
    try:
        engine = Engine({"polyphony": 256}, fs)
    except (ValueError, TypeError):
        engine = Engine(None, fs)
    order = _key_order()
    strikes = [np.array([(0, 0x90, k, 80)], EVENT_DTYPE) for k in order]
    pedal = np.array([(0, 0xB0, 64, 127)], EVENT_DTYPE)
    scratch = np.zeros((args.period, 2), np.float32)
    engine.render(scratch, pedal)
    engine.render(scratch, NO_EVENTS)
    q = collections.deque()
    st = dict(n=0, under=0, load_sum=0.0, load_max=0.0)

    def callback(out, frames, t_info, status):
        t0 = time.perf_counter()
        if status.output_underflow:
            st["under"] += 1
        ev = q.popleft() if q else NO_EVENTS
        engine.render(out, ev)
        load = (time.perf_counter() - t0) * fs / frames
        st["n"] += 1
        st["load_sum"] += load
        if load > st["load_max"]:
            st["load_max"] = load

    steps = []
    best = 0
    idle_under = None
    with sd.OutputStream(samplerate=fs, blocksize=0, channels=2, dtype="float32",
                         callback=callback) as stream:
        time.sleep(0.5)
        for n_keys in (0,) + STEPS:
            t_next = 0.0
            t_settle = time.perf_counter() + 1.0
            t_end = t_settle + args.seconds
            n0 = u0 = None
            cpu, voices = [], []
            while True:
                now = time.perf_counter()
                if now >= t_next and n_keys:
                    for a in strikes[:n_keys]:
                        q.append(a)
                    t_next = now + 1.0
                if n0 is None and now >= t_settle:
                    n0, u0 = st["n"], st["under"]
                    st["load_sum"], st["load_max"] = 0.0, 0.0
                if n0 is not None:
                    cpu.append(stream.cpu_load)
                    voices.append(engine.active_voices)
                if now >= t_end:
                    break
                time.sleep(0.1)
            calls = st["n"] - n0
            row = dict(keys=n_keys, voices=round(float(np.mean(voices)), 1),
                       callbacks=calls, underflows=st["under"] - u0,
                       cpu_load=round(float(np.mean(cpu)), 4),
                       render_mean=round(st["load_sum"] / max(calls, 1), 4),
                       render_max=round(st["load_max"], 4))
            steps.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if n_keys == 0:
                idle_under = row["underflows"]
                continue
            if row["underflows"] <= idle_under + 1 and row["render_max"] < 1.0:
                best = max(best, round(row["voices"]))
            else:
                break
    sd._terminate()

    # offline cost at 32 and 64 voices (no scheduling noise)
    offline = {}
    for nv in (32, 64):
        try:
            e = Engine({"polyphony": 256}, fs)
        except (ValueError, TypeError):
            e = Engine(None, fs)
        out = np.zeros((args.period, 2), np.float32)
        e.render(out, pedal)
        for a in strikes[:nv]:
            e.render(out, a)
        t = time.perf_counter()
        reps = 200
        for _ in range(reps):
            e.render(out, NO_EVENTS)
        per_block = (time.perf_counter() - t) / reps
        offline[nv] = dict(voices=e.active_voices, ms_per_block=round(per_block * 1e3, 4),
                           load=round(per_block * fs / args.period, 4))
    return dict(period=args.period, sample_rate=fs, steps=steps, most_voices=best,
                offline=offline)


def run_period(period: int, seconds: float, own_server: bool) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from jack_helpers import JackServer
    server = JackServer(48000, period).start() if own_server else None
    try:
        r = subprocess.run([sys.executable, __file__, "--child", "--period", str(period),
                            "--seconds", str(seconds)], capture_output=True, text=True,
                           timeout=600)
    finally:
        if server is not None:
            server.stop()
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    sys.stderr.write(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--periods", default="128,256")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--period", type=int, default=256, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    from jack_helpers import jack_missing_reason, jack_running
    running = jack_running()
    if not running and jack_missing_reason():
        print(f"bench_live: needs JACK: {jack_missing_reason()}", file=sys.stderr)
        return 2
    periods = [int(x) for x in args.periods.split(",")]
    if running:
        print("a JACK server is running: measuring at its period only")
        periods = periods[:1]
    results = []
    for period in periods:
        print(f"--- period {period} frames ({1000 * period / 48000:.2f} ms at 48 kHz)", flush=True)
        res = run_period(period, args.seconds, own_server=not running)
        results.append(res)
        for s in res["steps"]:
            print(f"  keys {s['keys']:3d}: voices {s['voices']:5.1f}  underflows "
                  f"{s['underflows']:3d}/{s['callbacks']:5d}  cpu_load {s['cpu_load']:.3f}  "
                  f"render mean {s['render_mean']:.3f} max {s['render_max']:.3f}")
        print(f"  most voices held without underflows: {res['most_voices']}")
        for nv, o in res["offline"].items():
            print(f"  offline, {nv} keys ({o['voices']} voices): {o['ms_per_block']:.3f} ms "
                  f"per block = load {o['load']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
