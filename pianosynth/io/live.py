"""``pianosynth play`` and ``pianosynth devices``: the piano, live, on an audio device.

::

    MIDI ports --rtmidi thread--> MidiEventQueue (deque, timestamps) --+
    --midi-file --> FileEvents (sample frames, read ahead) ------------+--> audio callback:
                                                              EventBlock -> Engine.render
    watcher thread: port list every 0.5 s (vanished ports, reconnects)
    main thread: signals, status, stop fade, statistics

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
the callback except the MIDI callback (microseconds) and the port watcher (twice a
second, libjack calls through ctypes, which release the GIL).

On JACK, python-rtmidi holds the GIL while it opens clients and ports (server round trips
that wait for the graph, which waits for our callback): :class:`MidiInputs` is started
before the audio stream and later connections go through libjack directly
(:class:`~pianosynth.io.midi_live.JackPorts`).
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
    select_output_device
from .midi_live import API_NAMES, LATENCY_MARGIN_S, EventBlock, JackPorts, MidiEventQueue, \
    MidiInputs, choose_api, is_hardware_port, is_own_port, list_input_ports, no_midi_text

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
                        help=argparse.SUPPRESS)
    parser.add_argument("--midi-mode", choices=("callback", "poll"), default="callback",
                        help=argparse.SUPPRESS)
    parser.add_argument("--midi-api", choices=("jack", "alsa"), default=None,
                        help=argparse.SUPPRESS)


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
    try:
        from ..presets import default_preset, load_preset
    except ImportError:  # pragma: no cover - presets.py is part of the package
        if name:
            raise PianosynthError("presets are not available in this build") from None
        return None, {}, {}
    p = load_preset(name) if name else default_preset()
    for w in getattr(p, "warnings", []) or []:
        _say(f"warning: {w}")
    return p.name, dict(p.settings), dict(p.keys)


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
        self.engine = None
        self.block = EventBlock()
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
        return old

    # ---------------------------------------------------------------- audio thread
    def _make_fill(self):
        block = self.block
        arr = block.array
        queue = self.queue
        file = self.file
        fs = float(self.audio.sample_rate)
        margin = LATENCY_MARGIN_S

        def fill(frame0, t_frame0, n):
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
        preset_name, settings, keys = _load_preset(a.preset)
        file_events = _read_midi_file(a.midi_file) if a.midi_file else None

        sd = import_sounddevice()
        device = select_output_device(a.audio_device, sd)
        self.audio = AudioOutput(device, a.sample_rate, a.buffer or DEFAULT_BUFFER, sd=sd)
        fs = self.audio.sample_rate

        if self.engine_factory is None:
            from ..engine.core import Engine
            self.engine_factory = Engine
        try:
            self.engine = self.engine_factory(settings, fs, key_overrides=keys)
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
        self.audio.engine = self.engine
        self.audio.fill_events = self._make_fill()
        freeze_gc()
        self.audio.start()
        self.t_start = time.perf_counter()
        t_wait = self.t_start + 2.0
        while self.audio.callbacks == 0 and time.perf_counter() < t_wait:
            time.sleep(0.005)
        self._running = True
        if self.stop_event.is_set():
            return 0
        self._announce(preset_name)
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
                raise PianosynthError(
                    f"the audio stream on {au.device_name!r} ({au.hostapi}) stopped: the "
                    "device or the JACK server went away")
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

    def _shutdown(self):
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
        stats = self.stats()
        if self.t_start is not None:
            _say(f"stopped ({self.stop_reason}) after {stats['duration_s']:.1f} s: "
                 f"{stats['callbacks']} blocks, {stats['underflows']} underflows, "
                 f"render load mean {100 * stats['render_load_mean']:.0f}% "
                 f"max {100 * stats['render_load_max']:.0f}%")
        if self.args.stats_json:
            try:
                with open(self.args.stats_json, "w") as f:
                    json.dump(stats, f, indent=1)
            except OSError as exc:
                _say(f"warning: cannot write {self.args.stats_json}: {exc}")

    def stats(self) -> dict:
        s = dict(stop_reason=self.stop_reason,
                 duration_s=(time.perf_counter() - self.t_start) if self.t_start else 0.0)
        if self.audio is not None:
            s.update(self.audio.stats())
        else:
            s.update(callbacks=0, underflows=0, render_load_mean=0.0, render_load_max=0.0)
        if self.queue is not None:
            s.update(midi_received=self.queue.received, midi_delivered=self.queue.delivered,
                     midi_late=self.queue.late, midi_latency_s=self.queue.latency_s,
                     midi_recent=[list(m) for m in self.queue.recent])
        if self.midi is not None:
            s.update(midi_api=self.midi.api, midi_mode=self.midi.mode,
                     midi_ports=self.midi.connected,
                     midi_virtual=self.midi.virtual_port_name)
        if self.file is not None:
            s.update(file_events=self.file.count, file_events_played=self.file.pos)
        return s


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
    return LivePlayer(args).run()


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
