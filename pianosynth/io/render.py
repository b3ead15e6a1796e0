"""Offline rendering: drive the engine's block loop from timestamped events.

The same :meth:`Engine.render` the live callback uses is called block after block; each
event's time is rounded to the nearest sample and passed as an offset inside its block, so an
offline render sounds like the live instrument and does not depend on the block size.

Length of the result (``t_last`` = time of the last event):

- ``tail=<seconds>``: exactly ``round(t_last*fs) + round(tail*fs)`` frames;
- ``tail="auto"``: blocks continue after the last event until
  ``engine.is_silent(-90 dB)`` or :data:`AUTO_TAIL_MAX_S` after it; trailing samples below
  -90 dBFS are then trimmed, so the length does not depend on the block size.

Retuning (MIDI Tuning Standard SysEx in a file): the render is split at each retuning's
sample (its time rounded like the events') and ``engine.retune_keys`` is called between the
two blocks, before the events of that sample. The engine redesigns the retuned keys and
publishes the new key table: notes struck from then on sound at the new pitch, strings that
are already sounding keep theirs until struck again (:meth:`Engine.retune_keys`). Retunings
with no note-on between them are merged into one redesign at the time of the last.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..engine.events import EVENT_DTYPE, NOTE_OFF, NOTE_ON
from ..errors import PianosynthError
from .midi_file import MIDI_EVENT_DTYPE

#: longest automatic tail after the last event, seconds.
AUTO_TAIL_MAX_S = 30.0
#: level below which the automatic tail counts as silent, dBFS.
SILENCE_DB = -90.0
#: longest numeric tail accepted, seconds.
MAX_TAIL_S = 600.0


def parse_tail(tail) -> float | str:
    """``"auto"`` or a number of seconds (0..MAX_TAIL_S) -> ``"auto"`` or float.

    Raises :class:`PianosynthError` for anything else.
    """
    if isinstance(tail, str):
        if tail.strip().lower() == "auto":
            return "auto"
        try:
            tail = float(tail)
        except ValueError:
            raise PianosynthError(f"tail must be 'auto' or a number of seconds, not {tail!r}") \
                from None
    if isinstance(tail, bool) or not isinstance(tail, (int, float)) or not math.isfinite(tail) \
            or not 0.0 <= tail <= MAX_TAIL_S:
        raise PianosynthError(f"tail must be 'auto' or 0..{MAX_TAIL_S:g} seconds, not {tail!r}")
    return float(tail)


def peak_dbfs(audio: np.ndarray) -> float:
    """Peak level in dBFS (``-inf`` for silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def normalize(audio: np.ndarray, peak_db: float = -1.0) -> float:
    """Scale ``audio`` in place so its peak is ``peak_db`` dBFS; returns the gain in dB.

    Silence is left alone (gain 0 dB).
    """
    current = peak_dbfs(audio)
    if not math.isfinite(current):
        return 0.0
    gain_db = peak_db - current
    audio *= np.asarray(10.0 ** (gain_db / 20.0), dtype=audio.dtype)
    return gain_db


def _progress_bar(total_s: float, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=round(total_s, 1), unit="s", desc="render", file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio "
                           "[{elapsed}<{remaining}]", leave=False)


def _retune_schedule(retunes, note_on_offsets: np.ndarray, sr: int) -> list:
    """``[(sample, {key: f1_hz})]`` sorted, with retunings between the same two note-ons
    merged at the sample of the last (a later change of a key wins)."""
    groups: list = []
    last_count = None
    for t, changes in sorted(((float(t), c) for t, c in retunes), key=lambda r: r[0]):
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"retune time must be finite and >= 0, not {t}")
        s = int(np.rint(t * sr))
        count = int(np.searchsorted(note_on_offsets, s, side="left"))
        if groups and count == last_count:
            groups[-1] = (s, {**groups[-1][1], **{int(k): float(f) for k, f in changes.items()}})
        else:
            groups.append((s, {int(k): float(f) for k, f in changes.items()}))
        last_count = count
    return groups


def _retune(engine, changes: dict) -> None:
    """``engine.retune_keys`` for the keys whose partial 1 really changes (a redesign costs
    ~30 ms for one key, ~1.7 s for the whole keyboard; files often resend the same table)."""
    kp = getattr(getattr(engine, "keys", None), "kp", None)
    if kp is not None:
        lo = int(kp.keys[0])
        changes = {k: f for k, f in changes.items()
                   if not 0 <= k - lo < len(kp.f1_hz)
                   or abs(math.log2(f / kp.f1_hz[k - lo])) > 1e-9}
    if changes:
        engine.retune_keys(changes)


#: frames per ``engine.render`` call offline, one thread / two (pipelined): the pipelined
#: loop's last chunk of a block runs its output half alone, so it takes longer blocks
BLOCK_SIZE = 4096
BLOCK_SIZE_PIPELINED = 32768


def render_midi(events: np.ndarray, engine, sample_rate: int, block_size: int | None = None,
                tail: float | str = "auto", progress: bool = False,
                retunes=None, pipelined: bool | None = None) -> np.ndarray:
    """Render timestamped MIDI events through ``engine``, block by block.

    Parameters
    ----------
    events : numpy.ndarray of MIDI_EVENT_DTYPE, shape (m,)
        ``(time_s, status, data1, data2)`` sorted by ``time_s`` (see
        :func:`pianosynth.io.midi_file.read_midi_file`).
    engine : pianosynth.engine.core.Engine
        A fresh engine at ``sample_rate``.
    sample_rate : int
        Hz; must match the engine's.
    block_size : int, optional
        Frames per ``engine.render`` call, 1..65536 (output does not depend on it); default
        :data:`BLOCK_SIZE`, or :data:`BLOCK_SIZE_PIPELINED` when pipelined.
    tail : "auto" or float
        Seconds rendered after the last event, or ``"auto"`` (until silent, at most
        :data:`AUTO_TAIL_MAX_S`).
    progress : bool
        Show a tqdm bar on stderr (only when stderr is a terminal).
    retunes : sequence of (float, dict[int, float]), optional
        ``(time_s, {midi_key: f1_hz})``: partial-1 frequencies (Hz) applied with
        ``engine.retune_keys`` at that time (see the module doc); e.g. the ``retunes`` of
        :func:`pianosynth.io.midi_file.read_midi_content`. Retunings after the end of the
        render are not applied.
    pipelined : bool, optional
        Render on two threads (``Engine.render(..., pipelined=True)``: the same output, bit
        for bit); default: when ``engine`` is an :class:`~pianosynth.engine.core.Engine`
        and :func:`~pianosynth.engine.core.pipelined_available` says it pays.

    Returns
    -------
    numpy.ndarray, float32, shape (n, 2)
        The stereo output, full scale +-1.
    """
    from ..engine.core import Engine, pipelined_available

    if pipelined is None:
        pipelined = isinstance(engine, Engine) and pipelined_available()
    if block_size is None:
        block_size = BLOCK_SIZE_PIPELINED if pipelined else BLOCK_SIZE
    sr = int(sample_rate)
    bs = int(block_size)
    if not 1 <= bs <= 65536:
        raise PianosynthError(f"block size must be 1..65536 frames, not {block_size}")
    tail = parse_tail(tail)
    events = np.asarray(events)
    if events.dtype != MIDI_EVENT_DTYPE:
        raise TypeError(f"events must be MIDI_EVENT_DTYPE, not {events.dtype}")
    times = events["time_s"]
    if len(times) and (np.any(np.diff(times) < 0) or times[0] < 0 or
                       not np.all(np.isfinite(times))):
        raise ValueError("event times must be finite, >= 0 and sorted")

    # every event with its absolute sample index, in the engine's format
    allev = np.empty(len(events), EVENT_DTYPE)
    allev["offset"] = np.rint(times * sr).astype(np.int64)
    for f in ("status", "data1", "data2"):
        allev[f] = events[f]
    last = int(allev["offset"][-1]) if len(allev) else 0

    if tail == "auto":
        n_max = last + int(round(AUTO_TAIL_MAX_S * sr))
    else:
        n_max = last + int(round(tail * sr))
    out = _output_buffer(n_max, small_pages=bool(pipelined))
    bar = _progress_bar(n_max / sr, progress)
    starts = allev["offset"]
    is_on = ((allev["status"] & 0xF0) == NOTE_ON) & (allev["data2"] > 0)
    schedule = _retune_schedule(retunes or (), starts[is_on], sr)
    ri = 0
    pos = 0
    i = 0
    try:
        while pos < n_max:
            while ri < len(schedule) and schedule[ri][0] <= pos:
                _retune(engine, schedule[ri][1])
                ri += 1
            n = min(bs, n_max - pos)
            if ri < len(schedule):
                n = min(n, schedule[ri][0] - pos)    # split the block at the retuning
            j = int(np.searchsorted(starts, pos + n, side="left"))
            block_ev = allev[i:j].copy()
            block_ev["offset"] -= pos
            if pipelined:
                engine.render(out[pos:pos + n], block_ev, pipelined=True)
            else:
                engine.render(out[pos:pos + n], block_ev)
            i = j
            pos += n
            if bar is not None:
                bar.update(n / sr)
            if tail == "auto" and pos > last and engine.is_silent(SILENCE_DB):
                break
    finally:
        if bar is not None:
            bar.close()
    out = out[:pos]
    if tail == "auto":
        thr = 10.0 ** (SILENCE_DB / 20.0)
        loud = np.flatnonzero(np.max(np.abs(out[last:]), axis=1) > thr)
        end = last + (int(loud[-1]) + 1 if len(loud) else 0)
        out = out[:max(end, last)]
    return out


def _output_buffer(n: int, small_pages: bool) -> np.ndarray:
    """Zeroed float32 (n, 2) for a render's output; ``small_pages``: in 4 KiB pages where
    the system allows (for the two-thread loop).

    The kernel writes each chunk of 512 frames (4 KiB) straight into it, on the thread of
    the output half. The first write to fresh memory faults its page in: with the default
    transparent huge pages that zeroes 2 MiB at once, a stall of ~100 chunks' work in one
    chunk, while the other thread waits and the load balancing is thrown off; in 4 KiB
    pages each chunk pays for its own page (deb_clai.mid, high, two A/B series on this
    machine: 10 % and 0.5 % less wall time on two threads; on one thread huge pages were
    ~5 % faster, so it keeps them).
    Linux only; elsewhere an ordinary array."""
    import mmap
    if n <= 0 or not small_pages or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return np.zeros((max(n, 0), 2), np.float32)
    buf = mmap.mmap(-1, n * 8)
    try:
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    except OSError:
        pass
    return np.frombuffer(buf, np.float32).reshape(n, 2)


def note_events(key: int, velocity: int, duration_s: float) -> np.ndarray:
    """Events of one note: note-on at 0 s, note-off at ``duration_s`` (channel 1)."""
    return np.array([(0.0, NOTE_ON, key, velocity), (float(duration_s), NOTE_OFF, key, 0)],
                    dtype=MIDI_EVENT_DTYPE)


def render_note(key: int, velocity: int = 100, duration_s: float = 2.0,
                sample_rate: int = 48000, settings: dict | None = None,
                keys: dict | None = None, tail: float | str = "auto",
                block_size: int = 4096, progress: bool = False) -> np.ndarray:
    """Render one note on a fresh engine.

    Parameters
    ----------
    key : int
        MIDI key 21..108 (A0..C8).
    velocity : int
        MIDI velocity 1..127.
    duration_s : float
        Seconds the key is held (0..600).
    sample_rate : int
        Hz.
    settings, keys : dict, optional
        Parameter values and per-key overrides (e.g. from a :class:`~pianosynth.presets.Preset`).
    tail : "auto" or float
        As in :func:`render_midi`, counted from the key release.

    Returns
    -------
    numpy.ndarray, float32, shape (n, 2)
    """
    from ..engine.core import Engine

    if not 21 <= int(key) <= 108:
        raise PianosynthError(f"key {key} is off the piano (21..108, A0..C8)")
    if not 1 <= int(velocity) <= 127:
        raise PianosynthError(f"velocity must be 1..127, not {velocity}")
    if not (math.isfinite(duration_s) and 0.0 <= duration_s <= MAX_TAIL_S):
        raise PianosynthError(f"duration must be 0..{MAX_TAIL_S:g} s, not {duration_s}")
    engine = Engine(settings or {}, int(sample_rate), keys or {})
    return render_midi(note_events(int(key), int(velocity), duration_s), engine, sample_rate,
                       block_size=block_size, tail=tail, progress=progress)
