"""Fuzz the MIDI reader and the ``render`` command with generated and mutated files.

Every case must end in one of two ways, within a time bound:

- ``ok``: :func:`~pianosynth.io.midi_file.read_midi_file` returns events (parse level), or
  ``pianosynth render`` exits 0 and the output file is there, readable and finite;
- ``error``: a :class:`~pianosynth.errors.PianosynthError` with one line of text (parse
  level), or ``render`` exits 2 with one line ``pianosynth: error: ...`` on stderr, no
  traceback and no output or temporary file left behind.

Anything else (another exception, a traceback, a second error line, a time-out, a
non-finite sample) is a *failure*, reported with the seed that regenerates the file.

Cases (:data:`KINDS`), all built byte by byte so that they can break the format:

- ``structured``: header and tracks from random shape parameters (format, track count,
  division incl. 0 and SMPTE, chunk lengths right or wrong, running status, notes never
  released, huge delta times and over-long variable-length numbers, SysEx F0/F7, meta events
  of every kind with valid or random payloads, system common/real-time and undefined status
  bytes, alien chunks, trailing garbage, missing End of Track);
- ``tempo``: zero, one and absurd tempos and tempo meta events of the wrong length;
- ``many_notes``: 10 000 simultaneous note-ons (all channels, all keys, never released);
- ``huge_delta``: delta times up to 0x0FFFFFFF ticks and beyond;
- ``mutated``: random byte flips, special bytes, insertions, deletions, duplications and
  chunk-length edits of the real files in ``../shared/data/midi/`` and the demo file;
- ``truncated``: a real or generated file cut anywhere.

The test suite (``tests/test_fuzz_midi.py``) runs >= 10 000 parse-level cases and renders a
sample of 30; this script runs any number of cases through both levels and prints a report.

Usage::

    python scripts/fuzz_midi.py [--cases 10000] [--seed 1] [--render-cap-s 2] [--tail 1]
                                [--auto-tail-every 50] [--timeout-s 120] [--no-render]
                                [--save-failures DIR] [--case SEED]

Rendering: events later than ``--render-cap-s`` are dropped before the render (so notes are
cut off while held: stuck notes), ``--tail`` seconds follow; every ``--auto-tail-every``-th
case uses ``--tail auto`` instead, which must end by itself (at most 30 s after the last
event). 44.1 kHz, 16-bit WAV.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = sorted((ROOT.parent / "shared" / "data" / "midi").glob("*.mid")) + \
    [ROOT / "pianosynth" / "data" / "scn15_7.mid"]

#: case kinds and their weights in a mixed run.
KINDS = {"structured": 70, "tempo": 6, "huge_delta": 5, "many_notes": 1, "mutated": 12,
         "truncated": 6}
#: meta event types of the SMF 1.0 spec (and a few unknown ones).
META_TYPES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0F,
              0x20, 0x21, 0x2F, 0x51, 0x54, 0x58, 0x59, 0x7F)
#: status bytes that are not channel messages, sysex or meta (system common, real-time,
#: undefined).
ODD_STATUS = (0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE)
DIVISIONS_OK = (96, 120, 192, 384, 480, 960, 1, 0x7FFF)
DIVISIONS_ODD = (0, 0x8000, 0xE728, 0xE250, 0xE378, 0xE850, 0xE300, 0xFF01, 0xC028, 0xFFFF)
TEMPOS_ODD = (0, 1, 2, 0xFFFFFF, 0x800000, 60, 500_000)

# ------------------------------------------------------------------------ byte builders


def vlq(n: int) -> bytes:
    """Variable-length quantity; values >= 2**28 give the over-long (> 4 byte) forms."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def chunk(name: bytes, body: bytes, length: int | None = None) -> bytes:
    return name + struct.pack(">L", (len(body) if length is None else length) & 0xFFFFFFFF) \
        + body


def header(fmt: int, ntracks: int, division: int, length: int = 6, extra: bytes = b"") -> bytes:
    body = struct.pack(">HHH", fmt & 0xFFFF, ntracks & 0xFFFF, division & 0xFFFF) + extra
    return chunk(b"MThd", body[:length] if length < 6 else body + bytes(length - len(body)),
                 length)


def meta(kind: int, data: bytes) -> bytes:
    return bytes([0xFF, kind]) + vlq(len(data)) + data


def valid_meta(rng: random.Random, kind: int) -> bytes:
    """A meta event of ``kind`` with a payload of the right shape (values may be odd)."""
    if 0x01 <= kind <= 0x0F:
        text = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        return meta(kind, text)
    payload = {
        0x00: lambda: rng.choice([b"", struct.pack(">H", rng.randrange(65536))]),
        0x20: lambda: bytes([rng.randrange(256)]),
        0x21: lambda: bytes([rng.randrange(256)]),
        0x2F: lambda: b"",
        0x51: lambda: struct.pack(">L", rng.choice(TEMPOS_ODD + (rng.randrange(1 << 24),)))[1:],
        0x54: lambda: bytes(rng.randrange(256) for _ in range(5)),
        0x58: lambda: bytes([rng.randrange(256), rng.choice([0, 1, 2, 3, 200, 255]),
                             rng.randrange(256), rng.randrange(256)]),
        0x59: lambda: bytes([rng.choice([0, 1, 7, 0xF9, 0xFF, 9, 0x80, rng.randrange(256)]),
                             rng.choice([0, 1, 2, 255])]),
        0x7F: lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(20))),
    }.get(kind, lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(10))))
    return meta(kind, payload())


def random_meta(rng: random.Random) -> bytes:
    kind = rng.choice(META_TYPES + (rng.randrange(256),))
    if rng.random() < 0.7:
        return valid_meta(rng, kind)
    n = rng.choice([0, 1, 2, 3, 4, 7, rng.randrange(300)])     # wrong payload length
    return meta(kind, bytes(rng.randrange(256) for _ in range(n)))


def delta_time(rng: random.Random, huge: float) -> bytes:
    r = rng.random()
    if r < huge:
        return vlq(rng.choice([0x0FFFFFFF, 0x0FFFFFF0, 1 << 27, rng.randrange(1 << 28),
                               1 << 35, (1 << 49) - 1]))
    if r < 0.5:
        return b"\x00"
    return vlq(rng.choice([rng.randrange(16), rng.randrange(480), rng.randrange(4000)]))


def track_body(rng: random.Random, p: dict) -> bytes:
    """Events of one track as bytes, following the shape parameters ``p``."""
    out = bytearray()
    last_status = None
    held = []
    key_lo, key_hi = (21, 108) if rng.random() < 0.8 else (0, 127)
    for _ in range(p["n_events"]):
        out += delta_time(rng, p["p_huge_delta"])
        r = rng.random()
        status = None
        data = b""
        if r < 0.32:                                       # note on
            ch = rng.randrange(16) if p["channels"] else 0
            key = rng.randint(key_lo, key_hi)
            vel = rng.choice([0, 1, 64, 100, 127, rng.randrange(128)]) if rng.random() < 0.2 \
                else rng.randint(1, 127)
            status, data = 0x90 | ch, bytes([key, vel])
            held.append((ch, key))
        elif r < 0.52:                                     # note off (or on with velocity 0)
            if held and rng.random() > p["p_stuck"]:
                ch, key = held.pop(rng.randrange(len(held)))
            else:
                ch, key = rng.randrange(16), rng.randrange(128)
            if rng.random() < 0.3:
                status, data = 0x90 | ch, bytes([key, 0])
            else:
                status, data = 0x80 | ch, bytes([key, rng.randrange(128)])
        elif r < 0.62:                                     # control change
            ctl = rng.choice([64, 64, 66, 67, 120, 123, 7, 10, 121, rng.randrange(128)])
            status, data = 0xB0 | rng.randrange(16), bytes([ctl, rng.choice([0, 127,
                                                                              rng.randrange(128)])])
        elif r < 0.68:                                     # other channel messages
            s = rng.choice([0xA0, 0xC0, 0xD0, 0xE0])
            n = 1 if s in (0xC0, 0xD0) else 2
            status, data = s | rng.randrange(16), bytes(rng.randrange(128) for _ in range(n))
        elif r < 0.80:                                     # meta
            out += random_meta(rng)
        elif r < 0.84:                                     # tempo
            out += valid_meta(rng, 0x51)
        elif r < 0.88:                                     # SysEx F0 / escape F7
            body = bytes(rng.randrange(128) for _ in range(rng.randrange(30)))
            kind = rng.choice([0xF0, 0xF7])
            if rng.random() < 0.1:                         # a length past the end
                out += bytes([kind]) + vlq(rng.choice([1_000_000, 999_999, 1 << 21])) + body
            else:
                out += bytes([kind]) + vlq(len(body) + 1) + body + b"\xF7"
            last_status = None
        elif r < 0.90:                                     # system common, real-time, undefined
            s = rng.choice(ODD_STATUS)
            out += bytes([s]) + bytes(rng.randrange(128) for _ in range({0xF1: 1, 0xF2: 2,
                                                                          0xF3: 1}.get(s, 0)))
        elif r < 0.90 + p["p_garbage"]:                    # raw garbage
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        else:                                              # data byte > 127 (clipped)
            status, data = 0x90 | rng.randrange(16), bytes([rng.randrange(256),
                                                            rng.randrange(256)])
        if status is not None:
            if status == last_status and rng.random() < p["p_running"]:
                out += data                                # running status
            else:
                out += bytes([status]) + data
            last_status = status
        if rng.random() < p["p_mid_eot"]:                  # End of Track in the middle
            out += b"\x00" + meta(0x2F, b"")
    if p["eot"]:
        out += b"\x00" + meta(0x2F, b"")
    return bytes(out)


def structured_file(rng: random.Random, p: dict) -> bytes:
    """A whole file from shape parameters (see :func:`random_shape`)."""
    tracks = []
    for _ in range(p["n_tracks"]):
        body = track_body(rng, p)
        length = len(body)
        if rng.random() < p["p_bad_length"]:
            length = rng.choice([0, 1, len(body) - 1, len(body) + 1, len(body) - 7,
                                 len(body) + 50, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)])
        tracks.append(chunk(b"MTrk", body, max(length, 0)))
        if rng.random() < p["p_alien"]:
            tracks.append(chunk(rng.choice([b"XFIH", b"MTrx", b"\0\0\0\0"]),
                                bytes(rng.randrange(256) for _ in range(rng.randrange(40)))))
    ntracks = p["n_tracks"] if p["ntracks_field"] is None else p["ntracks_field"]
    data = header(p["format"], ntracks, p["division"], p["header_len"]) + b"".join(tracks)
    if p["trailing"]:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return data


def random_shape(rng: random.Random, kind: str = "structured") -> dict:
    """Shape parameters of a structured file (the test draws these with hypothesis)."""
    weird = rng.random() < 0.25
    return {
        "format": rng.choice([0, 1, 1, 2]) if rng.random() < 0.95 else rng.randrange(65536),
        "n_tracks": rng.choice([0, 1, 1, 2, 3, 5]) if rng.random() < 0.97 else 17,
        "ntracks_field": None if rng.random() < 0.9 else rng.choice([0, 1, 3, 100, 0xFFFF]),
        "division": rng.choice(DIVISIONS_OK) if rng.random() < 0.85
        else rng.choice(DIVISIONS_ODD + (rng.randrange(65536),)),
        "header_len": 6 if rng.random() < 0.95 else rng.choice([0, 2, 5, 8, 12]),
        "n_events": rng.choice([0, 1, 5, 20, 40, 80]),
        "channels": rng.random() < 0.5,
        "p_huge_delta": 0.02 if kind == "huge_delta" else (0.002 if weird else 0.0),
        "p_stuck": rng.choice([0.0, 0.2, 1.0]),
        "p_running": rng.choice([0.0, 0.5, 1.0]),
        "p_garbage": 0.03 if weird else 0.0,
        "p_mid_eot": 0.01 if weird else 0.0,
        "eot": rng.random() < 0.9,
        "p_bad_length": 0.3 if weird else 0.0,
        "p_alien": 0.2 if weird else 0.0,
        "trailing": weird and rng.random() < 0.3,
    }


def tempo_file(rng: random.Random) -> bytes:
    """Notes with zero, one, absurd or malformed tempo events (and SMPTE division)."""
    events = bytearray()
    for _ in range(rng.randint(1, 6)):
        t = rng.choice(TEMPOS_ODD + (rng.randrange(1 << 24),))
        if rng.random() < 0.8:
            events += b"\x00" + meta(0x51, struct.pack(">L", t)[1:])
        else:
            events += b"\x00" + meta(0x51, struct.pack(">L", t)[rng.choice([0, 2, 3, 4]):])
        key = rng.randint(21, 108)
        events += vlq(rng.randrange(960)) + bytes([0x90, key, 80])
        events += vlq(rng.randrange(960)) + bytes([0x80, key, 0])
    events += b"\x00" + meta(0x2F, b"")
    division = rng.choice((480, 1, 0x7FFF, 0xE728, 0xE250))
    return header(rng.choice([0, 1]), 1, division) + chunk(b"MTrk", bytes(events))


def huge_delta_file(rng: random.Random) -> bytes:
    p = random_shape(rng, "huge_delta")
    p.update(n_events=rng.choice([5, 20, 40]), n_tracks=rng.choice([1, 2]),
             division=rng.choice([1, 96, 0x7FFF, 0xE728]))
    return structured_file(rng, p)


def many_notes_file(rng: random.Random, n_notes: int = 10_000) -> bytes:
    """``n_notes`` note-ons at tick 0 (every channel, every key), none released (or a few
    released much later), in 1..4 tracks, optionally with running status."""
    n_tracks = rng.randint(1, 4)
    running = rng.random() < 0.5
    per_track = -(-n_notes // n_tracks)
    tracks = []
    left = n_notes
    for t in range(n_tracks):
        out = bytearray()
        last = None
        for i in range(min(per_track, left)):
            j = t * per_track + i
            status = 0x90 | (j // 128) % 16
            key = j % 128
            out += b"\x00"
            if not (running and status == last):
                out.append(status)
            out += bytes([key, 1 + j % 127])
            last = status
        left -= min(per_track, left)
        if rng.random() < 0.3:                             # release a few, much later
            out += vlq(rng.randrange(1, 5000)) + bytes([0x80, 60, 0])
        out += b"\x00" + meta(0x2F, b"")
        tracks.append(chunk(b"MTrk", bytes(out)))
    return header(1 if n_tracks > 1 else 0, n_tracks, 480) + b"".join(tracks)


def mtrk_offsets(data: bytes) -> list[int]:
    out, i = [], data.find(b"MTrk")
    while i >= 0:
        out.append(i)
        i = data.find(b"MTrk", i + 1)
    return out


def mutate(rng: random.Random, data: bytes, n_ops: int) -> bytes:
    """``n_ops`` random edits: byte flips, special bytes, insert, delete, duplicate, chunk
    lengths, truncation."""
    b = bytearray(data)
    for _ in range(n_ops):
        if not b:
            break
        op = rng.random()
        i = rng.randrange(len(b))
        if op < 0.35:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            b[i] = rng.choice([0x00, 0x7F, 0x80, 0xF0, 0xF7, 0xFF, rng.randrange(256)])
        elif op < 0.65:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op < 0.75:
            del b[i:i + rng.randint(1, 16)]
        elif op < 0.82:
            j = min(len(b), i + rng.randint(1, 64))
            b[j:j] = b[i:j]
        elif op < 0.95:
            offs = mtrk_offsets(bytes(b))
            if offs:
                o = rng.choice(offs) + 4
                old = int.from_bytes(b[o:o + 4], "big") if o + 4 <= len(b) else 0
                new = rng.choice([0, old - 1, old + 1, old + rng.randint(-100, 100),
                                  0xFFFFFFFF, rng.randrange(1 << 32)])
                b[o:o + 4] = struct.pack(">L", new & 0xFFFFFFFF)
        else:
            del b[i:]
    return bytes(b)


_SEED_CACHE: list[bytes] = []


def seed_files() -> list[bytes]:
    """The real MIDI files to mutate (contents cached)."""
    if not _SEED_CACHE:
        _SEED_CACHE.extend(p.read_bytes() for p in SEED_FILES if p.is_file())
    return _SEED_CACHE


def make_case(kind: str, seed: int) -> bytes:
    """The bytes of case ``seed`` of ``kind`` (deterministic)."""
    rng = random.Random(f"{kind}:{seed}")
    if kind == "structured":
        return structured_file(rng, random_shape(rng))
    if kind == "tempo":
        return tempo_file(rng)
    if kind == "huge_delta":
        return huge_delta_file(rng)
    if kind == "many_notes":
        return many_notes_file(rng)
    if kind == "mutated":
        seeds = seed_files()
        base = rng.choice(seeds) if seeds else structured_file(rng, random_shape(rng))
        return mutate(rng, base, rng.choice([1, 1, 2, 4, 8, 16, 64]))
    if kind == "truncated":
        seeds = seed_files()
        base = rng.choice(seeds) if seeds and rng.random() < 0.6 else \
            structured_file(rng, random_shape(rng))
        return base[:rng.randrange(len(base) + 1)]
    raise ValueError(f"unknown case kind {kind!r}")


def case_kind(seed: int) -> str:
    """The kind of case ``seed`` in a mixed run (by :data:`KINDS` weights)."""
    rng = random.Random(f"kind:{seed}")
    return rng.choices(list(KINDS), weights=list(KINDS.values()))[0]


# ------------------------------------------------------------------------------ outcomes
class CaseTimeout(Exception):
    """Raised by the alarm when a case runs past its time bound."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (SIGALRM)."""
    def on_alarm(signum, frame):
        raise CaseTimeout(f"no result after {seconds:g} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def parse_case(path: Path, timeout_s: float = 30.0) -> tuple[str, str, float]:
    """``read_midi_file(path)`` -> ``(outcome, detail, seconds)``; outcome is ``"ok"``,
    ``"error"`` (PianosynthError, one line) or ``"fail"`` (anything else; detail is the
    traceback)."""
    from pianosynth.errors import PianosynthError
    from pianosynth.io.midi_file import read_midi_file

    t0 = time.perf_counter()
    try:
        with time_limit(timeout_s):
            ev = read_midi_file(path)
        outcome, detail = "ok", f"{len(ev)} events"
    except PianosynthError as e:
        msg = str(e)
        if "\n" in msg or not msg.strip():
            outcome, detail = "fail", f"error message is not one line: {msg!r}"
        else:
            outcome, detail = "error", msg
    except Exception:  # noqa: BLE001 -- anything else is the bug we look for
        outcome, detail = "fail", traceback.format_exc()
    return outcome, detail, time.perf_counter() - t0


@contextlib.contextmanager
def capped_reader(cap_s: float | None):
    """Make the CLI's reader drop events after ``cap_s`` seconds (held notes stay stuck)."""
    from pianosynth.io import midi_file
    original = midi_file.read_midi_file

    def capped(path, *args, **kwargs):
        ev = original(path, *args, **kwargs)
        return ev if cap_s is None else ev[ev["time_s"] <= cap_s]
    midi_file.read_midi_file = capped
    try:
        yield
    finally:
        midi_file.read_midi_file = original


def render_case(path: Path, out_dir: Path, tail: str = "1", cap_s: float | None = 2.0,
                timeout_s: float = 120.0, sample_rate: int = 44100) -> tuple[str, str, float]:
    """``pianosynth render path -o out_dir/out.wav`` in this process ->
    ``(outcome, detail, seconds)``; outcome ``"ok"`` (exit 0, file there and finite),
    ``"error"`` (exit 2, one clean error line, no file left) or ``"fail"``."""
    import numpy as np

    from pianosynth.cli import main
    from pianosynth.io.audio_file import read_audio

    out = out_dir / "out.wav"
    out.unlink(missing_ok=True)
    err = io.StringIO()
    argv = ["render", str(path), "-o", str(out), "--sample-rate", str(sample_rate),
            "--tail", tail, "--subtype", "PCM_16", "-q"]
    t0 = time.perf_counter()
    try:
        with time_limit(timeout_s), capped_reader(cap_s), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except BaseException as e:  # noqa: BLE001 -- a traceback escaping main() is the bug
        if isinstance(e, KeyboardInterrupt):
            raise
        return "fail", traceback.format_exc(), time.perf_counter() - t0
    dt = time.perf_counter() - t0
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    left = sorted(p.name for p in out_dir.iterdir())
    if "Traceback" in text:
        return "fail", text, dt
    if code == 0:
        if not out.is_file():
            return "fail", "exit 0 but no output file", dt
        if any(not ln.startswith("pianosynth: warning: ") for ln in lines):
            return "fail", f"exit 0 with stderr {text!r}", dt
        audio, sr = read_audio(out)
        if sr != sample_rate or not np.all(np.isfinite(audio)):
            return "fail", f"bad output: rate {sr}, finite {np.all(np.isfinite(audio))}", dt
        return "ok", f"{audio.shape[0] / sr:.2f} s", dt
    if code == 2:
        errors = [ln for ln in lines if ln.startswith("pianosynth: error: ")]
        others = [ln for ln in lines if not ln.startswith(("pianosynth: error: ",
                                                           "pianosynth: warning: "))]
        if len(errors) != 1 or others:
            return "fail", f"exit 2 with stderr {text!r}", dt
        if left:
            return "fail", f"exit 2 but files left: {left}", dt
        return "error", errors[0][len("pianosynth: error: "):], dt
    return "fail", f"exit {code}, stderr {text!r}", dt


def error_category(message: str) -> str:
    """A short class of an error message (file name and numbers removed)."""
    import re
    m = message.split(": ", 1)[1] if message.startswith("/") and ": " in message \
        else message
    m = re.sub(r"/\S+", "FILE", m)
    m = re.sub(r"\(.*", "", m)
    m = re.sub(r"\d[\d:.]*", "N", m)
    return m.strip()[:60]


def worst_case_file(n_bytes: int) -> bytes:
    """A file of ``n_bytes`` made of 2-byte messages (delta 0 + running-status program
    change): the most mido objects per byte, the slowest file the reader accepts."""
    head = b"\x00\x90\x3c\x40\x00\xc0\x01"
    tail = b"\x00\xff\x2f\x00"
    n = (n_bytes - 22 - len(head) - len(tail)) // 2
    return _file_of(head + b"\x00\x01" * n + tail)


def _file_of(track: bytes) -> bytes:
    return header(0, 1, 96) + chunk(b"MTrk", track)


def run_extremes(tmp: Path, timeout_s: float) -> list[tuple[str, str, str, float]]:
    """The extreme cases, each once: (name, outcome, detail, seconds)."""
    from pianosynth.io.midi_file import MAX_FILE_BYTES
    rows = []
    src = tmp / "extreme.mid"
    out_dir = tmp / "out"
    out_dir.mkdir(exist_ok=True)
    for name, data in [("largest accepted file, 2-byte messages", worst_case_file(MAX_FILE_BYTES)),
                       ("one byte over the size limit", worst_case_file(MAX_FILE_BYTES + 1))]:
        src.write_bytes(data)
        rows.append((name,) + parse_case(src, max(timeout_s, 300.0)))
    src.write_bytes(many_notes_file(random.Random(0)))
    rows.append(("10 000 notes never released, render --tail auto (not capped)",)
                + render_case(src, out_dir, tail="auto", cap_s=None, timeout_s=max(timeout_s, 600)))
    src.write_bytes(_file_of(b"\x00\xb0\x40\x7f" + b"".join(
        b"\x00\x90" + bytes([k, 100]) for k in range(21, 109)) + b"\x00\xff\x2f\x00"))
    rows.append(("88 keys held under the pedal, never released, --tail auto",)
                + render_case(src, out_dir, tail="auto", cap_s=None, timeout_s=max(timeout_s, 600)))
    return rows


# --------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1, help="first case seed")
    ap.add_argument("--case", type=int, default=None, help="run only this case seed")
    ap.add_argument("--kind", choices=list(KINDS), default=None,
                    help="only this kind (default: mixed by weight)")
    ap.add_argument("--no-render", action="store_true", help="parse level only")
    ap.add_argument("--render-cap-s", type=float, default=2.0)
    ap.add_argument("--tail", default="1")
    ap.add_argument("--auto-tail-every", type=int, default=50)
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("--save-failures", type=Path, default=None)
    ap.add_argument("--no-extremes", action="store_true",
                    help="skip the extreme cases (largest file, stuck notes with auto tail)")
    args = ap.parse_args(argv)

    seeds = [args.case] if args.case is not None else \
        list(range(args.seed, args.seed + args.cases))
    results = defaultdict(Counter)            # (level, kind) -> Counter(outcome)
    times = defaultdict(list)                 # level -> [seconds]
    slowest = {}
    categories = defaultdict(Counter)         # level -> Counter(error category)
    failures = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "case.mid"
        out_dir = tmp / "out"
        out_dir.mkdir()
        for n, seed in enumerate(seeds):
            kind = args.kind or case_kind(seed)
            data = make_case(kind, seed)
            src.write_bytes(data)
            outcome, detail, dt = parse_case(src, args.timeout_s)
            levels = [("parse", outcome, detail, dt)]
            if not args.no_render:
                auto = args.auto_tail_every > 0 and seed % args.auto_tail_every == 0
                levels.append(("render",) + render_case(
                    src, out_dir, "auto" if auto else args.tail, args.render_cap_s,
                    args.timeout_s))
            for level, outcome, detail, dt in levels:
                results[(level, kind)][outcome] += 1
                times[level].append(dt)
                if dt > slowest.get(level, (0.0,))[0]:
                    slowest[level] = (dt, seed, kind, len(data))
                if outcome == "error":
                    categories[level][error_category(detail)] += 1
                if outcome == "fail":
                    failures.append((level, kind, seed, detail))
                    print(f"FAIL {level} {kind} seed {seed}:\n{detail}", file=sys.stderr)
                    if args.save_failures:
                        args.save_failures.mkdir(parents=True, exist_ok=True)
                        (args.save_failures / f"{kind}_{seed}.mid").write_bytes(data)
            if (n + 1) % 500 == 0:
                print(f"... {n + 1}/{len(seeds)} cases, {time.perf_counter() - t_start:.0f} s",
                      file=sys.stderr, flush=True)
        extremes = [] if args.no_extremes or args.case is not None else \
            run_extremes(tmp, args.timeout_s)

    import numpy as np
    print(f"# MIDI fuzz: {len(seeds)} cases (seeds {seeds[0]}..{seeds[-1]}), "
          f"{time.perf_counter() - t_start:.0f} s in all")
    for level in ("parse", "render"):
        rows = {k: v for (lv, k), v in results.items() if lv == level}
        if not rows:
            continue
        total = sum(rows.values(), Counter())
        t = np.array(times[level])
        print(f"\n## {level}: ok {total['ok']}, clean error {total['error']}, "
              f"FAIL {total['fail']}")
        print(f"time per case: median {np.median(t) * 1e3:.1f} ms, p99 "
              f"{np.percentile(t, 99) * 1e3:.0f} ms, max {t.max():.2f} s "
              f"(seed {slowest[level][1]}, {slowest[level][2]}, {slowest[level][3]} bytes)")
        print(f"{'kind':<12} {'cases':>6} {'ok':>6} {'error':>6} {'fail':>5}")
        for k in KINDS:
            if k in rows:
                c = rows[k]
                print(f"{k:<12} {sum(c.values()):>6} {c['ok']:>6} {c['error']:>6} "
                      f"{c['fail']:>5}")
        print("most common errors:")
        for cat, n in categories[level].most_common(12):
            print(f"  {n:>6}  {cat}")
    if extremes:
        print("\n## extreme cases")
        for name, outcome, detail, dt in extremes:
            print(f"  {name}: {outcome} in {dt:.1f} s ({detail.strip().splitlines()[-1][:90]})")
            if outcome == "fail":
                failures.append(("extreme", name, -1, detail))
    if failures:
        print(f"\n{len(failures)} FAILURES (rerun one with --case SEED --kind KIND):")
        for level, kind, seed, detail in failures[:50]:
            print(f"  {level} {kind} seed {seed}: {detail.strip().splitlines()[-1][:120]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
