"""The audio engine in its own process, so the panel cannot starve the audio callback.

Why: the callback needs the GIL around each of its kernel calls. In one process a busy GUI
thread (pyqtgraph repaints) or a key-table redesign (about 2 s of numpy/scipy after a
"note" parameter change) makes it wait, and the device underflows. Measured on a JACK
dummy server, 256 frames: one process, 57-72 underflows in the 3 s after each inharmonicity
change while a piece played; see the report of issue "The control panel".

::

    GUI process                                      audio process (spawned)
    ───────────                                      ───────────────────────
    RemoteSession                                    serve(): LiveSession
      note_on/off, pedal ──── Pipe (no reply) ─────►   MidiEventQueue.push
      applier thread: design_key_table() here,         install(): Engine.keys = design
        then "install" ────── Pipe (RPC) ──────────►     (one reference swap)
      open_audio / open_midi / meters ── RPC ──────►   AudioOutput | SilentOutput, MidiInputs
      tap (plots) ◄────────── SharedMemory ◄───────   Tap, written by the audio callback

The audio process runs the callback, a command thread that mostly sleeps in ``recv`` and
the MIDI threads; no design work and no Python GUI code. Key tables are designed in the
GUI process and pickled across (118 KiB, 0.8 ms to unpickle).
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import time
import traceback
from multiprocessing import shared_memory

from ..engine.params import PARAM_BY_NAME, PARAMETERS
from ..io.audio_out import freeze_gc
from .session import Tap, _points, lower_thread_priority

#: longest wait for the audio process to answer, s (building an engine at a new rate and
#: loading the kernels takes a few seconds on a slow machine).
RPC_TIMEOUT_S = 60.0


# ====================================================================== audio process side
def serve(conn, shm_name: str, settings: dict, keys: dict, velocity_points=None) -> None:
    """Entry point of the audio process: answer commands until "close" or the pipe ends."""
    sys.setswitchinterval(0.001)
    # (a spawned child shares the parent's resource tracker, so attaching registers the
    # same name in the same set again and the parent's unlink unregisters it once)
    shm = shared_memory.SharedMemory(name=shm_name)
    from .session import LiveSession

    def log(text):
        print(f"pianosynth: {text}", file=sys.stderr, flush=True)

    tap = Tap(shm.buf)
    session = LiveSession(settings, keys, log=log, tap=tap, velocity_points=velocity_points)
    push = session.queue.push
    perf = time.perf_counter
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break                                   # the GUI process is gone
            op = msg[0]
            if op == "ev":                              # (ev, status, data1, data2): no reply
                push(perf(), msg[1], msg[2], msg[3])
                continue
            try:
                result = _dispatch(session, op, msg[1:])
            except BaseException as exc:  # noqa: BLE001 - report, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}",
                           traceback.format_exc(limit=4)))
                continue
            conn.send(("ok", result))
            if op == "close":
                break
    finally:
        try:
            session.close()
        except Exception:  # noqa: BLE001
            pass
        session.tap = None
        if session.tapped is not None:
            session.tapped.tap = None
        del tap
        try:
            shm.close()
        except BufferError:         # a view still referenced: the OS frees it at exit
            pass


def _dispatch(session, op, args):
    if op == "install":
        settings, keys, design, fs, velocity_points = args
        return session.install(settings, keys, design, fs, velocity_points)
    if op == "open_audio":
        device, rate, buffer, mode, start = args
        if start:
            session.open_audio(device, rate, buffer, mode, start=False)
            freeze_gc()
            status = session.start_audio()
        else:
            status = session.open_audio(device, rate, buffer, mode, start)
        return status, session.sample_rate
    if op == "start_audio":
        # what exists now (modules, engine, kernels) out of the collector's reach: a full
        # collection in this process holds the GIL against the callback (as in `play`)
        freeze_gc()
        return session.start_audio(), session.sample_rate
    if op == "open_midi":
        return session.open_midi(*args)
    if op == "file":
        events, = args
        session.set_midi_file(events)
        return None
    if op == "meters":
        return session.meters()
    if op == "stats":
        return session.stats()
    if op == "devices":
        return session.output_devices(), session.midi_ports()
    if op == "close":
        session.close()
        return session.stats() if session.output is not None else {}
    raise ValueError(f"unknown command {op!r}")


# ====================================================================== GUI process side
class RemoteApplier:
    """The GUI-side applier: designs key tables here, installs them over there.

    Same interface as :class:`~pianosynth.gui.session.ParamApplier` (``wake``,
    ``wait_idle``, ``busy``, ``error``, ``on_applied``, ``close``).
    """

    def __init__(self, session: "RemoteSession"):
        self.session = session
        self.on_applied = None
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._sent = None                       # (settings, keys, fs, velocity) the engine has
        self._thread = threading.Thread(target=self._run, name="pianosynth-design",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def mark_installed(self, settings, keys, fs, velocity_points=None) -> None:
        self._sent = (dict(settings), {int(k): dict(v) for k, v in keys.items()}, fs,
                      velocity_points)

    def _run(self):
        from ..engine.core import clamp_settings, design_key_table
        lower_thread_priority()             # designing must not take the CPU from audio
        while True:
            self._wake.wait()
            if self._stop:
                return
            self._wake.clear()
            s = self.session
            settings, keys, fs = dict(s.settings), {int(k): dict(v) for k, v in
                                                     s.keys.items()}, s.sample_rate
            vel = s.velocity_points
            names = []
            try:
                if self._sent is None or (settings, keys, fs, vel) != self._sent:
                    old_s, old_k, old_fs, _ = self._sent or ({}, None, None, None)
                    redesign = (keys != old_k or fs != old_fs or any(
                        settings.get(n) != old_s.get(n) for n in _NOTE_PARAMS))
                    design = None
                    if redesign:
                        design = design_key_table(clamp_settings(settings), fs, keys)
                    if self._wake.is_set() and redesign:
                        continue                    # superseded while designing: redo
                    names = s._rpc("install", settings, keys, design, fs, vel)
                    self._sent = (settings, keys, fs, vel)
            except BaseException as exc:  # noqa: BLE001 - shown by the panel
                self.error = exc
            if not self._wake.is_set():
                self._idle.set()
            if names and self.on_applied is not None:
                self.on_applied(names)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10.0)


_NOTE_PARAMS = [p.name for p in PARAMETERS if p.apply == "note"]


class RemoteSession:
    """:class:`~pianosynth.gui.session.LiveSession`'s interface, with the engine, the audio
    output and MIDI in a separate process (see the module docstring).

    Raises
    ------
    PianosynthError
        The audio process did not start or stopped answering.
    """

    def __init__(self, settings: dict, keys: dict | None = None, log=None,
                 velocity_points=None):
        from ..errors import PianosynthError
        self._Error = PianosynthError
        self.settings = dict(settings)
        self.keys = {int(k): dict(v) for k, v in (keys or {}).items()}
        self.velocity_points = _points(velocity_points)
        self.log = log or (lambda text: print(f"pianosynth: {text}", file=sys.stderr,
                                              flush=True))
        self._shm = shared_memory.SharedMemory(create=True, size=Tap.nbytes())
        self.tap = Tap(self._shm.buf)
        self.tap.reset_meta()
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, name="pianosynth-audio",
                                 args=(child, self._shm.name, self.settings, self.keys,
                                       self.velocity_points),
                                 daemon=True)
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        self._sample_rate = 48000
        self._meters = {}
        self.audio_status = "audio: not opened"
        self.midi_status = "MIDI: not opened"
        self.midi_choice = ("off", None)
        self._output_device = -1
        self._opened = False
        self._closed = False
        self.applier = RemoteApplier(self)

    # ------------------------------------------------------------------ plumbing
    def _rpc(self, *msg):
        with self._lock:
            if self._closed:
                raise self._Error("the audio process has been closed")
            try:
                self._conn.send(msg)
                t_end = time.perf_counter() + RPC_TIMEOUT_S
                while not self._conn.poll(0.2):
                    if not self._proc.is_alive() or time.perf_counter() > t_end:
                        raise self._Error("the audio process stopped answering "
                                          f"(exit code {self._proc.exitcode})")
                reply = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                raise self._Error("the audio process ended "
                                  f"(exit code {self._proc.exitcode})") from None
        if reply[0] == "error":
            raise self._Error(f"audio process: {reply[1]}")
        return reply[1]

    def _send(self, *msg) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._conn.send(msg)
            except (OSError, BrokenPipeError):
                pass

    # ------------------------------------------------------------------ audio / MIDI
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def ready(self) -> bool:
        return self._opened and not self._closed

    @property
    def output_device(self) -> int:
        return self._output_device

    def open_audio(self, device=None, sample_rate: int | None = None, buffer: int = 256,
                   mode: str = "auto", start: bool = True) -> str:
        if mode == "manual":
            raise ValueError("manual mode needs the engine in this process (LiveSession)")
        self.applier.wait_idle(RPC_TIMEOUT_S)
        status, fs = self._rpc("open_audio", device, sample_rate, buffer, mode, start)
        self._after_open(status, fs)
        return status

    def start_audio(self) -> str:
        status, fs = self._rpc("start_audio")
        self._after_open(status, fs)
        return status

    def _after_open(self, status, fs):
        self.audio_status = status
        rate_changed = fs != self._sample_rate
        self._sample_rate = int(fs)
        self._opened = True
        if rate_changed or self.applier._sent is None:
            # the audio process (re)built its engine from the settings it last received
            self.applier.mark_installed(self.settings, self.keys, self._sample_rate,
                                         self.velocity_points)
        self._refresh_meters()

    def set_midi_file(self, events) -> None:
        """Play a MIDI file's events (``read_midi_file`` rows) from the next block."""
        self._rpc("file", events)

    def open_midi(self, pattern: str | None = None, virtual: bool = False,
                  api: str | None = None, mode: str = "callback") -> str:
        self.midi_status = self._rpc("open_midi", pattern, virtual, api, mode)
        self._refresh_meters()
        return self.midi_status

    def describe_midi(self) -> str:
        return self._meters.get("midi", self.midi_status)

    def output_devices(self) -> list[dict]:
        try:
            return self._rpc("devices")[0]
        except self._Error:
            return []

    def midi_ports(self):
        try:
            return self._rpc("devices")[1]
        except self._Error:
            return None, []

    # ------------------------------------------------------------------ playing
    def note_on(self, key: int, velocity: int) -> None:
        self._send("ev", 0x90, int(key), max(1, min(127, int(velocity))))

    def note_off(self, key: int) -> None:
        self._send("ev", 0x80, int(key), 0)

    def sustain(self, down: bool) -> None:
        self._send("ev", 0xB0, 64, 127 if down else 0)

    def panic(self) -> None:
        self._send("ev", 0xB0, 64, 0)
        self._send("ev", 0xB0, 123, 0)

    # ------------------------------------------------------------------ parameters
    def set_param(self, name: str, value: float) -> None:
        p = PARAM_BY_NAME[name]
        v = min(max(float(value), p.min), p.max)
        if p.integer:
            v = int(round(v))
        self.settings = {**self.settings, name: v}
        self.applier.wake()

    def set_all(self, settings: dict, keys: dict, velocity_points=None) -> None:
        self.keys = {int(k): dict(v) for k, v in keys.items()}
        self.velocity_points = _points(velocity_points)
        self.settings = dict(settings)
        self.applier.wake()

    # ------------------------------------------------------------------ meters
    def _refresh_meters(self) -> dict:
        m = self._rpc("meters")
        self._meters = m
        self._output_device = int(m.get("output_device", -1))
        self.midi_choice = tuple(m.get("midi_choice", ("off", None)))
        self.audio_status = m.get("audio", self.audio_status)
        return m

    def meters(self) -> dict:
        try:
            m = self._refresh_meters()
        except self._Error as exc:
            m = dict(self._meters)
            m.update(error=str(exc), active=False)
        m.setdefault("voices", self.tap.voices)
        m.setdefault("sympathetic", self.tap.sympathetic)
        m["polyphony"] = int(self.settings.get("polyphony", 64))
        for k, v in (("cpu_load", 0.0), ("underflows", 0), ("callbacks", 0), ("error", None),
                     ("midi", self.midi_status)):
            m.setdefault(k, v)
        return m

    def stats(self) -> dict:
        try:
            return self._rpc("stats")
        except self._Error:
            return {}

    def close(self) -> None:
        if self._closed:
            return
        self.applier.close()
        try:
            self._rpc("close")
        except self._Error:
            pass
        with self._lock:
            self._closed = True
            self._conn.close()
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2.0)
        tap, self.tap = self.tap, None
        del tap
        try:
            self._shm.close()
        except BufferError:          # a view still alive somewhere: leave it to the OS
            pass
        self._shm.unlink()
