"""Soak: the engine plays the real pieces in a loop; memory, CPU and output are watched.

The three pieces in ``../shared/data/midi/`` (or the demo file when they are missing) are
played one after the other, over and over, through one :class:`~pianosynth.engine.core.Engine`
and the same block loop the live callback uses, for ``--minutes`` of audio. Offline by
default (as fast as the CPU goes); ``--paced`` sleeps so that audio time follows the wall
clock, as a live instrument does.

Reported, with the criteria checked (exit status 1 when one fails):

- resident memory (RSS) growth from the end of warm-up (the first loop over the pieces, or
  the first quarter of the run if shorter) to the end: <= 5 %;
- output finite: no NaN or infinity in the output, nor in the signal before the limiter
  (the limiter maps NaN to 0, so the output alone would hide one); peak <= 1;
- CPU per second of audio while playing, and in silence after the last note (after a
  settling time, once the tails have died away): silence <= 5 % of one core; also the ratio
  silence / playing, and silence after playing / idle of a fresh engine that never played
  (state that never returns to zero -- stuck voices, subnormal numbers -- shows up there);
- voices still active in silence: 0.

Usage::

    python scripts/soak.py [--minutes 10] [--paced] [--sample-rate 48000] [--block-size 256]
                           [--segment-s S] [--json FILE]

``--segment-s S`` plays only the first S seconds of each piece (then pedals up and all notes
off), so short runs still loop over all pieces; the CI version (tests/test_reliability.py)
plays 30 s this way. A run that ends inside a piece ends it the same way (pedals up, all
notes off), so "silence after the last note" is silence.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIECES_DIR = ROOT.parent / "shared" / "data" / "midi"
DEMO = ROOT / "pianosynth" / "data" / "scn15_7.mid"

#: criteria of the issue "Reliability".
MAX_RSS_GROWTH = 0.05
MAX_SILENCE_CPU_LOAD = 0.05


def rss_bytes() -> int:
    """Current resident set size of this process, bytes (Linux /proc; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def piece_paths() -> list[Path]:
    found = sorted(PIECES_DIR.glob("*.mid"))
    return found if found else [DEMO]


def load_piece(path: Path, fs: int, segment_s: float | None):
    """Events of a piece as engine events with absolute sample offsets, and its length in
    samples (last event + 1 s). With ``segment_s`` only the first seconds, ended by pedals
    up and all notes off."""
    from pianosynth.engine.events import EVENT_DTYPE
    from pianosynth.io.midi_file import read_midi_file

    ev = read_midi_file(path)
    if segment_s is not None:
        ev = ev[ev["time_s"] < segment_s]
    out = np.empty(len(ev), EVENT_DTYPE)
    out["offset"] = np.rint(ev["time_s"] * fs).astype(np.int64)
    for f in ("status", "data1", "data2"):
        out[f] = ev[f]
    if segment_s is not None:
        out = np.concatenate([out, _stop_events(int(round(segment_s * fs)))])
    n = int(out["offset"][-1]) + fs if len(out) else fs
    return out, n


def _stop_events(offset: int) -> np.ndarray:
    """Pedals up and all notes off at ``offset``: the end of a cut piece."""
    from pianosynth.engine.events import EVENT_DTYPE
    return np.array([(offset, 0xB0, c, 0) for c in (64, 66, 67)] + [(offset, 0xB0, 123, 0)],
                    EVENT_DTYPE)


@dataclass
class SoakResult:
    sample_rate: int
    block_size: int
    paced: bool
    audio_s: float = 0.0
    wall_s: float = 0.0
    loops: float = 0.0
    pieces_played: int = 0
    notes: int = 0
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_growth: float = 0.0
    rss_trace_mb: list = field(default_factory=list)
    playing_cpu_per_s: float = 0.0
    silence_cpu_per_s: float = 0.0
    fresh_idle_cpu_per_s: float = 0.0
    silence_vs_playing: float = 0.0
    silence_vs_fresh_idle: float = 0.0
    voices_in_silence: int = 0
    max_voices: int = 0
    peak: float = 0.0
    pre_limiter_peak: float = 0.0
    nonfinite_out: int = 0
    nonfinite_pre: int = 0
    late_blocks: int = 0
    checks: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def _idle_cpu_per_s(engine, seconds: float, block: int) -> float:
    """CPU seconds per audio second of ``engine`` rendering silence (median of 5 parts)."""
    out = np.zeros((block, 2), np.float32)
    n_blocks = max(1, int(seconds * engine.sample_rate / block / 5))
    parts = []
    for _ in range(5):
        t = time.process_time()
        for _ in range(n_blocks):
            engine.render(out)
        parts.append((time.process_time() - t) / (n_blocks * block / engine.sample_rate))
    return float(np.median(parts))


def soak(minutes: float = 10.0, sample_rate: int = 48000, block_size: int = 256,
         paced: bool = False, segment_s: float | None = None, settle_s: float = 20.0,
         silence_s: float = 10.0, progress: bool = False) -> SoakResult:
    """Play the pieces in a loop for ``minutes`` of audio; see the module doc."""
    from pianosynth.engine.core import Engine

    fs, bs = int(sample_rate), int(block_size)
    res = SoakResult(sample_rate=fs, block_size=bs, paced=paced)
    res.rss_start_mb = rss_bytes() / 2**20
    pieces = [load_piece(p, fs, segment_s) for p in piece_paths()]
    loop_len = sum(n for _, n in pieces)
    total = int(minutes * 60.0 * fs)
    warm_at = min(loop_len, total // 4)

    # a fresh engine's idle cost (the reference for silence after playing)
    fresh = Engine({}, fs)
    fresh.render(np.zeros((bs, 2), np.float32))
    res.fresh_idle_cpu_per_s = _idle_cpu_per_s(fresh, min(silence_s, 5.0), bs)
    del fresh

    engine = Engine({}, fs)
    out = np.zeros((bs, 2), np.float32)
    pos_total = 0
    cpu_play = 0.0
    wall0 = time.perf_counter()
    next_trace = 0
    i_piece = 0
    while pos_total < total:
        events, n = pieces[i_piece % len(pieces)]
        if n > total - pos_total:             # time is up within this piece: end it here
            n = total - pos_total
            events = np.concatenate([events[events["offset"] < n - 1],
                                     _stop_events(n - 1)])
        res.notes += int(np.count_nonzero(((events["status"] & 0xF0) == 0x90)
                                          & (events["data2"] > 0) & (events["offset"] < n)))
        starts = events["offset"]
        i = 0
        pos = 0
        while pos < n:
            m = min(bs, n - pos)
            j = int(np.searchsorted(starts, pos + m, side="left"))
            blk = events[i:j].copy()
            blk["offset"] -= pos
            i = j
            t = time.process_time()
            engine.render(out[:m], blk)
            cpu_play += time.process_time() - t
            pre = engine.stereo[:min(m, engine.stereo.shape[0])]
            res.nonfinite_pre += int(np.count_nonzero(~np.isfinite(pre)))
            res.pre_limiter_peak = max(res.pre_limiter_peak, float(np.nanmax(np.abs(pre))))
            y = out[:m]
            res.nonfinite_out += int(np.count_nonzero(~np.isfinite(y)))
            res.peak = max(res.peak, float(np.nanmax(np.abs(y))))
            res.max_voices = max(res.max_voices, engine.active_voices)
            pos += m
            pos_total += m
            if paced:
                ahead = pos_total / fs - (time.perf_counter() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -m / fs:
                    res.late_blocks += 1
            if pos_total >= next_trace:
                res.rss_trace_mb.append(round(rss_bytes() / 2**20, 2))
                next_trace += 10 * fs
                if progress and len(res.rss_trace_mb) % 6 == 1:
                    print(f"... {pos_total / fs:7.0f} s audio, RSS {res.rss_trace_mb[-1]:.1f} MB,"
                          f" {engine.active_voices} voices", file=sys.stderr, flush=True)
            if res.rss_warm_mb == 0.0 and pos_total >= warm_at:
                res.rss_warm_mb = rss_bytes() / 2**20
        i_piece += 1
        res.pieces_played += 1
    res.audio_s = pos_total / fs
    res.loops = pos_total / loop_len
    res.playing_cpu_per_s = cpu_play / max(res.audio_s, 1e-9)
    res.rss_end_mb = rss_bytes() / 2**20

    # silence after the last note: let the tails die away, then measure
    for _ in range(int(settle_s * fs / bs)):
        engine.render(out)
        res.nonfinite_out += int(np.count_nonzero(~np.isfinite(out)))
    res.voices_in_silence = engine.active_voices
    res.silence_cpu_per_s = _idle_cpu_per_s(engine, silence_s, bs)
    res.silence_vs_playing = res.silence_cpu_per_s / max(res.playing_cpu_per_s, 1e-12)
    res.silence_vs_fresh_idle = res.silence_cpu_per_s / max(res.fresh_idle_cpu_per_s, 1e-12)
    res.wall_s = time.perf_counter() - wall0
    res.rss_peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          max(res.rss_trace_mb, default=0.0), res.rss_end_mb)
    base = res.rss_warm_mb or res.rss_end_mb
    res.rss_growth = res.rss_end_mb / base - 1.0
    res.checks = {
        "rss growth <= 5 %": res.rss_growth <= MAX_RSS_GROWTH,
        "output finite (and before the limiter)": res.nonfinite_out == 0
        and res.nonfinite_pre == 0,
        "peak <= 1": res.peak <= 1.0,
        "silence CPU <= 5 % of a core": res.silence_cpu_per_s <= MAX_SILENCE_CPU_LOAD,
        "no voice left in silence": res.voices_in_silence == 0,
    }
    return res


def report(res: SoakResult) -> str:
    lines = [
        f"# soak: {res.audio_s / 60:.1f} min of audio ({res.loops:.2f} loops over the pieces, "
        f"{res.pieces_played} pieces, {res.notes} notes) at {res.sample_rate} Hz, blocks of "
        f"{res.block_size}, {'paced' if res.paced else 'offline'}; wall {res.wall_s:.0f} s",
        f"RSS: start {res.rss_start_mb:.1f} MB, after warm-up {res.rss_warm_mb:.1f} MB, end "
        f"{res.rss_end_mb:.1f} MB (growth {100 * res.rss_growth:+.2f} %), peak "
        f"{res.rss_peak_mb:.1f} MB",
        f"CPU per second of audio: playing {1e3 * res.playing_cpu_per_s:.1f} ms "
        f"({100 * res.playing_cpu_per_s:.1f} % of a core), silence after the last note "
        f"{1e3 * res.silence_cpu_per_s:.2f} ms ({100 * res.silence_cpu_per_s:.2f} %), "
        f"fresh engine idle {1e3 * res.fresh_idle_cpu_per_s:.2f} ms",
        f"  silence / playing = {100 * res.silence_vs_playing:.1f} %, silence after playing / "
        f"fresh idle = {res.silence_vs_fresh_idle:.2f}x",
        f"voices: at most {res.max_voices}, in silence {res.voices_in_silence}",
        f"output: peak {res.peak:.4f}, before the limiter {res.pre_limiter_peak:.3f}, "
        f"non-finite samples {res.nonfinite_out} (before the limiter {res.nonfinite_pre})"
        + (f"; late blocks {res.late_blocks}" if res.paced else ""),
    ]
    for name, ok in res.checks.items():
        lines.append(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of audio (default 10)")
    ap.add_argument("--paced", action="store_true", help="follow the wall clock (real time)")
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--segment-s", type=float, default=None,
                    help="play only the first S seconds of each piece")
    ap.add_argument("--settle-s", type=float, default=20.0,
                    help="silence after the last note before CPU is measured (default 20)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    res = soak(args.minutes, args.sample_rate, args.block_size, args.paced, args.segment_s,
               settle_s=args.settle_s, progress=True)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(asdict(res), indent=1))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
