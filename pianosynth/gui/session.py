"""The control panel's audio side: engine, output stream, MIDI inputs and the taps the plots read.

No Qt here: this module is the boundary between the GUI thread and the audio thread.

::

    GUI thread ── note/pedal ──► MidiEventQueue (deque, perf_counter stamps) ◄── rtmidi thread
        │                                  │
        │ set_param ─► desired settings ─► ParamApplier thread ─► Engine.set_param
        │                                  │                      (key table: one reference swap)
        │                                  ▼
        │                    audio callback (AudioOutput | SilentOutput | pump):
        │                      events = fill(...); TappedEngine.render(out, events)
        │                                  │ copies into preallocated arrays only
        ▼                                  ▼
    QTimer ◄──────────────── Tap: output ring, hammer-force trace, voice count, keys down

The GUI thread never calls the engine while audio runs: it reads :class:`Tap` (written by the
audio thread, read without locks; a torn read shows one stale sample) and hands parameter
changes to :class:`ParamApplier`, whose thread calls ``Engine.set_param``. The engine
publishes a redesigned key table with one reference swap, picked up at the next block.

Without an audio device :class:`SilentOutput` paces the same callback from a thread on the
wall clock, so MIDI, the keyboard and the plots work and nothing is heard.
"""
from __future__ import annotations

import sys
import threading
import math
import time

import numpy as np

from ..dsp import voice as V
from ..engine import blockloop as B
from ..engine.events import CC_ALL_NOTES_OFF, CC_SUSTAIN, CONTROL_CHANGE, NOTE_OFF, NOTE_ON
from ..engine.params import PARAM_BY_NAME, PARAMETERS
from ..errors import PianosynthError
from ..io.audio_out import (MAX_BLOCK_FRAMES, AudioOutput, BlockClock, IdleGate,
                            idle_probe, import_sounddevice, list_output_devices,
                            select_output_device)
from ..io.midi_live import LATENCY_MARGIN_S, EventBlock, MidiEventQueue, MidiInputs

#: output ring length in frames (a power of two; 1.4 s at 48 kHz).
RING_FRAMES = 1 << 16
#: frames per block of the silent clock.
SILENT_BLOCK = 256
#: voice slots: enough for the largest polyphony of the parameter table, so that changing
#: polyphony acts at once (the block loop caps allocation at ``polyphony``).
MAX_VOICES = int(PARAM_BY_NAME["polyphony"].max) + 8 + 88   # + one sympathetic string a key
#: voice flag of an unstruck string ringing in sympathy (absent in older engines)
_I_SYMP = getattr(V, "I_SYMP", None)


_META = ("written", "force_len", "force_seq", "force_key", "force_velocity", "voices",
         "sustain", "trace_voice", "trace_strikes", "sympathetic", "activity")


def _meta_property(i: int, doc: str):
    def get(self):
        return int(self.meta[i])

    def set(self, value):
        self.meta[i] = value
    return property(get, set, doc=doc)


class Tap:
    """What the audio thread leaves for the plots; written once per block, no allocation.

    The arrays live in one buffer (``buffer``: e.g. a ``SharedMemory.buf``, so an audio
    process can feed a GUI process; default: private memory). Writers and readers take no
    lock: integers are aligned 8-byte words, and a torn read of the ring shows one stale
    sample at worst.

    Attributes
    ----------
    ring : ndarray, float32, shape (RING_FRAMES,)
        Mono output ``(L + R) / 2``, circular; ``written`` frames so far in total.
    force : ndarray, float64, shape (TRACE_LEN,)
        Hammer force (N) of the last struck hammer at fs, ``force_len`` valid values
        (Bank et al. 2003, Fig. 2); ``force_seq`` grows when it changed, ``force_key`` is
        its MIDI key, ``force_velocity`` the velocity of the last note-on.
    voices : int
        Sounding voices after the last block, sympathetic strings included.
    sympathetic : int
        Of these, unstruck strings ringing in sympathy (pedal down, §4.3).
    keys_down : ndarray, uint8, shape (128,)
        1 for keys held by a note-on that has not been released (MIDI or on-screen).
    sustain : int
        Sustain pedal (CC 64 >= 64) as last seen in the event stream.
    """

    TRACE_LEN = 4096
    N_META = 16

    @classmethod
    def nbytes(cls) -> int:
        return cls.TRACE_LEN * 8 + cls.N_META * 8 + RING_FRAMES * 4 + 128

    def __init__(self, buffer=None):
        buf = buffer if buffer is not None else bytearray(self.nbytes())
        off = 0
        self.force = np.ndarray((self.TRACE_LEN,), np.float64, buf, off)
        off += self.TRACE_LEN * 8
        self.meta = np.ndarray((self.N_META,), np.int64, buf, off)
        off += self.N_META * 8
        self.ring = np.ndarray((RING_FRAMES,), np.float32, buf, off)
        off += RING_FRAMES * 4
        self.keys_down = np.ndarray((128,), np.uint8, buf, off)
        self._mono = np.zeros(MAX_BLOCK_FRAMES, np.float32)
        self._busy = np.zeros(0, bool)
        self._silent = 0                        # frames of record_silence since the output
        if buffer is None:
            self.trace_voice = -1
            self.trace_strikes = -1
            self.force_key = -1

    written = _meta_property(0, "output frames written in total")
    force_len = _meta_property(1, "valid samples in ``force``")
    force_seq = _meta_property(2, "grows when ``force`` changed")
    force_key = _meta_property(3, "MIDI key of the force trace (-1: none)")
    force_velocity = _meta_property(4, "velocity of the last note-on")
    voices = _meta_property(5, "sounding voices")
    sustain = _meta_property(6, "sustain pedal down (0/1)")
    trace_voice = _meta_property(7, "engine voice of the trace (audio side)")
    trace_strikes = _meta_property(8, "strike count of that voice (audio side)")
    sympathetic = _meta_property(9, "sympathetic strings among the voices")
    activity = _meta_property(10, "grows with every block that brought events, a sounding "
                                  "voice or non-zero output: unchanged, nothing new to show")

    def reset_meta(self) -> None:
        self.meta[:] = 0
        self.trace_voice = -1
        self.trace_strikes = -1
        self.force_key = -1

    # ---------------------------------------------------------------- audio thread
    def record_events(self, events) -> None:
        """Note which keys are down (a few events per block, plain loop)."""
        self.meta[10] += 1
        for i in range(len(events)):
            st = int(events["status"][i]) & 0xF0
            d1 = int(events["data1"][i])
            d2 = int(events["data2"][i])
            if st == NOTE_ON and d2 > 0:
                self.keys_down[d1] = 1
                self.force_velocity = d2
            elif st == NOTE_OFF or st == NOTE_ON:
                self.keys_down[d1] = 0
            elif st == CONTROL_CHANGE:
                if d1 == CC_SUSTAIN:
                    self.sustain = 1 if d2 >= 64 else 0
                elif d1 >= 120:
                    self.keys_down[:] = 0

    def record_output(self, out, engine) -> None:
        """Copy a rendered block ``out`` (n, 2) and the engine's meters."""
        n = out.shape[0]
        self._silent = 0
        m = self._mono[:n]
        np.add(out[:, 0], out[:, 1], out=m)
        m *= 0.5
        written = int(self.meta[0])
        w = written % RING_FRAMES
        k = min(n, RING_FRAMES - w)
        self.ring[w:w + k] = m[:k]
        if k < n:
            self.ring[:n - k] = m[k:]
        self.meta[0] = written + n
        state = engine.iv[:, V.I_STATE]
        self.meta[5] = np.count_nonzero(state)
        if _I_SYMP is not None and engine.iv.shape[1] > _I_SYMP:
            if self._busy.shape[0] != state.shape[0]:
                self._busy = np.zeros(state.shape[0], bool)     # once per engine
            np.not_equal(state, V.FREE, out=self._busy)
            np.logical_and(self._busy, engine.iv[:, _I_SYMP], out=self._busy)
            self.meta[9] = np.count_nonzero(self._busy)
        nf = int(engine.trace_info[0])
        tv = int(engine.gi[B.G_TRACE_VOICE])
        strikes = int(engine.iv[tv, V.I_STRIKES]) if tv >= 0 else -1
        if nf != self.meta[1] or tv != self.meta[7] or strikes != self.meta[8]:
            nf = min(nf, self.force.shape[0])
            self.force[:nf] = engine.trace[:nf]
            self.meta[1] = nf
            self.meta[7] = tv
            self.meta[8] = strikes
            self.meta[3] = int(engine.iv[tv, V.I_KEY]) if tv >= 0 else -1
            self.meta[2] += 1
        if self.meta[5] or m.any():                 # something sounds: new to show
            self.meta[10] += 1

    def record_silence(self, n: int) -> None:
        """``n`` frames of exact silence from an idle engine (nothing else changed: the
        voice counts were 0 after the block that found it idle)."""
        written = int(self.meta[0])
        if self._silent < RING_FRAMES:          # once the ring holds only zeros: count
            w = written % RING_FRAMES
            k = min(n, RING_FRAMES - w)
            self.ring[w:w + k] = 0.0
            if k < n:
                self.ring[:n - k] = 0.0
            self._silent += n
        self.meta[0] = written + n

    # ---------------------------------------------------------------- GUI thread
    def latest(self, n: int) -> np.ndarray:
        """A copy of the last ``n`` output frames (mono), oldest first."""
        n = min(int(n), RING_FRAMES)
        w = self.written
        if w < n:
            out = np.zeros(n, np.float32)
            if w:
                out[n - w:] = self.ring[:w]
            return out
        idx = (np.arange(w - n, w) % RING_FRAMES)
        return self.ring[idx]

    def force_trace(self) -> tuple[np.ndarray, int, int, int]:
        """(force in N, sequence number, key, velocity) of the last strike."""
        seq = self.force_seq
        return self.force[:self.force_len].copy(), seq, self.force_key, self.force_velocity


class TappedEngine:
    """``render(out, events)`` of the current engine, then the tap; what the output calls.

    ``engine`` may be replaced between blocks (one attribute assignment) when the sample
    rate changes.
    """

    def __init__(self, engine, tap: Tap):
        self.engine = engine
        self.tap = tap
        self._probe = None
        self._probed = None

    def render(self, out, events) -> None:
        eng = self.engine
        if len(events):
            self.tap.record_events(events)
        eng.render(out, events)
        self.tap.record_output(out, eng)

    def is_idle(self) -> bool:
        """Does the current engine hold nothing (:func:`~pianosynth.io.audio_out.idle_probe`;
        False for an engine that cannot tell)?"""
        eng = self.engine
        if eng is not self._probed:             # a new engine (rate change): once
            self._probe = idle_probe(eng)
            self._probed = eng
        probe = self._probe
        return bool(probe()) if probe is not None else False

    def render_silence(self, out) -> None:
        """The output skipped a block of an idle engine (:class:`IdleGate`): ``out`` holds
        zeros; the tap records them."""
        self.tap.record_silence(out.shape[0])

    def skip_frames(self, n: int) -> None:
        """``n`` frames of zeros were written without calling anything here (the output's C
        callback, :func:`~pianosynth.io.audio_out.gate_cfunc`): the tap records them."""
        self.tap.record_silence(n)


class SilentOutput:
    """A paced clock in place of a sound card: the :class:`AudioOutput` interface, no sound.

    A thread renders ``block`` frames every ``block / fs`` seconds of wall-clock time through
    the same ``fill_events`` + ``engine.render`` path as the real callback.
    """

    is_jack = False
    hostapi = "none"

    def __init__(self, sample_rate: int = 48000, block: int = SILENT_BLOCK, engine=None,
                 fill_events=None, reason: str = ""):
        self.sample_rate = int(sample_rate)
        self.requested_blocksize = int(block)
        self.block_frames = int(block)
        self.device = -1
        self.device_name = "no audio device (silent clock)"
        self.reason = reason
        self.engine = engine
        self.fill_events = fill_events
        self.clock = BlockClock(self.sample_rate)
        self.underflows = 0
        self.callbacks = 0
        self.frames = 0
        self.render_load_max = 0.0
        self.render_load_sum = 0.0
        self._load = 0.0
        self.error: BaseException | None = None
        self.faded = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buf = np.zeros((self.block_frames, 2), np.float32)

    def _run(self):
        n = self.block_frames
        period = n / self.sample_rate
        t_next = time.perf_counter()
        gate = IdleGate(self.engine)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                frame0 = self.frames
                ev = self.fill_events(frame0, self.clock.update(t0, frame0), n)
                gate.render(self._buf, ev)
            except BaseException as exc:  # noqa: BLE001 - keep for the GUI, stop the clock
                self.error = exc
                return
            self.frames += n
            self.callbacks += 1
            load = (time.perf_counter() - t0) / period
            self._load = 0.9 * self._load + 0.1 * load
            self.render_load_sum += load
            self.render_load_max = max(self.render_load_max, load)
            t_next += period
            delay = t_next - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.25:          # fell far behind (machine busy): skip, do not race
                t_next = time.perf_counter()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pianosynth-silent-clock",
                                        daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def cpu_load(self) -> float:
        return self._load

    @property
    def render_load_mean(self) -> float:
        return self.render_load_sum / self.callbacks if self.callbacks else 0.0

    output_latency_s = 0.0

    def start_fade(self) -> None:
        self.faded.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def stats(self) -> dict:
        return dict(device=self.device_name, hostapi=self.hostapi,
                    sample_rate=self.sample_rate, block_frames=self.block_frames,
                    callbacks=self.callbacks, frames=self.frames, underflows=0,
                    render_load_mean=round(self.render_load_mean, 4),
                    render_load_max=round(self.render_load_max, 4))


class ParamApplier:
    """Brings the engine to the session's desired settings, on its own thread.

    The GUI only writes the desired state (:attr:`LiveSession.settings`,
    :attr:`LiveSession.keys`) and calls :meth:`wake`; a burst of slider moves coalesces
    into one ``set_param`` per changed name. "note" parameters redesign the key table
    (Engine.set_param), which must not happen on the GUI thread nor on the audio thread.

    ``on_applied(names)`` is called from the applier thread after each pass.
    """

    def __init__(self, session: "LiveSession", on_applied=None):
        self.session = session
        self.on_applied = on_applied
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pianosynth-params",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the engine matches the desired settings (tests, scripts)."""
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def _run(self):
        lower_thread_priority()
        while True:
            self._wake.wait()
            if self._stop:
                return
            self._wake.clear()
            try:
                names = sync_engine(self.session.engine, self.session.settings,
                                    self.session.keys, self.session.velocity_points)
            except BaseException as exc:  # noqa: BLE001 - report, keep the thread alive
                self.error = exc
                names = []
            if not self._wake.is_set():
                self._idle.set()
            if names and self.on_applied is not None:
                self.on_applied(names)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=5.0)


def sync_engine(engine, settings: dict, keys: dict, velocity_points=None) -> list[str]:
    """Call ``engine.set_param`` for every parameter whose value differs from ``settings``,
    after installing ``keys`` as the engine's per-key overrides, and set the velocity curve
    ``velocity_points`` (a preset's ``[velocity]`` table; None: the velocity parameters'
    map); returns the names changed ("<keys>" when the overrides changed, "<velocity>"
    when the curve did).

    ``Engine.set_param`` redesigns the whole key table for each "note" parameter (up to a
    couple of seconds when every string changes). A preset load or a burst of edits changes
    many at once, so all "note" values but the last are written into ``engine.settings``
    first (one dict swap; they take effect with the redesign) and the last ``set_param``
    redesigns once for all of them. Every other parameter goes through ``set_param``.
    """
    keys = {int(k): dict(v) for k, v in keys.items()}
    keys_changed = keys != engine.key_overrides
    if keys_changed:
        engine.key_overrides = keys
    changed = [p.name for p in PARAMETERS
               if engine.settings.get(p.name) != settings.get(p.name, p.default)]
    note = [n for n in changed if PARAM_BY_NAME[n].apply == "note"]
    if keys_changed and not note:
        note = [next(p.name for p in PARAMETERS if p.apply == "note")]   # redesign the keys
    if note:
        *first, last = note
        if first:
            engine.settings = {**engine.settings,
                               **{n: settings.get(n, PARAM_BY_NAME[n].default) for n in first}}
        engine.set_param(last, settings.get(last, engine.settings[last]))
    for n in changed:
        if PARAM_BY_NAME[n].apply != "note":
            engine.set_param(n, settings.get(n, PARAM_BY_NAME[n].default))
    if keys_changed:
        changed.append("<keys>")
    if _velocity_changed(engine, velocity_points):
        engine.set_velocity_points(velocity_points)
        changed.append("<velocity>")
    return changed


def _points(points):
    return None if points is None else [(int(v), float(m)) for v, m in points]


def _velocity_changed(engine, points) -> bool:
    return _points(getattr(engine, "velocity_points", None)) != _points(points)


class LiveSession:
    """Engine + output + MIDI for the panel.

    Parameters
    ----------
    settings : dict
        Full parameter settings ``{name: value}`` (defaults filled in).
    keys : dict
        Per-key overrides ``{midi_key: {field: value}}``.
    log : callable
        ``log(text)`` for user messages.
    engine_factory : callable, optional
        ``engine_factory(settings, sample_rate, key_overrides, max_voices) -> Engine``.
    velocity_points : list of (int, float), optional
        The velocity curve (a preset's ``[velocity]`` table,
        :meth:`~pianosynth.presets.Preset.velocity_points`); None: the velocity parameters.

    Attributes
    ----------
    settings, keys : dict
        The desired state, written by the GUI; the applier brings the engine to it.
    output : AudioOutput | SilentOutput | None
        ``None`` until :meth:`open_audio`; with ``mode="manual"`` there is no output and
        :meth:`pump` renders on demand (tests, screenshots).
    audio_status : str
        One line on what plays where (or why nothing is heard).
    """

    def __init__(self, settings: dict, keys: dict | None = None, log=None, engine_factory=None,
                 tap: Tap | None = None, velocity_points=None):
        self.settings = dict(settings)
        self.keys = {int(k): dict(v) for k, v in (keys or {}).items()}
        self.velocity_points = _points(velocity_points)
        self.log = log or (lambda text: print(f"pianosynth: {text}", file=sys.stderr,
                                              flush=True))
        if engine_factory is None:
            from ..engine.core import Engine

            def engine_factory(settings, sample_rate, key_overrides, max_voices):
                return Engine(settings, sample_rate, key_overrides=key_overrides,
                              max_voices=max_voices)
        self.engine_factory = engine_factory
        self.tap = tap if tap is not None else Tap()
        self.midi_choice = ("off", None)
        self.queue = MidiEventQueue()
        self.block = EventBlock()
        self.file = None
        self.engine = None
        self.tapped: TappedEngine | None = None
        self.output = None
        self.midi: MidiInputs | None = None
        self.midi_status = "MIDI: not opened"
        self.audio_status = "audio: not opened"
        self.applier = ParamApplier(self)
        self._manual_buf = None
        self._manual_frame = 0
        self._audio_reason = ""
        self._silent_block = SILENT_BLOCK
        #: underflows of outputs closed before (device switches)
        self.underflows_closed = 0

    # ------------------------------------------------------------------ engine
    def _build_engine(self, sample_rate: int):
        eng = self.engine_factory(self.settings, int(sample_rate), self.keys, MAX_VOICES)
        if _velocity_changed(eng, self.velocity_points):
            eng.set_velocity_points(self.velocity_points)
        scratch = np.zeros((SILENT_BLOCK, 2), np.float32)
        for _ in range(2):                      # compile / load the kernels now
            eng.render(scratch, np.zeros(0, self.block.array.dtype))
        eng.reset()
        return eng

    def _ensure_engine(self, sample_rate: int) -> None:
        if self.engine is None or self.engine.sample_rate != int(sample_rate):
            self.applier.wait_idle(30.0)
            self.engine = self._build_engine(sample_rate)
            if self.tapped is None:
                self.tapped = TappedEngine(self.engine, self.tap)
            else:
                self.tapped.engine = self.engine

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate if self.engine is not None else 48000

    # ------------------------------------------------------------------ events (audio thread)
    def _fill(self, frame0, t_frame0, n):
        block = self.block
        queue = self.queue
        fs = float(self.output.sample_rate) if self.output is not None else float(
            self.sample_rate)
        if queue.latency_s == 0.0:
            queue.latency_s = n / fs + LATENCY_MARGIN_S
        k = queue.drain_into(block, 0, t_frame0, fs, n)
        file = self.file
        if file is not None:
            k0 = k
            k = file.fill(block, k, frame0, n)
            if k0 and k > k0:
                block.array[:k].sort(order="offset", kind="stable")
        return block.array[:k]

    # ------------------------------------------------------------------ audio
    def open_audio(self, device=None, sample_rate: int | None = None, buffer: int = 256,
                   mode: str = "auto", start: bool = True) -> str:
        """Open output on ``device`` (name, index or None = default) and, with ``start``,
        start it (else call :meth:`start_audio` later, e.g. once the window is up).

        ``mode``: "auto" (the device, else the silent clock), "silent" (silent clock only),
        "manual" (no clock: :meth:`pump`). Returns :attr:`audio_status`; never raises for a
        missing device, it says so instead.
        """
        self.close_audio()
        out = None
        self._audio_reason = ""
        if mode == "auto":
            try:
                sd = import_sounddevice()
                dev = select_output_device(device, sd)
                out = AudioOutput(dev, sample_rate, buffer, sd=sd)
            except PianosynthError as exc:
                self._audio_reason = str(exc)
                out = None
        fs = out.sample_rate if out is not None else int(sample_rate or 48000)
        self._ensure_engine(fs)
        self.queue.latency_s = 0.0
        if mode == "manual":
            self.output = None
            self._manual_frame = 0
            self.queue.stale_s = math.inf     # pump() plays whatever is queued, however old
            self.audio_status = "audio: off (rendering on demand)"
            return self.audio_status
        self._silent_block = SILENT_BLOCK if mode != "auto" else min(max(buffer, 64), 1024)
        if out is None:
            out = SilentOutput(fs, self._silent_block, reason=self._audio_reason)
        out.engine = self.tapped
        out.fill_events = self._fill
        if hasattr(out, "set_event_sources"):   # silence without Python (AudioOutput)
            out.set_event_sources(self.queue, self._next_file_frame)
        self.output = out
        self.audio_status = "audio: opened, not started"
        return self.start_audio() if start else self.audio_status

    def start_audio(self) -> str:
        """Start the opened output (falls back to the silent clock if the device refuses)."""
        out = self.output
        if out is None:
            return self.audio_status
        try:
            out.start()
        except PianosynthError as exc:
            self._audio_reason = str(exc)
            out = SilentOutput(out.sample_rate, self._silent_block, self.tapped, self._fill,
                               self._audio_reason)
            out.start()
            self.output = out
        if isinstance(out, SilentOutput):
            why = f" ({out.reason})" if out.reason else ""
            self.audio_status = f"no audio output{why}: the panel runs a silent clock"
        else:
            self.audio_status = (f"audio: {out.device_name} ({out.hostapi}), "
                                 f"{out.sample_rate} Hz")
        self.log(self.audio_status)
        return self.audio_status

    def close_audio(self) -> None:
        out, self.output = self.output, None
        if out is None:
            return
        if out.active:
            out.start_fade()
            out.faded.wait(0.5)
        out.close()
        if not isinstance(out, SilentOutput):
            self.underflows_closed += out.underflows
        if self.engine is not None:
            self.engine.reset()
            self.tap.keys_down[:] = 0

    def pump(self, frames: int, block: int = 256) -> None:
        """Manual mode: render ``frames`` now (blocks of ``block``) through the same path as
        the audio callback; queued events play at once."""
        if self._manual_buf is None or self._manual_buf.shape[0] != block:
            self._manual_buf = np.zeros((block, 2), np.float32)
        done = 0
        while done < frames:
            n = min(block, frames - done)
            # due immediately: pretend the block started long after every queued message
            ev = self._fill(self._manual_frame, time.perf_counter() + 1e3, n)
            ev = ev.copy()
            ev["offset"] = 0
            self.tapped.render(self._manual_buf[:n], ev)
            self._manual_frame += n
            done += n

    # ------------------------------------------------------------------ MIDI
    def open_midi(self, pattern: str | None = None, virtual: bool = False,
                  api: str | None = None, mode: str = "callback") -> str:
        """Open MIDI inputs (all hardware ports, or those matching ``pattern``; ``pattern``
        "" opens none). Returns :attr:`midi_status`; a missing MIDI system is reported, not
        raised, unless ``virtual`` was asked for."""
        self.close_midi()
        self.midi_choice = (("off", None) if pattern == "" else
                            ("virtual", None) if virtual else
                            ("hw", None) if pattern is None else ("port", pattern))
        if pattern == "":
            self.midi_status = "MIDI: off"
            return self.midi_status
        messages = []
        try:
            self.midi = MidiInputs(self.queue, pattern=pattern, virtual=virtual, api=api,
                                   log=messages.append, mode=mode)
            self.midi.start()
        except PianosynthError as exc:
            self.midi = None
            self.midi_status = f"MIDI: {exc}"
            return self.midi_status
        except Exception as exc:  # noqa: BLE001 - rtmidi errors are plain exceptions
            self.midi = None
            self.midi_status = f"MIDI: cannot open ({exc})"
            return self.midi_status
        self.midi.log = self.log
        self.midi_status = self.describe_midi(messages)
        return self.midi_status

    def describe_midi(self, messages=()) -> str:
        m = self.midi
        if m is None:
            return self.midi_status
        if m.api is None:
            return "MIDI: no MIDI system (start JACK or load the ALSA sequencer)"
        ports = list(m.connected)
        if m.virtual_port_name:
            ports.append(m.virtual_port_name)
        if ports:
            return "MIDI: " + ", ".join(ports)
        return "MIDI: waiting for a port"

    def close_midi(self) -> None:
        m, self.midi = self.midi, None
        if m is not None:
            m.close()

    # ------------------------------------------------------------------ playing
    def note_on(self, key: int, velocity: int) -> None:
        self.queue.push(time.perf_counter(), NOTE_ON, int(key), max(1, min(127, int(velocity))))

    def note_off(self, key: int) -> None:
        self.queue.push(time.perf_counter(), NOTE_OFF, int(key), 0)

    def sustain(self, down: bool) -> None:
        self.queue.push(time.perf_counter(), CONTROL_CHANGE, CC_SUSTAIN, 127 if down else 0)

    def panic(self) -> None:
        self.queue.push(time.perf_counter(), CONTROL_CHANGE, CC_SUSTAIN, 0)
        self.queue.push(time.perf_counter(), CONTROL_CHANGE, CC_ALL_NOTES_OFF, 0)

    # ------------------------------------------------------------------ parameters
    def set_param(self, name: str, value: float) -> None:
        """Ask for a new value (GUI thread); the applier thread sets it on the engine."""
        p = PARAM_BY_NAME[name]
        v = min(max(float(value), p.min), p.max)
        if p.integer:
            v = int(round(v))
        self.settings = {**self.settings, name: v}
        self.applier.wake()

    def set_all(self, settings: dict, keys: dict, velocity_points=None) -> None:
        """Ask for a whole new state (preset load; ``velocity_points`` as in the class)."""
        self.keys = {int(k): dict(v) for k, v in keys.items()}
        self.velocity_points = _points(velocity_points)
        self.settings = dict(settings)
        self.applier.wake()

    def install(self, settings: dict, keys: dict, design=None, design_fs=None,
                velocity_points=None) -> list[str]:
        """Bring the engine to ``settings``/``keys`` with a key table designed elsewhere.

        ``design`` (a :class:`~pianosynth.engine.core.KeyDesign` for these settings and keys
        at ``design_fs``) is published with one reference swap, so no design work runs in
        this process; "live" parameters go through ``Engine.set_param`` (a soundboard
        redesign is below a millisecond); ``velocity_points`` as in the class (the design's
        velocity column is replaced by the curve's). Without a usable design, falls back to
        :func:`sync_engine`. Returns the names changed.
        """
        from ..engine.core import clamp_settings
        self.settings = dict(settings)
        self.keys = {int(k): dict(v) for k, v in keys.items()}
        self.velocity_points = _points(velocity_points)
        eng = self.engine
        if eng is None:                     # no engine yet: open_audio builds it from these
            return []
        if design is None or design_fs != eng.sample_rate:
            return sync_engine(eng, self.settings, self.keys, self.velocity_points)
        vel_changed = _velocity_changed(eng, self.velocity_points)
        if vel_changed:                     # the curve first: the design below then gets it
            eng.set_velocity_points(self.velocity_points)
        want = {p.name: self.settings.get(p.name, p.default) for p in PARAMETERS}
        changed = [n for n, v in want.items() if eng.settings.get(n) != v]
        note = {n: want[n] for n in changed if PARAM_BY_NAME[n].apply == "note"}
        keys_changed = self.keys != eng.key_overrides
        eng.key_overrides = self.keys
        eng.settings = clamp_settings({**eng.settings, **note})
        eng.keys = eng._with_velocity(design)           # picked up at the next block
        for n in changed:
            if n not in note:
                eng.set_param(n, want[n])
        return changed + (["<keys>"] if keys_changed else []) + (
            ["<velocity>"] if vel_changed else [])

    def set_midi_file(self, events) -> None:
        """Play a MIDI file's events (``read_midi_file`` rows) from the next block."""
        from ..io.live import FileEvents
        self.file = None if events is None else FileEvents(events, self.sample_rate)
        wake = getattr(self.output, "wake", None)
        if wake is not None:
            wake[0] = 1                         # the next block goes through Python

    def _next_file_frame(self):
        f = self.file
        return f.next_frame() if f is not None else None

    # ------------------------------------------------------------------ queries
    @property
    def ready(self) -> bool:
        return self.engine is not None

    @property
    def output_device(self) -> int:
        """PortAudio index of the output device, -1 for the silent clock or none."""
        out = self.output
        return int(getattr(out, "device", -1)) if out is not None else -1

    def output_devices(self) -> list[dict]:
        return output_devices()

    def midi_ports(self) -> tuple[str | None, list[str]]:
        return midi_ports()

    # ------------------------------------------------------------------ meters
    def meters(self) -> dict:
        out = self.output
        err = getattr(out, "error", None)
        return dict(voices=self.tap.voices, sympathetic=self.tap.sympathetic,
                    polyphony=int(self.settings.get("polyphony", 64)),
                    cpu_load=float(out.cpu_load) if out is not None else 0.0,
                    render_load_max=float(out.render_load_max) if out is not None else 0.0,
                    underflows=self.underflows_closed + (
                        int(out.underflows) if out is not None else 0),
                    callbacks=int(out.callbacks) if out is not None else 0,
                    error=repr(err) if err is not None else None,
                    active=bool(out and out.active), midi=self.describe_midi(),
                    block_frames=int(getattr(out, "block_frames", 0) or 0),
                    audio=self.audio_status, sample_rate=self.sample_rate,
                    output_device=self.output_device, midi_choice=self.midi_choice)

    def stats(self) -> dict:
        s = self.output.stats() if self.output is not None else {}
        s.update(midi_received=self.queue.received, midi_late=self.queue.late,
                 voices=self.tap.voices)
        return s

    def close(self) -> None:
        self.close_midi()
        self.close_audio()
        self.applier.close()


def output_devices() -> list[dict]:
    """The output devices for the selector ([] when PortAudio is missing)."""
    try:
        return list_output_devices(import_sounddevice(refresh=False))
    except PianosynthError:
        return []
    except Exception:  # noqa: BLE001 - PortAudio errors while probing
        return []


def midi_ports() -> tuple[str | None, list[str]]:
    """(api or None, input port names) for the selector."""
    from ..io.midi_live import choose_api, is_own_port, list_input_ports
    try:
        api, _why = choose_api()
        if api is None:
            return None, []
        return api, [p for p in list_input_ports(api) if not is_own_port(p)]
    except Exception:  # noqa: BLE001 - rtmidi missing or broken
        return None, []


#: niceness of the panel's background work (key-table design, key analysis): the audio
#: process and the JACK server must win the CPU (measured: a design loop at normal priority
#: on a 2-core machine tripled play's underflows; at nice 19 it made no difference).
BACKGROUND_NICE = 15


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Raise the niceness of the calling thread (Linux: per thread; elsewhere a no-op)."""
    import os
    try:
        tid = threading.get_native_id()
        cur = os.getpriority(os.PRIO_PROCESS, tid)
        if cur < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError):
        pass


def note_name(key: int) -> str:
    """MIDI key -> name with octave (60 -> C4)."""
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    return f"{names[key % 12]}{key // 12 - 1}"


__all__ = ["Tap", "TappedEngine", "SilentOutput", "ParamApplier", "LiveSession",
           "sync_engine", "output_devices", "midi_ports", "note_name", "MAX_VOICES",
           "RING_FRAMES"]
