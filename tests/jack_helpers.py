"""Helpers for tests and scripts that need a real JACK server (dummy backend, no sound card).

- :class:`JackServer`: starts ``jackd --no-realtime -d dummy`` and waits with ``jack_wait``.
- :class:`JackRecorder`: a JACK client written with ctypes on ``libjack.so.0`` (shipped with
  jackd2, so no extra Python package) that records audio ports into memory together with the
  JACK frame time of every cycle, and reads JACK's frame clock (``jack_frame_time``) at any
  moment. Sending MIDI at a known frame time and finding the onset in a recording stamped in
  the same clock gives an honest send-to-sound latency; see ``tests/test_live_jack.py``.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

JACK_OPTIONS_NO_START_SERVER = 0x01
JACK_PORT_IS_INPUT = 0x1
JACK_DEFAULT_AUDIO_TYPE = b"32 bit float mono audio"


def jack_missing_reason() -> str | None:
    """``None`` if jackd and its tools are installed, else what is missing."""
    for tool in ("jackd", "jack_wait", "jack_lsp"):
        if shutil.which(tool) is None:
            return (f"{tool} not installed (apt-get install --no-install-recommends jackd2)")
    try:
        ctypes.CDLL("libjack.so.0")
    except OSError:
        return "libjack.so.0 not found (apt-get install jackd2)"
    return None


def jack_running() -> bool:
    """Is a JACK server answering now (default server name)?"""
    try:
        r = subprocess.run(["jack_wait", "-c"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "running" in r.stdout and "not" not in r.stdout


def jack_ports() -> list[str]:
    r = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"jack_lsp failed: {r.stderr.strip()}")
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


class JackServer:
    """``jackd --no-realtime -d dummy -r RATE -p PERIOD`` for the duration of a ``with``.

    Parameters
    ----------
    rate : int
        Sample rate, Hz.
    period : int
        Frames per JACK cycle.
    log_path : str or None
        Where jackd's output goes (default: discarded).
    """

    def __init__(self, rate: int = 48000, period: int = 256, log_path: str | None = None):
        self.rate = rate
        self.period = period
        self.log_path = log_path
        self.proc = None

    def start(self, timeout_s: float = 10.0) -> "JackServer":
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-d", "dummy", "-r", str(self.rate), "-p",
             str(self.period)], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        r = subprocess.run(["jack_wait", "-w", "-t", str(int(timeout_s))], capture_output=True,
                           text=True, timeout=timeout_s + 5)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"jackd did not start: {r.stdout.strip()} {r.stderr.strip()}")
        return self

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _libjack():
    lib = ctypes.CDLL("libjack.so.0")
    vp, u32, cp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p
    sig = {
        "jack_client_open": (vp, [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
        "jack_client_close": (ctypes.c_int, [vp]),
        "jack_port_register": (vp, [vp, cp, cp, ctypes.c_ulong, ctypes.c_ulong]),
        "jack_port_name": (cp, [vp]),
        "jack_set_process_callback": (ctypes.c_int, [vp, vp, vp]),
        "jack_activate": (ctypes.c_int, [vp]),
        "jack_deactivate": (ctypes.c_int, [vp]),
        "jack_connect": (ctypes.c_int, [vp, cp, cp]),
        "jack_frame_time": (u32, [vp]),
        "jack_get_sample_rate": (u32, [vp]),
        "jack_get_buffer_size": (u32, [vp]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


# header of the recorder's shared int64 array (the rest: cycle frame times, cycle positions)
H_RECORDING, H_POS, H_CYCLES, H_CLIENT, H_NPORTS, H_CAPACITY, H_MAX_CYCLES, H_CALLS = range(8)
H_PORTS, H_DATA, H_LEN = 8, 16, 32
_PROCESS_CFUNC = None


def _process_cfunc():
    """The recorder's JACK process callback compiled with numba as a C function: it runs in
    JACK's thread without the GIL, so nothing this Python process does (creating rtmidi
    clients, which holds the GIL during server round trips) can stall the JACK graph."""
    global _PROCESS_CFUNC
    if _PROCESS_CFUNC is not None:
        return _PROCESS_CFUNC
    from numba import carray, cfunc, types

    lib = ctypes.CDLL("libjack.so.0")
    libc = ctypes.CDLL(None)
    sz = ctypes.c_size_t
    get_buffer = lib.jack_port_get_buffer            # pointers passed as integers (x86-64 ABI)
    get_buffer.restype, get_buffer.argtypes = sz, [sz, ctypes.c_uint32]
    last_frame_time = lib.jack_last_frame_time
    last_frame_time.restype, last_frame_time.argtypes = ctypes.c_uint32, [sz]
    memcpy = libc.memcpy
    memcpy.restype, memcpy.argtypes = sz, [sz, sz, sz]

    @cfunc(types.int32(types.uint32, types.voidptr), nopython=True)
    def process(nframes, arg):
        h = carray(arg, (H_LEN,), np.int64)
        h[H_CALLS] += 1
        pos = h[H_POS]
        c = h[H_CYCLES]
        mc = h[H_MAX_CYCLES]
        if h[H_RECORDING] != 0 and pos + nframes <= h[H_CAPACITY] and c < mc:
            tail = carray(arg, (H_LEN + 2 * mc,), np.int64)
            tail[H_LEN + c] = last_frame_time(h[H_CLIENT])
            tail[H_LEN + mc + c] = pos
            for ch in range(h[H_NPORTS]):
                buf = get_buffer(h[H_PORTS + ch], nframes)
                memcpy(h[H_DATA + ch] + 4 * pos, buf, 4 * nframes)
            h[H_POS] = pos + nframes
            h[H_CYCLES] = c + 1
        return 0

    _PROCESS_CFUNC = process
    return process


class JackRecorder:
    """A JACK client that records ``channels`` audio inputs with their JACK frame times.

    Parameters
    ----------
    name : str
        JACK client name.
    channels : int
        Audio input ports ``in_1 .. in_N`` (at most 8).
    max_seconds : float
        Recording capacity, s (preallocated).
    realtime_priority : int or None
        SCHED_FIFO priority for the process thread where allowed (:attr:`realtime` tells).

    Notes
    -----
    The process callback (a numba ``cfunc``: no GIL in JACK's thread) copies each cycle's
    buffers into preallocated memory while recording and stores the cycle's
    ``jack_last_frame_time``, so every recorded sample has a JACK frame time even when the
    server skipped cycles. ``frame_time()`` reads JACK's current frame clock from any
    thread: a sender stamps a MIDI message with it right before sending.
    """

    def __init__(self, name: str = "psrec", channels: int = 2, max_seconds: float = 60.0,
                 realtime_priority: int | None = 60):
        process = _process_cfunc()
        self.lib = lib = _libjack()
        status = ctypes.c_int(0)
        self.client = lib.jack_client_open(name.encode(), JACK_OPTIONS_NO_START_SERVER,
                                           ctypes.byref(status))
        if not self.client:
            raise RuntimeError(f"jack_client_open failed (status 0x{status.value:x})")
        self.sample_rate = int(lib.jack_get_sample_rate(self.client))
        self.period = int(lib.jack_get_buffer_size(self.client))
        self.ports = []
        for i in range(channels):
            p = lib.jack_port_register(self.client, f"in_{i + 1}".encode(),
                                       JACK_DEFAULT_AUDIO_TYPE, JACK_PORT_IS_INPUT, 0)
            if not p:
                raise RuntimeError("jack_port_register failed")
            self.ports.append(p)
        self.port_names = [lib.jack_port_name(p).decode() for p in self.ports]
        n = int(max_seconds * self.sample_rate)
        self.data = np.zeros((channels, n), np.float32)
        self.max_cycles = n // 16 + 16
        self.shared = np.zeros(H_LEN + 2 * self.max_cycles, np.int64)
        h = self.shared
        h[H_CLIENT] = self.client
        h[H_NPORTS] = channels
        h[H_CAPACITY] = n
        h[H_MAX_CYCLES] = self.max_cycles
        for ch in range(channels):
            h[H_PORTS + ch] = self.ports[ch]
            h[H_DATA + ch] = self.data[ch].ctypes.data
        self._process = process                    # keep the compiled function alive
        if lib.jack_set_process_callback(self.client, process.address, h.ctypes.data) != 0:
            raise RuntimeError("jack_set_process_callback failed")
        if lib.jack_activate(self.client) != 0:
            raise RuntimeError("jack_activate failed")
        self.realtime = self._make_realtime(realtime_priority) if realtime_priority else False

    def _make_realtime(self, priority: int) -> bool:
        """Put this client's process thread on SCHED_FIFO (needs root or an rtprio limit).

        With ``jackd --no-realtime`` every client thread is an ordinary thread, and on a
        busy machine the OS often wakes it too late: the recorder then misses cycles and
        notes fall into gaps. The recorder is measuring equipment, so it may ask for more
        than the clients it measures (which keep the server's scheduling).
        """
        try:
            tid = self.lib.jack_client_thread_id
            tid.restype, tid.argtypes = ctypes.c_ulong, [ctypes.c_void_p]
            libc = ctypes.CDLL(None)
            setp = libc.pthread_setschedparam
            setp.restype = ctypes.c_int
            setp.argtypes = [ctypes.c_ulong, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            prio = ctypes.c_int(int(priority))
            return setp(tid(self.client), 1, ctypes.byref(prio)) == 0     # 1: SCHED_FIFO
        except (AttributeError, OSError):
            return False

    @property
    def process_calls(self) -> int:
        return int(self.shared[H_CALLS])

    @property
    def cycles(self) -> int:
        return int(self.shared[H_CYCLES])

    @property
    def pos(self) -> int:
        return int(self.shared[H_POS])

    @property
    def cycle_frame(self) -> np.ndarray:
        return self.shared[H_LEN:H_LEN + self.max_cycles]

    @property
    def cycle_pos(self) -> np.ndarray:
        return self.shared[H_LEN + self.max_cycles:]

    def connect(self, sources: list[str]) -> None:
        for src, dst in zip(sources, self.port_names):
            if self.lib.jack_connect(self.client, src.encode(), dst.encode()) != 0:
                raise RuntimeError(f"jack_connect {src} -> {dst} failed")

    def frame_time(self) -> int:
        """JACK's estimate of the current frame time (``jack_frame_time``)."""
        return int(self.lib.jack_frame_time(self.client))

    def start(self) -> None:
        self.shared[H_RECORDING] = 0
        self.shared[H_POS] = 0
        self.shared[H_CYCLES] = 0
        self.shared[H_RECORDING] = 1

    def stop(self) -> None:
        self.shared[H_RECORDING] = 0
        time.sleep(3 * self.period / self.sample_rate)

    def recorded(self) -> tuple[np.ndarray, int, int]:
        """The recording on JACK's frame clock.

        Returns
        -------
        (data (channels, n) float32, frame time of sample 0, frames missing)
            Sample ``i`` of ``data`` was played at JACK frame time ``first + i``; cycles
            that were not recorded (see :meth:`valid_mask`) are zeros, counted in
            ``frames missing``.
        """
        c = self.cycles
        if c == 0:
            return self.data[:, :0], 0, 0
        fr = self.cycle_frame[:c]
        rel = (fr - fr[0]) % 2**32                     # frame clock wraps at 2**32
        n_out = int(rel[-1]) + self.period
        out = np.zeros((self.data.shape[0], n_out), np.float32)
        ends = np.r_[self.cycle_pos[1:c], self.pos]
        for r, p0, p1 in zip(rel, self.cycle_pos[:c], ends):
            out[:, r:r + (p1 - p0)] = self.data[:, p0:p1]
        missing = n_out - int(self.pos)
        return out, int(fr[0]), missing

    def valid_mask(self) -> np.ndarray:
        """Boolean mask over :meth:`recorded`'s samples: False where no cycle was recorded
        (the server skipped it, or this client's thread was not run in time: JACK xruns on
        a busy machine)."""
        c = self.cycles
        if c == 0:
            return np.zeros(0, bool)
        fr = self.cycle_frame[:c]
        rel = (fr - fr[0]) % 2**32
        mask = np.zeros(int(rel[-1]) + self.period, bool)
        ends = np.r_[self.cycle_pos[1:c], self.pos]
        for r, p0, p1 in zip(rel, self.cycle_pos[:c], ends):
            mask[r:r + (p1 - p0)] = True
        return mask

    def close(self) -> None:
        if self.client:
            self.lib.jack_deactivate(self.client)
            self.lib.jack_client_close(self.client)
            self.client = None


# ---------------------------------------------------------------------------- named servers
class NamedJackServer(JackServer):
    """A dummy JACK server under its own name (``jackd -n NAME``), so that tests running at
    the same time on one machine (each with its own server) do not meet in one graph.

    Clients find it through the environment variable ``JACK_DEFAULT_SERVER`` (libjack reads
    it at every ``jack_client_open``): :meth:`env` gives an environment for subprocesses,
    and :meth:`use` sets it in this process (PortAudio, rtmidi and ctypes clients created
    afterwards connect to this server). :meth:`stop` can be followed by :meth:`start` again
    (a server that goes away and comes back).
    """

    def __init__(self, name: str, rate: int = 48000, period: int = 256,
                 log_path: str | None = None, realtime: bool = False):
        super().__init__(rate, period, log_path)
        self.name = name
        #: start with real-time scheduling (jackd's own default) instead of --no-realtime;
        #: jackd falls back to ordinary threads where the system refuses (see is_realtime)
        self.realtime = realtime
        self._saved_env = None

    def env(self, base: dict | None = None) -> dict:
        return dict(os.environ if base is None else base, JACK_DEFAULT_SERVER=self.name,
                    JACK_NO_AUDIO_RESERVATION="1")

    def use(self) -> None:
        """Point this process's JACK clients at this server (undone by :meth:`unuse`)."""
        if self._saved_env is None:
            self._saved_env = os.environ.get("JACK_DEFAULT_SERVER", "")
        os.environ["JACK_DEFAULT_SERVER"] = self.name

    def unuse(self) -> None:
        if self._saved_env is not None:
            if self._saved_env:
                os.environ["JACK_DEFAULT_SERVER"] = self._saved_env
            else:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            self._saved_env = None

    def running(self) -> bool:
        """Does a server of this name answer now?"""
        try:
            r = subprocess.run(["jack_wait", "-s", self.name, "-c"], capture_output=True,
                               text=True, timeout=5, env=self.env())
        except (OSError, subprocess.TimeoutExpired):
            return False
        return "running" in r.stdout and "not" not in r.stdout

    def start(self, timeout_s: float = 10.0) -> "NamedJackServer":
        if self.running():
            raise RuntimeError(f"a JACK server named {self.name!r} is already running")
        out = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--realtime" if self.realtime else "--no-realtime",
             "-d", "dummy", "-r", str(self.rate),
             "-p", str(self.period)], stdout=out, stderr=subprocess.STDOUT, env=self.env(),
            start_new_session=True)
        r = subprocess.run(["jack_wait", "-s", self.name, "-w", "-t", str(int(timeout_s))],
                           capture_output=True, text=True, timeout=timeout_s + 5,
                           env=self.env())
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"jackd -n {self.name} did not start: {r.stdout.strip()} "
                               f"{r.stderr.strip()}")
        return self

    def is_realtime(self) -> bool:
        """Does one of the server's threads run SCHED_FIFO/SCHED_RR (its driver thread, when
        real-time scheduling was asked for and allowed)?"""
        if self.proc is None:
            return False
        for stat in Path(f"/proc/{self.proc.pid}/task").glob("*/stat"):
            try:
                policy = int(stat.read_text().rsplit(")", 1)[1].split()[38])
            except (OSError, IndexError, ValueError):
                continue
            if policy in (1, 2):            # SCHED_FIFO, SCHED_RR
                return True
        return False

    def ports(self) -> list[str]:
        r = subprocess.run(["jack_lsp", "-s", self.name], capture_output=True, text=True,
                           timeout=10, env=self.env())
        if r.returncode != 0:
            raise RuntimeError(f"jack_lsp failed: {r.stderr.strip()}")
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]


#: jackd2's registry of running servers (shared memory): a 24-byte header, then
#: JACK_MAX_SERVERS entries of (pid int32, name char[257], padding) = 264 bytes, the name
#: stored as "jack-UID:NAME:" (jackd2 common/shm.c, jack_shm_header_t)
JACK_SHM_REGISTRY = "/dev/shm/jack-shm-registry"
JACK_MAX_SERVERS = 8
_REG_HEADER, _REG_ENTRY = 24, 264


def dead_server_names(path: str = JACK_SHM_REGISTRY) -> list[str]:
    """Names of servers that hold a slot of jackd2's registry but are no longer running.

    jackd frees its slot when it stops normally; a server that was killed (SIGKILL, a test
    run cut short) keeps it, and jackd reclaims a dead server's slot only when a server of
    the *same name* starts (``jack_register_server``). After eight such leaks every new
    name fails with "Too many servers already active". Reading only; [] when the registry
    is absent or not in this layout.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_REG_HEADER + JACK_MAX_SERVERS * _REG_ENTRY)
    except OSError:
        return []
    if len(data) < _REG_HEADER + JACK_MAX_SERVERS * _REG_ENTRY or \
            int.from_bytes(data[:4], "little") != 0x4A41434B:         # "JACK"
        return []
    out = []
    for i in range(JACK_MAX_SERVERS):
        off = _REG_HEADER + i * _REG_ENTRY
        pid = int.from_bytes(data[off:off + 4], "little", signed=True)
        raw = data[off + 4:off + 4 + 257].split(b"\0")[0].decode(errors="replace")
        parts = raw.split(":")
        if pid <= 0 or len(parts) < 2 or not parts[1]:
            continue
        try:
            os.kill(pid, 0)
            continue                                    # alive (a server, or a reused pid)
        except ProcessLookupError:
            out.append(parts[1])
        except OSError:
            continue
    return out


def unique_server_name(prefix: str) -> str:
    """A JACK server name no other test run on this machine uses now: the name of a dead
    server that still holds a registry slot if there is one (starting a server under that
    name gives the slot back, see :func:`dead_server_names`), else a new one."""
    dead = dead_server_names()
    if dead:
        return dead[(os.getpid() + int(time.time() * 1000)) % len(dead)]
    return f"{prefix}{os.getpid()}_{int(time.time() * 1000) % 100000}"


def vm_rss_kib(pid: int) -> int | None:
    """Resident memory of process ``pid`` (VmRSS in /proc/PID/status), KiB; None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (all its threads), s."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- the player
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_EMPTY_CALLBACK = r"""
import sys, time, rtmidi, sounddevice as sd
midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="pianosynth")
midi.open_virtual_port("midi_in")
if %d:                                      # the soak's sender client, connected, silent
    mo = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="soaksend")
    mo.open_port([i for i, p in enumerate(mo.get_ports()) if "pianosynth:midi_in" in p][0])
n = [0, 0]
window = %d                                 # count only while measuring (not start, stop)
counting = [not window]
limit = %d                                  # callbacks counted at most (0: no limit)
def cb(out, frames, t, status):
    if counting[0] and (limit == 0 or n[0] < limit):
        n[0] += 1
        if status.output_underflow:
            n[1] += 1
    out.fill(0)
with sd.OutputStream(samplerate=%d, blocksize=0, channels=2, dtype="float32", callback=cb):
    time.sleep(0.5)
    counting[0] = True
    c0, t0 = time.process_time(), time.perf_counter()
    time.sleep(%f)
    cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
    counting[0] = not window
sd._terminate()
midi.close_port()
print(n[0], n[1], cpu)
"""


_C_CALLBACK = r"""
import sys, time, numpy as np, rtmidi, sounddevice as sd
sys.path.insert(0, %r)
from pianosynth.io.audio_out import G_CHANNELS, G_LEN, G_LIMIT, gate_cfunc
midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="pianosynth")
midi.open_virtual_port("midi_in")
f = gate_cfunc()
st = np.zeros(G_LEN, np.int64)
st[G_CHANNELS] = 2
st[G_LIMIT] = 1 << 62                       # never calls Python
s = sd._StreamBase(kind="output", samplerate=%d, blocksize=0, channels=2, dtype="float32",
                   latency="low", callback=f.address,
                   userdata=sd._ffi.cast("void*", st.ctypes.data), wrap_callback=None)
s.start()
time.sleep(0.5)
c0, t0 = time.process_time(), time.perf_counter()
time.sleep(%f)
cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
s.stop(); s.close()
sd._terminate()
midi.close_port()
print(cpu)
"""


def c_callback_cpu(seconds: float, env: dict, rate: int = 48000) -> float:
    """CPU (share of one core) of a process whose PortAudio stream callback is C writing
    zeros (:func:`pianosynth.io.audio_out.gate_cfunc`, never entering Python), next to an
    idle rtmidi JACK input: what the JACK clients of the player cost with nothing rendered
    and no interpreter woken (JACK's wake-ups of both client threads)."""
    import sys
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _C_CALLBACK % (REPO, rate, seconds)],
                       capture_output=True, text=True, timeout=seconds + 60, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"C-callback baseline failed (status {r.returncode}): "
                           f"{r.stderr[-2000:]} {r.stdout[-500:]}")
    return float(r.stdout.split()[-1])


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """{thread id: (name, user + system CPU seconds so far)} of process ``pid``."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                text = f.read()
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        out[int(t)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


_EMPTY_CALLBACK_TIMED = r"""
import sys, time, rtmidi, sounddevice as sd
midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="pianosynth")
midi.open_virtual_port("midi_in")
n, times = [0], []
def cb(out, frames, t, status):
    n[0] += 1
    if status.output_underflow:
        times.append(time.perf_counter())
    out.fill(0)
with sd.OutputStream(samplerate=%d, blocksize=0, channels=2, dtype="float32", callback=cb):
    print("ready", flush=True)
    time.sleep(%f)
sd._terminate()
midi.close_port()
print(n[0], " ".join(repr(t) for t in times))
"""


def empty_callback_process(seconds: float, env: dict, rate: int = 48000):
    """Start an empty PortAudio callback with an idle rtmidi JACK input (``pianosynth:
    midi_in``, no Python callback: messages sent to it stay in rtmidi's C queue) for
    ``seconds``; ``finish_empty_callback(proc)`` gives (callbacks, underflow times). For a
    baseline under the same load as the player (a MIDI flood sent to that port)."""
    import sys
    proc = subprocess.Popen([sys.executable, "-c", _EMPTY_CALLBACK_TIMED % (rate, seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise RuntimeError(f"empty-callback process failed: {proc.stderr.read()[-2000:]}")
    return proc


def finish_empty_callback(proc, timeout: float = 120.0) -> tuple[int, list[float]]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"empty-callback process failed: {err[-2000:]}")
    fields = out.split()
    return int(fields[0]), [float(t) for t in fields[1:]]


def player_env(server: "NamedJackServer | None" = None) -> dict:
    """Environment for a ``python -m pianosynth`` subprocess (this checkout first on the
    path, no inherited stats file; ``server``'s name if given)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PIANOSYNTH_STATS_JSON", None)
    env.pop("PIANOSYNTH_PLAY_RESUMED", None)
    return server.env(env) if server is not None else env


def empty_callback_run(seconds: float, env: dict, rate: int = 48000,
                       sender: bool = False, window_only: bool = False,
                       max_calls: int = 0) -> tuple[int, int, float]:
    """(callbacks, underflows, CPU) of an empty PortAudio callback next to an idle rtmidi JACK
    input (the same JACK clients as the player, doing nothing), on the server of ``env``.
    CPU is the process's share of one core while the stream runs: what any PortAudio + JACK
    client costs here before it renders a sample (JACK wake-ups, Python entering the
    callback). ``sender``: also an rtmidi JACK output connected to that input and sending
    nothing (the graph of a test that plays MIDI into the player has that client too).
    ``window_only``: count callbacks and underflows only during the ``seconds`` measured
    (not while the stream starts and stops, as a player's count inside its playing window);
    ``max_calls`` > 0: count at most that many callbacks (a baseline of exactly as many
    callbacks as a run it is compared with)."""
    import sys
    r = subprocess.run([sys.executable, "-c", _EMPTY_CALLBACK % (
                        int(sender), int(window_only), int(max_calls), rate, seconds)],
                       capture_output=True, text=True, timeout=seconds + 60, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"empty-callback baseline failed: {r.stderr[-2000:]}")
    calls, under, cpu = r.stdout.split()[-3:]
    return int(calls), int(under), float(cpu)


def empty_callback_baseline(seconds: float, env: dict, rate: int = 48000) -> tuple[int, int]:
    """(callbacks, underflows) of :func:`empty_callback_run`."""
    return empty_callback_run(seconds, env, rate)[:2]


class LogTail:
    """A subprocess's output, written to a file and searched while it runs."""

    def __init__(self, path):
        self.path = str(path)

    def text(self) -> str:
        try:
            with open(self.path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_for(self, needle: str, timeout: float, proc=None, start: int = 0) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if needle in self.text()[start:]:
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not seen in the output:\n{self.text()[-4000:]}")
