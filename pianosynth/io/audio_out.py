"""Live audio output: PortAudio (python-sounddevice) stream around one ``Engine.render`` call.

The audio callback is a few lines: count an underflow, ask the event source for this block's
events (written into a preallocated event array), render, advance the sample clock, apply
the stop fade. It never allocates arrays, never locks, never does I/O.

Clocks
------
MIDI messages are stamped with :func:`time.perf_counter` when they arrive; the engine counts
output frames. :class:`BlockClock` maps one to the other: each callback gives one sample
``t_callback - frame / fs`` of the offset between the clocks. A callback can be late (OS
scheduling) but never early, so the *minimum* of these samples over the last one to two
seconds is the offset of an on-time callback. A message that arrived at ``t`` plays at frame
``(t + latency - offset) * fs``: arrival time plus a constant, on the output sample clock, so
the block size and the callback jitter do not show in the timing of the notes
(Dannenberg's "timestamp, then delay by a constant" scheme; the constant is one block plus a
margin, see :data:`pianosynth.io.midi_live.LATENCY_MARGIN_S`).

Host APIs
---------
PortAudio lists the JACK host API only if a JACK server is running when PortAudio starts;
:func:`import_sounddevice` re-initialises PortAudio if sounddevice had been imported
earlier. On JACK the server sets the block size (``blocksize=0``: PortAudio hands over
JACK's period; asking for another size makes PortAudio re-buffer, which adds latency and
underflows).

Silence in C
------------
A Python callback costs the process CPU at every block even when it only writes zeros:
the interpreter is entered from PortAudio's thread (GIL, CFFI, a new numpy array) ~190
times a second at 256 frames. Measured on the JACK dummy server, 15 s of silence, one
core: an empty Python callback 2.3-2.6 %, the same in a process with the engine loaded
3.3-3.5 %, the gated engine (:class:`IdleGate`) 4.2 %. So the stream's callback is a small
C function (:func:`gate_cfunc`, numba ``cfunc``): while the engine is idle and no event
can come it writes zeros and returns without Python (0.5-0.9 %); otherwise it calls the
Python callback. Python arms it after each block it renders (:meth:`AudioOutput._armed`):
up to the engine's next recheck (:data:`IDLE_RECHECK_BLOCKS`) or the next scheduled event
(a MIDI file), and any event source disarms it at once by writing one word
(:attr:`AudioOutput.wake`, set by :meth:`MidiEventQueue.push`). An underflow, a stop fade
or an error also go through Python. ``PIANOSYNTH_C_GATE=0`` turns this off (the plain
sounddevice callback).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time

import numpy as np

from .priority import boost_current_thread

try:
    from ..errors import PianosynthError
except ImportError:  # pragma: no cover - errors.py is part of the package
    class PianosynthError(Exception):
        """Bad input or environment, explained in one line."""

#: name of PortAudio's JACK host API.
JACK_HOSTAPI = "JACK Audio Connection Kit"
#: most frames one callback may ask for (PortAudio with ``blocksize=0`` on ALSA may vary).
MAX_BLOCK_FRAMES = 16384
#: default length of the stop fade, seconds.
FADE_S = 0.08
#: underflows whose time (perf_counter) is kept for the statistics.
MAX_UNDERFLOW_TIMES = 1024
#: blocks an idle engine is skipped (:class:`IdleGate`) before it is rendered once again and
#: asked again whether it is idle: a parameter changed in silence (a master gain glide)
#: settles within this many blocks (64 x 256 frames at 48 kHz: 0.34 s).
IDLE_RECHECK_BLOCKS = 64
#: PortAudio's status flag for an output underflow, its callback return values
PA_OUTPUT_UNDERFLOW = 0x4
PA_CONTINUE, PA_ABORT = 0, 2
#: words of the state the C callback (:func:`gate_cfunc`) shares with Python (int64 each):
#: WAKE != 0: an event came (written by any producer thread, cleared by the callback);
#: HOLD != 0: Python must see every block (written by control threads); FRAME: the next
#: block's first frame; LIMIT: C may write zeros up to this frame; BLOCKS: blocks C wrote
#: since the last Python call; PYFN: address of the Python callback; CHANNELS
G_WAKE, G_HOLD, G_FRAME, G_LIMIT, G_BLOCKS, G_PYFN, G_CHANNELS = range(7)
G_LEN = 8

_INSTALL_HINT = ("install it with `apt-get install libportaudio2` (Debian/Ubuntu) or "
                 "`brew install portaudio` (macOS)")


@contextlib.contextmanager
def quiet_stderr():
    """Silence C-level stderr (ALSA and libjack chatter while PortAudio probes host APIs).

    Only for start-up code that runs before any other thread prints.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. pytest capture): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_sounddevice(refresh: bool = True):
    """Import :mod:`sounddevice`, re-initialising PortAudio so it sees a JACK server started
    after the first import.

    Raises
    ------
    PianosynthError
        The PortAudio library is not installed.
    """
    already = "sounddevice" in sys.modules
    try:
        with quiet_stderr():
            import sounddevice as sd
            if already and refresh:
                sd._terminate()
                sd._initialize()
    except OSError as exc:
        raise PianosynthError(f"PortAudio library not found ({exc}): {_INSTALL_HINT}") from None
    return sd


def freeze_gc() -> None:
    """Collect once, then move every object that exists now out of the collector's reach.

    The cyclic garbage collector runs in whichever thread allocates when a threshold is
    crossed, holding the GIL: with numpy, scipy and numba loaded a full collection scans
    ~10^5 objects and took 145 ms here (27 blocks of 256 frames without audio). After
    :func:`gc.freeze`, collections only scan objects made later: a few, quickly. Call it
    once start-up (imports, engine, kernels) is done, right before the stream starts.
    """
    import gc
    gc.collect()
    gc.freeze()


def hostapi_name(sd, device_index: int) -> str:
    return sd.query_hostapis(sd.query_devices(device_index)["hostapi"])["name"]


def list_output_devices(sd=None) -> list[dict]:
    """Audio output devices as PortAudio sees them.

    Returns
    -------
    list of dict
        ``index``, ``name``, ``hostapi`` (name), ``channels`` (max output channels),
        ``default_samplerate`` (Hz), ``default`` (PortAudio's default output),
        ``hostapi_default`` (its host API's default output), ``preferred`` (what
        :func:`select_output_device` picks without a name).
    """
    sd = sd or import_sounddevice()
    apis = sd.query_hostapis()
    default_out = _default_output(sd)
    rows = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_output_channels"] <= 0:
            continue
        api = apis[d["hostapi"]]
        rows.append(dict(index=i, name=d["name"], hostapi=api["name"],
                         channels=int(d["max_output_channels"]),
                         default_samplerate=float(d["default_samplerate"]),
                         default=(i == default_out),
                         hostapi_default=(i == api["default_output_device"]),
                         preferred=False))
    try:
        pick = select_output_device(None, sd)
    except PianosynthError:
        pick = None
    for r in rows:
        r["preferred"] = r["index"] == pick
    return rows


def _default_output(sd) -> int:
    try:
        dev = sd.default.device[1]
    except Exception:  # noqa: BLE001 - sounddevice raises plain errors for "no default"
        return -1
    return int(dev) if dev is not None and int(dev) >= 0 else -1


def select_output_device(name: str | None, sd=None) -> int:
    """Index of the output device to play on.

    Parameters
    ----------
    name : str or None
        Case-insensitive substring of a device name (or ``"<name> (<host API>)"``), or a
        device index as text. ``None``: the JACK host API's default output if a JACK server
        runs, else PortAudio's default output, else the first output device.

    Raises
    ------
    PianosynthError
        No output device at all, or none matching ``name``.
    """
    sd = sd or import_sounddevice()
    devices = sd.query_devices()
    apis = sd.query_hostapis()
    outputs = [i for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        raise PianosynthError(
            "no audio output device: PortAudio found neither a sound card nor a running JACK "
            "server. Connect a sound card, or start JACK (for a machine without one: "
            "`jackd -d dummy -r 48000 -p 256 &`), then see `pianosynth devices`")
    if name is None:
        for api in apis:
            if api["name"] == JACK_HOSTAPI and api["default_output_device"] >= 0:
                return int(api["default_output_device"])
        d = _default_output(sd)
        return d if d in outputs else outputs[0]
    text = str(name).strip()
    if text.isdigit() and int(text) in outputs:
        return int(text)
    low = text.lower()

    def full(i):
        return f"{devices[i]['name']} ({apis[devices[i]['hostapi']]['name']})".lower()

    for test in (lambda i: devices[i]["name"].lower() == low,
                 lambda i: low in devices[i]["name"].lower(),
                 lambda i: low in full(i)):
        hits = [i for i in outputs if test(i)]
        if hits:
            jack = [i for i in hits if apis[devices[i]["hostapi"]]["name"] == JACK_HOSTAPI]
            return (jack or hits)[0]
    avail = "; ".join(f"{i}: {devices[i]['name']} ({apis[devices[i]['hostapi']]['name']})"
                      for i in outputs)
    raise PianosynthError(f"no audio output device matches {name!r} (available: {avail}; "
                          "see `pianosynth devices`)")


def idle_probe(engine):
    """A function ``() -> bool`` telling whether ``engine`` holds nothing now, or ``None``.

    The engine's own ``is_idle()`` (:meth:`pianosynth.engine.core.Engine.is_idle`,
    :class:`~pianosynth.gui.session.TappedEngine`); anything without it (a test double with
    only ``render``): ``None``, never skipped.
    """
    f = getattr(engine, "is_idle", None)
    return f if callable(f) else None


class IdleGate:
    """Renders through ``engine`` but skips it while it is idle and no event comes.

    Parameters
    ----------
    engine : object
        Has ``render(out, events)``; idle is asked with :func:`idle_probe`. An optional
        ``render_silence(out)`` is called for each skipped block (the panel's tap counts
        the silent frames).

    Notes
    -----
    An idle engine (no voice, no noise burst, zero delay-line histories and sympathetic
    drive, master gain settled; ``blockloop.is_idle``) renders exact zeros and changes
    nothing of its state but its sample clock. Not calling it at all leaves it in the state
    it would have after a silence of no length: the next note starts exactly as it would
    have (its clock, which phases the interpolators and seeds the noise, is behind by the
    skipped frames; a live stream need not match an offline render sample for sample).
    Measured on the JACK dummy server, 256 frames: the idle engine's own short-cut still
    costs the callback ~60 us a block (1.1 % of the block time, ~2.5 % of a core with the
    Python around it) and the panel's tap another ~1 %; skipped, a silent block costs what an
    empty callback costs. An event always renders; every :data:`IDLE_RECHECK_BLOCKS`
    skipped blocks one block is rendered and the engine asked again (a gain change made in
    silence glides to its target there). While the engine plays, a block without events is
    followed by the idle test, which stops at the first sounding voice.

    Attributes
    ----------
    skipped : int
        Blocks not rendered so far.
    """

    __slots__ = ("engine", "probe", "silence", "silent_frames", "idle", "left", "skipped")

    def __init__(self, engine):
        self.engine = engine
        self.probe = idle_probe(engine)
        self.silence = getattr(engine, "render_silence", None)
        self.silent_frames = getattr(engine, "skip_frames", None)
        self.idle = False
        self.left = 0
        self.skipped = 0

    def skipped_elsewhere(self, blocks: int, frames: int) -> None:
        """``blocks`` blocks (``frames`` frames) this gate would have skipped were written
        as zeros without it (:func:`gate_cfunc`): count them, and tell the engine's
        ``skip_frames(frames)`` if it has one (the panel's tap)."""
        self.skipped += blocks
        self.left = self.left - blocks if self.left > blocks else 0
        if self.silent_frames is not None:
            self.silent_frames(frames)

    def render(self, out, events) -> None:
        """``engine.render(out, events)``, or zeros into ``out`` when that is what it would
        give (audio thread: no allocation)."""
        if self.idle and self.left > 0 and len(events) == 0:
            self.left -= 1
            out.fill(0)
            self.skipped += 1
            if self.silence is not None:
                self.silence(out)
            return
        self.engine.render(out, events)
        if self.probe is not None and len(events) == 0:
            self.idle = self.probe()
            self.left = IDLE_RECHECK_BLOCKS
        else:
            self.idle = False


_GATE_CFUNC: list = []


def _c_gate_wanted() -> bool:
    return os.environ.get("PIANOSYNTH_C_GATE", "1").strip() not in ("0", "no", "off", "")


def gate_cfunc():
    """The stream's C callback: zeros while Python armed it, else the Python callback.

    Returns
    -------
    numba CFunc or None
        ``int32(void* in, void* out, unsigned long frames, void* time_info,
        unsigned long status, void* state)``, PortAudio's ``PaStreamCallback`` with
        ``state`` a :data:`G_LEN` int64 array (``G_*`` words); ``None`` when numba cannot
        build it (the plain sounddevice callback is used then).

    Notes
    -----
    :func:`pianosynth.io.gate_callback.pa_gate_callback`: a block is written there
    (zeros) iff ``WAKE == 0``, ``HOLD == 0``, no underflow is flagged and
    ``FRAME + frames <= LIMIT``; else the function at ``PYFN`` (a CFFI callback, which
    takes the GIL) is called with the same arguments.
    """
    if not _GATE_CFUNC:
        try:
            from .gate_callback import pa_gate_callback
        except Exception:  # noqa: BLE001 - no numba/llvmlite or a compile failure
            pa_gate_callback = None
        _GATE_CFUNC.append(pa_gate_callback)
    return _GATE_CFUNC[0]


class BlockClock:
    """Maps :func:`time.perf_counter` time onto the output sample clock.

    Parameters
    ----------
    sample_rate : float
        Output rate, Hz.
    window_s : float
        Length of one minimum-tracking window, seconds; the estimate is the minimum over the
        current and the previous window, so it follows clock drift and forgets a start-up
        burst within ``2 * window_s``.

    Notes
    -----
    Offset sample per callback: ``o_k = t_k - F_k / fs`` (``t_k`` callback time, ``F_k``
    first frame of the block). Callbacks run late, never early, so ``min_k o_k`` over a
    recent window is the offset of an on-time callback and ``offset + F / fs`` the time
    at which frame ``F`` is due.
    """

    def __init__(self, sample_rate: float, window_s: float = 1.0):
        self.fs = float(sample_rate)
        self.window_frames = int(window_s * self.fs)
        self.reset()

    def reset(self) -> None:
        """Forget the estimate (after a dropout the frame count no longer matches time)."""
        self._prev_min = math.inf
        self._cur_min = math.inf
        self._window_start = None

    def update(self, t_callback: float, frame: int) -> float:
        """Feed one callback; return the estimated perf_counter time at which ``frame`` is due.

        Parameters
        ----------
        t_callback : float
            perf_counter() at the start of the callback, s.
        frame : int
            Index of the first frame of the block the callback renders.
        """
        o = t_callback - frame / self.fs
        if self._window_start is None:
            self._window_start = frame
        elif frame - self._window_start >= self.window_frames:
            self._prev_min = self._cur_min
            self._cur_min = math.inf
            self._window_start = frame
        if o < self._cur_min:
            self._cur_min = o
        off = self._cur_min if self._cur_min < self._prev_min else self._prev_min
        return off + frame / self.fs


class AudioOutput:
    """A running output stream: engine + event source + clock + stop fade + statistics.

    Parameters
    ----------
    device : int
        PortAudio device index (:func:`select_output_device`).
    sample_rate : int or None
        Hz; ``None``: the device's default rate. Checked here (before an engine is built).
    blocksize : int
        Frames per callback; ignored on JACK, where the server's period is used.
    engine : Engine
        Anything with ``render(out, events)`` (out float32 (n, 2), events EVENT_DTYPE);
        may be set as an attribute before :meth:`start`. While it is idle and no event
        comes it is not called (:class:`IdleGate`).
    fill_events : callable
        ``fill_events(frame0, t_frame0, n) -> events`` called once per block from the audio
        thread: returns the block's events (a view of a preallocated EVENT_DTYPE array,
        sorted, offsets in ``[0, n)``). ``frame0`` is the index of the block's first frame,
        ``t_frame0`` the perf_counter time at which it is due (:class:`BlockClock`).
        May be set as an attribute before :meth:`start`.
    sd : module, optional
        sounddevice, as returned by :func:`import_sounddevice`.

    Attributes
    ----------
    underflows : int
        Callbacks that reported ``status.output_underflow``.
    underflow_times : numpy.ndarray
        :func:`time.perf_counter` of the first :data:`MAX_UNDERFLOW_TIMES` of them
        (CLOCK_MONOTONIC on Linux: comparable between processes).
    underflow_gaps, underflow_prev_work, underflow_prev_cpu : numpy.ndarray
        For each of them: time since the previous callback started, how long that
        previous callback took (wall clock) and how much CPU its thread used meanwhile, s.
        A gap of several periods after a short callback is a thread that was not run in
        time (the machine); a long previous callback with as much CPU is work that did not
        fit (this program); a long one with little CPU waited (the GIL, page faults, or a
        thread preempted).
    callbacks, frames : int
        Callbacks so far, frames rendered so far.
    block_frames : int
        Frames of the last callback (JACK's period on JACK).
    render_load_max : float
        Largest (callback duration / block duration) seen.
    """

    def __init__(self, device: int, sample_rate: int | None = None, blocksize: int = 256,
                 engine=None, fill_events=None, sd=None, fade_s: float = FADE_S):
        self.sd = sd or import_sounddevice()
        sd = self.sd
        info = sd.query_devices(device)
        self.device = int(device)
        self.device_name = info["name"]
        self.hostapi = hostapi_name(sd, device)
        self.is_jack = self.hostapi == JACK_HOSTAPI
        rate = int(sample_rate or round(info["default_samplerate"]))
        try:
            sd.check_output_settings(device=device, samplerate=rate, channels=2,
                                     dtype="float32")
        except sd.PortAudioError as exc:
            default = int(round(info["default_samplerate"]))
            hint = (f"use --sample-rate {default}" if default != rate
                    else "check `pianosynth devices`")
            if self.is_jack and default != rate:
                hint += f" (or restart jackd with -r {rate})"
            raise PianosynthError(
                f"audio device {self.device_name!r} ({self.hostapi}) rejects {rate} Hz "
                f"stereo float32 output ({_pa_text(exc)}); {hint}") from None
        self.sample_rate = rate
        self.requested_blocksize = int(blocksize)
        self.engine = engine
        self.fill_events = fill_events
        self.clock = BlockClock(rate)
        self.underflows = 0
        #: perf_counter() of the first MAX_UNDERFLOW_TIMES underflows (preallocated)
        self.underflow_times = np.zeros(MAX_UNDERFLOW_TIMES)
        self.underflow_gaps = np.zeros(MAX_UNDERFLOW_TIMES)
        self.underflow_prev_work = np.zeros(MAX_UNDERFLOW_TIMES)
        self.underflow_prev_cpu = np.zeros(MAX_UNDERFLOW_TIMES)
        self._last_cpu = 0.0                # CPU time of the previous Python callback, s
        self.slow_callbacks = 0             # Python callbacks longer than their block
        self.slow_callbacks_cpu = 0.0       # ... their summed thread CPU time, s
        self.slow_callbacks_wall = 0.0      # ... and wall time, s
        #: the longest Python callback: [wall s, CPU s, its perf_counter() start, its events]
        self.slowest_callback = np.zeros(4)
        self._last_t0 = 0.0                 # start of the previous Python callback
        self._last_work = 0.0               # and its duration, s
        self.callbacks = 0
        self.frames = 0
        self.block_frames = 0
        self.render_load_max = 0.0
        self.render_load_sum = 0.0
        #: the audio thread's scheduling after the first callback asked for real time
        #: (:func:`pianosynth.io.priority.boost_current_thread`); None before
        self.thread_priority: str | None = None
        self.error: BaseException | None = None
        fade_frames = max(1, int(fade_s * rate))
        ramp = 0.5 + 0.5 * np.cos(np.pi * np.arange(fade_frames) / fade_frames)
        self._fade_curve = np.concatenate([ramp, np.zeros(MAX_BLOCK_FRAMES)]).astype(
            np.float32)[:, None]
        self._fade_pos = -1
        self._fade_frames = fade_frames
        self.faded = threading.Event()
        self._stream = None
        self._gate: IdleGate | None = None
        #: state shared with the C callback (``G_*`` words, :func:`gate_cfunc`)
        self._cstate = np.zeros(G_LEN, np.int64)
        #: one word any event producer sets to make the next block go through Python
        #: (:meth:`set_event_sources` hands it to the MIDI queue)
        self.wake = self._cstate[G_WAKE:G_WAKE + 1]
        self.event_horizon = None
        self._wake_ready = False
        #: True when the stream's callback is :func:`gate_cfunc` (silence without Python)
        self.c_gate = False
        self._c_callback = None
        self._cfunc = gate_cfunc() if _c_gate_wanted() else None

    # ------------------------------------------------------------------ audio thread
    def _callback(self, outdata, frames, time_info, status):
        """sounddevice's callback (the plain path, without :func:`gate_cfunc`)."""
        if self._process(outdata, frames, status.output_underflow) != PA_CONTINUE:
            raise self.sd.CallbackAbort

    def _c_entry(self, inp, outp, frames, time_info, flags, user):
        """The Python side of :func:`gate_cfunc` (a CFFI callback: must not raise)."""
        st = self._cstate
        st[G_WAKE] = 0                      # before the queue is drained: a later push wakes
        b = int(st[G_BLOCKS])
        if b:                               # blocks C wrote as zeros since the last call
            st[G_BLOCKS] = 0
            nfr = int(st[G_FRAME]) - self.frames
            self.frames += nfr
            self.callbacks += b
            self._gate.skipped_elsewhere(b, nfr)
        out = np.frombuffer(self._ffi.buffer(outp, frames * self._frame_bytes),
                            np.float32).reshape(frames, 2)
        rc = self._process(out, frames, bool(flags & PA_OUTPUT_UNDERFLOW))
        if rc == PA_CONTINUE:
            self._arm(st, frames)
        else:
            st[G_LIMIT] = 0
        return rc

    def _arm(self, st, frames) -> None:
        """Let the C callback write the next silent blocks while the gate would skip them:
        up to the engine's next recheck or the next scheduled event, while no event source
        wakes it (:data:`G_WAKE`)."""
        g = self._gate
        st[G_FRAME] = self.frames
        if not (g.idle and g.left > 0 and self._fade_pos < 0 and self._wake_ready):
            st[G_LIMIT] = 0
            return
        limit = self.frames + g.left * frames
        h = self.event_horizon
        if h is not None:
            nxt = h()
            if nxt is not None and nxt < limit:
                limit = nxt
        st[G_LIMIT] = limit

    def _process(self, outdata, frames, underflow) -> int:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        if self.thread_priority is None:        # once, in the audio thread itself
            self.thread_priority = boost_current_thread()
        try:
            if underflow:
                u = self.underflows
                if u < MAX_UNDERFLOW_TIMES:
                    self.underflow_times[u] = t0
                    self.underflow_gaps[u] = t0 - self._last_t0
                    self.underflow_prev_work[u] = self._last_work
                    self.underflow_prev_cpu[u] = self._last_cpu
                self.underflows = u + 1
                self.clock.reset()
            frame0 = self.frames
            events = self.fill_events(frame0, self.clock.update(t0, frame0), frames)
            self._gate.render(outdata, events)
            self.frames = frame0 + frames
            self.callbacks += 1
            self.block_frames = frames
            if self._fade_pos >= 0:
                self._apply_fade(outdata, frames)
        except BaseException as exc:  # a bug: keep it for the main thread, output silence
            self.error = exc
            outdata.fill(0)
            self.faded.set()
            return PA_ABORT
        work = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        self._last_t0 = t0
        self._last_work = work
        self._last_cpu = cpu
        load = work * self.sample_rate / frames
        if load > 1.0:
            self.slow_callbacks += 1
            self.slow_callbacks_cpu += cpu
            self.slow_callbacks_wall += work
        if work > self.slowest_callback[0]:
            sc = self.slowest_callback
            sc[0] = work
            sc[1] = cpu
            sc[2] = t0
            sc[3] = len(events)
        self.render_load_sum += load
        if load > self.render_load_max:
            self.render_load_max = load
        return PA_CONTINUE

    def _apply_fade(self, outdata, frames):
        p = self._fade_pos
        if p + frames <= self._fade_curve.shape[0]:
            outdata *= self._fade_curve[p:p + frames]
        else:
            outdata.fill(0)
        self._fade_pos = p + frames
        if self._fade_pos >= self._fade_frames:
            self.faded.set()

    # ------------------------------------------------------------------ control thread
    def start(self) -> None:
        """Open and start the stream.

        Raises
        ------
        PianosynthError
            PortAudio refuses to open the device (busy, gone, server stopped).
        """
        sd = self.sd
        blocksize = 0 if self.is_jack else self.requested_blocksize
        self._gate = IdleGate(self.engine)
        try:
            self._stream = self._open_c_stream(blocksize) if self._cfunc is not None \
                else None
            if self._stream is None:
                self._stream = sd.OutputStream(
                    device=self.device, samplerate=self.sample_rate, blocksize=blocksize,
                    channels=2, dtype="float32", latency="low", callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            self._stream = None
            raise PianosynthError(f"cannot open audio device {self.device_name!r} "
                                  f"({self.hostapi}): {_pa_text(exc)}") from None

    def _open_c_stream(self, blocksize):
        """The stream with :func:`gate_cfunc` as its callback (sounddevice's stream class
        without its Python wrapper); ``None`` if this sounddevice has no such way."""
        sd = self.sd
        ffi = getattr(sd, "_ffi", None)
        base = getattr(sd, "_StreamBase", None)
        if ffi is None or base is None:
            return None
        try:
            self._c_callback = ffi.callback("PaStreamCallback", self._c_entry,
                                            onerror=self._c_error)
        except Exception:  # noqa: BLE001 - another sounddevice: the plain callback
            return None
        st = self._cstate
        st[:] = 0
        st[G_PYFN] = int(ffi.cast("uintptr_t", self._c_callback))
        st[G_CHANNELS] = 2
        self._ffi = ffi
        self._frame_bytes = 2 * 4
        stream = base(kind="output", device=self.device, samplerate=self.sample_rate,
                      blocksize=blocksize, channels=2, dtype="float32", latency="low",
                      callback=self._cfunc.address,
                      userdata=ffi.cast("void*", st.ctypes.data), wrap_callback=None)
        self.c_gate = True
        return stream

    def _c_error(self, exc_type, exc, tb):
        """A Python error escaped :meth:`_c_entry` (a bug): keep it, stop the stream."""
        self.error = exc
        self.faded.set()
        return PA_ABORT

    def set_event_sources(self, queue=None, horizon=None) -> None:
        """Declare where events come from, so silent blocks can be written without Python.

        Parameters
        ----------
        queue : MidiEventQueue or None
            Live events: its ``push`` sets :attr:`wake`, so the next block goes through
            Python. ``None``: no live events.
        horizon : callable or None
            ``horizon() -> int | None``: the first frame of the next scheduled event (a
            MIDI file), or None.

        Until this is called every block goes through Python (an unknown producer could
        not wake the C callback).
        """
        if queue is not None:
            queue.wake = self.wake
        self.event_horizon = horizon
        self._wake_ready = True

    def hold(self, on: bool = True) -> None:
        """Make every block go through Python (``on``) or let silent ones skip it again."""
        self._cstate[G_HOLD] = 1 if on else 0

    @property
    def active(self) -> bool:
        return self._stream is not None and self._stream.active

    @property
    def cpu_load(self) -> float:
        """PortAudio's estimate of the callback's share of the available time (0..1)."""
        return float(self._stream.cpu_load) if self._stream is not None else 0.0

    @property
    def output_latency_s(self) -> float:
        return float(self._stream.latency) if self._stream is not None else 0.0

    @property
    def render_load_mean(self) -> float:
        return self.render_load_sum / self.callbacks if self.callbacks else 0.0

    def start_fade(self) -> None:
        """Fade the output to silence over ``fade_s`` (called from a non-audio thread)."""
        if self._fade_pos < 0:
            self._fade_pos = 0
        self._cstate[G_HOLD] = 1                # the fade is counted in Python

    def close(self) -> None:
        """Stop and close the stream (idempotent)."""
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.stop()
            finally:
                s.close()

    def stats(self) -> dict:
        pending = int(self._cstate[G_BLOCKS])          # written in C, not yet counted here
        return dict(device=self.device_name, hostapi=self.hostapi,
                    sample_rate=self.sample_rate, block_frames=self.block_frames,
                    callbacks=self.callbacks + pending,
                    frames=max(self.frames, int(self._cstate[G_FRAME])),
                    underflows=self.underflows,
                    underflow_times=[round(float(t), 4) for t in
                                     self.underflow_times[:min(self.underflows,
                                                               MAX_UNDERFLOW_TIMES)]],
                    underflow_gaps_ms=[round(1e3 * float(t), 2) for t in
                                       self.underflow_gaps[:min(self.underflows,
                                                                MAX_UNDERFLOW_TIMES)]],
                    underflow_prev_work_ms=[round(1e3 * float(t), 3) for t in
                                            self.underflow_prev_work[:min(
                                                self.underflows, MAX_UNDERFLOW_TIMES)]],
                    underflow_prev_cpu_ms=[round(1e3 * float(t), 3) for t in
                                           self.underflow_prev_cpu[:min(
                                               self.underflows, MAX_UNDERFLOW_TIMES)]],
                    slow_callbacks=self.slow_callbacks,
                    slow_callbacks_cpu_ms=round(1e3 * self.slow_callbacks_cpu, 3),
                    slow_callbacks_wall_ms=round(1e3 * self.slow_callbacks_wall, 3),
                    slowest_callback=dict(
                        wall_ms=round(1e3 * float(self.slowest_callback[0]), 3),
                        cpu_ms=round(1e3 * float(self.slowest_callback[1]), 3),
                        time=round(float(self.slowest_callback[2]), 4),
                        events=int(self.slowest_callback[3])),
                    render_load_mean=round(self.render_load_mean, 4),
                    render_load_max=round(self.render_load_max, 4),
                    idle_blocks_skipped=(self._gate.skipped + pending
                                         if self._gate is not None else 0),
                    silence_in_c=self.c_gate, thread_priority=self.thread_priority)


def _pa_text(exc) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], str):
        return args[0]
    return str(exc)
