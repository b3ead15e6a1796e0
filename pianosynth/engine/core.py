"""PLACEHOLDER engine (sine voices) with the final public API; replaced by the Bank model."""
from __future__ import annotations
import numpy as np
from .events import EVENT_DTYPE, NO_EVENTS
from .params import defaults, PARAM_BY_NAME


class Engine:
    """The instrument: voices, soundboard and output stage, driven one block at a time.

    Parameters
    ----------
    settings : dict, optional
        Parameter values by name (see :mod:`pianosynth.engine.params`); missing ones default.
    sample_rate : int
        Output rate in Hz (44100, 48000, 96000 ...).
    key_overrides : dict[int, dict], optional
        Per-key overrides ``{midi_key: {field: value}}``.
    """

    def __init__(self, settings=None, sample_rate=48000, key_overrides=None):
        self.sample_rate = int(sample_rate)
        self.settings = defaults()
        self.settings.update(settings or {})
        self.key_overrides = dict(key_overrides or {})
        self._phase = np.zeros(128)
        self._amp = np.zeros(128)
        self._held = np.zeros(128, bool)

    @property
    def active_voices(self) -> int:
        return int(np.count_nonzero(self._amp > 1e-6))

    def set_param(self, name: str, value: float) -> None:
        self.settings[name] = float(value)

    def render(self, out: np.ndarray, events: np.ndarray = NO_EVENTS) -> None:
        """Render ``out.shape[0]`` frames into ``out`` (float32/64, shape (n, 2)), applying
        ``events`` (EVENT_DTYPE, sorted, offsets inside the block) at their sample offsets."""
        n = out.shape[0]
        out[:] = 0.0
        ei = 0
        for i in range(n):
            while ei < len(events) and events[ei]["offset"] <= i:
                e = events[ei]; ei += 1
                st = int(e["status"]) & 0xF0
                if st == 0x90 and e["data2"] > 0:
                    self._amp[e["data1"]] = e["data2"] / 127 * 0.1
                elif st == 0x80 or st == 0x90:
                    self._amp[e["data1"]] *= 0.5
            f = 440.0 * 2 ** ((np.arange(128) - 69) / 12)
            self._phase += 2 * np.pi * f / self.sample_rate
            s = float(np.sum(self._amp * np.sin(self._phase)))
            self._amp *= 0.99995
            out[i, 0] = s
            out[i, 1] = s

    def is_silent(self, threshold_db: float = -90.0) -> bool:
        return bool(np.all(self._amp < 10 ** (threshold_db / 20)))

    def all_notes_off(self) -> None:
        self._amp[:] = 0.0
