"""Standard MIDI files -> a time-sorted array of the events the piano understands.

Reads types 0, 1 and 2 with :mod:`mido`, merges the tracks, follows the tempo map (or SMPTE
time division) and keeps, in file order, the messages the engine acts on:

- note on / note off (every channel plays the one piano);
- control changes 64 (sustain), 66 (sostenuto), 67 (soft), 120 (all sound off) and
  123 (all notes off);
- MIDI Tuning Standard SysEx (single-note tuning change, bulk tuning dump, scale/octave
  tuning; :mod:`pianosynth.io.mts`), returned by :func:`read_midi_content` as timed retunings
  ``(time_s, {key: f1_hz})`` for :func:`pianosynth.io.render.render_midi`. Every device ID,
  tuning program and bank is accepted and applies at its time. Other SysEx (GM/GS/XG resets,
  manufacturer messages) is ignored silently; MTS messages that cannot be used (malformed,
  bad checksum, a form that does not retune keys) are counted and the first reason kept,
  for one warning.

Several channels or overlapping notes may hold the same key at once. The piano has one
string set per key, so a note-on always strikes (re-strike), but a note-off is passed on only
when the last holder of that key lets go; otherwise a doubled note would be damped while the
other part still holds it. ``CC 120/123`` clear the count.

Everything that can go wrong with a file (missing, not MIDI, truncated, zero tempo, a piece
longer than ``max_duration_s``) raises :class:`~pianosynth.errors.PianosynthError` with the
file name and the reason.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ..engine.events import (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF, CC_SOFT, CC_SOSTENUTO,
                             CC_SUSTAIN, CONTROL_CHANGE, NOTE_OFF, NOTE_ON)
from ..errors import PianosynthError

#: one event per row: time in seconds from the start of the file, raw status byte (with the
#: channel), data bytes.
MIDI_EVENT_DTYPE = np.dtype([("time_s", np.float64), ("status", np.uint8),
                             ("data1", np.uint8), ("data2", np.uint8)])
#: control changes passed on to the engine.
KEPT_CONTROLLERS = (CC_SUSTAIN, CC_SOSTENUTO, CC_SOFT, CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF)
#: default longest piece accepted, seconds.
MAX_DURATION_S = 2 * 3600.0
#: files larger than this are refused before parsing. A sequenced 2-hour piece is about
#: 0.5 MB; mido builds one Python object per message, so the worst case (2-byte messages with
#: running status) costs about 6 s and 260 MB per MB of file: 8 MB bounds that to ~50 s, 2 GB.
MAX_FILE_BYTES = 8 * 1024 * 1024


class MidiContent(NamedTuple):
    """What :func:`read_midi_content` takes from a file.

    Attributes
    ----------
    events : numpy.ndarray of MIDI_EVENT_DTYPE
        As returned by :func:`read_midi_file`.
    retunes : list of (float, dict[int, float])
        ``(time_s, {midi_key: f1_hz})`` from MTS SysEx, sorted by time; messages at the same
        time are merged in file order (a later change of a key wins).
    ignored_mts : int
        MTS messages that could not be used.
    ignored_reason : str
        Why the first of them was refused ("" if none).
    """

    events: np.ndarray
    retunes: list
    ignored_mts: int = 0
    ignored_reason: str = ""

    def warning(self, name: str) -> str | None:
        """One line about the ignored MTS messages, or None."""
        if not self.ignored_mts:
            return None
        n = self.ignored_mts
        return (f"{name}: {n} MIDI Tuning Standard message{'s' if n > 1 else ''} ignored "
                f"(first: {self.ignored_reason})")


def _fmt_time(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def read_midi_file(path: str | os.PathLike, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """Read a standard MIDI file into piano events in seconds.

    Parameters
    ----------
    path : str or path-like
        The ``.mid`` file.
    max_duration_s : float
        Longest piece accepted, seconds (default 2 h); a later event is an error.

    Returns
    -------
    numpy.ndarray of MIDI_EVENT_DTYPE, shape (n,)
        ``(time_s, status, data1, data2)`` sorted by ``time_s`` (stable: messages at the same
        time keep their order in the merged file). Note-on with velocity 0 stays as it is
        (it means note-off).

    Raises
    ------
    PianosynthError
        Missing or unreadable file, not a MIDI file, truncated or corrupt data, zero
        tempo or time division, a piece longer than ``max_duration_s``, or no notes at all.

    Notes
    -----
    Seconds per tick = tempo / (1e6 * ticks_per_beat) with tempo in microseconds per quarter
    note (default 500 000, i.e. 120 bpm) from the latest Set Tempo meta event; with SMPTE
    division, 1 / (frames_per_second * ticks_per_frame) and tempo events are ignored.
    Types 0 and 1 share one tempo map (tempo events of any track apply to all); in type 2
    each track is its own sequence with its own tempo map, all starting at time 0.
    """
    return read_midi_content(path, max_duration_s).events


def read_midi_content(path: str | os.PathLike,
                      max_duration_s: float = MAX_DURATION_S) -> MidiContent:
    """Read a standard MIDI file: piano events and MIDI Tuning Standard retunings.

    Parameters and errors as :func:`read_midi_file`; a SysEx message never raises.

    Returns
    -------
    MidiContent
        ``events`` (as :func:`read_midi_file`), ``retunes`` ``[(time_s, {key: f1_hz})]``
        and the count and first reason of ignored MTS messages.
    """
    mid = _open(path)
    name = str(path)
    division = mid.ticks_per_beat & 0xFFFF     # mido reads it as a signed 16-bit number
    smpte_tick_s = None
    if division & 0x8000:                       # SMPTE: -frames/s in the high byte, ticks/frame
        fps = 256 - (division >> 8)
        tpf = division & 0xFF
        if fps not in (24, 25, 29, 30) or tpf == 0:
            raise PianosynthError(f"{name}: invalid SMPTE time division 0x{division:04X}")
        smpte_tick_s = 1.0 / ((29.97 if fps == 29 else fps) * tpf)
    elif division == 0:
        raise PianosynthError(f"{name}: invalid time division 0 ticks per quarter note")

    # (abs_tick, track, index, message) for every message
    if mid.type == 2:
        sequences = [[(t, i)] for i, t in enumerate(mid.tracks)]
    else:
        sequences = [[(t, i) for i, t in enumerate(mid.tracks)]]

    chunks = []
    tunings = _Tunings()
    for seq in sequences:
        merged = []
        for track, ti in seq:
            tick = 0
            for mi, msg in enumerate(track):
                tick += msg.time
                merged.append((tick, ti, mi, msg))
        merged.sort(key=lambda r: (r[0], r[1], r[2]))
        chunks.append(_to_seconds(merged, division, smpte_tick_s, max_duration_s, name,
                                  tunings))
    rows = [r for c in chunks for r in c]
    if len(chunks) > 1:
        rows.sort(key=lambda r: r[0])          # stable: keeps track order on ties
    events = _hold_counting(rows)
    if not np.any(((events["status"] & 0xF0) == NOTE_ON) & (events["data2"] > 0)):
        raise PianosynthError(f"{name}: contains no notes")
    return MidiContent(events, tunings.merged(), tunings.ignored, tunings.reason)


class _Tunings:
    """Collects the MTS retunings of a file while its tracks are walked."""

    def __init__(self):
        self.found = []                        # (time_s, order, {key: f})
        self.ignored = 0
        self.reason = ""

    def add(self, t: float, data) -> None:
        from .mts import decode_tuning_message, is_mts_message
        msg = decode_tuning_message(data)
        if msg.ok:
            if msg.changes:
                self.found.append((t, len(self.found), dict(msg.changes)))
        elif is_mts_message(data):
            self.ignored += 1
            if not self.reason:
                self.reason = f"at {t:.3f} s: {msg.reason}"

    def merged(self) -> list:
        out = []
        for t, _, changes in sorted(self.found, key=lambda r: (r[0], r[1])):
            if out and out[-1][0] == t:
                out[-1][1].update(changes)
            else:
                out.append((t, dict(changes)))
        return out


def _open(path):
    import mido

    name = str(path)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise PianosynthError(f"MIDI file not found: {name}") from None
    except OSError as e:
        raise PianosynthError(f"cannot read MIDI file {name}: {e.strerror or e}") from None
    if os.path.isdir(path):
        raise PianosynthError(f"{name} is a folder, not a MIDI file")
    if size > MAX_FILE_BYTES:
        raise PianosynthError(f"{name}: {size / 2**20:.1f} MB is too large for a MIDI file "
                              f"(limit {MAX_FILE_BYTES // 2**20} MB)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise PianosynthError(f"cannot read MIDI file {name}: {e.strerror or e}") from None
    if head != b"MThd":
        if head == b"RIFF":
            raise PianosynthError(f"{name}: RIFF MIDI (.rmi) or WAV file; a standard MIDI "
                                  "file (starting with 'MThd') is needed")
        raise PianosynthError(f"{name} is not a MIDI file (no 'MThd' header)")
    try:
        from mido.midifiles.meta import KeySignatureError
    except ImportError:                        # pragma: no cover -- other mido layouts
        KeySignatureError = ValueError
    try:
        return mido.MidiFile(path, clip=True)
    except KeySignatureError as e:             # an Exception of mido's own, not a ValueError
        raise PianosynthError(f"{name}: corrupt MIDI file (invalid key signature: {e})") \
            from None
    except EOFError:
        raise PianosynthError(f"{name}: MIDI file is truncated (ends in the middle of a "
                              "track)") from None
    except PermissionError as e:
        raise PianosynthError(f"cannot read MIDI file {name}: {e.strerror}") from None
    except (OSError, KeyError, ValueError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, RecursionError, OverflowError) as e:
        raise PianosynthError(f"{name}: corrupt MIDI file ({type(e).__name__}: {e})") from None


def _to_seconds(merged, division, smpte_tick_s, max_duration_s, name, tunings=None):
    """Walk (tick, track, index, msg) in order; return [(time_s, status, d1, d2)] (SysEx
    goes to ``tunings``)."""
    tempo = 500_000
    tick_s = smpte_tick_s if smpte_tick_s is not None else tempo * 1e-6 / division
    last_tick, t = 0, 0.0
    rows = []
    for tick, ti, _, msg in merged:
        t += (tick - last_tick) * tick_s
        last_tick = tick
        kind = msg.type
        if t > max_duration_s and kind in ("note_on", "note_off", "control_change",
                                           "set_tempo"):
            raise PianosynthError(
                f"{name}: track {ti} has an event at {_fmt_time(t)}, past the limit of "
                f"{_fmt_time(max_duration_s)} (huge delta time or absurd tempo?)")
        if kind == "set_tempo":
            if msg.tempo <= 0:
                raise PianosynthError(f"{name}: track {ti} sets tempo 0 microseconds per "
                                      f"beat at tick {tick}")
            tempo = msg.tempo
            if smpte_tick_s is None:
                tick_s = tempo * 1e-6 / division
        elif kind == "note_on":
            rows.append((t, NOTE_ON | msg.channel, msg.note, msg.velocity))
        elif kind == "note_off":
            rows.append((t, NOTE_OFF | msg.channel, msg.note, msg.velocity))
        elif kind == "control_change" and msg.control in KEPT_CONTROLLERS:
            rows.append((t, CONTROL_CHANGE | msg.channel, msg.control, msg.value))
        elif kind == "sysex" and tunings is not None and t <= max_duration_s:
            tunings.add(t, msg.data)
    return rows


def _hold_counting(rows) -> np.ndarray:
    """Drop note-offs of keys that another note still holds (see module doc)."""
    held = np.zeros(128, np.int64)
    kept = []
    for row in rows:
        _, status, d1, d2 = row
        kind = status & 0xF0
        if kind == NOTE_ON and d2 > 0:
            held[d1] += 1
        elif kind == NOTE_OFF or kind == NOTE_ON:
            if held[d1] > 1:
                held[d1] -= 1
                continue                       # another note still holds this key
            held[d1] = 0
        elif kind == CONTROL_CHANGE and d1 in (CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF):
            held[:] = 0
        kept.append(row)
    return np.array(kept, dtype=MIDI_EVENT_DTYPE) if kept else np.zeros(0, MIDI_EVENT_DTYPE)


def duration_s(events: np.ndarray) -> float:
    """Time of the last event, seconds (0 for no events)."""
    return float(events["time_s"][-1]) if len(events) else 0.0
