"""Timestamped MIDI events as the block loop consumes them.

An event block is a 1-D numpy array of :data:`EVENT_DTYPE`, sorted by ``offset`` (the sample
offset inside the block, ``0 <= offset < n_frames``). Channel voice messages keep their raw
status byte; the engine ignores the channel (every channel plays the piano).
"""
import numpy as np

EVENT_DTYPE = np.dtype([("offset", np.int64), ("status", np.uint8),
                        ("data1", np.uint8), ("data2", np.uint8)])

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
CC_SUSTAIN = 64
CC_SOSTENUTO = 66
CC_SOFT = 67
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123


def make_events(rows) -> np.ndarray:
    """``[(offset, status, data1, data2), ...]`` -> sorted event array."""
    ev = np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE) if len(rows) else np.zeros(0, EVENT_DTYPE)
    # argsort on the offset alone: np.sort(order="offset") would break ties by the other
    # fields and put a note-on before a pedal change sent earlier at the same offset
    return ev[np.argsort(ev["offset"], kind="stable")]


NO_EVENTS = np.zeros(0, EVENT_DTYPE)
