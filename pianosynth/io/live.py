"""``pianosynth play`` and ``pianosynth devices``: the piano, live, on an audio device.

::

    JACK MIDI port --compiled JACK callback--> JackMidiRing -----------+
    other MIDI ports --rtmidi thread--> MidiEventQueue (deque) --------+
    --midi-file --> FileEvents (sample frames, read ahead) ------------+--> audio callback:
                                                              EventBlock -> Engine.render
    SysEx ------> MidiEventQueue.sysex --> tuning thread --> design process (MTS retune)
                                    new key table --(one reference, taken at block start)--^
    watcher thread: port list every 0.5 s (vanished ports, reconnects)
    main thread: signals, status, stop fade, statistics, audio device watch

The command line (:mod:`pianosynth.cli`) registers the two subcommands with
:func:`add_play_arguments` / :func:`cmd_play` and :func:`add_devices_arguments` /
:func:`cmd_devices`; ``python -m pianosynth.io.live play|devices`` runs them standalone.

Environment problems (no PortAudio, no output device, a sample rate the device refuses, no
MIDI system for ``--virtual``) raise :class:`~pianosynth.errors.PianosynthError` with one
line saying what is missing and how to fix it. ``play`` without any MIDI port starts anyway
and says that it waits for one. SIGINT (Ctrl-C) and SIGTERM fade the output out over
:data:`~pianosynth.io.audio_out.FADE_S`, close the streams and return 0.

Timing
------
A message plays ``one block + LATENCY_MARGIN_S`` after it arrived, on the output sample
clock (:class:`~pianosynth.io.audio_out.BlockClock`): fixed latency instead of block
jitter. Measured by ``tests/test_live_jack.py`` (JACK dummy server, 256 frames at 48 kHz,
send stamped on JACK's frame clock, onset found in a recording on the same clock, the
engine's own hammer-to-sound delay of 3-5 ms taken out): median 8.6-9.8 ms, max 11-16 ms,
against 2 periods + 1 ms = 11.7 ms.

Threads and the GIL
-------------------
The callback needs the GIL to start and again after each ``nogil`` kernel. Measured with
``scripts/gil_test.py`` (256 frames, JACK dummy, 3 x 6 s interleaved, a machine already
loaded by other work): underflows per callbacks with the real engine: alone 35/3341,
beside a pure-Python busy thread 1296/2451 at the default switch interval (5 ms) and
625/3055 at ``sys.setswitchinterval(0.001)``, with the busy loop in another process
164/3246 (at nice 10: 263 vs 574 unniced in a noisier run). A lower switch interval
halves the damage but does not remove it, so a GUI must not share the audio process: the
control panel runs the engine in its own process (``pianosynth.gui.engine_process``,
built on :class:`AudioOutput`, :class:`MidiInputs` and :class:`MidiEventQueue`, MIDI
received in the audio process). ``play`` runs no other Python thread of its own beside
the callback except the port watcher (twice a second, libjack calls through ctypes, which
release the GIL), the tuning thread (asleep, or looking for SysEx every
``SYSEX_POLL_S``) and, on ALSA, rtmidi's callback (microseconds per message). On JACK no
Python runs for MIDI outside the audio callback (``--midi-mode jack``, see
:mod:`pianosynth.io.midi_live`).

On JACK, python-rtmidi holds the GIL while it opens clients and ports (server round trips
that wait for the graph, which waits for our callback): :class:`MidiInputs` is started
before the audio stream and later connections go through libjack directly
(:class:`~pianosynth.io.midi_live.JackPorts`).

MIDI Tuning Standard (live)
---------------------------
SysEx messages are queued apart from the channel messages (never seen by the audio thread).
:class:`MtsTuner`, a thread that sleeps until one arrives, decodes them with
:mod:`pianosynth.io.mts` (single-note changes, bulk dumps, scale/octave), merges all that
waited into one set of changes and has the key table redesigned by
:meth:`Engine.retune_keys` in a helper process (``pianosynth-tuning``, started at the
first tuning message, niced): a retune is 30-50 ms of numpy/scipy (the first one in a
process about 2 s), which in this process would hold the GIL against the audio callback.
The new table comes back pickled and is handed to the audio thread as one reference that
the callback installs at the start of its next block (``engine.keys = table``): no lock.
Notes struck afterwards use the new tuning; sounding notes keep theirs (the engine designs
per strike). The real-time and non-real-time forms are treated alike.

Audio device lost
-----------------
When the stream stops by itself (the JACK server quit, a USB card was pulled) ``play`` says
so in one line. With JACK it then polls for a server every second (``SERVER_POLL_S``) and,
when one answers, starts itself again in the same process (``os.execv``: same PID, same
arguments; notes and pedal start from silence) and plays on. A restart, not a reopen:
after its server died PortAudio's JACK host API blocks for ever in ``Pa_StopStream``,
``Pa_CloseStream`` and ``Pa_Terminate`` (measured: PortAudio 19.6, jackd 1.9.21), so the
dead stream can be neither closed nor replaced in the same process. For the same reason the
player leaves without shutting PortAudio down (``os._exit`` after its statistics) when it
is stopped while waiting. Without JACK, or with ``--on-device-loss exit``, it exits at once
with status 3 and one line ``pianosynth: error: ...``. ``tests/test_device_loss.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

import numpy as np

from ..engine.events import NO_EVENTS
from .audio_out import AudioOutput, freeze_gc, import_sounddevice, list_output_devices, \
    quiet_stderr, select_output_device
from .midi_live import API_NAMES, LATENCY_MARGIN_S, MIDI_MODES, SYSEX_POLL_S, EventBlock, \
    JackPorts, MidiEventQueue, MidiInputs, choose_api, is_hardware_port, is_own_port, \
    list_input_ports, no_midi_text

try:
    from ..errors import PianosynthError
except ImportError:  # pragma: no cover
    class PianosynthError(Exception):
        """Bad input or environment, explained in one line."""

#: default frames per block: 256 at 48 kHz is 5.3 ms per block, about 7 ms key-to-sound.
DEFAULT_BUFFER = 256
#: environment variable naming a JSON file for run statistics (same as ``--stats-json``).
STATS_ENV = "PIANOSYNTH_STATS_JSON"
#: silence before the first event of a ``--midi-file``, s.
FILE_LEAD_IN_S = 0.25
#: longest wait for the last notes of a file to die away, s.
FILE_TAIL_MAX_S = 15.0
#: environment variable carrying the counts of a run that restarted after a JACK server loss
RESUME_ENV = "PIANOSYNTH_PLAY_RESUMED"
#: exit status of ``play`` when the audio device went away and is not waited for
EXIT_DEVICE_LOST = 3
#: how often ``play`` looks for a JACK server that went away, s
SERVER_POLL_S = 1.0
#: shortest time between two retunes (MTS): a flood of tuning messages costs at most one
#: redesign per this interval in the helper process, s
MIN_RETUNE_INTERVAL_S = 0.25


def _say(text: str) -> None:
    print(f"pianosynth: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ arguments
def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pianosynth play``."""
    parser.add_argument("--midi-in", metavar="NAME",
                        help="open the MIDI input ports whose name contains NAME "
                             "(default: every hardware input port; see `pianosynth devices`)")
    parser.add_argument("--virtual", action="store_true",
                        help="open a virtual MIDI input port, seen as pianosynth:midi_in "
                             "by other programs")
    parser.add_argument("--audio-device", metavar="NAME",
                        help="audio output device (name substring or index; default: JACK "
                             "if a JACK server runs, else the system default)")
    parser.add_argument("--sample-rate", type=int, metavar="HZ",
                        help="output sample rate (default: the device's; JACK: the server's)")
    parser.add_argument("--buffer", type=int, default=None, metavar="FRAMES",
                        help=f"frames per audio block (default {DEFAULT_BUFFER}: 5.3 ms at "
                             "48 kHz; on JACK the server's period is used)")
    parser.add_argument("--preset", metavar="NAME_OR_FILE",
                        help="preset name or .toml file (default: the built-in default)")
    parser.add_argument("--midi-file", metavar="FILE.mid",
                        help="play a standard MIDI file in real time (MIDI inputs are opened "
                             "only if --midi-in or --virtual is given too)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop after SECONDS (default: run until Ctrl-C / SIGTERM, or "
                             "the end of --midi-file)")
    # hidden: measurement hooks for tests and scripts/bench_live.py
    parser.add_argument("--stats-json", metavar="FILE", default=os.environ.get(STATS_ENV),
                        help=argparse.SUPPRESS)      # written at the end and on SIGUSR1
    parser.add_argument("--midi-mode", choices=MIDI_MODES, default="auto",
                        help=argparse.SUPPRESS)
    parser.add_argument("--midi-api", choices=("jack", "alsa"), default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--on-device-loss", choices=("wait", "exit"), default="wait",
                        help="when the audio device goes away mid-play: wait for a JACK "
                             "server to return and play on (default), or exit with status 3 "
                             "(without JACK play always exits)")


def add_devices_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pianosynth devices`` (none yet)."""


# ------------------------------------------------------------------------------ file events
class FileEvents:
    """The events of a MIDI file on the output sample clock, handed out block by block.

    Parameters
    ----------
    events : numpy.ndarray
        ``(time_s, status, data1, data2)`` rows sorted by time (``read_midi_file``).
    sample_rate : float
        Hz.
    lead_in_s : float
        Silence before time 0 of the file, s.
    """

    def __init__(self, events: np.ndarray, sample_rate: float, lead_in_s: float = FILE_LEAD_IN_S):
        lead = int(round(lead_in_s * sample_rate))
        self.frames = np.round(events["time_s"] * sample_rate).astype(np.int64) + lead
        self.status = np.ascontiguousarray(events["status"], np.uint8)
        self.data1 = np.ascontiguousarray(events["data1"], np.uint8)
        self.data2 = np.ascontiguousarray(events["data2"], np.uint8)
        self.count = len(self.frames)
        self.end_frame = int(self.frames[-1]) if self.count else lead
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= self.count

    def next_frame(self) -> int | None:
        """Output frame of the next event not yet handed out, or None after the last."""
        i = self.pos
        return int(self.frames[i]) if i < self.count else None

    def fill(self, block: EventBlock, start: int, frame0: int, n: int) -> int:
        """Copy the events of frames ``[frame0, frame0 + n)`` into ``block`` from ``start``."""
        i = self.pos
        k = start
        end = frame0 + n
        frames = self.frames
        cap = block.capacity
        while i < self.count and frames[i] < end and k < cap:
            off = frames[i] - frame0
            block.offset[k] = off if off > 0 else 0
            block.status[k] = self.status[i]
            block.data1[k] = self.data1[i]
            block.data2[k] = self.data2[i]
            i += 1
            k += 1
        self.pos = i
        return k


def _read_midi_file(path: str) -> np.ndarray:
    try:
        from .midi_file import read_midi_file
    except ImportError:  # pragma: no cover - fallback while midi_file.py is missing
        return _read_midi_file_mido(path)
    return read_midi_file(path)


def _read_midi_file_mido(path: str) -> np.ndarray:  # pragma: no cover
    import mido
    try:
        mid = mido.MidiFile(path)
    except (OSError, ValueError, EOFError) as exc:
        raise PianosynthError(f"{path}: cannot read MIDI file: {exc}") from None
    rows, t = [], 0.0
    for msg in mid:
        t += msg.time
        if msg.type in ("note_on", "note_off", "control_change"):
            b = msg.bytes()
            rows.append((t, b[0], b[1], b[2]))
    dt = np.dtype([("time_s", np.float64), ("status", np.uint8), ("data1", np.uint8),
                   ("data2", np.uint8)])
    return np.array(rows, dt)


def _load_preset(name):
    """(name, settings, per-key overrides, velocity points) of preset ``name`` or the
    default: the overrides merge the ``[tuning]`` table under the ``[keys.N]`` tables and the
    velocity points come from the ``[velocity]`` table, as ``render`` applies them
    (:meth:`~pianosynth.presets.Preset.key_overrides`,
    :meth:`~pianosynth.presets.Preset.velocity_points`)."""
    try:
        from ..presets import default_preset, load_preset
    except ImportError:  # pragma: no cover - presets.py is part of the package
        if name:
            raise PianosynthError("presets are not available in this build") from None
        return None, {}, {}, None
    p = load_preset(name) if name else default_preset()
    for w in getattr(p, "warnings", []) or []:
        _say(f"warning: {w}")
    return p.name, dict(p.settings), p.key_overrides(), p.velocity_points()


# ------------------------------------------------------------------------------ MTS retuning
def _decode_tuning(data):
    """(changes [(key, Hz)], reason) of one SysEx message (any MTS form the decoder knows)."""
    try:
        from .mts import decode_tuning_message as decode
    except ImportError:  # pragma: no cover - older mts.py: single-note changes only
        from .mts import decode_single_note_tuning as decode
    r = decode(data)
    return list(r.changes), r.reason


def _designer_main(conn, settings, sample_rate, key_overrides, quality) -> None:
    """The tuning helper process: an engine (one voice, no audio) whose
    :meth:`~pianosynth.engine.core.Engine.retune_keys` designs the tables; replies
    ``("ok", keys, key_overrides)`` or ``("error", text)`` per request of changes."""
    try:
        os.nice(10)
    except OSError:
        pass
    from ..engine.core import Engine
    kw = {} if quality is None else dict(quality=quality)
    engine = Engine(settings, sample_rate, key_overrides=key_overrides, max_voices=1, **kw)
    conn.send(("ready",))
    while True:
        try:
            changes = conn.recv()
        except (EOFError, OSError):
            return
        if changes is None:
            return
        try:
            engine.retune_keys(changes)
            conn.send(("ok", engine.keys, engine.key_overrides))
        except Exception as exc:  # noqa: BLE001 - reported by the player
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class MtsTuner:
    """Applies MIDI Tuning Standard SysEx to a live engine without touching the audio thread.

    Parameters
    ----------
    engine : Engine
        The playing engine (read for its settings, rate, quality and key overrides).
    queue : MidiEventQueue
        Its ``sysex`` deque is read here; ``on_sysex`` is set to wake this thread.
    log : callable
        ``log(text)`` for user messages.
    in_process : bool
        Design in this process (a thread) instead of the helper process: for tests and as
        the fallback when no process can be started.

    Attributes
    ----------
    pending : KeyDesign or None
        The next key table, set here and taken (set to None) by the audio thread at a block
        start (:meth:`take`).
    messages, ignored, retunes, installed : int
        Tuning messages decoded, SysEx messages refused (not MTS or malformed), redesigns
        done, tables the audio thread installed.
    """

    def __init__(self, engine, queue, log, in_process: bool = False):
        self.engine = engine
        self.queue = queue
        self.log = log
        self.in_process = in_process
        self.pending = None
        self.messages = self.ignored = self.retunes = self.installed = 0
        self.last_changes: dict = {}
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = False
        self._proc = None
        self._conn = None
        self._overrides = {int(k): dict(v) for k, v in
                           getattr(engine, "key_overrides", {}).items()}
        self._last_log = -1e9
        self._thread = threading.Thread(target=self._run, name="pianosynth-tuning",
                                         daemon=True)

    def start(self) -> None:
        self.queue.on_sysex = self._wake.set
        self._thread.start()

    # ------------------------------------------------------------------ audio thread
    def take(self, engine) -> None:
        """Install a waiting key table (called by the audio thread at a block start)."""
        keys = self.pending
        if keys is not None:
            self.pending = None
            engine.keys = keys
            self.installed += 1

    # ------------------------------------------------------------------ tuning thread
    def _run(self):
        sysex = self.queue.sysex
        next_ok = 0.0
        queue = self.queue
        while not self._stop:
            # the "jack" MIDI mode's ring cannot wake this thread (its writer is C in JACK's
            # thread): look every SYSEX_POLL_S while a ring is attached
            self._wake.wait(SYSEX_POLL_S if queue.ring is not None else 1.0)
            self._wake.clear()
            if self._stop:
                break
            queue.pump_sysex()
            changes = {}
            while sysex:
                _, data = sysex.popleft()
                ch, reason = _decode_tuning(data)
                if reason or not ch:
                    self.ignored += 1
                    continue
                self.messages += 1
                changes.update((int(k), float(f)) for k, f in ch)
            if not changes:
                continue
            wait = next_ok - time.perf_counter()
            if wait > 0:                         # a flood: merge what comes meanwhile
                time.sleep(wait)
                self._wake.set()
                queue.pump_sysex()
                while sysex:
                    _, data = sysex.popleft()
                    ch, reason = _decode_tuning(data)
                    if reason or not ch:
                        self.ignored += 1
                        continue
                    self.messages += 1
                    changes.update((int(k), float(f)) for k, f in ch)
                self._wake.clear()
            try:
                keys = self._design(changes)
            except Exception as exc:  # noqa: BLE001 - keep playing in the old tuning
                self.error = str(exc)
                self.log(f"warning: MIDI tuning change not applied: {exc}")
                next_ok = time.perf_counter() + 1.0
                continue
            if keys is None:
                continue
            self.pending = keys                  # one reference: the audio thread takes it
            self.retunes += 1
            self.last_changes = changes
            now = time.perf_counter()
            if now - self._last_log >= 2.0:
                self._last_log = now
                shown = ", ".join(f"{k}: {f:.3f} Hz" for k, f in sorted(changes.items())[:4])
                more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
                self.log(f"MIDI tuning: retuned {len(changes)} key(s) ({shown}{more})")
            next_ok = time.perf_counter() + MIN_RETUNE_INTERVAL_S

    def _design(self, changes):
        if not self.in_process:
            try:
                return self._design_remote(changes)
            except _DesignerUnavailable as exc:
                self.log(f"warning: tuning helper process unavailable ({exc}); designing "
                         "in the player's process (may cause dropouts)")
                self.in_process = True
        return self._design_local(changes)

    def _design_local(self, changes):
        # a private engine-like copy so that the playing engine's table is swapped only by
        # the audio thread; Engine.retune_keys designs and publishes on its own object
        from ..engine.core import Engine
        e = self.engine
        shadow = Engine.__new__(Engine)
        # every attribute the design reads (settings, rate, quality, velocity table ...);
        # retune_keys only rebinds keys and key_overrides, on the shadow
        shadow.__dict__.update(e.__dict__)
        shadow.__dict__.update(quality=getattr(e, "quality", "high"), keys=e.keys,
                               key_overrides=self._overrides)
        Engine.retune_keys(shadow, changes)
        self._overrides = shadow.key_overrides
        return shadow.keys

    def _design_remote(self, changes):
        if self._proc is None:
            self._spawn()
        try:
            self._conn.send(changes)
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._proc = None
            raise _DesignerUnavailable(f"it ended: {exc}") from None
        if reply[0] == "error":
            raise RuntimeError(reply[1])
        _, keys, over = reply
        self._overrides = over
        return keys

    def _spawn(self):
        import multiprocessing as mp
        e = self.engine
        try:
            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(
                target=_designer_main, name="pianosynth-tuning", daemon=True,
                args=(child, dict(e.settings), e.sample_rate, self._overrides,
                      getattr(e, "quality", None)))
            self._proc.start()
            child.close()
            if not self._conn.poll(120.0):
                raise _DesignerUnavailable("no answer within 120 s")
            msg = self._conn.recv()
        except (OSError, EOFError, ValueError) as exc:
            self._proc = None
            raise _DesignerUnavailable(str(exc)) from None
        if msg[0] != "ready":
            raise _DesignerUnavailable(str(msg))

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._proc is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(timeout=3.0)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=2.0)
            self._proc = None

    def stats(self) -> dict:
        return dict(mts_messages=self.messages, sysex_ignored=self.ignored,
                    mts_retunes=self.retunes, mts_installed=self.installed)


class _DesignerUnavailable(Exception):
    pass


# ------------------------------------------------------------------------------ the player
class _StopRequested(Exception):
    """SIGINT/SIGTERM while starting up."""


class LivePlayer:
    """Engine + audio output + MIDI inputs + file events for one ``play`` run.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed with :func:`add_play_arguments`.
    engine_factory : callable, optional
        ``engine_factory(settings, sample_rate, key_overrides) -> Engine``; default
        :class:`pianosynth.engine.core.Engine`.
    """

    def __init__(self, args, engine_factory=None):
        self.args = args
        self.engine_factory = engine_factory
        self.stop_event = threading.Event()
        self.force_stop = False
        self.stop_reason = "running"
        self.audio: AudioOutput | None = None
        self.midi: MidiInputs | None = None
        self.queue: MidiEventQueue | None = None
        self.file: FileEvents | None = None
        self.tuner: MtsTuner | None = None
        self.engine = None
        self.block = EventBlock()
        self.device_losses = 0
        self.recoveries = 0
        self._stats_wanted = False
        #: after a JACK server loss: restart in this process when it returns (cmd_play only)
        self.may_restart = False
        self._dead_audio = False
        self._resumed = _resume_counts()
        if self._resumed:
            self.device_losses = int(self._resumed.get("device_losses", 0))
            self.recoveries = int(self._resumed.get("device_recoveries", 0))
        self.t_start = None
        self._running = False

    # ---------------------------------------------------------------- signals
    def _on_signal(self, signum, frame):
        if self.stop_event.is_set():
            self.force_stop = True
        self.stop_reason = signal.Signals(signum).name
        self.stop_event.set()
        if not self._running:            # still starting (kernel compile...): leave at once
            raise _StopRequested

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, self._on_signal)
        if hasattr(signal, "SIGUSR1"):          # "write the statistics now" (--stats-json)
            old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_usr1)
        return old

    def _on_usr1(self, signum, frame):
        self._stats_wanted = True

    # ---------------------------------------------------------------- audio thread
    def _make_fill(self):
        block = self.block
        arr = block.array
        queue = self.queue
        file = self.file
        fs = float(self.audio.sample_rate)
        margin = LATENCY_MARGIN_S
        tuner = self.tuner
        engine = self.engine

        def fill(frame0, t_frame0, n):
            if tuner is not None and tuner.pending is not None:
                tuner.take(engine)                  # a retuned key table: one swap
            k = 0
            if queue is not None:
                if queue.latency_s == 0.0:          # first block: fix the latency once
                    queue.latency_s = n / fs + margin
                k = queue.drain_into(block, 0, t_frame0, fs, n)
            if file is not None:
                k0 = k
                k = file.fill(block, k, frame0, n)
                if k0 and k > k0:        # live and file events in one block: merge (rare;
                    arr[:k].sort(order="offset", kind="stable")   # numpy's sort scratch)
            return arr[:k]

        return fill

    # ---------------------------------------------------------------- main thread
    def run(self) -> int:
        old = self._install_signals()
        try:
            return self._run()
        except _StopRequested:
            return 0
        finally:
            self._running = True         # no more _StopRequested from the handler
            self._shutdown()
            for s, h in old.items():
                signal.signal(s, h)

    def _run(self) -> int:
        a = self.args
        if a.buffer is not None and not (16 <= a.buffer <= 8192):
            raise PianosynthError(f"--buffer {a.buffer}: give 16 to 8192 frames")
        if a.sample_rate is not None and not (8000 <= a.sample_rate <= 384000):
            raise PianosynthError(f"--sample-rate {a.sample_rate}: give 8000 to 384000 Hz")
        preset_name, settings, keys, velocity_points = _load_preset(a.preset)
        file_events = _read_midi_file(a.midi_file) if a.midi_file else None
        # a Python thread that keeps the GIL (the "poll" MIDI reader in a flood, the tuner)
        # hands it to the callback after 1 ms, not 5 (as in the panel's audio process)
        sys.setswitchinterval(0.001)

        sd = import_sounddevice()
        device = select_output_device(a.audio_device, sd)
        self.audio = AudioOutput(device, a.sample_rate, a.buffer or DEFAULT_BUFFER, sd=sd)
        fs = self.audio.sample_rate

        if self.engine_factory is None:
            from ..engine.core import Engine
            self.engine_factory = Engine
        try:
            self.engine = self.engine_factory(settings, fs, key_overrides=keys,
                                              velocity_points=velocity_points)
        except ValueError as exc:            # e.g. a sample rate the engine does not support
            raise PianosynthError(f"cannot build the engine at {fs} Hz: {exc}") from None
        scratch = np.zeros((a.buffer or DEFAULT_BUFFER, 2), np.float32)
        for _ in range(2):                       # compile / load kernels off the audio thread
            self.engine.render(scratch, NO_EVENTS)
        if self.stop_event.is_set():
            return 0

        if file_events is not None:
            self.file = FileEvents(file_events, fs)
        if file_events is None or a.midi_in or a.virtual:
            self.queue = MidiEventQueue()
            self.midi = MidiInputs(self.queue, pattern=a.midi_in, virtual=a.virtual,
                                   api=a.midi_api, log=_say, mode=a.midi_mode)
            if self.midi.api is None:
                _say(f"warning: {no_midi_text(self.midi.unavailable)}; playing without MIDI "
                     "input until one appears")
            self.midi.start()                # before the audio: see midi_live.JackPorts
            self.tuner = MtsTuner(self.engine, self.queue, _say)
            self.tuner.start()
        self.audio.engine = self.engine
        self.audio.fill_events = self._make_fill()
        # every event source known: silent blocks may be written without Python
        self.audio.set_event_sources(self.queue,
                                     self.file.next_frame if self.file is not None else None)
        freeze_gc()
        self.audio.start()
        if self.midi is not None and self.midi.mode == "drain":
            self.audio.hold(True)   # rtmidi's queue cannot wake the C callback: every block
        self.t_start = time.perf_counter()
        t_wait = self.t_start + 2.0
        while self.audio.callbacks == 0 and time.perf_counter() < t_wait:
            time.sleep(0.005)
        self._running = True
        if self.stop_event.is_set():
            return 0
        self._announce(preset_name)
        if self._resumed:
            _say(f"the JACK server is back: playing again (audio lost "
                 f"{self.device_losses} time(s) so far)")
        return self._loop()

    def _announce(self, preset_name):
        au = self.audio
        n = au.block_frames or au.requested_blocksize
        text = (f"playing on {au.device_name!r} ({au.hostapi}), {au.sample_rate} Hz, "
                f"{n} frames per block ({1000 * n / au.sample_rate:.1f} ms)")
        if preset_name:
            text += f", preset {preset_name!r}"
        _say(text)
        if au.is_jack and self.args.buffer and self.args.buffer != n:
            _say(f"note: --buffer {self.args.buffer} does not apply on JACK: the server's "
                 f"period is {n} frames (jackd -p)")
        if self.midi is not None and self.midi.api is not None:
            lat = (n / au.sample_rate + LATENCY_MARGIN_S) * 1000
            parts = [f"MIDI on {API_NAMES[self.midi.api]}, timing latency {lat:.1f} ms"]
            if self.midi.virtual_port_name:
                parts.append(f"virtual port {self.midi.virtual_port_name}")
            _say("; ".join(parts))
        if self.file is not None:
            _say(f"playing {self.args.midi_file} ({self.file.count} events, "
                 f"{self.file.end_frame / au.sample_rate:.1f} s)")
        _say("Ctrl-C stops")

    def _loop(self) -> int:
        a = self.args
        au = self.audio
        fs = au.sample_rate
        deadline = self.t_start + a.duration if a.duration else None
        tail_deadline = None
        while not self.stop_event.wait(0.05):
            if au.error is not None:
                raise au.error
            if not au.active:
                self.device_losses += 1
                what = "the JACK server went away" if au.is_jack else "the device went away"
                if not (au.is_jack and a.on_device_loss == "wait"):
                    self.stop_reason = "device lost"
                    self._dead_audio = True
                    _say(f"error: the audio stream on {au.device_name!r} ({au.hostapi}) "
                         f"stopped: {what}")
                    return EXIT_DEVICE_LOST
                self._wait_for_jack(au)
                return EXIT_DEVICE_LOST if self.stop_reason == "device lost" else 0
            if self._stats_wanted:               # SIGUSR1: statistics so far
                self._stats_wanted = False
                self._write_stats(self.stats())
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                self.stop_reason = "duration"
                break
            if self.file is not None and self.file.done and au.frames > self.file.end_frame:
                if tail_deadline is None:
                    tail_deadline = now + FILE_TAIL_MAX_S
                if self.engine.is_silent(-80.0) or now >= tail_deadline:
                    self.stop_reason = "end of file"
                    break
        return 0

    # ---------------------------------------------------------------- device loss
    def _wait_for_jack(self, lost) -> bool:
        """The JACK server went away: say so once, wait for one to answer, then start this
        program again in this process (``os.execv``, same PID, same arguments).

        Why a restart: after its server died PortAudio's JACK host API blocks for ever in
        ``Pa_StopStream``, ``Pa_CloseStream`` and ``Pa_Terminate`` (measured here with
        PortAudio 19.6 / jackd 1.9.21), so it cannot be shut down and opened again in the
        same process, and a dead JACK client must not be closed either. The old stream is
        left alone; the new process opens everything afresh (the engine's kernels load from
        the numba cache in a few seconds). Returns False when a signal stopped the wait;
        the caller then leaves without touching PortAudio (:meth:`_hard_exit`).
        """
        _say(f"the JACK server went away: audio stopped on {lost.device_name!r}; waiting for "
             "it to come back (Ctrl-C stops)")
        self._dead_audio = True
        while not self.stop_event.wait(SERVER_POLL_S):
            if jack_server_answers():
                break
        else:
            return False
        if not self.may_restart:
            self.stop_reason = "device lost"
            return False
        time.sleep(0.5)                  # let the server finish its start-up
        _say("the JACK server is back: starting again")
        stats = self.stats()
        resume = {k: stats.get(k, 0) for k in ("callbacks", "underflows", "frames",
                                               "device_losses", "device_recoveries")}
        resume["device_recoveries"] += 1
        if self.tuner is not None:
            self.tuner.close()
        os.environ[RESUME_ENV] = json.dumps(resume)
        sys.stdout.flush()
        sys.stderr.flush()
        argv = list(getattr(sys, "orig_argv", []) or [sys.executable] + sys.argv)
        os.execv(sys.executable, [sys.executable] + argv[1:])
        return False                      # pragma: no cover - execv does not return

    def _hard_exit(self, code: int) -> None:
        """Leave without shutting PortAudio or the JACK clients down (they would block on
        the dead server): statistics and the last line, then ``os._exit``."""
        if self.tuner is not None:
            self.tuner.close()
        stats = self.stats()
        _say(f"stopped ({self.stop_reason}) after {stats['duration_s']:.1f} s: "
             f"{stats['callbacks']} blocks, {stats['underflows']} underflows")
        self._write_stats(stats)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def _shutdown(self):
        if self._dead_audio:
            self._hard_exit(EXIT_DEVICE_LOST if self.stop_reason == "device lost" else 0)
        au = self.audio
        if au is not None and au.active:
            au.start_fade()
            t_end = time.perf_counter() + au._fade_frames / au.sample_rate + 1.0
            while not au.faded.is_set() and not self.force_stop and time.perf_counter() < t_end:
                au.faded.wait(0.02)
        if au is not None:
            au.close()
        if self.midi is not None:
            self.midi.close()
        if self.tuner is not None:
            self.tuner.close()
        stats = self.stats()
        if self.t_start is not None:
            _say(f"stopped ({self.stop_reason}) after {stats['duration_s']:.1f} s: "
                 f"{stats['callbacks']} blocks, {stats['underflows']} underflows, "
                 f"render load mean {100 * stats['render_load_mean']:.0f}% "
                 f"max {100 * stats['render_load_max']:.0f}%")
        self._write_stats(stats)

    def _write_stats(self, stats):
        if self.args.stats_json:
            path = self.args.stats_json
            try:
                with open(path + ".tmp", "w") as f:     # readers never see half a file
                    json.dump(stats, f, indent=1)
                os.replace(path + ".tmp", path)
            except OSError as exc:
                _say(f"warning: cannot write {self.args.stats_json}: {exc}")

    def stats(self) -> dict:
        s = dict(stop_reason=self.stop_reason,
                 duration_s=(time.perf_counter() - self.t_start) if self.t_start else 0.0)
        if self.audio is not None:
            s.update(self.audio.stats())
        else:
            s.update(callbacks=0, underflows=0, render_load_mean=0.0, render_load_max=0.0)
        for k in ("callbacks", "underflows", "frames"):
            if k in self._resumed:                   # the run before a JACK server loss
                s[k] = s.get(k, 0) + int(self._resumed[k])
        s.update(device_losses=self.device_losses, device_recoveries=self.recoveries)
        if self.engine is not None and hasattr(self.engine, "active_voices"):
            s.update(voices=int(self.engine.active_voices))     # a racy read: a meter
        if self.queue is not None:
            q = self.queue
            s.update(midi_received=q.received, midi_delivered=q.delivered,
                     midi_late=q.late, midi_latency_s=q.latency_s,
                     midi_dropped=q.dropped, midi_stale=q.stale, midi_deferred=q.deferred,
                     midi_queued=len(q), sysex_received=q.sysex_received,
                     sysex_dropped=q.sysex_dropped,
                     midi_recent=[list(m) for m in q.recent_messages()[-256:]])
        if self.tuner is not None:
            s.update(self.tuner.stats())
        if self.midi is not None:
            s.update(midi_api=self.midi.api, midi_mode=self.midi.mode,
                     midi_ports=self.midi.connected,
                     midi_virtual=self.midi.virtual_port_name)
        if self.file is not None:
            s.update(file_events=self.file.count, file_events_played=self.file.pos)
        return s


def _resume_counts() -> dict:
    """Counts handed over by a run that restarted after a JACK server loss (and forgotten
    here, so that a later child process does not see them)."""
    text = os.environ.pop(RESUME_ENV, "")
    if not text:
        return {}
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def jack_server_answers() -> bool:
    """Does a JACK server (``JACK_DEFAULT_SERVER`` or the default one) answer now? A ctypes
    client opened with JackNoStartServer and closed at once (the GIL is released)."""
    import ctypes
    try:
        lib = ctypes.CDLL("libjack.so.0")
    except OSError:
        return False
    vp = ctypes.c_void_p
    lib.jack_client_open.restype = vp
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_int)]
    lib.jack_client_close.argtypes = [vp]
    status = ctypes.c_int(0)
    with quiet_stderr():
        client = lib.jack_client_open(b"pianosynth-probe", 0x01, ctypes.byref(status))
    if not client:
        return False
    lib.jack_client_close(client)
    return True


def cmd_play(args) -> int:
    """``pianosynth play``: run until Ctrl-C / SIGTERM / ``--duration`` / end of file.

    Returns
    -------
    int
        0 on a clean stop.

    Raises
    ------
    PianosynthError
        A missing or unusable audio device, PortAudio library, MIDI system (for
        ``--virtual``), preset or MIDI file.
    """
    player = LivePlayer(args)
    player.may_restart = True
    return player.run()


# ------------------------------------------------------------------------------ devices
def cmd_devices(args) -> int:
    """``pianosynth devices``: audio outputs (with host API) and MIDI inputs; ``*`` marks
    what ``play`` uses by default."""
    sd = import_sounddevice()
    out = sys.stdout
    rows = list_output_devices(sd)
    print("Audio outputs (* = used by `play` without --audio-device):", file=out)
    if not rows:
        print("  (none: no sound card and no running JACK server; start one with "
              "`jackd -d dummy -r 48000 -p 256 &` or connect a sound card)", file=out)
    for r in rows:
        marks = [m for m, on in (("system default", r["default"]),
                                 ("host API default", r["hostapi_default"])) if on]
        print(f"  {'*' if r['preferred'] else ' '} {r['index']:>2}  {r['name']}  "
              f"[{r['hostapi']}, {r['channels']} ch, {r['default_samplerate']:.0f} Hz]"
              + (f"  ({', '.join(marks)})" if marks else ""), file=out)
    api, why = choose_api()
    print("MIDI inputs (* = opened by `play` without --midi-in):", file=out)
    for a, reason in why.items():
        print(f"  {API_NAMES[a]}: unavailable ({reason})", file=out)
    if api is None:
        print("  (no MIDI system: start a JACK server or load the ALSA sequencer)", file=out)
        return 0
    if api == "jack":
        jp = JackPorts()
        try:
            ports = {p: phys or is_hardware_port(p, api) for p, phys in jp.sources().items()}
        finally:
            jp.close()
    else:
        ports = {p: is_hardware_port(p, api) for p in list_input_ports(api)}
    ports = {p: hw for p, hw in ports.items() if not is_own_port(p)}
    print(f"  {API_NAMES[api]}:", file=out)
    if not ports:
        print("    (no ports; `play --virtual` opens pianosynth:midi_in)", file=out)
    for p, hw in ports.items():
        print(f"    {'*' if hw else ' '} {p}", file=out)
    return 0


# ------------------------------------------------------------------------------ standalone
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pianosynth", description="Play the piano live.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("play", help="play live from MIDI inputs or a MIDI file")
    add_play_arguments(p)
    p.set_defaults(func=cmd_play)
    d = sub.add_parser("devices", help="list audio outputs and MIDI inputs")
    add_devices_arguments(d)
    d.set_defaults(func=cmd_devices)
    return parser


def main(argv=None) -> int:
    """``python -m pianosynth.io.live play|devices ...``; errors print one line, exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PianosynthError as exc:
        print(f"pianosynth: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
