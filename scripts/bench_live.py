#!/usr/bin/env python
"""How many voices does the live engine hold, and at what CPU load? (not a test)

For each JACK period (128 and 256 frames at 48 kHz by default; a dummy JACK server is
started for each unless one already runs, in which case only its period is measured) a
child process opens the audio stream with whatever :class:`pianosynth.engine.core.Engine`
is installed (polyphony raised to its maximum) and brings the number of held keys up in
steps (8, 16, 32, 48, 64, 88), re-striking them every second so they keep sounding, then
256 voices (all 88 keys held, their voice states copied into 168 more slots: the issue's
"256 voices", which a keyboard with one string per key cannot reach). No
pedal: with the pedal down an engine with sympathetic resonance keeps all 88 strings
undamped, i.e. 88 voices whatever is played. Each step is measured for ``--seconds``:

- ``voices``: the engine's ``active_voices``, mean over the step;
- ``underflows``: JACK xruns during the step (every client sees all of them), next to an
  ``idle`` step with no voices measured first: the machine's own noise;
- ``cpu_load``: PortAudio's ``stream.cpu_load`` (mean of samples every 0.1 s);
- ``render``: time in the callback / block duration, mean and max.

The "most voices without underflows" is the largest step (before the first failing one)
whose underflows stay within the machine's noise (twice the worse of the idle steps
measured first and last, + 2: on a shared two-core machine with non-realtime JACK an
empty callback already gets a few xruns per second) and whose callbacks finish within
80 % of a block 95 % of the time. Also printed: the offline render time per block at 32 and 64 voices
(the CPU cost alone, no scheduling noise).

Usage::

    python scripts/bench_live.py [--periods 128,256] [--seconds 4] [--quality high]
                                 [--json out.json]
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
STEPS = (8, 16, 32, 48, 64, 88, 256)
#: a keyboard holds at most 88 voices (one per key): the 256 step holds all 88 keys and
#: copies their voice states into 168 more slots (as bench_voices.py does)
DUPLICATE_STEP = 256


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
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_voices import copy_voices
    sd = import_sounddevice()
    fs = int(sd.query_devices(kind="output")["default_samplerate"])
    try:
        engine = Engine({"polyphony": 256}, fs, quality=args.quality)
    except (ValueError, TypeError):
        engine = Engine(None, fs)
    order = _key_order()
    strikes = [np.array([(0, 0x90, k, 80)], EVENT_DTYPE) for k in order]
    release = np.array([(0, 0x80, k, 0) for k in order], EVENT_DTYPE)
    scratch = np.zeros((args.period, 2), np.float32)
    engine.render(scratch, NO_EVENTS)
    engine.render(scratch, NO_EVENTS)
    q = collections.deque()
    st = dict(n=0, under=0)
    loads = np.zeros(1 << 16)

    def callback(out, frames, t_info, status):
        t0 = time.perf_counter()
        if status.output_underflow:
            st["under"] += 1
        if st.get("dup"):
            copy_voices(engine, st.pop("dup"))   # between two renders: no race
        ev = q.popleft() if q else NO_EVENTS
        engine.render(out, ev)
        i = st["n"]
        loads[i & 0xFFFF] = (time.perf_counter() - t0) * fs / frames
        st["n"] = i + 1

    steps = []
    with sd.OutputStream(samplerate=fs, blocksize=0, channels=2, dtype="float32",
                         callback=callback) as stream:
        time.sleep(0.5)
        for step, n_keys in enumerate((0,) + STEPS + (0,)):
            if step and not n_keys:                  # last idle step: keys up
                q.append(release)
            t_next = 0.0
            t_settle = time.perf_counter() + (1.0 if n_keys or not step else 2.0)
            t_end = t_settle + args.seconds
            n0 = u0 = None
            cpu, voices = [], []
            while True:
                now = time.perf_counter()
                if now >= t_next and n_keys:
                    for a in strikes[:min(n_keys, 88)]:
                        q.append(a)
                    if n_keys == DUPLICATE_STEP:
                        st["dup_at"] = now + 0.2     # once the strikes have been rendered
                    t_next = now + 1.0
                if st.get("dup_at") and now >= st["dup_at"]:
                    st["dup"] = n_keys
                    st["dup_at"] = 0.0
                if n0 is None and now >= t_settle:
                    n0, u0 = st["n"], st["under"]
                if n0 is not None:
                    cpu.append(stream.cpu_load)
                    voices.append(engine.active_voices)
                if now >= t_end:
                    break
                time.sleep(0.1)
            n1 = st["n"]
            calls = n1 - n0
            ld = loads[np.arange(n0, n1) & 0xFFFF] if calls <= loads.size else loads
            row = dict(keys=n_keys, voices=round(float(np.mean(voices)), 1),
                       callbacks=calls, underflows=st["under"] - u0,
                       cpu_load=round(float(np.mean(cpu)), 4),
                       render_mean=round(float(np.mean(ld)), 4),
                       render_p95=round(float(np.percentile(ld, 95)), 4),
                       render_p99=round(float(np.percentile(ld, 99)), 4),
                       render_max=round(float(np.max(ld)), 4))
            steps.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if row["underflows"] > 0.2 * calls:          # hopeless: stop climbing
                break
    sd._terminate()
    # a step holds if its underflows stay within the machine's noise (the worse idle step,
    # doubled, + 2) and 95 % of its callbacks finish within 80 % of a block (a preempted
    # callback or two on a busy machine is noise, a render cost near the budget is not)
    idle = max(r["underflows"] for r in steps if r["keys"] == 0)
    best = 0
    for r in steps:
        if r["keys"] == 0:
            continue
        if r["underflows"] <= 2 * idle + 2 and r["render_p95"] < 0.8:
            best = max(best, round(r["voices"]))
        else:
            break

    # offline cost at 32 and 64 voices (no scheduling noise)
    offline = {}
    for nv in (32, 64):
        try:
            e = Engine({"polyphony": 256}, fs)
        except (ValueError, TypeError):
            e = Engine(None, fs)
        out = np.zeros((args.period, 2), np.float32)
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


def run_period(period: int, seconds: float, own_server: bool, quality: str = "high") -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from jack_helpers import JackServer
    server = JackServer(48000, period).start() if own_server else None
    try:
        r = subprocess.run([sys.executable, __file__, "--child", "--period", str(period),
                            "--seconds", str(seconds), "--quality", quality],
                           capture_output=True, text=True, timeout=600)
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
    p.add_argument("--quality", default="high", choices=("high", "normal", "eco"))
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
        res = run_period(period, args.seconds, own_server=not running, quality=args.quality)
        results.append(res)
        for s in res["steps"]:
            print(f"  keys {s['keys']:3d}: voices {s['voices']:5.1f}  underflows "
                  f"{s['underflows']:3d}/{s['callbacks']:5d}  cpu_load {s['cpu_load']:.3f}  "
                  f"render mean {s['render_mean']:.3f} p95 {s['render_p95']:.3f} "
                  f"p99 {s['render_p99']:.3f} "
                  f"max {s['render_max']:.3f}")
        print(f"  most voices held without underflows: {res['most_voices']}")
        for nv, o in res["offline"].items():
            print(f"  offline, {nv} keys ({o['voices']} voices): {o['ms_per_block']:.3f} ms "
                  f"per block = load {o['load']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
